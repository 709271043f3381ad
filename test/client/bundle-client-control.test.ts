// The bundle client against the real control API (in-process, SQLite in memory, loopback).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { loadTrustedKeys } from '../../policy/keys.js';
import { createBundleClient, type FetchOutcome } from '../../runtime-shims/node/client/bundle-client.js';
import { applyPolicy } from '../control/clients.js';

const root = join(import.meta.dirname, '../..');
const policyV1 = readFileSync(join(root, 'examples/policy/demo/payments-v1.yaml'), 'utf8');
const policyV2 = readFileSync(join(root, 'examples/policy/demo/payments-v2.yaml'), 'utf8');
const PAYMENTS = { cloud: 'gcp', name: 'charge-card', account: 'demo-project', 'tag.app': 'payments' };

describe('bundle client with the control API', () => {
  let control: RunningControlServer;
  let admin: string;
  let workloadToken: string;

  const apply = (text: string) => applyPolicy(control.url, admin, text, 'payments.yaml');

  beforeAll(async () => {
    control = await startControlServer();
    admin = (await control.issueToken('admin')).token;
    workloadToken = (await control.issueToken('workload')).token;
  });
  afterAll(() => control.close());

  it('fetches the workload bundle, then long-polls the next apply', async () => {
    const first = await apply(policyV1);
    const client = createBundleClient({
      controlUrl: control.url,
      token: workloadToken,
      workload: PAYMENTS,
      trustedKeys: loadTrustedKeys([control.key.publicKeyPem]),
      timeoutMs: 3000,
      longPollSeconds: 10,
    });
    try {
      const fetched = await client.fetchOnce();
      expect(fetched).toMatchObject({ kind: 'updated', revision: first });
      if (fetched.kind !== 'updated') return;
      expect(fetched.payload.policy.rules.map((rule) => rule.id)).toContain('payments-egress/allow[0]');
      expect(await client.fetchOnce()).toEqual({ kind: 'not-modified', revision: first });

      const updates: FetchOutcome[] = [];
      const arrived = new Promise<void>((resolve) =>
        client.startLongPoll((outcome) => {
          updates.push(outcome);
          resolve();
        }),
      );
      // Let the long-poll park on the server before the apply.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const second = await apply(policyV2);
      await arrived;
      expect(second).toBe(first + 1);
      expect(updates).toHaveLength(1);
      expect(client.current()?.revision).toBe(second);
      expect(client.current()?.payload.policy.rules.map((rule) => rule.id)).toContain(
        'payments-egress/allow[1]',
      );
    } finally {
      client.stop();
    }
  });

  it('is refused without a valid token, and says so without echoing it', async () => {
    await apply(policyV1);
    const client = createBundleClient({
      controlUrl: control.url,
      token: 'not-a-real-token',
      workload: PAYMENTS,
      trustedKeys: loadTrustedKeys([control.key.publicKeyPem]),
      timeoutMs: 3000,
    });
    const outcome = await client.fetchOnce();
    client.stop();
    expect(outcome).toMatchObject({ kind: 'error', cause: 'http', status: 401 });
    if (outcome.kind === 'error') expect(outcome.message).not.toContain('not-a-real-token');
  });
});
