// How tests talk to a control API from outside: apply a policy over HTTP, and run the built CLI
// (dist/cli.mjs) as a child process without blocking the event loop an in-process server runs on.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export const CLI = join(import.meta.dirname, '../../dist/cli.mjs');

/** PUT the policy text as `file`; the revision it became (throws on anything but 200). */
export async function applyPolicy(
  controlUrl: string,
  adminToken: string,
  text: string,
  file = 'policy.yaml',
) {
  const response = await fetch(`${controlUrl}/v1/policy?file=${encodeURIComponent(file)}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/yaml' },
    body: text,
  });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`apply answered ${response.status}: ${body}`);
  return (JSON.parse(body) as { revision: number }).revision;
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `bulkhead <args>` with `env` over this process's environment (or only PATH with `clean`), in `cwd`. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  options: { cwd?: string; clean?: boolean } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const base = options.clean ? { PATH: process.env.PATH ?? '/usr/bin:/bin' } : process.env;
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...base, ...env },
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
