import { afterAll, describe, expect, it } from 'vitest';
import { countingTcpServer, killAll, makeFixture, ROOT, runNode } from './harness.js';

afterAll(killAll);

describe('smoke', { timeout: 120_000 }, () => {
  it('allows and denies by port on loopback', async () => {
    const allowed = await countingTcpServer();
    const denied = await countingTcpServer();
    const fx = makeFixture({ allow: [`{ to: { cidr: 127.0.0.1/32, port: ${allowed.port} } }`] });
    const script = `
      const net = require('net');
      const out = {};
      const go = (port) => new Promise((r) => { const s = net.connect(port, '127.0.0.1', () => { s.write('hello'); setTimeout(() => { s.destroy(); r('connected'); }, 50); }); s.on('error', (e) => r(e.code + ' ' + e.message)); });
      (async () => { out.a = await go(${allowed.port}); out.d = await go(${denied.port}); out.status = require(${JSON.stringify(require('node:path').join(ROOT, 'dist/shim.cjs'))}).status(); console.log(JSON.stringify(out)); })();
    `;
    const r = await runNode(script, fx.env());
    console.log(r.stderr, r.json);
    expect(r.json.a).toBe('connected');
    expect(String(r.json.d)).toMatch(/ERR_BULKHEAD_DENIED/);
    expect(allowed.bytes()).toBe(5);
    expect(denied.bytes()).toBe(0);
    await allowed.close();
    await denied.close();
    fx.cleanup();
  });
});
