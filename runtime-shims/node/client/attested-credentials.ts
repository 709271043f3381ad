// Credentials that attest (BULKHEAD_ATTEST): the session token `POST /v1/attest` answered for a
// proof of the workload's identity, renewed before it expires; the workload token meanwhile. One
// object per process part (bundle client, report senders share it), so a process attests once.
// node:http(s) only: the Lambda extension and the wrappers bundle this, and their cold start matters.
import {
  ATTESTABLE_ATTRIBUTES,
  ATTESTED_ATTRIBUTE,
  type AttestAnswer,
  type AttestationProof,
} from '../../../policy/attestation.js';
import { formatIdentity, parseIdentity } from '../../../policy/identity.js';
import type { WorkloadIdentity } from '../../../policy/types.js';
import { boundedRequest } from './bounded-request.js';
import { type ControlCredentials, checkToken } from './credentials.js';

export interface AttestedCredentialsOptions {
  controlUrl: string;
  /** The workload token: it asks for sessions, and is used itself while none can be had. */
  token: string;
  /** The identity the workload claims (the attested attributes are laid over it). */
  workload: WorkloadIdentity;
  /** Makes a fresh proof of this workload's identity (policy/attestation.ts). */
  proof: () => Promise<AttestationProof> | AttestationProof;
  /** Bound on one attestation (proof and answer), milliseconds. */
  timeoutMs: number;
  log?: ((level: 'info' | 'warn', message: string) => void) | undefined;
  now?: (() => number) | undefined;
}

/** A session is renewed when it has less than this left. */
const RENEW_BEFORE_MS = 5 * 60_000;
/** After a failed attestation, the workload token is used alone for this long before trying again. */
const RETRY_AFTER_FAILURE_MS = 60_000;
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * Credentials that attest: the first `authorization()` (and one within RENEW_BEFORE_MS of the
 * session's expiry) makes a proof and exchanges it for a session. A failure is logged (without the
 * proof or any token) and the workload token is sent meanwhile: a control API that requires
 * attestation then refuses it, and the caller's fail mode governs as for any refused fetch.
 */
export function attestedCredentials(options: AttestedCredentialsOptions): ControlCredentials {
  checkToken(options.token);
  const base = new URL(options.controlUrl);
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new TypeError(`control credentials: unsupported control URL scheme ${base.protocol}`);
  const attestUrl = new URL(`${base.pathname.replace(/\/?$/, '/')}v1/attest`, base);
  const workloadHeader = `Bearer ${options.token}`;
  const log = options.log ?? (() => {});
  const now = options.now ?? Date.now;
  const claimedText = formatIdentity(options.workload);
  let session: { header: string; expiresMs: number; identity: WorkloadIdentity } | undefined;
  let attesting: Promise<void> | undefined;
  let retryAtMs = 0;

  async function attest(timeoutMs: number): Promise<void> {
    const deadline = now() + timeoutMs;
    let proof: AttestationProof;
    try {
      proof = await withTimeout(Promise.resolve(options.proof()), timeoutMs, 'making the proof');
    } catch (error) {
      throw new Error(`no proof of identity: ${(error as Error).message}`);
    }
    const body = JSON.stringify({ workload: claimedText, proof });
    const answer = await postJson(attestUrl, body, workloadHeader, Math.max(1, deadline - now()));
    if (answer.status !== 200) throw new Error(`POST /v1/attest answered ${answer.status}${answer.reason}`);
    const parsed = parseAnswer(answer.body, proof.type, options.workload);
    session = { header: `Bearer ${parsed.token}`, expiresMs: parsed.expiresMs, identity: parsed.identity };
    log('info', `attested as ${parsed.principal} (${proof.type}); session until ${parsed.expiresAt}`);
  }

  return {
    current() {
      const nowMs = now();
      if (session && session.expiresMs - nowMs > RENEW_BEFORE_MS) return session.header;
      // Waiting out a failed attestation: the workload token, as `authorization` would answer.
      if (nowMs < retryAtMs && attesting === undefined)
        return session && session.expiresMs > nowMs ? session.header : workloadHeader;
      return undefined;
    },
    async authorization(timeoutMs = options.timeoutMs) {
      const nowMs = now();
      if (session && session.expiresMs - nowMs > RENEW_BEFORE_MS) return session.header;
      if (nowMs >= retryAtMs) {
        attesting ??= attest(timeoutMs)
          .catch((error: Error) => {
            retryAtMs = now() + RETRY_AFTER_FAILURE_MS;
            log('warn', `attestation failed (${error.message}); using the workload token meanwhile`);
          })
          .finally(() => {
            attesting = undefined;
          });
        await attesting;
      }
      // A session near its end is still good until it ends.
      if (session && session.expiresMs > now()) return session.header;
      return workloadHeader;
    },
    refused(authorization) {
      if (session && authorization === session.header) {
        session = undefined;
        retryAtMs = 0;
      }
    },
    identity: () => session?.identity ?? options.workload,
  };
}

/**
 * The answer, checked: the session's identity must be the claimed one with only attributes the
 * proof's kind vouches for added (a bundle is then checked against it; an answer that made this
 * workload someone else is refused).
 */
function parseAnswer(
  body: string,
  kind: AttestationProof['type'],
  claimed: WorkloadIdentity,
): { token: string; expiresMs: number; expiresAt: string; identity: WorkloadIdentity; principal: string } {
  let answer: Partial<AttestAnswer>;
  try {
    answer = JSON.parse(body) as Partial<AttestAnswer>;
  } catch {
    throw new Error('the attestation answer is not JSON');
  }
  const { token, expiresAt, identity } = answer;
  if (typeof token !== 'string' || !/^bhk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/.test(token))
    throw new Error('the attestation answer has no session token');
  const expiresMs = typeof expiresAt === 'string' ? Date.parse(expiresAt) : Number.NaN;
  if (!Number.isFinite(expiresMs)) throw new Error('the attestation answer has no expiry');
  if (typeof identity !== 'string') throw new Error('the attestation answer has no identity');
  const attested = parseIdentity(identity);
  const vouched = new Set([ATTESTED_ATTRIBUTE, ...ATTESTABLE_ATTRIBUTES[kind]]);
  for (const [key, value] of Object.entries(claimed))
    if (attested[key] !== value) throw new Error(`the attested identity changed ${key}`);
  for (const key of Object.keys(attested))
    if (!(key in claimed) && !vouched.has(key))
      throw new Error(`the attested identity added ${key}, which a ${kind} proof does not vouch for`);
  const principal = typeof answer.attested?.principal === 'string' ? answer.attested.principal : kind;
  return { token, expiresMs, expiresAt: expiresAt as string, identity: attested, principal };
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} took longer than ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

async function postJson(
  url: URL,
  body: string,
  authorization: string,
  timeoutMs: number,
): Promise<{ status: number; body: string; reason: string }> {
  const headers = { authorization, 'content-type': 'application/json' };
  const answer = await boundedRequest(url, { method: 'POST', headers, body }, timeoutMs, MAX_ANSWER_BYTES);
  if (!answer.ok) {
    if (answer.cause === 'too-large' || answer.cause === 'broken')
      throw new Error('the attestation answer could not be read');
    if (answer.cause === 'timeout')
      throw new Error(`control API unreachable: no answer within ${timeoutMs} ms`);
    throw new Error(`control API unreachable: ${answer.code ?? answer.name}`);
  }
  const text = answer.body.toString('utf8');
  let reason = '';
  if (answer.status !== 200) {
    try {
      const message = (JSON.parse(text) as { message?: unknown }).message;
      if (typeof message === 'string') reason = `: ${message.slice(0, 300)}`;
    } catch {
      // Not JSON: the status says enough.
    }
  }
  return { status: answer.status, body: text, reason };
}
