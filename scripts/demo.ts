// `npm run demo`: one policy, three clouds, on this machine, no cloud account.
//
// Starts the control API (SQLite in a temporary folder), applies examples/policy/demo/payments-v1.yaml,
// and runs the same payments function as an AWS Lambda sandbox (emulator + layer), a Google Cloud
// function (the real functions-framework server) and an Azure Functions v4 app (the real
// @azure/functions library through the worker stand-in). Each calls three destinations; Bulkhead's
// shim inside each function process decides every connection. Then the policy changes and all three
// pick it up; the DENY records come back from the control API.
//
// The destination names (api.payments.test, api.fraud.test, exfil.attacker.test) resolve to loopback
// addresses through a hosts file bind-mounted over /etc/hosts in a private mount namespace
// (`unshare`), so the functions resolve real names with the system resolver and nothing on the
// machine changes. Everything started is stopped on exit, on error and on Ctrl-C.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RunningControlServer, startControlServer } from '../control/server.js';
import { openSqliteStore } from '../control/store/index.js';
import { assembleLayer } from '../layers/build.js';
import type { DenyRecord } from '../policy/types.js';
import { LambdaEmulator } from '../test/emulator/index.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPT = fileURLToPath(import.meta.url);
const INNER_FLAG = 'BULKHEAD_DEMO_INNER';
const POLICY_V1 = join(ROOT, 'examples/policy/demo/payments-v1.yaml');
const POLICY_V2 = join(ROOT, 'examples/policy/demo/payments-v2.yaml');
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

interface FunctionUnderTest {
  cloud: Cloud;
  invoke(): Promise<Attempt[]>;
}

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
  // process it started (`--kill-child` covers the outer process being killed).
  return [
    ...(isRoot ? [] : ['--user', '--map-root-user']),
    '--pid',
    '--fork',
    '--kill-child',
    '--mount',
    '--propagation',
    'private',
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
    { stdio: 'inherit', env: { ...process.env, [INNER_FLAG]: dir } },
  );
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  rmSync(dir, { recursive: true, force: true });
  return code ?? (signal ? 128 + 2 : 1);
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
): ChildProcess & {
  output: string[];
} {
  const child = spawn(command, args, {
    env,
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
    headers: { 'content-type': 'application/json', ...headers },
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
    const answer = (await this.request('GET', '/v1/denies?limit=100&order=asc')) as { records: DenyRecord[] };
    return answer.records;
  }
}

function ruleOf(reason: string | undefined): string {
  if (!reason) return '';
  const match =
    /rule[: ]+([\w./[\]-]+)/i.exec(reason) ?? /\((default-deny|[\w.-]+\/(?:allow|deny)\[\d+\])/.exec(reason);
  return match?.[1] ?? reason.slice(0, 60);
}

function printAttempts(rows: { cloud: Cloud; attempts: Attempt[] }[]): void {
  say(
    dim(
      `  ${'cloud'.padEnd(16)} ${'calls'.padEnd(24)} ${'destination'.padEnd(21)} ${'result'.padEnd(7)} why`,
    ),
  );
  for (const { cloud, attempts } of rows) {
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
        `  ${CLOUD_LABEL[cloud].padEnd(16)} ${attempt.label.padEnd(24)} ${attempt.host.padEnd(21)} ${result} ${why}`,
      );
    }
  }
}

/** Invoke every function once (or reuse `lambdaAttempts`, an invocation already made this round). */
async function runRound(
  functions: FunctionUnderTest[],
  lambdaAttempts?: Attempt[],
): Promise<{ cloud: Cloud; attempts: Attempt[] }[]> {
  const rows: { cloud: Cloud; attempts: Attempt[] }[] = [];
  for (const fn of functions) {
    const attempts = fn.cloud === 'aws' && lambdaAttempts ? lambdaAttempts : await fn.invoke();
    rows.push({ cloud: fn.cloud, attempts });
  }
  printAttempts(rows);
  return rows;
}

async function runInner(dir: string): Promise<void> {
  const started = performance.now();
  say(bold('Bulkhead demo — one policy, three clouds, on this machine'));
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

  const revision1 = await control.apply(POLICY_V1);
  step(
    'policy',
    `revision ${revision1} applied: ${basename(POLICY_V1)} ${dim('(SmartGroup payments = tags app=payments)')}`,
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

  const functions: FunctionUnderTest[] = [];
  functions.push(await startLambda(commonEnv, dir, running.url, publicKeyFile));
  functions.push(await startGcp(commonEnv));
  functions.push(await startAzure(commonEnv));
  say();

  say(bold(`Round 1 — policy revision ${revision1}`));
  await runRound(functions);
  say();

  const changeStarted = performance.now();
  const revision2 = await control.apply(POLICY_V2);
  const applyMs = performance.now() - changeStarted;
  say(bold(`Policy change — ${basename(POLICY_V2)} allows api.fraud.test → revision ${revision2}`));
  say(dim(`  (the apply itself answered in ${ms(applyMs)}; times below count from sending it)`));
  // Azure and GCP instances keep a long-poll open while they are warm: the new bundle is pushed.
  const pending = new Set<Cloud>(functions.map((fn) => fn.cloud).filter((cloud) => cloud !== 'aws'));
  const deadline = Date.now() + PROPAGATION_TIMEOUT_MS;
  while (pending.size > 0 && Date.now() < deadline) {
    for (const workload of await control.workloads()) {
      const cloud = workload.identity.cloud as Cloud;
      if (pending.has(cloud) && (workload.revision ?? 0) >= revision2) {
        pending.delete(cloud);
        say(
          `  ${CLOUD_LABEL[cloud].padEnd(16)} holds revision ${revision2} ${ms(performance.now() - changeStarted)} after the apply ${dim('(pushed over its long-poll, no invocation needed)')}`,
        );
      }
    }
    if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  for (const cloud of pending)
    say(`  ${CLOUD_LABEL[cloud].padEnd(16)} ${yellow('did not report the new revision in time')}`);
  const lambdaFn = functions.find((fn) => fn.cloud === 'aws');
  let lambdaRound: Attempt[] | undefined;
  if (lambdaFn) {
    // A Lambda sandbox is frozen between invocations: its extension refreshes at INVOKE, before the handler.
    lambdaRound = await lambdaFn.invoke();
    const fraudAllowed = lambdaRound.some((a) => a.host === 'api.fraud.test' && a.outcome === 'allowed');
    say(
      `  ${CLOUD_LABEL.aws.padEnd(16)} ${fraudAllowed ? `enforced revision ${revision2}` : yellow(`still on revision ${revision1}`)} on its next invocation, ${ms(performance.now() - changeStarted)} after the apply ${dim('(frozen between invocations; refreshed at INVOKE, before the handler ran)')}`,
    );
  }
  say();

  say(bold(`Round 2 — policy revision ${revision2}`));
  await runRound(functions, lambdaRound);
  say();

  say(
    `The attacker's server received ${bold(String(exfil.requests))} requests and ${bold(String(exfil.bytes))} bytes: nothing left the functions.`,
  );
  say();

  // Records travel asynchronously from each function; give the last ones a moment.
  let denies: DenyRecord[] = [];
  for (let i = 0; i < 40; i++) {
    denies = (await control.denies()).filter((r) => r.decision === 'deny');
    if (denies.length >= functions.length * 3) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  say(bold(`DENY records at the control API (GET /v1/denies): ${denies.length}`));
  printDenies(denies);
  say();
  say(dim(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s. Stopping everything.`));
}

function printDenies(records: DenyRecord[]): void {
  const rows = records.map((record) => [
    record.time.slice(11, 23),
    record.workload.cloud ?? '?',
    record.workload.name ?? '?',
    `${record.destination.host ?? record.destination.ip ?? '?'}${record.destination.port ? `:${record.destination.port}` : ''}`,
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

async function startLambda(
  commonEnv: NodeJS.ProcessEnv,
  dir: string,
  controlUrl: string,
  publicKeyFile: string,
): Promise<FunctionUnderTest> {
  // The layer as `bulkhead layer build --control … --trusted-key …` makes it, unpacked as /opt.
  const optDir = join(dir, 'opt');
  assembleLayer(optDir, { controlUrl, trustedKeys: [publicKeyFile] });
  const demoVariables = Object.fromEntries(
    Object.entries(commonEnv).filter(([key, value]) => key.startsWith('DEMO_') && value !== undefined),
  ) as Record<string, string>;
  const emulator = new LambdaEmulator({
    taskRoot: join(ROOT, 'examples/functions/aws'),
    handler: 'index.handler',
    functionName: 'charge-card',
    region: 'eu-west-1',
    optDir,
    timeoutMs: 10_000,
    // What `bulkhead attach` sets: the exec wrapper, the token, the function's tags.
    env: {
      AWS_LAMBDA_EXEC_WRAPPER: join(optDir, 'bulkhead-wrapper'),
      BULKHEAD_TOKEN: commonEnv.BULKHEAD_TOKEN as string,
      BULKHEAD_TAGS: commonEnv.BULKHEAD_TAGS as string,
      ...demoVariables,
    },
  });
  cleanups.push(() => emulator.close());
  const t0 = performance.now();
  await emulator.start();
  const init = await emulator.init();
  if (!init.ok)
    throw new Error(`Lambda sandbox init failed: ${init.errorType ?? ''} ${init.errorMessage ?? ''}`);
  step(
    'AWS Lambda',
    `sandbox charge-card in the Lambda emulator, layer attached ${dim(`(init ${ms(performance.now() - t0)})`)}`,
  );
  return {
    cloud: 'aws',
    invoke: async () => {
      const result = await emulator.invoke({});
      if (result.status !== 'success')
        throw new Error(`Lambda invoke ${result.status}: ${result.payload.toString()}`);
      return result.json<{ results: Attempt[] }>().results;
    },
  };
}

async function startGcp(commonEnv: NodeJS.ProcessEnv): Promise<FunctionUnderTest> {
  const port = await freePort();
  const frameworkMain = join(ROOT, 'node_modules/@google-cloud/functions-framework/build/src/main.js');
  const child = startChild(
    process.execPath,
    [frameworkMain, '--target=charge', `--source=${join(ROOT, 'examples/functions/gcp')}`, `--port=${port}`],
    {
      ...commonEnv,
      K_SERVICE: 'charge-card',
      K_REVISION: 'charge-card-00001-dmo',
      FUNCTION_TARGET: 'charge',
      GOOGLE_CLOUD_PROJECT: 'demo-project',
    },
    'functions-framework',
  );
  const t0 = performance.now();
  await waitFor('functions-framework', child, async () => ((await canConnect(port)) ? true : undefined));
  step(
    'Google Cloud',
    `functions-framework --target=charge on :${port} ${dim(`(ready in ${ms(performance.now() - t0)})`)}`,
  );
  let execution = 0;
  return {
    cloud: 'gcp',
    invoke: async () => {
      const answer = (await postJson(`http://127.0.0.1:${port}/`, {
        'function-execution-id': `demo-exec-${++execution}`,
      })) as { results: Attempt[] };
      return answer.results;
    },
  };
}

async function startAzure(commonEnv: NodeJS.ProcessEnv): Promise<FunctionUnderTest> {
  const child = startChild(
    process.execPath,
    [join(ROOT, 'dist/azure-local.mjs'), '--app', join(ROOT, 'examples/functions/azure/index.cjs')],
    {
      ...commonEnv,
      WEBSITE_SITE_NAME: 'charge-card-func',
      REGION_NAME: 'West Europe',
      WEBSITE_OWNER_NAME: '00000000-0000-4000-8000-000000000000+payments-WestEuropewebspace',
      WEBSITE_INSTANCE_ID: 'demo-instance',
      FUNCTIONS_WORKER_RUNTIME: 'node',
      FUNCTIONS_EXTENSION_VERSION: '~4',
    },
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
  step(
    'Azure Functions',
    `v4 app (@azure/functions) via the worker stand-in on ${url} ${dim(`(ready in ${ms(performance.now() - t0)})`)}`,
  );
  return {
    cloud: 'azure',
    invoke: async () => ((await postJson(`${url}/api/charge`)) as { results: Attempt[] }).results,
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
