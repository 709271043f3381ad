// The Python shim's toolchain: one virtualenv per CPython 3.10–3.13 this machine has (.venv/py3.X),
// with the packages runtime-shims/python/pyproject.toml names, then ruff, mypy --strict and pytest on
// every one of them. `node scripts/python.mjs setup` prepares (CI runs it), `node scripts/python.mjs test`
// runs (npm test runs it; it prepares what is missing first).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const PACKAGE = join(ROOT, 'runtime-shims', 'python');
const VENVS = join(ROOT, '.venv');
const SUPPORTED = ['3.10', '3.11', '3.12', '3.13'];

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', ...options });
  return result.status ?? 1;
}

function versionOf(python) {
  const result = spawnSync(python, ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], {
    encoding: 'utf8',
  });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** Interpreters by minor version: pythonX.Y on PATH, then pyenv's versions (the newest patch of each). */
function interpreters() {
  const found = new Map();
  for (const minor of SUPPORTED) {
    const which = spawnSync('sh', ['-c', `command -v python${minor}`], { encoding: 'utf8' });
    const path = which.stdout.trim();
    if (which.status === 0 && path && versionOf(path) === minor) found.set(minor, path);
  }
  const pyenv = join(process.env.PYENV_ROOT ?? join(homedir(), '.pyenv'), 'versions');
  if (existsSync(pyenv)) {
    const versions = readdirSync(pyenv)
      .filter((v) => /^3\.\d+\.\d+$/.test(v))
      .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    for (const version of versions) {
      const minor = version.split('.').slice(0, 2).join('.');
      const python = join(pyenv, version, 'bin', 'python3');
      if (SUPPORTED.includes(minor) && existsSync(python)) found.set(minor, python);
    }
  }
  if (found.size === 0) {
    const minor = versionOf('python3');
    if (minor && SUPPORTED.includes(minor)) found.set(minor, 'python3');
  }
  return found;
}

/** The packages pyproject.toml lists (run-time dependencies and the `test` extra). */
function requirements() {
  const text = readFileSync(join(PACKAGE, 'pyproject.toml'), 'utf8');
  const lists = [/^dependencies = \[([^\]]*)\]/m, /^test = \[([^\]]*)\]/m].map(
    (re) => re.exec(text)?.[1] ?? '',
  );
  return lists.flatMap((list) => [...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]));
}

function venvPython(minor) {
  return join(VENVS, `py${minor}`, 'bin', 'python');
}

function setup(onlyMissing) {
  const found = interpreters();
  if (found.size === 0) {
    console.error('python: no CPython 3.10–3.13 found (install python3 and python3-venv)');
    return 1;
  }
  const packages = requirements();
  for (const [minor, python] of found) {
    const venv = venvPython(minor);
    if (onlyMissing && existsSync(venv)) continue;
    console.log(`python: preparing .venv/py${minor} from ${python}`);
    if (run(python, ['-m', 'venv', '--clear', join(VENVS, `py${minor}`)]) !== 0) return 1;
    if (run(venv, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', ...packages]) !== 0)
      return 1;
  }
  return 0;
}

function test() {
  if (setup(true) !== 0) return 1;
  const minors = SUPPORTED.filter((minor) => existsSync(venvPython(minor)));
  const lint = venvPython(minors.includes('3.11') ? '3.11' : (minors[0] ?? '3.11'));
  const here = { cwd: PACKAGE };
  if (run(lint, ['-m', 'ruff', 'check', '.'], here) !== 0) return 1;
  if (run(lint, ['-m', 'ruff', 'format', '--check', '.'], here) !== 0) return 1;
  if (run(lint, ['-m', 'mypy'], here) !== 0) return 1;
  for (const minor of minors) {
    console.log(`python: pytest on CPython ${minor}`);
    if (run(venvPython(minor), ['-m', 'pytest', '-q', ...process.argv.slice(3)], here) !== 0) return 1;
  }
  return 0;
}

const command = process.argv[2];
if (command === 'setup') process.exit(setup(!process.argv.includes('--force')));
else if (command === 'test') process.exit(test());
else {
  console.error('usage: node scripts/python.mjs setup [--force] | test [pytest args]');
  process.exit(2);
}
