// `npm run demo` end to end: dist/demo.mjs as a child process, as a new user runs it. Checks the
// exit code, the lines a reader relies on — the Node.js and the Python function on each cloud — and
// that nothing it started is left behind.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findPythonRuntime } from '../../emulator/index.js';
import { ROOT } from './harness.js';

const CLOUDS = ['AWS Lambda', 'Google Cloud', 'Azure Functions'] as const;
/** The Python functions' workload names in the DENY table (cloud → name). */
const PYTHON_WORKLOADS = { aws: 'charge-card-py', gcp: 'charge-card-py', azure: 'charge-card-py-func' };

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
  it('runs a Node.js and a Python function on all three clouds through the rollout loop (observe, suggest, enforce), shows the decisions, the propagation and the DENY records, and cleans up', async () => {
    // A prepared machine (.venv/py3.12 or py3.13, as CI makes it) must show the Python functions;
    // without one the demo may make it (scripts/python.mjs setup) or run the Node functions alone.
    const pythonReady = findPythonRuntime().python !== undefined;
    const { code, stdout, stderr } = await runDemo();
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(0);
    const skipped = /▸ Python +skipped, Node\.js functions only: \S/.test(stdout);
    if (pythonReady) expect(skipped, stdout).toBe(false);
    const python = !skipped;
    const languages = python ? ['Node\\.js \\d+', 'Python 3\\.1[23]'] : ['Node\\.js \\d+'];

    for (const cloud of CLOUDS) {
      for (const language of languages) {
        const fn = `${cloud} · ${language}`;
        expect(stdout).toMatch(new RegExp(`${fn} +charge card +api\\.payments\\.test +ALLOW +HTTP 200`));
        expect(stdout).toMatch(
          new RegExp(
            `${fn} +compromised dependency +exfil\\.attacker\\.test +DENY +payments-egress/deny\\[0\\]`,
          ),
        );
      }
    }
    // Round 1 observes: the fraud service goes through (a would-deny record); the suggestion made
    // from those records allows it, and round 2 enforces it.
    const functions = CLOUDS.length * languages.length;
    const [round1, rest] = stdout.split(/Suggest — /);
    const [suggest, round2] = (rest ?? '').split(/Round 2 — /);
    expect(round1).toMatch(/Round 1 — observe \(policy revision 1\)/);
    expect(round1?.match(/api\.fraud\.test +ALLOW/g)).toHaveLength(functions);
    expect(suggest).toMatch(/^\d+ would-deny records at the control API become allow rules/);
    expect(suggest).toMatch(
      /- to: \{ host: api\.fraud\.test, port: \d+, methods: \[ POST \], paths: \[ \/v1\/score \] \}/,
    );
    expect(suggest).toMatch(
      /- to: \{ host: api\.payments\.test, port: \d+, methods: \[ POST \], paths: \[ \/v1\/charges \] \}/,
    );
    expect(suggest).not.toMatch(/- to: \{ host: exfil/);
    expect(suggest).toMatch(
      /warning: not suggested: exfil\.attacker\.test:\d+ \(\d+×\): denied by the rule payments-egress\/deny\[0\]/,
    );
    expect(suggest).toMatch(/policy check payments-enforce\.yaml +→ +ok: 1 SmartGroup/);
    // Before the apply: the blast radius goes from unbounded (observe) to what the rules name, and
    // none of the observed traffic would be blocked.
    expect(suggest).toMatch(/blast radius payments: unbounded → \d+\n/);
    expect(suggest).toMatch(/would break: nothing — none of the \d+ observe-mode record\(s\)/);
    expect(suggest).toMatch(/Enforce — the suggestion applied in enforce mode → revision 2/);
    if (python)
      expect(suggest).toMatch(
        /addons:\n +allow:\n +# functions-framework@[\d.]+ \(1×\)[^\n]*\n +- \S*_ctypes\S*\.so/,
      );
    expect(round2).toMatch(/^enforce \(policy revision 2, the suggestion\)/);
    expect(round2?.match(/api\.fraud\.test +ALLOW/g)).toHaveLength(functions);
    expect(round2?.match(/api\.payments\.test +ALLOW/g)).toHaveLength(functions);
    expect(round2?.match(/api\.fraud\.test +DENY/g) ?? []).toHaveLength(0);
    for (const language of languages) {
      expect(stdout).toMatch(
        new RegExp(`Azure Functions · ${language} +holds revision 2 [\\d.]+ ms after the apply`),
      );
      expect(stdout).toMatch(
        new RegExp(`Google Cloud · ${language} +holds revision 2 [\\d.]+ ms after the apply`),
      );
      // A frozen sandbox takes the new revision at its next INVOKE, before the handler's first connection.
      expect(stdout).toMatch(
        new RegExp(`AWS Lambda · ${language} +enforced revision 2 on its next invocation`),
      );
    }
    expect(stdout).not.toContain('did not report the new revision in time');
    expect(stdout).toContain("The attacker's server received 0 requests and 0 bytes");
    expect(stdout).toMatch(/DENY records at the control API \(GET \/v1\/denies, blocked\): \d+/);
    for (const cloud of ['aws', 'gcp', 'azure'] as const) {
      // The Node function's exfiltration in round 2, attributed to the compromised npm package.
      expect(stdout).toMatch(
        new RegExp(
          `\\s${cloud}\\s+charge-card(?:-func)?\\s+exfil\\.attacker\\.test:\\d+\\s+http\\s+payments-egress/deny\\[0\\]\\s+r2\\s+\\S+\\s+analytics-lite@2\\.4\\.1 index\\.js:\\d+`,
        ),
      );
      if (!python) continue;
      // The Python function's, in both rounds, attributed to the compromised PyPI distribution.
      const name = PYTHON_WORKLOADS[cloud];
      for (const revision of ['r1', 'r2'])
        expect(stdout).toMatch(
          new RegExp(
            `\\s${cloud}\\s+${name}\\s+exfil\\.attacker\\.test:\\d+\\s+http\\s+payments-egress/deny\\[0\\]\\s+${revision}\\s+\\S+\\s+analytics-lite@2\\.4\\.1 __init__\\.py:\\d+`,
          ),
        );
    }

    // Nothing left: the temporary folder is gone and no process mentions it.
    const dir = /SQLite (\/\S+)\/bulkhead\.db/.exec(stdout)?.[1];
    expect(dir).toBeDefined();
    expect(existsSync(dir as string)).toBe(false);
    const processes = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout;
    expect(processes.split('\n').filter((line) => line.includes(dir as string))).toEqual([]);
  }, 300_000);
});
