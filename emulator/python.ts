// Interpreters for the emulator's Python runtimes (python3.12, python3.13). The repository keeps one
// virtualenv per CPython at .venv/py3.X (`node scripts/python.mjs setup` makes them with the packages
// runtime-shims/python/pyproject.toml lists, `awslambdaric` among them); a usable interpreter is one
// where AWS's runtime interface client, `awslambdaric` with its native `runtime_client`, imports.
//
// No test framework imports here: the demo reuses this module.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../layers/package-root.js';

/** CPython versions of Lambda's managed Python runtimes that the emulator runs. */
export type PythonVersion = '3.12' | '3.13';

/** Preference order when no version is asked for. */
const PREFERRED: readonly PythonVersion[] = ['3.13', '3.12'];

export interface PythonRuntime {
  /** The interpreter (a virtualenv's `bin/python`, not resolved: the venv must stay active). */
  python: string;
  /** `major.minor` of the interpreter. */
  version: string;
  /** `awslambdaric.__version__`. */
  awslambdaric: string;
  /** The folder `awslambdaric` is installed in (the emulator's `LAMBDA_RUNTIME_DIR`). */
  runtimeDir: string;
}

/** A usable interpreter, or why there is none. */
export type PythonRuntimeSearch =
  | (PythonRuntime & { reason?: undefined })
  | {
      python: undefined;
      version?: undefined;
      awslambdaric?: undefined;
      runtimeDir?: undefined;
      reason: string;
    };

export type PythonProbe = ({ ok: true } & PythonRuntime) | { ok: false; python: string; reason: string };

// -I: the interpreter's own installation only (no PYTHONPATH, user site or working folder).
const PROBE_ARGS = [
  '-I',
  '-c',
  [
    'import os, sys',
    'import runtime_client, awslambdaric',
    'print("%d.%d" % sys.version_info[:2])',
    'print(awslambdaric.__version__)',
    'print(os.path.dirname(os.path.dirname(os.path.abspath(awslambdaric.__file__))))',
  ].join('\n'),
];

const probes = new Map<string, PythonProbe>();

function probeResult(python: string, status: number | null, stdout: string, stderr: string): PythonProbe {
  const [version, awslambdaric, runtimeDir] = stdout.trim().split('\n');
  if (status === 0 && version && awslambdaric && runtimeDir)
    return { ok: true, python, version, awslambdaric, runtimeDir };
  const lastLine = stderr.trim().split('\n').at(-1);
  return {
    ok: false,
    python,
    reason: `awslambdaric is not importable (${lastLine || `exit status ${status ?? 'unknown'}`})`,
  };
}

/** Whether `python` runs and imports `awslambdaric` (cached per interpreter path). */
export function probePython(python: string): PythonProbe {
  const cached = probes.get(python);
  if (cached) return cached;
  const result = spawnSync(python, PROBE_ARGS, { cwd: tmpdir(), encoding: 'utf8', timeout: 30_000 });
  const probe = result.error
    ? { ok: false as const, python, reason: `cannot run it (${result.error.message})` }
    : probeResult(python, result.status, result.stdout, result.stderr);
  probes.set(python, probe);
  return probe;
}

/** `probePython` without blocking the event loop (the emulator serves its APIs meanwhile). */
export async function probePythonAsync(python: string): Promise<PythonProbe> {
  const cached = probes.get(python);
  if (cached) return cached;
  const probe = await new Promise<PythonProbe>((resolve) => {
    execFile(
      python,
      PROBE_ARGS,
      { cwd: tmpdir(), encoding: 'utf8', timeout: 30_000 },
      (error, stdout, stderr) => {
        // A string code is a spawn failure (ENOENT, EACCES); a number is the exit status.
        if (typeof error?.code === 'string')
          return resolve({ ok: false, python, reason: `cannot run it (${error.message})` });
        const status = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve(probeResult(python, status, stdout, stderr));
      },
    );
  });
  probes.set(python, probe);
  return probe;
}

/** `3.12` for `python3.12`, undefined for other runtime names. */
export function pythonVersionOf(runtimeName: string): string | undefined {
  return /^python(\d+\.\d+)$/.exec(runtimeName)?.[1];
}

/**
 * The repository's virtualenv interpreter with `awslambdaric` importable: `.venv/py<version>` when a
 * version is asked for, else `.venv/py3.13`, then `.venv/py3.12`. `python` is undefined when there is
 * none, and `reason` says why.
 */
export function findPythonRuntime(version?: PythonVersion): PythonRuntimeSearch {
  let root: string;
  try {
    root = packageRoot();
  } catch (error) {
    return { python: undefined, reason: (error as Error).message };
  }
  const reasons: string[] = [];
  for (const minor of version ? [version] : PREFERRED) {
    const venv = `.venv/py${minor}`;
    const python = join(root, '.venv', `py${minor}`, 'bin', 'python');
    if (!existsSync(python)) {
      reasons.push(`${venv} does not exist (\`node scripts/python.mjs setup\` makes it)`);
      continue;
    }
    const probe = probePython(python);
    if (!probe.ok) {
      reasons.push(
        `${venv}: ${probe.reason} (\`node scripts/python.mjs setup --force\` remakes it with awslambdaric)`,
      );
      continue;
    }
    if (probe.version !== minor) {
      reasons.push(`${venv} runs Python ${probe.version}`);
      continue;
    }
    const { ok: _, ...runtime } = probe;
    return runtime;
  }
  return {
    python: undefined,
    reason: `no Python ${version ?? PREFERRED.join(' or ')} with awslambdaric in ${root}: ${reasons.join('; ')}`,
  };
}
