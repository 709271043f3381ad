// POST /v1/attest's own rules, with a verifier that accepts what the test says was proven (the
// real verifiers and their stand-ins are tested in attest-aws/attest-jwt, and end to end in
// attest-e2e): sessions are pinned to the attested identity, claims that disagree are refused,
// a session's records are its identity's, revoking the workload token revokes its sessions,
// and --require-attested refuses the rest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProofVerifier } from '../../control/attest/types.js';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { openSqliteStore } from '../../control/store/sqlite.js';
import type { AttestAnswer, AttestedPrincipal } from '../../policy/attestation.js';
import { generateKeyPair } from '../../policy/index.js';
import { denyRecord, LEDGER_GROUP, PAYMENTS_V1 } from './fixtures.js';

/** Accepts `{ type: 'aws', says: AttestedPrincipal }`; anything else is a bad signature. */
const trusting: ProofVerifier = {
  kind: 'aws',
  async verify(proof) {
    const says = (proof as { says?: AttestedPrincipal }).says;
    return says
      ? { ok: true, attested: says }
      : { ok: false, status: 401, error: 'signature does not match' };
  },
};

const chargeCard: AttestedPrincipal = {
  kind: 'aws',
  principal: 'arn:aws:sts::111122223333:assumed-role/charge-card-role/charge-card',
  attributes: { cloud: 'aws', account: '111122223333', role: 'charge-card-role', name: 'charge-card' },
};
const CLAIM = 'cloud=aws,name=charge-card,tag.app=payments,tag.env=prod,region=eu-west-1';

describe('POST /v1/attest', () => {
  let server: RunningControlServer;
  let strict: RunningControlServer;
  let admin: string;
  let payments: string;

  const call = (target: RunningControlServer, path: string, token: string, init: RequestInit = {}) =>
    fetch(`${target.url}${path}`, {
      ...init,
      headers: {
        'content-type': 'application/json',
        ...(init.headers as Record<string, string>),
        authorization: `Bearer ${token}`,
      },
    });
  const attest = (target: RunningControlServer, token: string, body: unknown) =>
    call(target, '/v1/attest', token, { method: 'POST', body: JSON.stringify(body) });

  beforeAll(async () => {
    const store = openSqliteStore(':memory:');
    const key = generateKeyPair();
    server = await startControlServer({
      store,
      signingKey: key,
      attestation: { audience: 'https://bulkhead.test' },
      verifiers: [trusting],
    });
    strict = await startControlServer({
      store,
      signingKey: key,
      attestation: { audience: 'https://bulkhead.test', require: true },
      verifiers: [trusting],
    });
    admin = (await server.issueToken('admin')).token;
    payments = (await server.issueToken('workload', 'payments', { groups: ['payments-prod'] })).token;
    const applied = await call(server, '/v1/policy', admin, {
      method: 'PUT',
      body: `${PAYMENTS_V1}---\n${LEDGER_GROUP}`,
      headers: { 'content-type': 'application/yaml' },
    });
    expect(applied.status).toBe(200);
  });
  afterAll(async () => {
    await strict?.close();
    await server?.close();
  });

  it('answers a session pinned to the claimed identity with the attested attributes laid over it', async () => {
    const answer = await attest(server, payments, {
      workload: CLAIM,
      proof: { type: 'aws', says: chargeCard },
    });
    expect(answer.status).toBe(200);
    const session = (await answer.json()) as AttestAnswer;
    expect(session.identity).toBe(
      'account=111122223333,attested=aws,cloud=aws,name=charge-card,region=eu-west-1,role=charge-card-role,tag.app=payments,tag.env=prod',
    );
    expect(session.attested).toEqual(chargeCard);
    const minutes = (Date.parse(session.expiresAt) - Date.now()) / 60_000;
    expect(minutes).toBeGreaterThan(59);
    expect(minutes).toBeLessThanOrEqual(60);

    // The session fetches its identity's bundle whatever workload= says, and only that one.
    const own = await call(server, '/v1/bundle', session.token);
    expect(own.status).toBe(200);
    const asOther = await call(
      server,
      `/v1/bundle?workload=${encodeURIComponent('cloud=aws,name=ledger-writer')}`,
      session.token,
    );
    expect(asOther.status).toBe(200);
    expect(asOther.headers.get('etag')).toBe(own.headers.get('etag'));

    // Its records are stamped with the attested identity, whatever they claim.
    const filed = await call(server, '/v1/reports', session.token, {
      method: 'POST',
      body: JSON.stringify({
        records: [denyRecord('attested-1', { workload: { cloud: 'aws', name: 'ledger-writer' } })],
      }),
    });
    expect(filed.status).toBe(202);
    const stored = (await (await call(server, '/v1/denies?limit=10', admin)).json()) as {
      records: { id: string; workload: Record<string, string> }[];
    };
    const record = stored.records.find((r) => r.id === 'attested-1');
    expect(record?.workload).toMatchObject({ name: 'charge-card', attested: 'aws', account: '111122223333' });

    // Listed as a session of the workload token, never with its secret.
    const tokens = await server.store.listTokens({ sessions: true, nowIso: new Date().toISOString() });
    const row = tokens.find((token) => token.id === session.id);
    expect(row).toMatchObject({ parentId: payments.slice(4, 20), identity: session.identity });
  });

  it('refuses a claim the proof contradicts, a bad proof, and an identity outside the token groups', async () => {
    const lying = await attest(server, payments, {
      workload: 'cloud=aws,name=ledger-writer',
      proof: { type: 'aws', says: chargeCard },
    });
    expect(lying.status).toBe(403);
    expect(await lying.json()).toMatchObject({
      error: 'identity-mismatch',
      message: 'the workload claims name=ledger-writer but the proof says name=charge-card',
    });
    const forged = await attest(server, payments, { workload: CLAIM, proof: { type: 'aws' } });
    expect(forged.status).toBe(401);
    expect(await forged.json()).toMatchObject({ error: 'attestation-failed' });
    const unconfigured = await attest(server, payments, { proof: { type: 'gcp', token: 'x.y.z' } });
    expect(unconfigured.status).toBe(400);
    expect(((await unconfigured.json()) as { message: string }).message).toMatch(
      /does not verify gcp proofs/,
    );

    const ledger = { ...chargeCard, attributes: { ...chargeCard.attributes, name: 'ledger-writer' } };
    const outside = await attest(server, payments, { proof: { type: 'aws', says: ledger } });
    expect(outside.status).toBe(403);
    expect(await outside.text()).not.toContain('ledger');
  });

  it('refuses sessions and admin tokens as attesters', async () => {
    const session = (await (
      await attest(server, payments, { workload: CLAIM, proof: { type: 'aws', says: chargeCard } })
    ).json()) as AttestAnswer;
    expect((await attest(server, session.token, { proof: { type: 'aws', says: chargeCard } })).status).toBe(
      403,
    );
    expect((await attest(server, admin, { proof: { type: 'aws', says: chargeCard } })).status).toBe(403);
  });

  it('revokes the sessions of a revoked workload token', async () => {
    const token = await server.issueToken('workload', 'doomed', { groups: ['payments-prod'] });
    const session = (await (
      await attest(server, token.token, { workload: CLAIM, proof: { type: 'aws', says: chargeCard } })
    ).json()) as AttestAnswer;
    expect((await call(server, '/v1/bundle', session.token)).status).toBe(200);
    expect(await server.store.revokeToken(token.id, new Date().toISOString())).toBe(2);
    const started = Date.now();
    while ((await call(server, '/v1/bundle', session.token)).status !== 401)
      expect(Date.now() - started).toBeLessThan(3000);
  });

  it('with --require-attested, refuses bundles and records to workload tokens that are not sessions', async () => {
    const plain = await call(strict, `/v1/bundle?workload=${encodeURIComponent(CLAIM)}`, payments);
    expect(plain.status).toBe(403);
    expect(await plain.json()).toMatchObject({ error: 'attestation-required' });
    const records = await call(strict, '/v1/reports', payments, {
      method: 'POST',
      body: JSON.stringify({ records: [denyRecord('strict-1')] }),
    });
    expect(records.status).toBe(403);
    const session = (await (
      await attest(strict, payments, { workload: CLAIM, proof: { type: 'aws', says: chargeCard } })
    ).json()) as AttestAnswer;
    expect((await call(strict, '/v1/bundle', session.token)).status).toBe(200);
    // Admin tokens are operators, not workloads: they pass.
    expect((await call(strict, `/v1/bundle?workload=${encodeURIComponent(CLAIM)}`, admin)).status).toBe(200);
  });
});
