// Two control API replicas on one PostgreSQL database: an apply on A wakes long-polls on B.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { generateKeyPair } from '../../policy/index.js';
import { CHARGE_CARD, PAYMENTS_V1, PAYMENTS_V2 } from './fixtures.js';
import { type StoreFactory, storeFactory } from './harness.js';

describe('two replicas on PostgreSQL', () => {
  let factory: StoreFactory;
  let a: RunningControlServer;
  let b: RunningControlServer;
  let admin: string;
  let workload: string;

  beforeAll(async () => {
    factory = await storeFactory('postgres');
    const key = generateKeyPair();
    a = await startControlServer({ store: await factory.open(), signingKey: key });
    b = await startControlServer({ store: await factory.openReplica(), signingKey: key });
    admin = (await a.issueToken('admin')).token;
    workload = (await a.issueToken('workload')).token;
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await factory?.cleanup();
  });

  const apply = (server: RunningControlServer, text: string) =>
    fetch(`${server.url}/v1/policy`, {
      method: 'PUT',
      body: text,
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
    });

  it('serves byte-identical bundles from both replicas', async () => {
    expect((await apply(a, PAYMENTS_V1)).status).toBe(200);
    const path = `/v1/bundle?workload=${encodeURIComponent(CHARGE_CARD)}`;
    const headers = { authorization: `Bearer ${workload}` };
    // B learns of revision 1 through NOTIFY; its first answer may still race it.
    let fromB: Response | undefined;
    for (let i = 0; i < 200; i++) {
      fromB = await fetch(`${b.url}${path}`, { headers });
      if (fromB.headers.get('x-bulkhead-revision') === '1') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const fromA = await fetch(`${a.url}${path}`, { headers });
    expect(fromB?.headers.get('etag')).toBe(fromA.headers.get('etag'));
    expect(await fromB?.text()).toBe(await fromA.text());
  });

  it('wakes a long-poll on B when A stores a revision', async () => {
    const path = `/v1/bundle?workload=${encodeURIComponent(CHARGE_CARD)}`;
    const headers = { authorization: `Bearer ${workload}` };
    const first = await fetch(`${b.url}${path}`, { headers });
    const etag = first.headers.get('etag') ?? '';
    const parked = fetch(`${b.url}${path}&wait=30`, { headers: { ...headers, 'if-none-match': etag } });
    for (let i = 0; i < 500; i++) {
      const metrics = await (
        await fetch(`${b.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })
      ).text();
      if (/^bulkhead_longpolls_open 1$/m.test(metrics)) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const applied = (await (await apply(a, PAYMENTS_V2)).json()) as { revision: number };
    const woken = await parked;
    expect(woken.status).toBe(200);
    expect(woken.headers.get('x-bulkhead-revision')).toBe(String(applied.revision));
  });

  it('numbers revisions without gaps or repeats when both replicas apply at once', async () => {
    const variants = Array.from(
      { length: 6 },
      (_, i) => `${PAYMENTS_V2}    - to: { host: extra-${i}.example.com, port: 443 }\n`,
    );
    const answers = await Promise.all(
      variants.map(
        async (text, i) => (await (await apply(i % 2 === 0 ? a : b, text)).json()) as { revision: number },
      ),
    );
    const numbers = answers.map((x) => x.revision).sort((x, y) => x - y);
    expect(new Set(numbers).size).toBe(6);
    expect(numbers[5]! - numbers[0]!).toBe(5);
  });
});
