import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commands } from '../../cli/commands/index.js';

const cli = join(import.meta.dirname, '../../dist/cli.mjs');

describe('bulkhead command table', () => {
  it('selects each command by the same words its module declares', async () => {
    for (const entry of commands) {
      const command = await entry.load();
      expect(command.path).toEqual(entry.path);
      expect(command.usage.startsWith('Usage: bulkhead')).toBe(true);
    }
  });

  it('has no two entries with the same words', () => {
    const keys = commands.map((entry) => entry.path.join(' '));
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('lists every command in the overview and exits 2 without one', () => {
    const run = spawnSync(process.execPath, [cli], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    for (const entry of commands) expect(run.stdout).toContain(`bulkhead ${entry.path.join(' ')}`);
  });

  it('names an unknown command and exits 2', () => {
    const run = spawnSync(process.execPath, [cli, 'frobnicate'], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("unknown command 'frobnicate'");
  });
});
