// The control link (dist/control-link.cjs): a worker thread the preload starts when a process is
// configured with a control API instead of a bundle file. It fetches and verifies the workload's
// bundle with the one bundle client (the wrappers' and the extension's), long-polls for new
// revisions, sends what an earlier process spooled, and delivers deny records at exit while the
// main thread waits. A thread rather than the main event loop: decisions are synchronous, so the
// first one can wait (bounded) for the first answer only if someone else is fetching it.
// It runs without the shim's hooks (a worker is its own JavaScript world, started without the
// preload): it talks to the control API only, which is exempt by construction anyway.

import { appendFileSync, readdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { type MessagePort, workerData } from 'node:worker_threads';
import { loadTrustedKeys } from '../../../policy/keys.js';
import type { DenyRecord } from '../../../policy/types.js';
import { controlCredentials } from '../client/attest.js';
import { createBundleClient } from '../client/bundle-client.js';
import { type ControlCredentials, tokenCredentials } from '../client/credentials.js';
import { postJson } from '../client/post-json.js';
import { keysDiscoverable, listSigningKeys } from '../client/signing-keys.js';
import type { HitCount } from '../hits.js';
import { DeliveryError, HttpSink } from '../records.js';
import { type LinkData, SLOT_DELIVERED, SLOT_FIRST_ANSWER, type ToLink, type ToMain } from './protocol.js';

const data = workerData as LinkData;
const port = data.port as unknown as MessagePort;
const state = new Int32Array(data.state);
const base = new URL(data.controlUrl.endsWith('/') ? data.controlUrl : `${data.controlUrl}/`);
// The shim's own HTTP sink: the same request, headers and reading of the answer as the main thread's.
// One set of credentials for bundles and records; with BULKHEAD_ATTEST a session for a proof of the
// platform identity, made here (this thread runs without the hooks, so the metadata server is reachable).
const credentials = ((): ControlCredentials => {
  try {
    return controlCredentials({
      env: process.env,
      controlUrl: data.controlUrl,
      token: data.token,
      workload: data.workload,
      timeoutMs: data.timeoutMs,
      log: (_level, message) => log(message),
    });
  } catch (error) {
    log(`${(error as Error).message}; sending the workload token`);
    return tokenCredentials(data.token, data.workload);
  }
})();
const reports = new HttpSink(new URL(data.reportsUrl), credentials, postJson);
const BATCH = 200;

function send(message: ToMain): void {
  port.postMessage(message);
}
function log(line: string): void {
  send({ type: 'log', line });
}

function answered(outcome: string): void {
  send({ type: 'answer', outcome });
  Atomics.store(state, SLOT_FIRST_ANSWER, 1);
  Atomics.notify(state, SLOT_FIRST_ANSWER);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function trustedKeys(): Promise<string[] | undefined> {
  if (data.trustedKeys.length > 0) return data.trustedKeys;
  if (!keysDiscoverable(base)) {
    log(
      'BULKHEAD_TRUSTED_KEYS is not set and the control API is neither https nor loopback: its keys cannot be trusted from it; set BULKHEAD_TRUSTED_KEYS to the signing public key (bulkhead.pub)',
    );
    return undefined;
  }
  let delay = 500;
  for (let first = true; ; first = false) {
    const listed = await listSigningKeys(data.controlUrl, data.token, data.timeoutMs);
    if ('keys' in listed) {
      log(
        `BULKHEAD_TRUSTED_KEYS is not set: trusting the ${listed.keys.length} signing key(s) the control API lists; pin them with BULKHEAD_TRUSTED_KEYS`,
      );
      send({ type: 'keys', keys: listed.keys });
      return listed.keys;
    }
    if (first) {
      // The first decision is waiting: say now that no bundle can come yet, then keep trying.
      log(`cannot list the control API's signing keys (${listed.problem}); retrying`);
      answered('error');
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 30_000);
  }
}

let fetching = true;
let client: ReturnType<typeof createBundleClient> | undefined;

async function fetchBundles(): Promise<void> {
  const keys = await trustedKeys();
  if (!keys) {
    answered('error');
    return;
  }
  if (!fetching) return;
  try {
    client = createBundleClient({
      controlUrl: data.controlUrl,
      credentials,
      workload: data.workload,
      trustedKeys: loadTrustedKeys(keys),
      timeoutMs: data.timeoutMs,
      longPollSeconds: data.longPollSeconds,
      log: (level, message) => {
        if (level !== 'debug') log(message);
      },
    });
  } catch (error) {
    log(`bundle client not started: ${(error as Error).message}`);
    answered('error');
    return;
  }
  const outcome = await client.fetchOnce();
  if (!fetching) return;
  if (outcome.kind === 'updated')
    send({ type: 'bundle', envelopeText: outcome.envelopeText, revision: outcome.revision });
  else if (outcome.kind === 'error') log(`first bundle fetch failed (${outcome.cause}): ${outcome.message}`);
  if (Atomics.load(state, SLOT_FIRST_ANSWER) === 0) answered(outcome.kind);
  client.startLongPoll((update) => {
    send({ type: 'bundle', envelopeText: update.envelopeText, revision: update.revision });
  });
}

/** POST records in batches; true when every batch was taken (or refused for good: counted in the log). */
async function post(records: readonly DenyRecord[], hits: readonly HitCount[] = []): Promise<boolean> {
  // Hit counts (statistics) ride with the first batch, or go alone.
  for (let i = 0; i < records.length || (i === 0 && hits.length > 0); i += BATCH) {
    const batch = records.slice(i, i + BATCH);
    try {
      await reports.deliver(batch, i === 0 ? hits : undefined);
    } catch (error) {
      if (!(error instanceof DeliveryError && error.permanent)) return false;
      log(`${error.message}: ${batch.length} deny records dropped`);
    }
  }
  return true;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Records an earlier process spooled at exit: claimed by renaming the spool (two processes starting
 * together cannot both send it), sent, and appended back when the control API does not take them.
 * A claim left by a process that died mid-send is taken over. Record ids make a resend harmless.
 */
async function sendSpooled(): Promise<void> {
  const spool = data.spool;
  const claims: string[] = [];
  const own = `${spool}.${process.pid}.sending`;
  try {
    renameSync(spool, own);
    claims.push(own);
  } catch {
    // No spool (the common case), or another process claimed it first.
  }
  try {
    const prefix = `${basename(spool)}.`;
    for (const name of readdirSync(dirname(spool))) {
      const match = name.startsWith(prefix) ? /^(\d+)\.sending$/.exec(name.slice(prefix.length)) : null;
      if (!match || Number(match[1]) === process.pid || processAlive(Number(match[1]))) continue;
      const taken = `${own}.${claims.length}`;
      try {
        renameSync(join(dirname(spool), name), taken);
        claims.push(taken);
      } catch {
        // Another process took it over first.
      }
    }
  } catch {
    // The spool folder does not exist yet.
  }
  for (const claim of claims) {
    let text: string;
    try {
      text = readFileSync(claim, 'utf8');
    } catch {
      continue;
    }
    const records: DenyRecord[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        records.push(JSON.parse(line) as DenyRecord);
      } catch {
        log(`a spooled line in ${spool} is not a record; skipped`);
      }
    }
    if (await post(records)) {
      unlinkSync(claim);
      if (records.length > 0) log(`sent ${records.length} deny records an earlier process spooled`);
    } else {
      // Back where the next process looks (one write: O_APPEND keeps lines whole).
      appendFileSync(spool, text, { mode: 0o600 });
      unlinkSync(claim);
      log(`the control API did not take ${records.length} spooled deny records; they stay in ${spool}`);
    }
  }
}

port.on('message', (message: ToLink) => {
  if (message?.type === 'stop-fetching') {
    fetching = false;
    client?.stop();
    return;
  }
  if (message?.type !== 'deliver') return;
  void post(message.records, message.hits).then((ok) => {
    Atomics.store(state, SLOT_DELIVERED, ok ? message.id : -message.id);
    Atomics.notify(state, SLOT_DELIVERED);
  });
});

void fetchBundles().catch((error: unknown) => {
  log(`control link failed: ${error instanceof Error ? error.message : String(error)}`);
  if (Atomics.load(state, SLOT_FIRST_ANSWER) === 0) answered('error');
});
void sendSpooled().catch((error: unknown) => {
  log(`spooled records not sent: ${error instanceof Error ? error.message : String(error)}`);
});
