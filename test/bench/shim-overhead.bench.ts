// Per-request overhead of the shim on loopback, side by side in one run: unpatched Node, Node
// with the preload (dist/register.cjs, a real signed bundle allowing the server), and Node with
// @mswjs/interceptors doing pass-through interception of the same traffic. Three workloads:
// HTTP keep-alive, a new connection per request, and fetch. Rounds are interleaved so machine
// noise falls on every variant alike; medians per variant, ratios to unpatched. Printed only.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { makeFixture, REGISTER_CJS, ROOT } from '../shim/harness.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const KINDS = { keepalive: 2000, newconn: 600, fetch: 1000 } as const;
// BENCH_BASELINE_REGISTER=<another build's dist/register.cjs> adds it as a fourth variant, so a
// change to the shim is measured against the build before it in the same interleaved rounds.
const BASELINE = process.env.BENCH_BASELINE_REGISTER;
const MODES = BASELINE
  ? (['plain', 'shim', 'msw', 'baseline'] as const)
  : (['plain', 'shim', 'msw'] as const);
const registerOf = (mode: string) =>
  mode === 'baseline' ? BASELINE : mode === 'shim' ? REGISTER_CJS : undefined;

const server = createServer((_req, res) => res.end('ok'));
server.keepAliveTimeout = 60_000;
await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
const port = (server.address() as { port: number }).port;
const fx = makeFixture({ allow: [`{ to: { cidr: 127.0.0.1/32, port: ${port} } }`] });

const child = join(fx.dir, 'load.cjs');
writeFileSync(
  child,
  `'use strict';
const http = require('node:http');
const { MODE, KIND, N, PORT, ROOT } = process.env;
if (MODE === 'msw') {
  const { ClientRequestInterceptor } = require(ROOT + '/node_modules/@mswjs/interceptors/lib/node/interceptors/ClientRequest/index.js');
  const { FetchInterceptor } = require(ROOT + '/node_modules/@mswjs/interceptors/lib/node/interceptors/fetch/index.js');
  for (const I of [ClientRequestInterceptor, FetchInterceptor]) { const i = new I(); i.apply(); i.on('request', () => {}); }
}
const n = Number(N);
const url = 'http://127.0.0.1:' + PORT + '/';
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
const one = (agent) => new Promise((resolve, reject) => {
  http.get(url, { agent }, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject);
});
const request = KIND === 'keepalive' ? () => one(keepAlive) : KIND === 'newconn' ? () => one(false) : () => fetch(url).then((r) => r.arrayBuffer());
(async () => {
  for (let i = 0; i < Math.ceil(n / 5); i++) await request();
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < n; i++) await request();
  const ns = Number(process.hrtime.bigint() - start) / n;
  const cpu = process.cpuUsage(cpuStart);
  keepAlive.destroy();
  process.stdout.write(ns + ' ' + ((cpu.user + cpu.system) * 1000) / n);
})();
`,
);

const samples: Record<string, number[]> = {};
const cpuSamples: Record<string, number[]> = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const [kind, n] of Object.entries(KINDS)) {
    for (const mode of MODES) {
      const register = registerOf(mode);
      const args = register ? ['--require', register, child] : [child];
      const env = {
        ...(register ? fx.env() : { PATH: process.env.PATH ?? '' }),
        MODE: mode,
        KIND: kind,
        N: String(n),
        PORT: String(port),
        ROOT,
      };
      // Asynchronous: the server answering these requests runs on this process's event loop.
      const run = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, args, { env });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c) => {
          stdout += c;
        });
        child.stderr.on('data', (c) => {
          stderr += c;
        });
        child.on('close', () => resolve({ stdout, stderr }));
      });
      const [ns, cpuNs] = run.stdout.split(' ').map(Number);
      if (!ns || !cpuNs || !Number.isFinite(ns)) throw new Error(`${mode}/${kind} failed: ${run.stderr}`);
      const key = `${kind}/${mode}`;
      samples[key] = [...(samples[key] ?? []), ns];
      cpuSamples[key] = [...(cpuSamples[key] ?? []), cpuNs];
    }
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};
const fmt = (ns: number) => (ns / 1000).toFixed(1).padStart(7);
const tables: [string, Record<string, number[]>][] = [
  ['client CPU time per request (steadier on a shared machine)', cpuSamples],
  ['wall time per request', samples],
];
for (const [title, table] of tables) {
  console.log(
    `shim overhead on loopback, ${ROUNDS} interleaved rounds: ${title}, median µs (ratio to unpatched)`,
  );
  console.log(
    `workload    unpatched      shim               mswjs pass-through${BASELINE ? '   baseline shim' : ''}`,
  );
  for (const kind of Object.keys(KINDS)) {
    const plain = median(table[`${kind}/plain`] ?? []);
    const shim = median(table[`${kind}/shim`] ?? []);
    const msw = median(table[`${kind}/msw`] ?? []);
    const base = BASELINE ? median(table[`${kind}/baseline`] ?? []) : undefined;
    console.log(
      `${kind.padEnd(10)} ${fmt(plain)}     ${fmt(shim)} (${(shim / plain).toFixed(3)}x)   ${fmt(msw)} (${(msw / plain).toFixed(3)}x)${
        base === undefined ? '' : `   ${fmt(base)} (${(base / plain).toFixed(3)}x)`
      }`,
    );
  }
}
server.closeAllConnections();
server.close();
fx.cleanup();
