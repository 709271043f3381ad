// Shared fixtures for the shim tests: real signed bundles built with the kernel, loopback
// servers that count what arrives, and Node children running the built preload.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { signBundle } from '../../policy/bundle.js';
import { compilePolicy } from '../../policy/compile.js';
import { parseIdentity } from '../../policy/identity.js';
import { generateKeyPair } from '../../policy/keys.js';
import { parsePolicy } from '../../policy/parse.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const REGISTER_CJS = join(ROOT, 'dist/register.cjs');
export const REGISTER_MJS = join(ROOT, 'dist/register.mjs');
export const WORKLOAD = 'cloud=other,name=shim-test,tag.app=demo';

export interface PolicyOptions {
  allow?: string[];
  deny?: string[];
  mode?: 'enforce' | 'observe';
  extra?: string[];
}

export function policyYaml(options: PolicyOptions): string {
  const lines = [
    'apiVersion: bulkhead.dev/v1',
    'kind: SmartGroup',
    'metadata: { name: demo }',
    'spec:',
    '  match: { tags: { app: demo } }',
    '---',
    'apiVersion: bulkhead.dev/v1',
    'kind: EgressPolicy',
    'metadata: { name: shim }',
    'spec:',
    '  appliesTo: [demo]',
    `  mode: ${options.mode ?? 'enforce'}`,
    '  owner: team@example.com',
  ];
  if (options.allow?.length) lines.push('  allow:', ...options.allow.map((r) => `    - ${r}`));
  if (options.deny?.length) lines.push('  deny:', ...options.deny.map((r) => `    - ${r}`));
  if (options.extra) lines.push(...options.extra);
  return `${lines.join('\n')}\n`;
}

export interface Fixture {
  dir: string;
  publicKey: string;
  privateKey: string;
  bundleFile: string;
  /** Write a new signed revision of the policy to the bundle file (atomically: write + rename). */
  write(options: PolicyOptions, revision: number): string;
  env(extra?: Record<string, string>): Record<string, string>;
  cleanup(): void;
}

export function signedEnvelope(
  options: PolicyOptions,
  revision: number,
  privateKey: string,
  times: { issuedAt?: number; expiresAt?: number } = {},
): string {
  const parsed = parsePolicy([{ file: 'shim.yaml', text: policyYaml(options) }]);
  if (!parsed.ok)
    throw new Error(parsed.errors.map((e) => `${e.line}:${e.column} ${e.path} ${e.message}`).join('\n'));
  const compiled = compilePolicy(parsed.set, parseIdentity(WORKLOAD));
  return JSON.stringify(signBundle({ policy: compiled, revision, ...times }, privateKey));
}

export function makeFixture(options: PolicyOptions, revision = 1): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-shim-'));
  const keys = generateKeyPair();
  const keyFile = join(dir, 'bundle.pub');
  writeFileSync(keyFile, keys.publicKeyPem, { mode: 0o600 });
  const bundleFile = join(dir, 'bundle.json');
  const fixture: Fixture = {
    dir,
    publicKey: keyFile,
    privateKey: keys.privateKeyPem,
    bundleFile,
    write(next, rev) {
      const text = signedEnvelope(next, rev, keys.privateKeyPem);
      const temp = `${bundleFile}.tmp`;
      writeFileSync(temp, text, { mode: 0o600 });
      // rename is atomic: a watcher never sees half a bundle.
      renameSync(temp, bundleFile);
      return text;
    },
    env(extra = {}) {
      return {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        BULKHEAD_BUNDLE_FILE: bundleFile,
        BULKHEAD_TRUSTED_KEYS: keyFile,
        BULKHEAD_WORKLOAD: WORKLOAD,
        BULKHEAD_REPORT: join(dir, 'spool.ndjson'),
        BULKHEAD_LOG: 'silent',
        ...extra,
      };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  fixture.write(options, revision);
  return fixture;
}

/** A TCP server on 127.0.0.1 that counts the bytes (and connections) that reach it. */
export interface CountingServer {
  port: number;
  bytes(): number;
  connections(): number;
  close(): Promise<void>;
}

export async function countingTcpServer(host = '127.0.0.1'): Promise<CountingServer> {
  let bytes = 0;
  let connections = 0;
  const server: TcpServer = createTcpServer((socket) => {
    connections++;
    socket.on('data', (chunk) => {
      bytes += chunk.length;
      socket.write('ok');
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((done) => server.listen(0, host, done));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return {
    port: address.port,
    bytes: () => bytes,
    connections: () => connections,
    close: () => new Promise((done) => server.close(() => done())),
  };
}

export interface RecordingHttpServer {
  port: number;
  requests: { method: string; url: string; host: string | undefined }[];
  connections(): number;
  close(): Promise<void>;
  server: Server;
}

/** An HTTP server on 127.0.0.1 answering 200 (or a redirect for /redirect?to=…), recording every request. */
export async function recordingHttpServer(host = '127.0.0.1'): Promise<RecordingHttpServer> {
  const requests: RecordingHttpServer['requests'] = [];
  let connections = 0;
  const server = createHttpServer((req: IncomingMessage, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host });
    req.resume();
    const url = new URL(req.url ?? '/', 'http://x');
    const to = url.searchParams.get('to');
    if (url.pathname.endsWith('/redirect') && to) {
      res.writeHead(302, { location: to });
      res.end();
      return;
    }
    res.end('hello');
  });
  server.on('connection', () => connections++);
  await new Promise<void>((done) => server.listen(0, host, done));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return {
    port: address.port,
    requests,
    connections: () => connections,
    server,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Last stdout line parsed as JSON (the scripts print one result object). */
  json: Record<string, unknown>;
}

const running = new Set<ChildProcess>();

/** Run a CommonJS script in a Node child with the preload on its command line (or as `via` says). */
export function runNode(
  script: string,
  env: Record<string, string>,
  options: {
    via?: 'require' | 'NODE_OPTIONS' | 'import' | 'none';
    args?: string[];
    timeoutMs?: number;
    input?: string;
  } = {},
): Promise<RunResult> {
  const via = options.via ?? 'require';
  const args: string[] = [];
  const childEnv = { ...env };
  if (via === 'require') args.push('--require', REGISTER_CJS);
  else if (via === 'import') args.push('--import', REGISTER_MJS);
  else if (via === 'NODE_OPTIONS') childEnv.NODE_OPTIONS = `--require ${REGISTER_CJS}`;
  args.push(...(options.args ?? ['-e', script]));
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, args, { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      const lines = stdout.trim().split('\n');
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(lines[lines.length - 1] ?? '{}');
      } catch {
        json = {};
      }
      resolveRun({ code, stdout, stderr, json });
    });
    child.stdin.end(options.input ?? '');
  });
}

export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

export const PROBE = join(ROOT, 'test/shim/fixtures/probe.cjs');
export const SHIM_CJS = join(ROOT, 'dist/shim.cjs');

export interface ProbeResult {
  results: string[];
  shim: Record<string, unknown> | undefined;
  stderr: string;
}

/** A probe attempt that runs `code` (an async function body) in the governed child; strict code if asked. */
export function evalAttempt(code: string, strict = false): Record<string, unknown> {
  return { kind: 'eval', code: `(async () => { ${strict ? "'use strict'; " : ''}${code} })()` };
}

/** Run egress attempts (see fixtures/probe.cjs) in a governed child; one outcome per attempt. */
export async function probe(
  attempts: Record<string, unknown>[],
  env: Record<string, string>,
  via: 'require' | 'NODE_OPTIONS' | 'import' | 'none' = 'require',
): Promise<ProbeResult> {
  const run = await runNode(
    '',
    { ...env, PROBE_SHIM_API: SHIM_CJS },
    { via, args: [PROBE], input: JSON.stringify(attempts) },
  );
  const results = run.json.results as string[] | undefined;
  if (!results) throw new Error(`probe failed (exit ${run.code}): ${run.stderr}\n${run.stdout}`);
  return { results, shim: run.json.shim as Record<string, unknown> | undefined, stderr: run.stderr };
}

/** Deny records written to the fixture's spool file (its rule hit count lines left out: contract §3). */
export function spoolRecords(fixture: Fixture): Record<string, unknown>[] {
  return spoolLines(fixture).filter((line) => !('hits' in line));
}

/** Every line of the fixture's spool file: deny records and `{"hits": …}` lines. */
export function spoolLines(fixture: Fixture): Record<string, unknown>[] {
  let text = '';
  try {
    text = readFileSync(join(fixture.dir, 'spool.ndjson'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A self-signed certificate for localhost (openssl), PEM strings. */
export function selfSignedCert(dir: string): { key: string; cert: string } {
  const keyFile = join(dir, 'tls.key');
  const certFile = join(dir, 'tls.crt');
  const made = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  if (made.status !== 0) throw new Error('openssl could not make a test certificate');
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };
}

export const NETNS_SERVERS = join(ROOT, 'test/shim/fixtures/netns-servers.cjs');

export interface NetnsRun {
  results: string[];
  events: Record<string, unknown>[];
  stderr: string;
}

/**
 * Run the probe inside a fresh network + mount namespace (root, `unshare`), with its own
 * /etc/hosts, a resolv.conf pointing at a counting DNS responder on 127.0.0.1:53, and counting
 * TCP listeners (169.254.169.254 is added to the namespace's loopback for rebinding tests).
 */
export async function probeInNetns(
  fixture: Fixture,
  attempts: Record<string, unknown>[],
  options: { hosts: string; dnsAnswers: Record<string, string>; listen: { host: string; port: number }[] },
): Promise<NetnsRun> {
  const dir = mkdtempSync(join(fixture.dir, 'ns-'));
  const hostsFile = join(dir, 'hosts');
  const resolvFile = join(dir, 'resolv.conf');
  const logFile = join(dir, 'events.ndjson');
  const readyFile = join(dir, 'ready');
  writeFileSync(hostsFile, `127.0.0.1 localhost\n${options.hosts}\n`);
  writeFileSync(resolvFile, 'nameserver 127.0.0.1\noptions attempts:1 timeout:1\n');
  writeFileSync(logFile, '');
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const node = q(process.execPath);
  const script = [
    'set -e',
    'ip link set lo up',
    'ip addr add 169.254.169.254/32 dev lo',
    `mount --bind ${q(hostsFile)} /etc/hosts`,
    `mount --bind ${q(resolvFile)} /etc/resolv.conf`,
    `${node} ${q(NETNS_SERVERS)} ${q(logFile)} ${q(readyFile)} ${q(JSON.stringify(options.dnsAnswers))} ${q(JSON.stringify(options.listen))} </dev/null >/dev/null 2>&1 & servers=$!`,
    `i=0; while [ ! -f ${q(readyFile)} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done`,
    `status=0; ${node} --require ${q(REGISTER_CJS)} ${q(PROBE)} || status=$?`,
    'kill $servers 2>/dev/null || true',
    'exit $status',
  ].join('\n');
  const run = await new Promise<RunResult>((resolveRun) => {
    const child = spawn('unshare', ['--net', '--mount', 'sh', '-c', script], {
      env: { ...fixture.env(), PROBE_SHIM_API: SHIM_CJS },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(stdout.trim().split('\n').pop() ?? '{}');
      } catch {
        json = {};
      }
      resolveRun({ code, stdout, stderr, json });
    });
    child.stdin.end(JSON.stringify(attempts));
  });
  const results = run.json.results as string[] | undefined;
  if (!results) throw new Error(`netns probe failed (exit ${run.code}): ${run.stderr}\n${run.stdout}`);
  const events = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { results, events, stderr: run.stderr };
}
