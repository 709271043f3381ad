// Token scopes, expiry and revocation against real servers on SQLite and PostgreSQL: a workload
// token limited to one SmartGroup can neither read another group's bundle nor file its records,
// and a revocation reaches a second replica within a second.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REVOCATION_POLL_MS } from '../../control/auth.js';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { generateKeyPair } from '../../policy/index.js';
import { CHARGE_CARD, denyRecord, LEDGER_GROUP, LEDGER_WRITER, PAYMENTS_V1 } from './fixtures.js';
import { ENGINES, type StoreFactory, storeFactory } from './harness.js';

const bundlePath = (identity: string, extra = '') =>
  `/v1/bundle?workload=${encodeURIComponent(identity)}${extra}`;
const LEDGER_RECORD = {
  workload: { cloud: 'aws', name: 'ledger-writer' },
};

describe.each(ENGINES)('tokens on %s', (engine) => {
  let factory: StoreFactory;
  let a: RunningControlServer;
  let b: RunningControlServer;
  let admin: string;
  let payments: string;
  let fleet: string;

  // SQLite announces revisions in-process only: its second replica is the one an operator's CLI
  // shares the file with, so the bundle-serving replica there is A itself.
  const replica = () => (engine === 'postgres' ? b : a);
  const call = (server: RunningControlServer, path: string, token: string, init: RequestInit = {}) =>
    fetch(`${server.url}${path}`, {
      ...init,
      headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` },
    });
  const report = (server: RunningControlServer, token: string, records: unknown[]) =>
    call(server, '/v1/reports', token, {
      method: 'POST',
      body: JSON.stringify({ records }),
      headers: { 'content-type': 'application/json' },
    });

  beforeAll(async () => {
    factory = await storeFactory(engine);
    const key = generateKeyPair();
    a = await startControlServer({ store: await factory.open(), signingKey: key });
    b = await startControlServer({ store: await factory.openReplica(), signingKey: key });
    admin = (await a.issueToken('admin')).token;
    payments = (await a.issueToken('workload', 'payments-fns', { groups: ['payments-prod'] })).token;
    fleet = (await a.issueToken('workload', 'fleet')).token;
    const applied = await call(a, '/v1/policy', admin, {
      method: 'PUT',
      body: `${PAYMENTS_V1}---\n${LEDGER_GROUP}`,
      headers: { 'content-type': 'application/yaml' },
    });
    expect(applied.status).toBe(200);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await factory?.cleanup();
  });

  it("fetches its own group's bundle and is refused another group's, learning nothing of it", async () => {
    const own = await call(a, bundlePath(CHARGE_CARD), payments);
    expect(own.status).toBe(200);
    expect(await own.text()).toContain('payload');

    const other = await call(a, bundlePath(LEDGER_WRITER), payments);
    expect(other.status).toBe(403);
    const body = await other.text();
    expect(body).toContain('payments-prod');
    expect(body).not.toMatch(/ledger|db\.internal|5432/);
    // A conditional fetch is refused the same way (a 304 would confirm the scope's ETag).
    const etagOf = (await call(a, bundlePath(LEDGER_WRITER), fleet)).headers.get('etag') ?? '';
    const conditional = await call(a, bundlePath(LEDGER_WRITER), payments, {
      headers: { 'if-none-match': etagOf },
    });
    expect(conditional.status).toBe(403);
    // An identity no group selects is no group's: refused too.
    expect((await call(a, bundlePath('cloud=aws,name=stray'), payments)).status).toBe(403);
    // A fleet token (no groups) still fetches any bundle.
    expect((await call(a, bundlePath(LEDGER_WRITER), fleet)).status).toBe(200);
  });

  it("files its own group's records and none as another group's workload", async () => {
    const own = await report(a, payments, [denyRecord(`${engine}-own-1`)]);
    expect(own.status).toBe(202);
    expect(await own.json()).toMatchObject({ stored: 1 });

    const forged = await report(a, payments, [
      denyRecord(`${engine}-forged-0`),
      denyRecord(`${engine}-forged-1`, { ...LEDGER_RECORD, sandboxId: 'victim', seq: 9_007_199_254_740_990 }),
    ]);
    expect(forged.status).toBe(403);
    expect(await forged.text()).not.toContain('ledger');
    const stored = await call(a, `/v1/denies?limit=100`, admin);
    const ids = ((await stored.json()) as { records: { id: string }[] }).records.map((r) => r.id);
    expect(ids).toContain(`${engine}-own-1`);
    // Nothing of the refused batch was stored, its legitimate record included.
    expect(ids).not.toContain(`${engine}-forged-0`);
    expect(ids).not.toContain(`${engine}-forged-1`);
  });

  it('refuses an expired token, and only its holder learns why', async () => {
    const expired = await a.issueToken('workload', 'short', { expiresAt: new Date(Date.now() - 1000) });
    const answer = await call(a, bundlePath(CHARGE_CARD), expired.token);
    expect(answer.status).toBe(401);
    expect(await answer.json()).toMatchObject({ message: 'token expired' });
    const guessed = `${expired.token.slice(0, 21)}${'A'.repeat(43)}`;
    expect(await (await call(a, bundlePath(CHARGE_CARD), guessed)).json()).toMatchObject({
      message: 'invalid token',
    });
  });

  it('revokes on every replica within a second, parked long-polls included', async () => {
    const doomed = await a.issueToken('workload', 'doomed', { groups: ['payments-prod'] });
    // Both replicas have verified (and cached) it.
    const first = await call(replica(), bundlePath(CHARGE_CARD), doomed.token);
    expect(first.status).toBe(200);
    expect((await call(a, bundlePath(CHARGE_CARD), doomed.token)).status).toBe(200);
    const parked = call(replica(), bundlePath(CHARGE_CARD, '&wait=30'), doomed.token, {
      headers: { 'if-none-match': first.headers.get('etag') ?? '' },
    });
    await new Promise((resolve) => setTimeout(resolve, 100));

    const revoked = await a.store.revokeToken(doomed.id, new Date().toISOString());
    expect(revoked).toBe(1);
    const revokedAt = Date.now();
    // Each replica reads the revocation log on its own: both refuse within the bound.
    for (const server of [replica(), a]) {
      for (;;) {
        const answer = await call(server, bundlePath(CHARGE_CARD), doomed.token);
        if (answer.status === 401) {
          expect(await answer.json()).toMatchObject({ message: 'token revoked' });
          break;
        }
        expect(answer.status).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    expect(Date.now() - revokedAt).toBeLessThan(2 * REVOCATION_POLL_MS + 250);

    // A new revision wakes the parked poll: the revoked token gets no bundle.
    const applied = await call(a, '/v1/policy', admin, {
      method: 'PUT',
      body: `${PAYMENTS_V1}    - to: { host: hooks.slack.com, port: 443 }\n---\n${LEDGER_GROUP}`,
      headers: { 'content-type': 'application/yaml' },
    });
    expect(applied.status).toBe(200);
    const woken = await parked;
    expect(woken.status).toBe(401);
    expect(await woken.text()).not.toContain('payload');
  });

  it('counts identities the inventory has not seen against the token', async () => {
    const server = await startControlServer({
      store: await factory.openReplica(),
      signingKey: generateKeyPair(),
      limits: { newWorkloads: { perSecond: 0.001, burst: 5 } },
    });
    try {
      const inventor = (await server.issueToken('workload', 'inventor')).token;
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) {
        const answer = await call(server, bundlePath(`cloud=aws,name=invented-${engine}-${i}`), inventor);
        statuses.push(answer.status);
        if (answer.status === 429) expect(answer.headers.get('retry-after')).toMatch(/^\d+$/);
      }
      expect(statuses.filter((status) => status === 429)).toHaveLength(3);
      // Workloads the inventory already holds are not new, for this token or any other.
      expect((await call(server, bundlePath(CHARGE_CARD), inventor)).status).toBe(200);
      expect((await call(server, bundlePath(`cloud=aws,name=invented-${engine}-0`), inventor)).status).toBe(
        200,
      );
    } finally {
      await server.close();
    }
  });
});
