// `npm run demo`: one policy, three clouds, on this machine, no cloud account.
//
// Starts the control API (SQLite in a temporary folder), applies examples/policy/demo/payments-observe.yaml,
// and runs the same payments function, in Node.js and in Python, as AWS Lambda sandboxes (emulator +
// layer), Google Cloud functions (the real functions-framework servers, Node's and Python's) and Azure
// Functions apps (the real @azure/functions and azure-functions libraries through worker stand-ins).
// One SmartGroup (tag app=payments) selects all six. Each calls three destinations; Bulkhead's shim
// inside each function process decides every connection. The rollout loop: in observe mode the shims
// record what default-deny would block; `bulkhead policy suggest` turns those records into allow rules;
// the suggestion is applied in enforce mode, every function picks it up, and the blast radius goes
// from unbounded to what the rules name. The DENY records come back from the control API.
//
// The Python functions need a virtualenv with CPython 3.12 or 3.13 (Lambda's Python runtimes) holding
// awslambdaric, functions-framework and azure-functions: .venv/py3.13 or .venv/py3.12, made by
// `node scripts/python.mjs setup`, which the demo runs when neither exists. Without one (no such
// CPython on the machine, or the setup failed) the Node functions run alone and one line says why;
// BULKHEAD_DEMO_NO_PYTHON=1 asks for that.
//
// The destination names (api.payments.test, api.fraud.test, exfil.attacker.test) resolve to loopback
// addresses through a hosts file bind-mounted over /etc/hosts in a private mount namespace
// (`unshare`), so the functions resolve real names with the system resolver and nothing on the
// machine changes. Everything started is stopped on exit, on error and on Ctrl-C.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { once } from 'node:events';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RunningControlServer, startControlServer } from '../control/server.js';
import { openSqliteStore } from '../control/store/index.js';
import { findPythonRuntime, LambdaEmulator, type RuntimeName } from '../emulator/index.js';
import { assembleLayer } from '../layers/build.js';
import type { LayerArch } from '../layers/python-deps.js';
import type { DenyRecord } from '../policy/types.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPT = fileURLToPath(import.meta.url);
const INNER_FLAG = 'BULKHEAD_DEMO_INNER';
const POLICY_OBSERVE = join(ROOT, 'examples/policy/demo/payments-observe.yaml');
const CLI = join(ROOT, 'dist/cli.mjs');
/** How long the demo waits for each function's observe-mode records before it suggests without them. */
const RECORDS_TIMEOUT_MS = 5_000;
const PYTHON_EXAMPLES = join(ROOT, 'examples/functions/python');
const PYTHON_SHIM = join(ROOT, 'runtime-shims/python/src');
const PYTHON_AZURE_STANDIN = join(ROOT, 'runtime-shims/python/azure-local/worker_standin.py');
/** The outer process's verdict on Python, for the inner one: JSON of `PythonChoice`. */
const PYTHON_FLAG = 'BULKHEAD_DEMO_PYTHON';
const READY_TIMEOUT_MS = 20_000;
const PROPAGATION_TIMEOUT_MS = 10_000;

interface Destination {
  host: string;
  ip: string;
  role: string;
}

const DESTINATIONS: Destination[] = [
  { host: 'api.payments.test', ip: '127.0.0.2', role: 'payments API' },
  { host: 'api.fraud.test', ip: '127.0.0.3', role: 'fraud scoring' },
  { host: 'exfil.attacker.test', ip: '127.0.0.4', role: "attacker's collector" },
];

type Cloud = 'aws' | 'gcp' | 'azure';
const CLOUD_LABEL: Record<Cloud, string> = {
  aws: 'AWS Lambda',
  gcp: 'Google Cloud',
  azure: 'Azure Functions',
};

interface Attempt {
  label: string;
  host: string;
  outcome: 'allowed' | 'denied' | 'failed';
  status?: number;
  reason?: string;
}

type Language = 'node' | 'python';

interface FunctionUnderTest {
  cloud: Cloud;
  language: Language;
  /** `AWS Lambda · Node.js 20`, `Google Cloud · Python 3.13`, … */
  label: string;
  /** The workload name the platform gives it (the DENY table's `workload` column). */
  name: string;
  invoke(): Promise<Attempt[]>;
  /** Lambda: SHUTDOWN the sandbox, as Lambda does when it reclaims an idle one. */
  shutdown?(): Promise<void>;
}

/** A function that started, and what its start-up line says. */
interface Started {
  fn: FunctionUnderTest;
  detail: string;
}

/** The interpreter the Python functions run on, or why they are skipped. */
type PythonChoice = { python: string; version: string } | { skip: string };

const NODE_LABEL = `Node.js ${process.versions.node.split('.')[0]}`;

const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: string) => (text: string) => (color ? `\u001b[${code}m${text}\u001b[0m` : text);
const bold = paint('1');
const dim = paint('2');
const green = paint('32');
const red = paint('31');
const yellow = paint('33');

function say(text = ''): void {
  process.stdout.write(`${text}\n`);
}

function step(label: string, text: string): void {
  say(`${bold('▸')} ${label.padEnd(17)} ${text}`);
}

function ms(value: number): string {
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

// ---------------------------------------------------------------------------------------------
// Outer process: private mount namespace with the demo's hosts file, then this script again inside.

function namespaceFlags(): string[] {
  const isRoot = process.getuid?.() === 0;
  // A PID namespace too: when the demo's main process ends, however it ends, the kernel stops every
  // process it started (`--kill-child` covers the outer process being killed). With its own /proc
  // (`--mount-proc`): the Lambda emulator reads /proc/<pid>/stat to see a frozen sandbox stopped, and
  // the machine's /proc would show other processes under the namespace's PIDs (a 1 s wait per freeze).
  return [
    ...(isRoot ? [] : ['--user', '--map-root-user']),
    '--pid',
    '--fork',
    '--kill-child',
    '--mount',
    '--propagation',
    'private',
    '--mount-proc',
  ];
}

async function runOuter(): Promise<number> {
  const probe = spawnSync('unshare', [...namespaceFlags(), 'true'], { stdio: 'ignore' });
  if (probe.status !== 0) {
    console.error(
      'npm run demo maps its host names to loopback addresses in a private mount namespace and needs\n' +
        '`unshare` (Linux, as root or with unprivileged user namespaces enabled). It could not create one here.',
    );
    return 1;
  }
  // Before the namespace: the setup may download from PyPI, and its output is not part of the demo's.
  const python = choosePython();
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-demo-'));
  const hostsFile = join(dir, 'hosts');
  let systemHosts = '';
  try {
    systemHosts = readFileSync('/etc/hosts', 'utf8');
  } catch {
    systemHosts = '127.0.0.1 localhost\n';
  }
  const mapped = DESTINATIONS.map((d) => `${d.ip} ${d.host}`).join('\n');
  writeFileSync(hostsFile, `${systemHosts.trimEnd()}\n# bulkhead demo (this namespace only)\n${mapped}\n`);
  const child = spawn(
    'unshare',
    [
      ...namespaceFlags(),
      '--',
      'sh',
      '-c',
      'mount --bind "$0" /etc/hosts && exec "$@"',
      hostsFile,
      process.execPath,
      SCRIPT,
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit', env: { ...process.env, [INNER_FLAG]: dir, [PYTHON_FLAG]: JSON.stringify(python) } },
  );
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  rmSync(dir, { recursive: true, force: true });
  return code ?? (signal ? 128 + 2 : 1);
}

/** Whether this machine has a CPython 3.12 or 3.13 for `scripts/python.mjs setup` to make a venv from. */
function hasCPython312Or313(): boolean {
  const check =
    'import sys; print(sys.implementation.name == "cpython" and sys.version_info[:2] in ((3, 12), (3, 13)))';
  for (const candidate of ['python3.13', 'python3.12', 'python3']) {
    const result = spawnSync(candidate, ['-c', check], { encoding: 'utf8' });
    if (result.status === 0 && result.stdout.trim() === 'True') return true;
  }
  const pyenv = join(process.env.PYENV_ROOT ?? join(homedir(), '.pyenv'), 'versions');
  try {
    return readdirSync(pyenv).some((version) => /^3\.1[23]\.\d+$/.test(version));
  } catch {
    return false;
  }
}

/** What the Azure and GCP functions need beside awslambdaric (which `findPythonRuntime` checks). */
function missingPythonPackages(python: string): string | undefined {
  if (!existsSync(join(dirname(python), 'functions-framework')))
    return 'functions-framework is not installed';
  const result = spawnSync(
    python,
    ['-I', '-c', 'import azure.functions, functions_framework, cryptography'],
    {
      encoding: 'utf8',
      cwd: tmpdir(),
    },
  );
  if (result.status === 0) return undefined;
  return result.stderr.trim().split('\n').at(-1) || `exit status ${result.status}`;
}

/**
 * The repository's Python 3.13 or 3.12 virtualenv for the Python functions; made by
 * `node scripts/python.mjs setup` when neither exists. Never throws: a reason to skip instead.
 */
function choosePython(): PythonChoice {
  if (process.env.BULKHEAD_DEMO_NO_PYTHON) return { skip: 'BULKHEAD_DEMO_NO_PYTHON is set' };
  const venvs = ['3.13', '3.12'].map((minor) => join(ROOT, '.venv', `py${minor}`));
  let found = findPythonRuntime();
  if (!found.python && !venvs.some((venv) => existsSync(venv))) {
    if (!hasCPython312Or313())
      return {
        skip: "no CPython 3.12 or 3.13 on this machine (the versions of Lambda's Python runtimes)",
      };
    say(
      dim(
        'Preparing the Python virtualenvs for the Python functions (`node scripts/python.mjs setup`, from PyPI; first run only, about a minute)…',
      ),
    );
    say();
    const setup = spawnSync(process.execPath, [join(ROOT, 'scripts/python.mjs'), 'setup'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 900_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    if (setup.status !== 0) {
      const last = `${setup.stdout ?? ''}\n${setup.stderr ?? ''}`.trim().split('\n').at(-1);
      return {
        skip: `\`node scripts/python.mjs setup\` failed (${last || setup.error?.message || 'no output'})`,
      };
    }
    found = findPythonRuntime();
  }
  if (found.reason !== undefined) return { skip: found.reason };
  const missing = missingPythonPackages(found.python);
  if (missing)
    return {
      skip: `.venv/py${found.version}: ${missing} (\`node scripts/python.mjs setup --force\` remakes it)`,
    };
  return { python: found.python, version: found.version };
}

// ---------------------------------------------------------------------------------------------
// Inner process: everything else.

type Cleanup = () => unknown;
const cleanups: Cleanup[] = [];
let cleaning: Promise<void> | undefined;

function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch {
        // Keep stopping the rest.
      }
    }
  })();
  return cleaning;
}

interface DestinationServer extends Destination {
  port: number;
  requests: number;
  bytes: number;
}

async function startDestination(destination: Destination): Promise<DestinationServer> {
  const stats: DestinationServer = { ...destination, port: 0, requests: 0, bytes: 0 };
  const server = http.createServer((req, res) => {
    stats.requests++;
    req.resume();
    req.on('end', () => {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ service: destination.role }));
    });
  });
  // Raw bytes on every accepted connection: anything that reached the server at all shows here.
  server.on('connection', (socket) => {
    socket.on('data', (chunk: Buffer) => {
      stats.bytes += chunk.length;
    });
  });
  server.listen(0, destination.ip);
  await once(server, 'listening');
  stats.port = (server.address() as AddressInfo).port;
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return stats;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Spawn a child in its own process group, killed (group and all) on cleanup. */
function startChild(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  name: string,
  cwd?: string,
): ChildProcess & {
  output: string[];
} {
  const child = spawn(command, args, {
    env,
    cwd,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & {
    output: string[];
  };
  child.output = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') child.output.push(line);
    if (child.output.length > 400) child.output.splice(0, child.output.length - 400);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const exited = once(child, 'exit');
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, 2000);
    await exited;
    clearTimeout(timer);
  });
  child.on('exit', (code, signal) => {
    if (!cleaning && code !== 0 && signal === null) {
      console.error(dim(`${name} exited with ${code}:\n${child.output.slice(-20).join('\n')}`));
    }
  });
  return child;
}

async function waitFor<T>(
  what: string,
  child: ChildProcess,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what} exited before it was ready`);
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} not ready within ${READY_TIMEOUT_MS} ms`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function postJson(url: string, headers: Record<string, string> = {}): Promise<unknown> {
  const response = await fetch(url, {
    method: 'POST',
    // No idle keep-alive connection left open: gunicorn's graceful stop would wait for it (2 s).
    headers: { 'content-type': 'application/json', connection: 'close', ...headers },
    body: '{}',
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${url} answered ${response.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

class ControlApi {
  constructor(
    readonly running: RunningControlServer,
    readonly adminToken: string,
  ) {}

  async request(method: string, path: string, body?: string): Promise<unknown> {
    const response = await fetch(`${this.running.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.adminToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/yaml' }),
      },
      body,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text.slice(0, 500)}`);
    return JSON.parse(text);
  }

  async apply(file: string): Promise<number> {
    const answer = (await this.request(
      'PUT',
      `/v1/policy?file=${encodeURIComponent(basename(file))}`,
      readFileSync(file, 'utf8'),
    )) as { revision: number };
    return answer.revision;
  }

  async workloads(): Promise<{ identity: Record<string, string>; revision?: number }[]> {
    const answer = (await this.request('GET', '/v1/workloads')) as {
      workloads: { identity: Record<string, string>; revision?: number }[];
    };
    return answer.workloads;
  }

  async denies(): Promise<DenyRecord[]> {
    const answer = (await this.request('GET', '/v1/denies?limit=1000&order=asc')) as {
      records: DenyRecord[];
    };
    return answer.records;
  }
}

function ruleOf(reason: string | undefined): string {
  if (!reason) return '';
  const match =
    /rule[: ]+([\w./[\]-]+)/i.exec(reason) ?? /\((default-deny|[\w.-]+\/(?:allow|deny)\[\d+\])/.exec(reason);
  return match?.[1] ?? reason.slice(0, 60);
}

function labelWidth(functions: FunctionUnderTest[]): number {
  return Math.max(16, ...functions.map((fn) => fn.label.length + 1));
}

function printAttempts(rows: { fn: FunctionUnderTest; attempts: Attempt[] }[], width: number): void {
  say(
    dim(
      `  ${'function'.padEnd(width)} ${'calls'.padEnd(24)} ${'destination'.padEnd(21)} ${'result'.padEnd(7)} why`,
    ),
  );
  for (const { fn, attempts } of rows) {
    for (const attempt of attempts) {
      const result =
        attempt.outcome === 'allowed'
          ? green('ALLOW  ')
          : attempt.outcome === 'denied'
            ? red('DENY   ')
            : yellow('FAILED ');
      const why =
        attempt.outcome === 'allowed'
          ? `HTTP ${attempt.status}`
          : attempt.outcome === 'denied'
            ? ruleOf(attempt.reason)
            : (attempt.reason ?? '');
      say(
        `  ${fn.label.padEnd(width)} ${attempt.label.padEnd(24)} ${attempt.host.padEnd(21)} ${result} ${why}`,
      );
    }
  }
}

/** Invoke every function once (or reuse `already`: invocations made this round, the Lambda ones). */
async function runRound(
  functions: FunctionUnderTest[],
  already: Map<FunctionUnderTest, Attempt[]> = new Map(),
): Promise<void> {
  const rows: { fn: FunctionUnderTest; attempts: Attempt[] }[] = [];
  for (const fn of functions) rows.push({ fn, attempts: already.get(fn) ?? (await fn.invoke()) });
  printAttempts(rows, labelWidth(functions));
}

/** The inventory entry of a function: its cloud, name, and language (runtime nodejs… or python3.X). */
function workloadOf<T extends { identity: Record<string, string> }>(
  workloads: T[],
  fn: FunctionUnderTest,
): T | undefined {
  return workloads.find(
    (w) =>
      w.identity.cloud === fn.cloud &&
      w.identity.name === fn.name &&
      (w.identity.runtime ?? '').startsWith('python') === (fn.language === 'python'),
  );
}

/** `bulkhead ARGS` (the built CLI) as a child process: a user's command, not a function call. */
function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The group's EgressPolicy in a policy file from its `allow:` on (allow, deny, exec, addons), as written. */
function rulesBlock(text: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf('  allow:');
  if (start < 0) return [];
  const block: string[] = [];
  for (const line of lines.slice(start)) {
    if (line.startsWith('---') || line.startsWith('# ──')) break;
    if (line.trim() !== '') block.push(line);
  }
  return block;
}

/**
 * Observe → suggest: wait for every function's would-deny records of the observe round, then run
 * `bulkhead policy suggest --mode enforce --out FILE` as a user would. Returns the file.
 */
async function suggestFromRecords(
  control: ControlApi,
  dir: string,
  functions: FunctionUnderTest[],
  revision: number,
): Promise<string> {
  const observedBy = (records: DenyRecord[], fn: FunctionUnderTest) =>
    records.some(
      (r) =>
        r.mode === 'observe' &&
        r.revision === revision &&
        r.workload.cloud === fn.cloud &&
        r.workload.name === fn.name,
    );
  let records: DenyRecord[] = [];
  const deadline = Date.now() + RECORDS_TIMEOUT_MS;
  while (Date.now() < deadline) {
    records = await control.denies();
    if (functions.every((fn) => observedBy(records, fn))) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const observed = records.filter((r) => r.mode === 'observe');
  const file = join(dir, 'payments-enforce.yaml');
  const args = [
    'policy',
    'suggest',
    '--group',
    'payments',
    '--since',
    '1h',
    '--mode',
    'enforce',
    '--out',
    file,
  ];
  say(bold(`Suggest — ${observed.length} would-deny records at the control API become allow rules`));
  say(dim(`  $ bulkhead ${args.join(' ').replace(file, basename(file))}`));
  for (const fn of functions.filter((f) => !observedBy(records, f)))
    say(
      dim(
        `  (${fn.label}: no records yet, its sandbox forwards them later; the others' show the same calls)`,
      ),
    );
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    BULKHEAD_CONTROL_URL: control.running.url,
    BULKHEAD_TOKEN: control.adminToken,
  };
  const suggested = await runCli(args, env);
  if (suggested.code !== 0) throw new Error(`bulkhead policy suggest failed:\n${suggested.stderr}`);
  for (const line of rulesBlock(readFileSync(file, 'utf8')))
    say(line.trimStart().startsWith('#') ? dim(`  ${line}`) : `  ${line}`);
  for (const line of suggested.stderr.split('\n').filter((l) => l.startsWith('warning: ')))
    say(`  ${yellow(line)}`);
  const check = await runCli(['policy', 'check', file], env);
  if (check.code !== 0) throw new Error(`bulkhead policy check refused the suggestion:\n${check.stderr}`);
  say(dim(`  $ bulkhead policy check ${basename(file)}  →  ${check.stdout.trim()}`));
  // Before applying: what the change does to the blast radius, and what of the observed traffic it would block.
  const dryRun = await runCli(['apply', file, '--dry-run'], env);
  if (dryRun.code !== 0) throw new Error(`bulkhead apply --dry-run failed:\n${dryRun.stderr}`);
  say(dim(`  $ bulkhead apply ${basename(file)} --dry-run`));
  for (const line of dryRun.stdout.split('\n'))
    if (line.startsWith('blast radius') || line.startsWith('would break')) say(`  ${bold(line)}`);
  return file;
}

function pythonChoice(): PythonChoice {
  try {
    return JSON.parse(process.env[PYTHON_FLAG] ?? '') as PythonChoice;
  } catch {
    return { skip: 'the demo was not started through its outer process' };
  }
}

async function runInner(dir: string): Promise<void> {
  const started = performance.now();
  const python = pythonChoice();
  const languages = 'python' in python ? 'Node.js and Python' : 'Node.js';
  say(bold(`Bulkhead demo — one policy, three clouds, ${languages}, on this machine`));
  say(dim('  (no cloud account; every connection below is decided by the shim inside the function process)'));
  say();

  for (const destination of DESTINATIONS) {
    const answer = await lookup(destination.host).catch(() => undefined);
    if (answer?.address !== destination.ip) {
      throw new Error(
        `${destination.host} does not resolve to ${destination.ip}: the hosts file mapping failed`,
      );
    }
  }
  const servers = await Promise.all(DESTINATIONS.map(startDestination));
  const [payments, fraud, exfil] = servers as [DestinationServer, DestinationServer, DestinationServer];
  servers.forEach((server, i) => {
    const text = `${server.host.padEnd(20)} → ${server.ip}:${server.port}  ${dim(server.role)}`;
    if (i === 0) step('destinations', `${text}  ${dim('(hosts file in a private mount namespace)')}`);
    else say(`${' '.repeat(20)}${text}`);
  });

  const store = openSqliteStore(join(dir, 'bulkhead.db'));
  cleanups.push(() => store.close());
  const running = await startControlServer({ store });
  cleanups.push(() => running.close());
  const admin = await running.issueToken('admin', 'demo-admin');
  const workloadToken = await running.issueToken('workload', 'demo-functions');
  const control = new ControlApi(running, admin.token);
  const keysDir = join(dir, 'keys');
  mkdirSync(keysDir, { recursive: true });
  const publicKeyFile = join(keysDir, 'control.pub');
  writeFileSync(publicKeyFile, running.key.publicKeyPem);
  step('control API', `${running.url}  ${dim(`(SQLite ${join(dir, 'bulkhead.db')})`)}`);

  const revision1 = await control.apply(POLICY_OBSERVE);
  step(
    'policy',
    `revision ${revision1} applied: ${basename(POLICY_OBSERVE)} ${dim('(SmartGroup payments = tags app=payments; observe mode)')}`,
  );

  const commonEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    BULKHEAD_CONTROL_URL: running.url,
    BULKHEAD_TOKEN: workloadToken.token,
    BULKHEAD_TRUSTED_KEYS: publicKeyFile,
    BULKHEAD_REPORT: `${running.url}/v1/reports`,
    BULKHEAD_TAGS: 'app=payments',
    DEMO_PAYMENTS_URL: `http://${payments.host}:${payments.port}`,
    DEMO_FRAUD_URL: `http://${fraud.host}:${fraud.port}`,
    DEMO_EXFIL_URL: `http://${exfil.host}:${exfil.port}`,
  };

  const skipped: string[] = [];
  const optDir = join(dir, 'opt');
  const layerPythonProblem = buildLayer(optDir, running.url, publicKeyFile, python);

  // All six start at once; the lines below come in a fixed order.
  const starts: { cloud: Cloud; language: Language; start: Promise<Started> }[] = [
    { cloud: 'aws', language: 'node', start: startLambdaNode(commonEnv, optDir) },
  ];
  if ('python' in python) {
    if (layerPythonProblem) skipped.push(`AWS Lambda · Python skipped: ${layerPythonProblem}`);
    else
      starts.push({
        cloud: 'aws',
        language: 'python',
        start: startLambdaPython(commonEnv, dir, optDir, python),
      });
  }
  starts.push({ cloud: 'gcp', language: 'node', start: startGcpNode(commonEnv) });
  if ('python' in python)
    starts.push({ cloud: 'gcp', language: 'python', start: startGcpPython(commonEnv, dir, python) });
  starts.push({ cloud: 'azure', language: 'node', start: startAzureNode(commonEnv) });
  if ('python' in python)
    starts.push({ cloud: 'azure', language: 'python', start: startAzurePython(commonEnv, dir, python) });
  const settled = await Promise.allSettled(starts.map((s) => s.start));

  const functions: FunctionUnderTest[] = [];
  const nameWidth = 20;
  let previous: Cloud | undefined;
  settled.forEach((outcome, i) => {
    const { cloud, language } = starts[i] as (typeof starts)[number];
    if (outcome.status === 'rejected') {
      // The Node functions are the demo; a Python one that cannot start is said and left out.
      if (language === 'node') throw outcome.reason;
      skipped.push(`${CLOUD_LABEL[cloud]} · Python skipped: ${(outcome.reason as Error).message}`);
      return;
    }
    const { fn, detail } = outcome.value;
    functions.push(fn);
    const text = `${fn.name.padEnd(nameWidth)} ${detail}`;
    if (cloud !== previous) step(CLOUD_LABEL[cloud], text);
    else say(`${' '.repeat(20)}${text}`);
    previous = cloud;
  });
  if ('skip' in python) step('Python', yellow(`skipped, Node.js functions only: ${python.skip}`));
  for (const line of skipped) step('Python', yellow(line));
  say();
  const width = labelWidth(functions);

  say(bold(`Round 1 — observe (policy revision ${revision1})`));
  say(
    dim(
      '  (observe mode blocks nothing and records what default-deny would block; the known exfiltration endpoint is denied from day one)',
    ),
  );
  await runRound(functions);
  say();

  const suggestion = await suggestFromRecords(control, dir, functions, revision1);
  say();

  const changeStarted = performance.now();
  const since = () => ms(performance.now() - changeStarted);
  const revision2 = await control.apply(suggestion);
  const applyMs = performance.now() - changeStarted;
  say(bold(`Enforce — the suggestion applied in enforce mode → revision ${revision2}`));
  say(dim(`  (the apply itself answered in ${ms(applyMs)}; times below count from sending it)`));
  // Azure and GCP instances keep a long-poll open while they are warm: the new bundle is pushed. Each
  // reports the revision it holds under its own identity (name, runtime nodejs… or python3.X).
  const pending = new Set(functions.filter((fn) => fn.cloud !== 'aws'));
  const deadline = Date.now() + PROPAGATION_TIMEOUT_MS;
  while (pending.size > 0 && Date.now() < deadline) {
    const workloads = await control.workloads();
    for (const fn of [...pending]) {
      const workload = workloadOf(workloads, fn);
      if (workload && (workload.revision ?? 0) >= revision2) {
        pending.delete(fn);
        say(
          `  ${fn.label.padEnd(width)} holds revision ${revision2} ${since()} after the apply ${dim('(pushed over its long-poll, no invocation needed)')}`,
        );
      }
    }
    if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  for (const fn of pending)
    say(`  ${fn.label.padEnd(width)} ${yellow('did not report the new revision in time')}`);
  // A Lambda sandbox is frozen between invocations: it learns of the new revision when it is thawed.
  const lambdaRounds = new Map<FunctionUnderTest, Attempt[]>();
  const heldRevision = async (fn: FunctionUnderTest) =>
    workloadOf(await control.workloads(), fn)?.revision ?? 0;
  for (const fn of functions.filter((f) => f.cloud === 'aws')) {
    let attempts = await fn.invoke();
    const enforced = (await heldRevision(fn)) >= revision2;
    const how =
      fn.language === 'node'
        ? '(frozen between invocations; refreshed at INVOKE, before the handler ran)'
        : enforced
          ? "(frozen between invocations; its extension's long-poll answer, taken at INVOKE, governed it from the first connection)"
          : '(frozen between invocations)';
    if (enforced) {
      say(
        `  ${fn.label.padEnd(width)} enforced revision ${revision2} on its next invocation, ${since()} after the apply ${dim(how)}`,
      );
    } else {
      say(
        `  ${fn.label.padEnd(width)} ${yellow(`still on revision ${revision1}`)} on its next invocation, ${since()} after the apply ${dim(how)}`,
      );
      for (let invocation = 2; invocation <= 3 && (await heldRevision(fn)) < revision2; invocation++) {
        attempts = await fn.invoke();
        if ((await heldRevision(fn)) >= revision2)
          say(
            `  ${''.padEnd(width)} enforced revision ${revision2} from invocation ${invocation} after the apply, ${since()} after it`,
          );
      }
    }
    lambdaRounds.set(fn, attempts);
  }
  say();

  say(bold(`Round 2 — enforce (policy revision ${revision2}, the suggestion)`));
  await runRound(functions, lambdaRounds);
  say();

  say(
    `The attacker's server received ${bold(String(exfil.requests))} requests and ${bold(String(exfil.bytes))} bytes: nothing left the functions.`,
  );
  say();

  // A frozen Python sandbox sends nothing: its extension forwards what the shim spooled at the end of
  // the last invocation at the next thaw, or at SHUTDOWN. Lambda shuts idle sandboxes down; so does the demo.
  const lambdas = functions.filter((fn) => fn.shutdown !== undefined);
  if (lambdas.some((fn) => fn.language === 'python')) {
    await Promise.all(lambdas.map((fn) => fn.shutdown?.()));
    say(
      dim(
        'AWS Lambda sandboxes shut down, as Lambda does with idle ones: at SHUTDOWN the Python extension forwards the records its shim spooled just before the last freeze.',
      ),
    );
    say();
  }

  // Records travel asynchronously from each function; give the last ones a moment (each function's
  // round-2 exfiltration attempt is the last record it makes).
  let denies: DenyRecord[] = [];
  const reported = (fn: FunctionUnderTest) =>
    denies.some(
      (r) => r.workload.cloud === fn.cloud && r.workload.name === fn.name && r.revision === revision2,
    );
  for (let i = 0; i < 40; i++) {
    // Blocked ones: the would-deny records of the observe round were the suggestion's input.
    denies = (await control.denies()).filter((r) => r.decision === 'deny' && r.mode === 'enforce');
    if (functions.every(reported)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  say(bold(`DENY records at the control API (GET /v1/denies, blocked): ${denies.length}`));
  // In the order they were made (a Lambda sandbox's may arrive later than others': see above).
  printDenies([...denies].sort((a, b) => a.time.localeCompare(b.time)));
  say();
  say(dim(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s. Stopping everything.`));
}

function printDenies(records: DenyRecord[]): void {
  const rows = records.map((record) => [
    record.time.slice(11, 23),
    record.workload.cloud ?? '?',
    record.workload.name ?? '?',
    `${record.destination.host ?? record.destination.ip ?? record.destination.command ?? '?'}${record.destination.port ? `:${record.destination.port}` : ''}`,
    record.kind,
    record.rule,
    `r${record.revision}`,
    record.invocationId ?? '',
    [
      record.origin?.package,
      record.origin?.file ? `${basename(record.origin.file)}:${record.origin.line ?? ''}` : '',
    ]
      .filter(Boolean)
      .join(' '),
  ]);
  const header = ['time', 'cloud', 'workload', 'destination', 'kind', 'rule', 'rev', 'invocation', 'origin'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    `  ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd();
  say(dim(line(header)));
  for (const row of rows) say(line(row));
}

function pythonLabel(cloud: Cloud, python: { version: string }): string {
  return `${CLOUD_LABEL[cloud]} · Python ${python.version}`;
}

function layerArch(): LayerArch | undefined {
  return process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'arm64' : undefined;
}

/**
 * The layer as `bulkhead layer build --control … --trusted-key …` makes it, unpacked as /opt. With
 * Python, `cryptography` is vendored for this machine's architecture (pinned wheels, downloaded once by
 * pip into ~/.cache/bulkhead/wheels). Returns why the layer cannot serve Python, if so.
 */
function buildLayer(
  optDir: string,
  controlUrl: string,
  publicKeyFile: string,
  python: PythonChoice,
): string | undefined {
  const options = { controlUrl, trustedKeys: [publicKeyFile] };
  if (!('python' in python)) {
    assembleLayer(optDir, { ...options, pythonDeps: false });
    return undefined;
  }
  const arch = layerArch();
  let problem = `no Lambda architecture for ${process.arch}`;
  if (arch) {
    try {
      assembleLayer(optDir, { ...options, arch, pythonDeps: true });
      return undefined;
    } catch (error) {
      problem = `the layer's vendored cryptography: ${(error as Error).message}`;
    }
  }
  rmSync(optDir, { recursive: true, force: true });
  assembleLayer(optDir, { ...options, pythonDeps: false });
  return problem;
}

async function startLambda(
  commonEnv: NodeJS.ProcessEnv,
  optDir: string,
  sandbox: {
    name: string;
    taskRoot: string;
    handler: string;
    runtimeName?: RuntimeName;
    pythonPath?: string;
    env?: Record<string, string>;
  },
): Promise<{ init: number; invoke: () => Promise<Attempt[]>; shutdown: () => Promise<void> }> {
  const demoVariables = Object.fromEntries(
    Object.entries(commonEnv).filter(([key, value]) => key.startsWith('DEMO_') && value !== undefined),
  ) as Record<string, string>;
  const emulator = new LambdaEmulator({
    taskRoot: sandbox.taskRoot,
    handler: sandbox.handler,
    functionName: sandbox.name,
    region: 'eu-west-1',
    optDir,
    timeoutMs: 10_000,
    ...(sandbox.runtimeName ? { runtimeName: sandbox.runtimeName } : {}),
    ...(sandbox.pythonPath ? { pythonPath: sandbox.pythonPath } : {}),
    // What `bulkhead attach` sets: the exec wrapper, the token, the function's tags.
    env: {
      AWS_LAMBDA_EXEC_WRAPPER: join(optDir, 'bulkhead-wrapper'),
      BULKHEAD_TOKEN: commonEnv.BULKHEAD_TOKEN as string,
      BULKHEAD_TAGS: commonEnv.BULKHEAD_TAGS as string,
      ...demoVariables,
      ...sandbox.env,
    },
  });
  cleanups.push(() => emulator.close());
  const t0 = performance.now();
  await emulator.start();
  const init = await emulator.init();
  if (!init.ok)
    throw new Error(
      `Lambda sandbox ${sandbox.name} init failed: ${init.errorType ?? ''} ${init.errorMessage ?? ''}`,
    );
  return {
    init: performance.now() - t0,
    shutdown: async () => {
      await emulator.shutdown('spindown');
    },
    invoke: async () => {
      const result = await emulator.invoke({});
      if (result.status !== 'success')
        throw new Error(`Lambda ${sandbox.name} invoke ${result.status}: ${result.payload.toString()}`);
      return result.json<{ results: Attempt[] }>().results;
    },
  };
}

async function startLambdaNode(commonEnv: NodeJS.ProcessEnv, optDir: string): Promise<Started> {
  const name = 'charge-card';
  const sandbox = await startLambda(commonEnv, optDir, {
    name,
    taskRoot: join(ROOT, 'examples/functions/aws'),
    handler: 'index.handler',
  });
  return {
    fn: {
      cloud: 'aws',
      language: 'node',
      label: `${CLOUD_LABEL.aws} · ${NODE_LABEL}`,
      name,
      invoke: sandbox.invoke,
      shutdown: sandbox.shutdown,
    },
    detail: `sandbox in the Lambda emulator, layer attached ${dim(`(init ${ms(sandbox.init)})`)}`,
  };
}

async function startLambdaPython(
  commonEnv: NodeJS.ProcessEnv,
  dir: string,
  optDir: string,
  python: { python: string; version: string },
): Promise<Started> {
  // The deployment package: the handler, its module and its dependencies side by side at the root,
  // as `pip install -t .` leaves them.
  const taskRoot = join(dir, 'task-python');
  mkdirSync(taskRoot, { recursive: true });
  cpSync(join(PYTHON_EXAMPLES, 'aws/app.py'), join(taskRoot, 'app.py'));
  cpSync(join(PYTHON_EXAMPLES, 'shared/checkout.py'), join(taskRoot, 'checkout.py'));
  cpSync(join(PYTHON_EXAMPLES, 'shared/site-packages'), taskRoot, { recursive: true });
  const name = 'charge-card-py';
  const runtimeName = `python${python.version}` as RuntimeName;
  const sandbox = await startLambda(commonEnv, optDir, {
    name,
    taskRoot,
    handler: 'app.handler',
    runtimeName,
    pythonPath: python.python,
    // Lambda's Python runtimes have no node, so the layer's extension runs its Python build there;
    // this machine has node and python3 side by side, so the demo names the one Lambda would run.
    env: { BULKHEAD_EXTENSION_RUNTIME: 'python' },
  });
  return {
    fn: {
      cloud: 'aws',
      language: 'python',
      label: pythonLabel('aws', python),
      name,
      invoke: sandbox.invoke,
      shutdown: sandbox.shutdown,
    },
    detail: `${runtimeName} sandbox (awslambdaric), the same layer ${dim(`(init ${ms(sandbox.init)})`)}`,
  };
}

function gcpInvoker(port: number, name: string): () => Promise<Attempt[]> {
  let execution = 0;
  return async () => {
    const answer = (await postJson(`http://127.0.0.1:${port}/`, {
      'function-execution-id': `${name}-exec-${++execution}`,
    })) as { results: Attempt[] };
    return answer.results;
  };
}

function gcpIdentity(name: string): NodeJS.ProcessEnv {
  return {
    K_SERVICE: name,
    K_REVISION: `${name}-00001-dmo`,
    FUNCTION_TARGET: 'charge',
    GOOGLE_CLOUD_PROJECT: 'demo-project',
  };
}

async function startGcpNode(commonEnv: NodeJS.ProcessEnv): Promise<Started> {
  const name = 'charge-card';
  const port = await freePort();
  const frameworkMain = join(ROOT, 'node_modules/@google-cloud/functions-framework/build/src/main.js');
  const child = startChild(
    process.execPath,
    [frameworkMain, '--target=charge', `--source=${join(ROOT, 'examples/functions/gcp')}`, `--port=${port}`],
    { ...commonEnv, ...gcpIdentity(name) },
    'functions-framework',
  );
  const t0 = performance.now();
  await waitFor('functions-framework', child, async () => ((await canConnect(port)) ? true : undefined));
  return {
    fn: {
      cloud: 'gcp',
      language: 'node',
      label: `${CLOUD_LABEL.gcp} · ${NODE_LABEL}`,
      name,
      invoke: gcpInvoker(port, name),
    },
    detail: `functions-framework --target=charge on :${port} ${dim(`(ready in ${ms(performance.now() - t0)})`)}`,
  };
}

async function startGcpPython(
  commonEnv: NodeJS.ProcessEnv,
  dir: string,
  python: { python: string; version: string },
): Promise<Started> {
  const name = 'charge-card-py';
  const port = await freePort();
  const shared = join(PYTHON_EXAMPLES, 'shared');
  const child = startChild(
    join(dirname(python.python), 'functions-framework'),
    [
      ...['--target', 'charge', '--source', join(PYTHON_EXAMPLES, 'gcp/main.py')],
      ...['--host', '127.0.0.1', '--port', String(port)],
    ],
    {
      ...commonEnv,
      ...gcpIdentity(name),
      // The shim first (its sitecustomize installs enforcement before the framework imports Flask),
      // then the function's own module and its installed dependencies.
      PYTHONPATH: [PYTHON_SHIM, shared, join(shared, 'site-packages')].join(':'),
      PYTHONDONTWRITEBYTECODE: '1',
    },
    'functions-framework (Python)',
    dir,
  );
  const t0 = performance.now();
  await waitFor('functions-framework (Python)', child, async () =>
    (await canConnect(port)) ? true : undefined,
  );
  return {
    fn: {
      cloud: 'gcp',
      language: 'python',
      label: pythonLabel('gcp', python),
      name,
      invoke: gcpInvoker(port, name),
    },
    detail: `functions-framework --target charge (Python, gunicorn) on :${port} ${dim(`(ready in ${ms(performance.now() - t0)})`)}`,
  };
}

function azureIdentity(name: string, runtime: string): NodeJS.ProcessEnv {
  return {
    WEBSITE_SITE_NAME: name,
    REGION_NAME: 'West Europe',
    WEBSITE_OWNER_NAME: '00000000-0000-4000-8000-000000000000+payments-WestEuropewebspace',
    WEBSITE_INSTANCE_ID: `${name}-instance`,
    FUNCTIONS_WORKER_RUNTIME: runtime,
    FUNCTIONS_EXTENSION_VERSION: '~4',
  };
}

async function startAzureNode(commonEnv: NodeJS.ProcessEnv): Promise<Started> {
  const name = 'charge-card-func';
  const child = startChild(
    process.execPath,
    [join(ROOT, 'dist/azure-local.mjs'), '--app', join(ROOT, 'examples/functions/azure/index.cjs')],
    { ...commonEnv, ...azureIdentity(name, 'node') },
    'azure-local',
  );
  const t0 = performance.now();
  const url = await waitFor('Azure app (worker stand-in)', child, async () => {
    for (const line of child.output) {
      const match = /listening on (http:\/\/\S+)/.exec(line);
      if (match) return match[1];
    }
    return undefined;
  });
  return {
    fn: {
      cloud: 'azure',
      language: 'node',
      label: `${CLOUD_LABEL.azure} · ${NODE_LABEL}`,
      name,
      invoke: async () => ((await postJson(`${url}/api/charge`)) as { results: Attempt[] }).results,
    },
    detail: `v4 app (@azure/functions) via the worker stand-in on ${url} ${dim(`(ready in ${ms(performance.now() - t0)})`)}`,
  };
}

async function startAzurePython(
  commonEnv: NodeJS.ProcessEnv,
  dir: string,
  python: { python: string; version: string },
): Promise<Started> {
  const name = 'charge-card-py-func';
  // The shim's package alone, as a requirements.txt install puts it (no sitecustomize: on Azure the
  // app imports it, after the worker's own modules), then the app's module and its dependencies.
  const packages = join(dir, 'azure-python-packages');
  mkdirSync(packages, { recursive: true });
  symlinkSync(join(PYTHON_SHIM, 'bulkhead_shim'), join(packages, 'bulkhead_shim'));
  const shared = join(PYTHON_EXAMPLES, 'shared');
  const child = startChild(
    python.python,
    [PYTHON_AZURE_STANDIN, '--app', join(PYTHON_EXAMPLES, 'azure')],
    {
      ...commonEnv,
      ...azureIdentity(name, 'python'),
      PYTHONPATH: [packages, shared, join(shared, 'site-packages')].join(':'),
      PYTHONDONTWRITEBYTECODE: '1',
    },
    'Azure Python worker stand-in',
    dir,
  );
  const t0 = performance.now();
  const url = await waitFor('Azure Python app (worker stand-in)', child, async () => {
    for (const line of child.output) {
      if (!line.startsWith('{')) continue;
      const port = (JSON.parse(line) as { port?: number }).port;
      if (port) return `http://127.0.0.1:${port}`;
    }
    return undefined;
  });
  return {
    fn: {
      cloud: 'azure',
      language: 'python',
      label: pythonLabel('azure', python),
      name,
      invoke: async () => ((await postJson(`${url}/api/charge`)) as { results: Attempt[] }).results,
    },
    detail: `v2 app (azure-functions) via the Python worker stand-in on ${url} ${dim(`(ready in ${ms(performance.now() - t0)})`)}`,
  };
}

async function main(): Promise<number> {
  const inner = process.env[INNER_FLAG];
  if (!inner) return runOuter();
  const stop = (signal: NodeJS.Signals) => {
    void cleanupAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await runInner(inner);
    return 0;
  } catch (error) {
    console.error(red(`demo failed: ${(error as Error).message}`));
    return 1;
  } finally {
    await cleanupAll();
  }
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(error);
    process.exit(1);
  },
);
