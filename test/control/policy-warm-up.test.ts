// The policy thread's warm-up (control/policy-warm-up.ts): its sample is a set the kernel accepts
// (a refused sample would make the warm-up stop at its first pass, silently), each pass checks a
// set different from the last, and an apply made while the thread is still warming gets the
// revision it applied.
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { WARM_UP_PASSES, warmUpPass } from '../../control/policy-warm-up.js';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { diffPolicies } from '../../policy/index.js';
import { policyYaml } from '../shim/harness.js';
import { applyPolicy } from './clients.js';

describe('warm-up sample', () => {
  it('is accepted by the kernel on every pass, and each pass changes one rule per policy', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    let previous: ReturnType<typeof warmUpPass> | undefined;
    for (let pass = 0; pass < WARM_UP_PASSES; pass++) {
      const set = warmUpPass(pass, previous, privateKey);
      expect(set.groups).toHaveLength(4);
      expect(set.policies).toHaveLength(4);
      expect(set.guardrails).toHaveLength(1);
      if (previous) expect(diffPolicies(previous, set).changed).toBe(true);
      previous = set;
    }
  });
});

describe('a server warming its policy thread', () => {
  let server: RunningControlServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('installs and serves an apply made at once, as one started without the warm-up does', async () => {
    for (const warmUpPasses of [WARM_UP_PASSES, 0]) {
      server = await startControlServer({ warmUpPasses });
      const admin = (await server.issueToken('admin')).token;
      const workload = (await server.issueToken('workload')).token;
      const revision = await applyPolicy(
        server.url,
        admin,
        policyYaml({ allow: ['{ to: { host: warm.example.com, port: 443 } }'] }),
        'warm.yaml',
      );
      const answer = await fetch(
        `${server.url}/v1/bundle?workload=${encodeURIComponent('cloud=aws,name=fn,tag.app=demo')}`,
        { headers: { authorization: `Bearer ${workload}` } },
      );
      expect(answer.status).toBe(200);
      expect(answer.headers.get('x-bulkhead-revision')).toBe(String(revision));
      const envelope = (await answer.json()) as { payload: string };
      expect(Buffer.from(envelope.payload, 'base64').toString('utf8')).toContain('warm.example.com');
      await server.close();
      server = undefined;
    }
  });
});
