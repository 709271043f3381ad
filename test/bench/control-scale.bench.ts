// Control API at fleet scale, one in-process SQLite server (in memory), clients in a child process
// so their work does not share the server's event loop:
//  A. 10,000 parked long-polls (BENCH_LONGPOLLS) over raw keep-alive sockets, 4 scopes, distinct
//     workload names; an apply of a new revision changing every scope, BENCH_ROUNDS times (3):
//     the apply's answer time (goal ≤ 200 ms) and, per connection, apply start → complete 200
//     response (goal p99 ≤ 250 ms). Each connection first fetches its bundle (so the inventory
//     holds the fleet), then parks with its ETag; on the new revision it parks again at once, as a
//     real workload does, so the apply's answer competes with 10,000 re-parks (BENCH_REPARK=after:
//     the fleet re-parks only once the round is measured, isolating the apply's own work).
//  A′. The floor beside it, in the same run: the same client opens 10,000 plain sockets to a plain
//     `net` server (no HTTP server, no policy, no apply) that writes answers of the same size to all of
//     them in one loop, BENCH_ROUNDS times; the client reads and re-parks exactly as in A. Delivery in
//     A is reported as a ratio to this, pooled and round by round (the first apply beside the first
//     floor round: the plain sockets' first round is often slower too).
//  A″. The same floor written by two processes sharing the port through `cluster` (each holds about
//     half of the sockets and writes them at once): what more than one process per replica could
//     gain on this machine, where the client and the kernel's loopback work share the two cores.
//  B. An apply must not stall other clients: on a fresh server, a probe loop (GET /healthz and
//     GET /v1/bundle, each sent every 10 ms, pipelined on its keep-alive connection so a stall
//     delays every request made during it) while a ~60,000-rule (BENCH_STALL_RULES) and a
//     ~9,000-document (BENCH_STALL_DOCUMENTS) policy set is applied; the probes that overlap the
//     apply or the second after its answer (goal: max ≤ 50 ms). The server's longest event-loop
//     block in that window is printed beside them.
// Both processes timestamp with performance.timeOrigin + performance.now() (offset checked below).
// A table on stdout and bench-results/control-scale.json. Run: npm run bench -- control-scale
import { execFileSync, fork } from 'node:child_process';
import cluster from 'node:cluster';
import { mkdirSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { type ControlLimits, type RunningControlServer, startControlServer } from '../../control/server.js';
import { agent, applyPolicy, longPollsOpen, percentile, tempDir, waitUntil } from './control-support.js';

const LONGPOLLS = Number(process.env.BENCH_LONGPOLLS ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const STALL_RULES = Number(process.env.BENCH_STALL_RULES ?? 60_000);
const STALL_DOCUMENTS = Number(process.env.BENCH_STALL_DOCUMENTS ?? 9_000);
/** `at-once`: a workload long-polls again as soon as it got the new revision (as real ones do); `after`: once the round is measured. */
const REPARK = process.env.BENCH_REPARK === 'after' ? 'after' : 'at-once';
/** BENCH_WARM_UP_PASSES: the policy thread's warm-up at start (default: the server's own default; 0: none). */
const WARM_UP =
  process.env.BENCH_WARM_UP_PASSES === undefined
    ? {}
    : { warmUpPasses: Number(process.env.BENCH_WARM_UP_PASSES) };
const SCOPES = 4;
const PROBE_EVERY_MS = 10;
/** After the apply's answer, how long its after-effects still count as "during the apply". */
const TAIL_MS = 1000;
const GOALS = { applyMs: 200, deliveryP99Ms: 250, othersWaitMs: 50 };

const clock = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** The longest this process's event loop went without running a 5 ms timer, beyond those 5 ms. */
function loopBlock(): { stop(): number } {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 5);
    last = now;
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(worst, performance.now() - last - 5);
    },
  };
}
const settle = async (ms: number) => {
  (globalThis as { gc?: () => void }).gc?.();
  await sleep(ms);
};

const LIMITS: Partial<ControlLimits> = {
  longPolls: LONGPOLLS + 1000,
  policyBodyBytes: 64 * 1024 * 1024,
  rateLimit: {
    admin: { perSecond: 1_000_000, burst: 1_000_000 },
    workload: { perSecond: 1_000_000, burst: 1_000_000 },
  },
  // The fleet is 10,000 workloads this replica has never seen, on one token: past the default budget.
  newWorkloads: { perSecond: 1_000_000, burst: 1_000_000 },
};

const doc = (kind: string, name: string, spec: string) =>
  `apiVersion: bulkhead.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec:\n${spec}`;
const group = (name: string, app: string) =>
  doc('SmartGroup', name, `  match: { cloud: aws, tags: { app: ${app} } }`);
const egress = (name: string, groupName: string, allow: string[], deny: string[] = []) =>
  doc(
    'EgressPolicy',
    name,
    `  appliesTo: [${groupName}]\n  mode: enforce\n  owner: bench\n  allow:\n${allow.join('\n')}` +
      (deny.length ? `\n  deny:\n${deny.join('\n')}` : ''),
  );
const setOf = (docs: string[]) => `${docs.join('\n---\n')}\n`;

/** The fleet's policy: one SmartGroup + EgressPolicy per scope; `tag` changes one rule in each. */
function fleetPolicy(tag: number): string {
  const docs: string[] = [];
  for (let k = 0; k < SCOPES; k++) {
    const allow = Array.from(
      { length: 10 },
      (_, r) => `    - to: { host: api${r}.team-${k}.example.com, port: 443 }`,
    );
    allow.push(`    - to: { host: change-${tag}.team-${k}.example.com, port: 443 }`);
    docs.push(group(`team-${k}`, `team-${k}`), egress(`team-${k}-egress`, `team-${k}`, allow));
  }
  return setOf(docs);
}

const PROBE_IDENTITY = 'cloud=aws,name=probe,tag.app=probe';
const PROBE_DOCS = [
  group('probe', 'probe'),
  egress('probe-egress', 'probe', ['    - to: { host: api.example.com, port: 443 }']),
];

/** Rule `i` of a deterministic mix: exact hosts, wildcards, L7 paths, CIDRs and denies. */
function rule(i: number): { deny: boolean; text: string } {
  const domain = `svc${i}.vendor${i % 997}.${['com', 'net', 'io', 'dev', 'org'][i % 5]}`;
  switch (i % 10) {
    case 5:
    case 6:
      return { deny: false, text: `    - to: { host: "*.${domain}" }` };
    case 7:
      return {
        deny: false,
        text: `    - to: { host: app.${domain}, port: 443, methods: [GET, POST], paths: ["/v${i % 3}/items/**"] }`,
      };
    case 8:
      return {
        deny: false,
        text: `    - to: { cidr: 10.${i % 256}.${Math.floor(i / 256) % 256}.0/24, port: 5432 }`,
      };
    case 9:
      return { deny: true, text: `    - to: { host: bad.${domain} }` };
    default:
      return { deny: false, text: `    - to: { host: api.${domain}, port: 443 }` };
  }
}

/** `groups` SmartGroups with one EgressPolicy each, `total` rules spread over them. */
function stallPolicy(groups: number, total: number, prefix: string): string {
  const docs = [...PROBE_DOCS];
  const per = Math.ceil(total / groups);
  for (let g = 0; g < groups; g++) {
    const allow: string[] = [];
    const deny: string[] = [];
    for (let i = g * per; i < Math.min(total, (g + 1) * per); i++) {
      const r = rule(i);
      (r.deny ? deny : allow).push(r.text);
    }
    if (allow.length === 0) allow.push(`    - to: { host: api.${prefix}-${g}.example.com, port: 443 }`);
    docs.push(
      group(`${prefix}-${g}`, `${prefix}-${g}`),
      egress(`${prefix}-${g}-egress`, `${prefix}-${g}`, allow, deny),
    );
  }
  return setOf(docs);
}

// The client side: fleet of raw-socket long-polls and the probe loop, driven over IPC.
const CHILD = String.raw`
import { createConnection } from 'node:net';
const clock = () => performance.timeOrigin + performance.now();
const ETAG = /\r\netag: *([^\r]*)/i;
const REVISION = /\r\nx-bulkhead-revision: *(\d+)/i;
const LENGTH = /\r\ncontent-length: *(\d+)/i;
let port = 0;
let token = '';
let errors = 0;
let stopping = false;
let fleet = [];
let probes = [];
let probeTimer;
const samples = [];
let reparkAtOnce = false;
let toRepark = [];
let bundleBytes = 0;
function reparkNow() {
  const batch = toRepark;
  toRepark = [];
  for (const w of batch) w.send(true);
}

function connect() {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

// Calls onResponse(status, head) for each complete response (Content-Length bodies only).
function read(socket, onResponse) {
  let buffer = null;
  socket.on('data', (chunk) => {
    buffer = buffer === null ? chunk : Buffer.concat([buffer, chunk]);
    for (;;) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buffer.toString('latin1', 0, end);
      const length = Number(LENGTH.exec(head)?.[1] ?? 0);
      if (buffer.length < end + 4 + length) return;
      buffer = buffer.length === end + 4 + length ? null : buffer.subarray(end + 4 + length);
      onResponse(Number(head.slice(9, 12)), head);
      if (buffer === null) return;
    }
  });
  socket.on('close', () => {
    if (!stopping) errors++;
  });
}

class Workload {
  constructor(identity) {
    this.path = '/v1/bundle?workload=' + encodeURIComponent(identity);
    this.etag = '';
    this.parking = false;
    this.deliveredAt = 0;
    this.deliveredRevision = 0;
  }
  async open() {
    this.socket = await connect();
    read(this.socket, (status, head) => this.onResponse(status, head));
    await new Promise((resolve) => {
      this.ready = resolve;
      this.send(false);
    });
  }
  send(park) {
    this.parking = park;
    this.socket.write(
      'GET ' + this.path + (park ? '&wait=60' : '') + ' HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ' +
        token + '\r\n' + (park ? 'If-None-Match: ' + this.etag + '\r\n' : '') + '\r\n',
    );
  }
  onResponse(status, head) {
    if (status === 200) {
      const at = clock();
      this.etag = ETAG.exec(head)[1];
      if (this.parking) {
        this.parking = false;
        this.deliveredAt = at;
        this.deliveredRevision = Number(REVISION.exec(head)[1]);
        if (reparkAtOnce) {
          // As a real workload does; written after this read's other answers are timestamped.
          if (toRepark.length === 0) setImmediate(reparkNow);
          toRepark.push(this);
        }
      } else {
        bundleBytes = Math.max(bundleBytes, Number(LENGTH.exec(head)?.[1] ?? 0));
        this.send(true);
        this.ready?.();
        this.ready = undefined;
      }
    } else if (status === 304) {
      this.send(true); // the wait ran out: park again
    } else {
      errors++;
      setTimeout(() => this.send(this.parking), 200);
    }
  }
}

async function openFleet(count, scopes) {
  fleet = Array.from({ length: count }, (_, i) => new Workload('cloud=aws,name=fn-' + i + ',tag.app=team-' + (i % scopes)));
  let next = 0;
  // A bounded number of connects in flight: the listen backlog is 511.
  const opener = async () => {
    while (next < fleet.length) await fleet[next++].open();
  };
  await Promise.all(Array.from({ length: 128 }, opener));
}

function collect(revision, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      const done = fleet.every((w) => w.deliveredRevision >= revision);
      if (!done && Date.now() < deadline) return;
      clearInterval(timer);
      const times = fleet.filter((w) => w.deliveredRevision >= revision).map((w) => w.deliveredAt);
      resolve({ times, missing: fleet.length - times.length });
    }, 20);
  });
}

// The floor: plain sockets to a plain net server that writes the same bytes to all of them (no HTTP
// server, no policy), read and answered by this same client code (re-park included).
let raw = [];
class RawConnection {
  async open() {
    this.socket = await connect();
    this.at = 0;
    read(this.socket, () => {
      this.at = clock();
      if (reparkAtOnce) {
        if (toRepark.length === 0) setImmediate(reparkNow);
        toRepark.push(this);
      }
    });
    this.send();
  }
  send() {
    this.socket.write('GET /floor HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  }
}

// Sends every tick whether or not the previous answer came (HTTP/1.1 pipelining: the server answers
// in order), so a stall delays every request made during it, not just the one in flight.
class Probe {
  constructor(kind, path) {
    this.kind = kind;
    this.request = 'GET ' + path + ' HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ' + token + '\r\n\r\n';
    this.sent = [];
  }
  async open() {
    this.socket = await connect();
    read(this.socket, (status) => samples.push([this.kind, this.sent.shift(), clock(), status]));
  }
  tick() {
    this.sent.push(clock());
    this.socket.write(this.request);
  }
}

process.on('message', async (m) => {
  try {
    if (m.cmd === 'clock') process.send({ ev: 'clock', at: clock() });
    else if (m.cmd === 'fleet') {
      port = m.port;
      token = m.token;
      stopping = false;
      reparkAtOnce = m.reparkAtOnce;
      const started = clock();
      await openFleet(m.count, m.scopes);
      process.send({ ev: 'fleet', ms: clock() - started, errors, bundleBytes });
    } else if (m.cmd === 'collect') process.send({ ev: 'delivered', ...(await collect(m.revision, m.timeoutMs)), errors });
    else if (m.cmd === 'repark') {
      if (!reparkAtOnce) for (const w of fleet) w.send(true);
      process.send({ ev: 'reparked' });
    } else if (m.cmd === 'raw-open') {
      port = m.port;
      stopping = false;
      raw = Array.from({ length: m.count }, () => new RawConnection());
      let next = 0;
      const opener = async () => {
        while (next < raw.length) await raw[next++].open();
      };
      await Promise.all(Array.from({ length: 128 }, opener));
      process.send({ ev: 'raw-open' });
    } else if (m.cmd === 'raw-collect') {
      const deadline = Date.now() + m.timeoutMs;
      while (raw.some((c) => c.at === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const times = raw.filter((c) => c.at > 0).map((c) => c.at);
      for (const c of raw) c.at = 0;
      process.send({ ev: 'raw-times', times, missing: raw.length - times.length });
    } else if (m.cmd === 'raw-close') {
      stopping = true;
      for (const c of raw) c.socket?.destroy();
      raw = [];
      process.send({ ev: 'raw-closed' });
    } else if (m.cmd === 'close-fleet') {
      stopping = true;
      for (const w of fleet) w.socket?.destroy();
      fleet = [];
      process.send({ ev: 'closed', errors });
    } else if (m.cmd === 'probe-start') {
      port = m.port;
      token = m.token;
      stopping = false;
      probes = [new Probe(0, '/healthz'), new Probe(1, '/v1/bundle?workload=' + encodeURIComponent(m.identity))];
      for (const p of probes) await p.open();
      probeTimer = setInterval(() => {
        for (const p of probes) p.tick();
      }, m.everyMs);
      process.send({ ev: 'probing' });
    } else if (m.cmd === 'probe-stop') {
      clearInterval(probeTimer);
      stopping = true;
      for (const p of probes) p.socket.destroy();
      process.send({ ev: 'probes', samples, errors });
    } else if (m.cmd === 'exit') process.exit(0);
  } catch (error) {
    process.send({ ev: 'error', message: String(error?.stack ?? error) });
  }
});
`;

interface ChildMessage {
  ev: string;
  [key: string]: unknown;
}

// The apply of part A is sent from a third, otherwise idle process: the fleet's client is busy
// reading 10,000 sockets and the bench process hosts the server, so either would see the
// answer late (after the wake burst) and report the event loop, not the apply.
const APPLIER = String.raw`
import { request } from 'node:http';
const clock = () => performance.timeOrigin + performance.now();
process.on('message', (m) => {
  if (m.cmd === 'clock') return process.send({ ev: 'clock', at: clock() });
  const startedAt = clock();
  const req = request(m.url + '/v1/policy', {
    method: 'PUT',
    agent: false,
    headers: { authorization: 'Bearer ' + m.token, 'content-type': 'application/yaml' },
  }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c) => { body += c; });
    res.on('end', () => {
      const answeredAt = clock();
      if (res.statusCode !== 200) return process.send({ ev: 'error', message: 'apply ' + res.statusCode + ' ' + body });
      process.send({ ev: 'applied', startedAt, answeredAt, revision: JSON.parse(body).revision });
    });
  });
  req.on('error', (e) => process.send({ ev: 'error', message: e.message }));
  req.end(m.text);
});
`;

function startClient(dir: string, name = 'client.mjs', program = CHILD) {
  const script = join(dir, name);
  writeFileSync(script, program);
  const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map<string, { resolve(m: ChildMessage): void; reject(e: Error): void }>();
  const failAll = (error: Error) => {
    for (const w of waiting.values()) w.reject(error);
    waiting.clear();
  };
  child.on('message', (m: ChildMessage) => {
    if (m.ev === 'error') return failAll(new Error(`client: ${m.message}`));
    const w = waiting.get(m.ev);
    waiting.delete(m.ev);
    w?.resolve(m);
  });
  child.on('exit', (code) => failAll(new Error(`client exited ${code}`)));
  return {
    ask<T extends ChildMessage>(message: object, ev: string, timeoutMs = 120_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`client: no ${ev} in ${timeoutMs} ms`)), timeoutMs);
        waiting.set(ev, {
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        child.send(message);
      });
    },
    kill: () => child.kill(),
  };
}

const ms = (v: number) => `${v.toFixed(0)} ms`;
const spread = (sorted: number[]) => ({
  p50: percentile(sorted, 50),
  p95: percentile(sorted, 95),
  p99: percentile(sorted, 99),
  max: sorted[sorted.length - 1] ?? Number.NaN,
  n: sorted.length,
});

/** A bundle answer of `bodyBytes` with the headers the control API sends, for the floors. */
function cannedAnswer(bodyBytes: number): string {
  const head =
    'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n' +
    `content-length: ${bodyBytes}\r\netag: "r9-0123456789abcdef-e1"\r\nx-bulkhead-revision: 9\r\n` +
    `cache-control: no-cache\r\nDate: ${new Date().toUTCString()}\r\nConnection: keep-alive\r\n` +
    'Keep-Alive: timeout=72\r\n\r\n';
  return `${head}${'x'.repeat(bodyBytes)}`;
}

interface FloorRound {
  /** The write loop alone (with several writer processes, the longest). */
  writeMs: number;
  p50: number;
  p99: number;
  max: number;
}

/** What writes the floor's answers: a plain `net` server in this process, or several processes. */
interface FloorWriters {
  port: number;
  /** Sockets that have sent their request, over all writers. */
  ready(): Promise<number>;
  /** Writes `answer` to every socket; the longest write loop, in ms. */
  write(answer: string): Promise<number>;
  close(): Promise<void>;
}

function inProcessWriters(): Promise<FloorWriters> {
  const sockets: Socket[] = [];
  const plain = createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.once('data', () => sockets.push(socket));
    socket.resume();
  });
  return new Promise((resolve) =>
    plain.listen(0, '127.0.0.1', 511, () =>
      resolve({
        port: (plain.address() as AddressInfo).port,
        ready: async () => sockets.length,
        write: async (answer) => {
          const started = clock();
          for (const socket of sockets) socket.write(answer, 'latin1');
          return clock() - started;
        },
        close: () => new Promise((done) => plain.close(() => done())),
      }),
    ),
  );
}

// A″'s writer: a cluster worker holding its share of the sockets (the primary accepts round-robin).
const WRITER = `
import { createServer } from 'node:net';
const sockets = [];
let answer = '';
createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  socket.once('data', () => sockets.push(socket));
  socket.resume();
}).listen(0, '127.0.0.1', 511);
process.on('message', (m) => {
  if (m.cmd === 'answer') answer = m.answer;
  else if (m.cmd === 'ready') process.send({ ev: 'ready', count: sockets.length });
  else if (m.cmd === 'write') {
    const started = performance.now();
    for (const socket of sockets) socket.write(answer, 'latin1');
    process.send({ ev: 'written', ms: performance.now() - started });
  }
});
`;

/** `processes` writer processes sharing one listening port through `cluster`, as a multi-process replica would. */
async function clusterWriters(processes: number): Promise<FloorWriters> {
  const script = join(temp.dir, 'writer.mjs');
  writeFileSync(script, WRITER);
  cluster.setupPrimary({ exec: script, args: [], silent: false });
  const workers = Array.from({ length: processes }, () => cluster.fork());
  const ports = await Promise.all(
    workers.map(
      (worker) => new Promise<number>((resolve) => worker.once('listening', (a) => resolve(a.port))),
    ),
  );
  const askAll = async <T>(message: object, ev: string, pick: (m: Record<string, unknown>) => T) =>
    Promise.all(
      workers.map(
        (worker) =>
          new Promise<T>((resolve) => {
            const onMessage = (m: Record<string, unknown>) => {
              if (m.ev !== ev) return;
              worker.off('message', onMessage);
              resolve(pick(m));
            };
            worker.on('message', onMessage);
            worker.send(message);
          }),
      ),
    );
  return {
    port: ports[0] ?? 0,
    ready: async () =>
      (await askAll({ cmd: 'ready' }, 'ready', (m) => Number(m.count))).reduce((a, b) => a + b, 0),
    write: async (answer) => {
      for (const worker of workers) worker.send({ cmd: 'answer', answer });
      return Math.max(...(await askAll({ cmd: 'write' }, 'written', (m) => Number(m.ms))));
    },
    close: async () => {
      await Promise.all(
        workers.map((worker) => {
          const exited = new Promise((resolve) => worker.once('exit', resolve));
          worker.kill();
          return exited;
        }),
      );
    },
  };
}

/**
 * A′ and A″: 10,000 plain sockets written the same `bodyBytes`-byte answer, ROUNDS times; receipt
 * times from the moment the writing starts, pooled and per round (the first round beside the first
 * apply: a first round slower here too is the machine's, not the server's).
 */
async function plainSocketFloor(
  name: string,
  writers: FloorWriters,
  bodyBytes: number,
): Promise<{ times: number[]; rounds: FloorRound[] }> {
  await client.ask({ cmd: 'raw-open', port: writers.port, count: LONGPOLLS }, 'raw-open');
  await waitUntil(async () => (await writers.ready()) >= LONGPOLLS, 60_000, `${LONGPOLLS} plain sockets`);
  const answer = cannedAnswer(bodyBytes);
  const times: number[] = [];
  const rounds: FloorRound[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    await settle(500);
    const started = clock();
    const writeMs = await writers.write(answer);
    const got = await client.ask<{ ev: string; times: number[]; missing: number }>(
      { cmd: 'raw-collect', timeoutMs: 30_000 },
      'raw-times',
    );
    if (got.missing) throw new Error(`${name}: ${got.missing} answers never arrived`);
    const these = got.times.map((t) => t - started).sort((a, b) => a - b);
    const { p50, p99, max } = spread(these);
    rounds.push({ writeMs, p50, p99, max });
    console.log(
      `${name} round ${round}: write loop ${ms(writeMs)}; received p50 ${ms(p50)} p99 ${ms(p99)} max ${ms(max)}`,
    );
    times.push(...these);
  }
  await client.ask({ cmd: 'raw-close' }, 'raw-closed');
  await writers.close();
  return { times: times.sort((a, b) => a - b), rounds };
}

const temp = tempDir();
const client = startClient(temp.dir);
const applier = startClient(temp.dir, 'applier.mjs', APPLIER);
const loadBefore = loadavg()
  .map((l) => l.toFixed(2))
  .join(' ');
let server: RunningControlServer | undefined;
try {
  // How far apart the two processes' clocks are: half the round trip bounds the error.
  let offset = { ms: Number.NaN, rtt: Number.POSITIVE_INFINITY };
  for (let i = 0; i < 20; i++) {
    const sent = clock();
    const { at } = await client.ask<{ ev: string; at: number }>({ cmd: 'clock' }, 'clock');
    const back = clock();
    if (back - sent < offset.rtt) offset = { ms: at - (sent + back) / 2, rtt: back - sent };
  }

  // A. Long-polls at scale.
  server = await startControlServer({ limits: LIMITS, ...WARM_UP });
  const admin = (await server.issueToken('admin')).token;
  const workload = (await server.issueToken('workload')).token;
  await applyPolicy(server.url, admin, fleetPolicy(0));
  const opened = await client.ask<{ ev: string; ms: number; errors: number; bundleBytes: number }>(
    {
      cmd: 'fleet',
      port: server.port,
      token: workload,
      count: LONGPOLLS,
      scopes: SCOPES,
      reparkAtOnce: REPARK === 'at-once',
    },
    'fleet',
  );
  const url = server.url;
  const parked = () =>
    waitUntil(async () => (await longPollsOpen(url, admin)) >= LONGPOLLS, 60_000, `${LONGPOLLS} parked`);
  await parked();
  console.log(
    `${LONGPOLLS} connections (${SCOPES} scopes, bundles up to ${opened.bundleBytes} bytes) fetched and parked in ${(opened.ms / 1000).toFixed(1)} s; re-park ${REPARK}; clock offset ${offset.ms.toFixed(2)} ± ${(offset.rtt / 2).toFixed(2)} ms`,
  );
  const applyMs: number[] = [];
  const delivery: number[] = [];
  const perRound: { applyMs: number; p50: number; p99: number; max: number; missing: number }[] = [];
  let missing = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    await settle(500);
    const applied = await applier.ask<{
      ev: string;
      startedAt: number;
      answeredAt: number;
      revision: number;
    }>({ url, token: admin, text: fleetPolicy(round) }, 'applied');
    // Times in the fleet client's clock are compared with the applier's start: both are
    // performance.timeOrigin-based on one machine (the offset measured above is the same clock source).
    const started = applied.startedAt;
    const revision = applied.revision;
    const answered = applied.answeredAt - started;
    const got = await client.ask<{ ev: string; times: number[]; missing: number }>(
      { cmd: 'collect', revision, timeoutMs: 30_000 },
      'delivered',
    );
    const times = got.times.map((t) => t - started).sort((a, b) => a - b);
    applyMs.push(answered);
    delivery.push(...times);
    missing += got.missing;
    perRound.push({
      applyMs: answered,
      p50: percentile(times, 50),
      p99: percentile(times, 99),
      max: times[times.length - 1] ?? Number.NaN,
      missing: got.missing,
    });
    console.log(
      `round ${round}: apply answered in ${ms(answered)}; delivered p50 ${ms(percentile(times, 50))} p99 ${ms(percentile(times, 99))} max ${ms(times[times.length - 1] ?? Number.NaN)}${got.missing ? `, ${got.missing} not delivered in 30 s` : ''}`,
    );
    await client.ask({ cmd: 'repark' }, 'reparked');
    await parked();
  }
  const closed = await client.ask<{ ev: string; errors: number }>({ cmd: 'close-fleet' }, 'closed');
  await waitUntil(async () => (await longPollsOpen(url, admin)) === 0, 30_000, 'the fleet to leave');
  await server.close();
  server = undefined;
  delivery.sort((a, b) => a - b);
  const sortedApply = [...applyMs].sort((a, b) => a - b);

  // A′. The floor, with the same client.
  const floorRun = await plainSocketFloor('floor', await inProcessWriters(), opened.bundleBytes);
  const floor = spread(floorRun.times);
  // A″. The same with two writer processes: whether more processes per replica would lower it here.
  const splitRun = await plainSocketFloor('floor, 2 processes', await clusterWriters(2), opened.bundleBytes);
  const splitFloor = spread(splitRun.times);

  // B. Big applies while a probe loop runs (a fresh server: these figures do not depend on A).
  // Documents: a SmartGroup and an EgressPolicy of two rules per pair, beside the probe's two.
  const pairs = Math.floor((STALL_DOCUMENTS - PROBE_DOCS.length) / 2);
  const texts = {
    rules: stallPolicy(100, STALL_RULES, 'rules'),
    documents: stallPolicy(pairs, pairs * 2, 'docs'),
  };
  const base = setOf(PROBE_DOCS);
  server = await startControlServer({ limits: LIMITS, ...WARM_UP });
  const adminB = (await server.issueToken('admin')).token;
  const workloadB = (await server.issueToken('workload')).token;
  await applyPolicy(server.url, adminB, base);
  await client.ask(
    {
      cmd: 'probe-start',
      port: server.port,
      token: workloadB,
      identity: PROBE_IDENTITY,
      everyMs: PROBE_EVERY_MS,
    },
    'probing',
  );
  await settle(1000);
  const idleUntil = clock();
  const windows: { name: string; bytes: number; started: number; ended: number; loopMaxMs: number }[] = [];
  for (const [name, text] of Object.entries(texts)) {
    await settle(1000);
    const loop = loopBlock();
    // From the applier process: reading a multi-megabyte answer here would block the server's loop too.
    const applied = await applier.ask<{ ev: string; startedAt: number; answeredAt: number }>(
      { url: server.url, token: adminB, text },
      'applied',
      300_000,
    );
    const started = applied.startedAt;
    const ended = applied.answeredAt;
    await sleep(TAIL_MS);
    windows.push({ name, bytes: Buffer.byteLength(text), started, ended, loopMaxMs: loop.stop() });
    await applyPolicy(server.url, adminB, base); // back to the small set: each measured apply diffs against it
  }
  await sleep(500);
  const probed = await client.ask<{
    ev: string;
    samples: [number, number, number, number][];
    errors: number;
  }>({ cmd: 'probe-stop' }, 'probes');
  await server.close();
  server = undefined;
  const idle = probed.samples
    .filter(([, , done]) => done <= idleUntil)
    .map(([, sent, done]) => done - sent)
    .sort((a, b) => a - b);
  const badProbes = probed.samples.filter(([, , , status]) => status !== 200).length;
  const stalls = windows.map((w) => {
    const during = probed.samples.filter(([, sent, done]) => sent <= w.ended + TAIL_MS && done >= w.started);
    const latencies = during.map(([, sent, done]) => done - sent).sort((a, b) => a - b);
    const byKind = (kind: number) =>
      Math.max(...during.filter(([k]) => k === kind).map(([, sent, done]) => done - sent));
    return {
      name: w.name,
      bytes: w.bytes,
      applyMs: w.ended - w.started,
      probes: latencies.length,
      p99: percentile(latencies, 99),
      max: latencies[latencies.length - 1] ?? Number.NaN,
      healthzMax: byKind(0),
      bundleMax: byKind(1),
      serverLoopMaxMs: w.loopMaxMs,
    };
  });

  // Report.
  const deliverySpread = spread(delivery);
  const goals = [
    {
      what: `apply answer, ${LONGPOLLS} parked (${ROUNDS} rounds)`,
      figure: `${sortedApply.map((v) => v.toFixed(0)).join(' / ')} ms`,
      goal: `each ≤ ${GOALS.applyMs} ms`,
      met: (sortedApply[sortedApply.length - 1] ?? Number.POSITIVE_INFINITY) <= GOALS.applyMs,
    },
    {
      what: `delivery to ${LONGPOLLS} parked, p99`,
      figure: `p50 ${ms(deliverySpread.p50)}, p95 ${ms(deliverySpread.p95)}, p99 ${ms(deliverySpread.p99)}, max ${ms(deliverySpread.max)}${missing ? `, ${missing} missing` : ''}`,
      goal: `p99 ≤ ${GOALS.deliveryP99Ms} ms`,
      met: missing === 0 && deliverySpread.p99 <= GOALS.deliveryP99Ms,
    },
    ...stalls.map((s) => ({
      what: `others' wait during ${s.name === 'rules' ? `${STALL_RULES}-rule` : `${STALL_DOCUMENTS}-document`} apply (${ms(s.applyMs)})`,
      figure: `max ${ms(s.max)}, p99 ${ms(s.p99)} (${s.probes} probes)`,
      goal: `max ≤ ${GOALS.othersWaitMs} ms`,
      met: s.max <= GOALS.othersWaitMs,
    })),
  ];
  const width = Math.max(...goals.map((g) => g.what.length));
  const figureWidth = Math.max(...goals.map((g) => g.figure.length));
  console.log(`\n${'figure'.padEnd(width)}  ${'measured'.padEnd(figureWidth)}  ${'goal'.padEnd(17)}  met?`);
  for (const g of goals) {
    console.log(
      `${g.what.padEnd(width)}  ${g.figure.padEnd(figureWidth)}  ${g.goal.padEnd(17)}  ${g.met ? 'met' : 'MISSED'}`,
    );
  }
  console.log(
    `delivery beside its floor: p99 ${ms(deliverySpread.p99)} = ${(deliverySpread.p99 / floor.p99).toFixed(2)} × the p99 of ${LONGPOLLS} plain sockets written the same bytes in one loop (p50 ${ms(floor.p50)}, p99 ${ms(floor.p99)}, max ${ms(floor.max)}; no HTTP server, no apply)`,
  );
  console.log(
    `the same with 2 writer processes (cluster): p99 ${ms(splitFloor.p99)} (p50 ${ms(splitFloor.p50)}, max ${ms(splitFloor.max)})`,
  );
  perRound.forEach((r, i) => {
    const one = floorRun.rounds[i];
    const two = splitRun.rounds[i];
    if (!one || !two) return;
    console.log(
      `round ${i + 1}: delivery p99 ${ms(r.p99)}, floor p99 ${ms(one.p99)} (${(r.p99 / one.p99).toFixed(2)}×, ${ms(r.p99 - one.p99)} above), 2-process floor p99 ${ms(two.p99)}`,
    );
  });
  for (const s of stalls) {
    console.log(
      `${s.name}: ${(s.bytes / 1024 / 1024).toFixed(1)} MB of YAML; slowest /healthz ${ms(s.healthzMax)}, /v1/bundle ${ms(s.bundleMax)}; the server's event loop blocked up to ${ms(s.serverLoopMaxMs)}`,
    );
  }
  console.log(
    `probes while idle: p99 ${ms(percentile(idle, 99))}, max ${ms(idle[idle.length - 1] ?? Number.NaN)}; client errors ${closed.errors + probed.errors}, non-200 probes ${badProbes}`,
  );
  const loadAfter = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  console.log(`load average ${loadBefore} -> ${loadAfter} (shared machine: figures are noisy)`);

  const results = {
    meta: {
      node: process.version,
      cpus: cpus().length,
      date: new Date().toISOString(),
      commit: execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(),
      loadavg_before: loadBefore,
      loadavg_after: loadAfter,
      longPolls: LONGPOLLS,
      rounds: ROUNDS,
      scopes: SCOPES,
      repark: REPARK,
      bundleBytes: opened.bundleBytes,
      stallRules: STALL_RULES,
      stallDocuments: STALL_DOCUMENTS,
      probeEveryMs: PROBE_EVERY_MS,
      tailMs: TAIL_MS,
      clockOffsetMs: offset.ms,
      clockOffsetBoundMs: offset.rtt / 2,
      fleetOpenMs: opened.ms,
      clientErrors: closed.errors + probed.errors,
      nonOkProbes: badProbes,
    },
    longPolls: {
      applyMs,
      perRound,
      delivery: deliverySpread,
      missing,
      plainSocketFloor: { ...floor, perRound: floorRun.rounds },
      twoProcessFloor: { ...splitFloor, perRound: splitRun.rounds },
    },
    stalls,
    idleProbes: spread(idle),
    goals,
  };
  mkdirSync(join(process.cwd(), 'bench-results'), { recursive: true });
  writeFileSync(
    join(process.cwd(), 'bench-results', 'control-scale.json'),
    `${JSON.stringify(results, null, 2)}\n`,
  );
  console.log('written: bench-results/control-scale.json');
} finally {
  await server?.close();
  client.kill();
  applier.kill();
  await agent.close();
  temp.remove();
}
