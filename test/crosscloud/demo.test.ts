// `npm run demo` end to end: dist/demo.mjs as a child process, as a new user runs it. Checks the
// exit code, the lines a reader relies on, and that nothing it started is left behind.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './harness.js';

function runDemo(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist/demo.mjs')], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('npm run demo', () => {
  it('runs all three clouds, shows the decisions, the policy change and the DENY records, and cleans up', async () => {
    const { code, stdout, stderr } = await runDemo();
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(0);

    for (const cloud of ['AWS Lambda', 'Google Cloud', 'Azure Functions']) {
      expect(stdout).toMatch(new RegExp(`${cloud} +charge card +api\\.payments\\.test +ALLOW`));
      expect(stdout).toMatch(
        new RegExp(
          `${cloud} +compromised dependency +exfil\\.attacker\\.test +DENY +payments-egress/deny\\[0\\]`,
        ),
      );
    }
    // Round 1 denies the fraud service by default; after the change every cloud allows it.
    const [round1, round2] = stdout.split(/Round 2 — /);
    expect(round1?.match(/api\.fraud\.test +DENY +default-deny/g)).toHaveLength(3);
    expect(round2?.match(/api\.fraud\.test +ALLOW/g)).toHaveLength(3);
    expect(stdout).toMatch(/Azure Functions +holds revision 2 [\d.]+ ms after the apply/);
    expect(stdout).toMatch(/Google Cloud +holds revision 2 [\d.]+ ms after the apply/);
    expect(stdout).toMatch(/AWS Lambda +enforced revision 2 on its next invocation/);
    expect(stdout).toContain("The attacker's server received 0 requests and 0 bytes");
    expect(stdout).toMatch(/DENY records at the control API \(GET \/v1\/denies\): \d+/);
    for (const cloud of ['aws', 'gcp', 'azure']) {
      expect(stdout).toMatch(
        new RegExp(
          `\\s${cloud}\\s+\\S+\\s+exfil\\.attacker\\.test:\\d+\\s+\\w+\\s+payments-egress/deny\\[0\\]\\s+r2`,
        ),
      );
    }

    // Nothing left: the temporary folder is gone and no process mentions it.
    const dir = /SQLite (\/\S+)\/bulkhead\.db/.exec(stdout)?.[1];
    expect(dir).toBeDefined();
    expect(existsSync(dir as string)).toBe(false);
    const processes = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout;
    expect(processes.split('\n').filter((line) => line.includes(dir as string))).toEqual([]);
  }, 120_000);
});
