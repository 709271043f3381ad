// The in-process controller (shared by the Azure and GCP wrappers) against the real control API and a
// recording shim: first bundle at start, long-poll while busy delivers an apply without an invocation,
// refresh before an invocation when stale, bounded delivery, configuration problems logged not thrown.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { verifyBundle } from '../../policy/bundle.js';
import { loadTrustedKeys } from '../../policy/keys.js';
import { createInProcessController } from '../../runtime-shims/node/client/in-process.js';
import type { ShimPort } from '../../runtime-shims/node/shim-port.js';
import { freePort, paymentsPolicy } from '../crosscloud/harness.js';

const WORKLOAD = { cloud: 'azure', name: 'settle', 'tag.app': 'payments' };

function recordingShim(options: { hangFlush?: boolean } = {}) {
  const loaded: number[] = [];
  let flushes = 0;
  let handOvers = 0;
  const shim: ShimPort = {
    refresh: () => undefined,
    setInvocationId: () => undefined,
    handOverFetching: () => {
      handOvers++;
    },
    install: () => undefined,
    reload: (envelopeText) => {
      if (envelopeText === undefined) throw new Error('the controller reloads envelopes, not a file');
      const result = verifyBundle(envelopeText, { trustedKeys: keys });
      if (!result.ok) throw new Error(result.message);
      loaded.push(result.payload.revision);
    },
    flush: () => {
      flushes++;
      return options.hangFlush ? new Promise(() => {}) : Promise.resolve();
    },
    runInInvocation: (_tag, fn) => fn(),
    status: () => ({ revision: loaded.at(-1) }),
  };
  return { shim, loaded, flushes: () => flushes, handOvers: () => handOvers };
}

let control: RunningControlServer;
let admin = '';
let env: NodeJS.ProcessEnv = {};
let keys: ReturnType<typeof loadTrustedKeys>;

async function apply(yaml: string): Promise<number> {
  const response = await fetch(`${control.url}/v1/policy`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
    body: yaml,
  });
  return ((await response.json()) as { revision: number }).revision;
}

describe('in-process controller', () => {
  beforeAll(async () => {
    control = await startControlServer();
    admin = (await control.issueToken('admin')).token;
    keys = loadTrustedKeys([control.key.publicKeyPem]);
    env = {
      BULKHEAD_CONTROL_URL: control.url,
      BULKHEAD_TOKEN: (await control.issueToken('workload')).token,
      BULKHEAD_TRUSTED_KEYS: Buffer.from(control.key.publicKeyPem).toString('base64'),
    };
  });
  afterAll(() => control.close());

  it('loads the bundle at start and receives an apply through the long-poll while busy', async () => {
    const first = await apply(paymentsPolicy([4000]));
    const { shim, loaded, handOvers } = recordingShim();
    const controller = createInProcessController(shim, { env, workload: WORKLOAD, log: () => {} });
    await controller.start();
    expect(loaded).toEqual([first]);
    // Its own client fetches: the preload's control link (when there is one) is told to stop.
    expect(handOvers()).toBe(1);

    await controller.beforeInvocation(); // busy: long-poll starts
    expect(controller.status()).toMatchObject({ running: 1, longPolling: true, controlled: true });
    await new Promise((resolve) => setTimeout(resolve, 100)); // let it park on the server
    const second = await apply(paymentsPolicy([4000, 4001]));
    const deadline = Date.now() + 5000;
    while (loaded.at(-1) !== second && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(loaded).toEqual([first, second]);
    await controller.afterInvocation();
    expect(controller.status().running).toBe(0);
    await controller.shutdown();
    expect(controller.status().longPolling).toBe(false);
  });

  it('refreshes before an invocation when the bundle is stale and nothing long-polls', async () => {
    const { shim, loaded } = recordingShim();
    const controller = createInProcessController(shim, {
      env,
      workload: WORKLOAD,
      longPoll: false,
      maxStalenessMs: 0,
      log: () => {},
    });
    await controller.start();
    const startRevision = loaded.at(-1);
    const next = await apply(paymentsPolicy([4002]));
    expect(next).toBeGreaterThan(startRevision ?? 0);
    await controller.beforeInvocation();
    expect(loaded.at(-1)).toBe(next);
    await controller.afterInvocation();
    await controller.shutdown();
  });

  it('bounds delivery: a flush that never settles does not hold the invocation', async () => {
    const { shim, flushes } = recordingShim({ hangFlush: true });
    const lines: string[] = [];
    const controller = createInProcessController(shim, {
      env: {},
      workload: WORKLOAD,
      flushTimeoutMs: 50,
      log: (line) => lines.push(line),
    });
    await controller.beforeInvocation();
    await controller.afterInvocation();
    expect(flushes()).toBe(1);
    expect(lines.some((line) => line.includes('still running after 50 ms'))).toBe(true);
    expect(controller.status().controlled).toBe(false);
  });

  it('logs incomplete configuration instead of throwing, and validates options', async () => {
    const lines: string[] = [];
    const { shim } = recordingShim();
    const controller = createInProcessController(shim, {
      env: { BULKHEAD_CONTROL_URL: control.url, BULKHEAD_TRUSTED_KEYS: env.BULKHEAD_TRUSTED_KEYS },
      workload: WORKLOAD,
      log: (line) => lines.push(line),
    });
    await controller.start();
    expect(lines).toEqual(['BULKHEAD_CONTROL_URL is set but BULKHEAD_TOKEN is not; bundles are not fetched']);
    expect(() => createInProcessController(shim, { workload: WORKLOAD, flushTimeoutMs: -1 })).toThrow(
      /flushTimeoutMs/,
    );
  });

  it('control API down at start: bounded start, fail mode meanwhile, the bundle arrives once it is back', async () => {
    const port = await freePort();
    const lines: string[] = [];
    const { shim, loaded } = recordingShim();
    const controller = createInProcessController(shim, {
      env: { ...env, BULKHEAD_CONTROL_URL: `http://127.0.0.1:${port}` },
      workload: WORKLOAD,
      maxStalenessMs: 0,
      longPoll: false,
      log: (line) => lines.push(line),
    });
    await controller.start();
    expect(loaded).toEqual([]);
    expect(lines.some((line) => line.startsWith('bundle refresh failed (network)'))).toBe(true);
    await controller.beforeInvocation(); // still down: the invocation runs under the fail mode
    await controller.afterInvocation();
    expect(controller.status().revision).toBeUndefined();

    // The control API comes back on the same address with its key and a policy.
    const back = await startControlServer({
      port,
      signingKey: control.key.privateKeyPem,
      store: control.store,
    });
    try {
      await controller.beforeInvocation();
      expect(loaded.length).toBe(1);
      expect(controller.status().revision).toBe(loaded[0]);
      await controller.afterInvocation();
    } finally {
      await controller.shutdown();
      await back.close();
    }
  });

  it('resolves the workload lazily when given a function', async () => {
    const { shim, loaded } = recordingShim();
    const controller = createInProcessController(shim, {
      env,
      workload: async () => ({ ...WORKLOAD, account: 'from-metadata' }),
      log: () => {},
    });
    await controller.start();
    expect(controller.workload()).toMatchObject({ account: 'from-metadata' });
    expect(loaded.length).toBe(1);
    await controller.shutdown();
  });
});
