// What the preload's control link thread and the process's main thread say to each other. Types and
// slot numbers only: both sides import this file, and neither pulls in the other's code.

import type { DenyRecord, WorkloadIdentity } from '../../../policy/types.js';
import type { HitCount } from '../hits.js';

/** What the thread is started with (`workerData`; `port` and `state` are shared with the main thread). */
export interface LinkData {
  controlUrl: string;
  /** Where deny records go (`BULKHEAD_REPORT`, by default the control API's `/v1/reports`). */
  reportsUrl: string;
  token: string;
  workload: WorkloadIdentity;
  /** BULKHEAD_TRUSTED_KEYS entries; empty: the control API's listed keys are trusted (https or loopback only). */
  trustedKeys: string[];
  /** Where records that could not be delivered at exit wait; the thread sends them at start. */
  spool: string;
  timeoutMs: number;
  longPollSeconds: number;
  port: MessagePortLike;
  state: SharedArrayBuffer;
}

/** The part of a worker_threads MessagePort both sides use (typed here so this file has no imports). */
export interface MessagePortLike {
  postMessage(message: unknown): void;
}

/** Int32 slots of `state`. */
export const SLOT_FIRST_ANSWER = 0;
/** The id of the last delivery the thread finished: positive when the control API took it, negative when not. */
export const SLOT_DELIVERED = 1;
export const STATE_SLOTS = 2;

export type ToMain =
  /** A verified bundle newer than the last one sent (the main thread verifies it again before enforcing). */
  | { type: 'bundle'; envelopeText: string; revision: number }
  /** Keys taken from the control API's list (only when BULKHEAD_TRUSTED_KEYS is unset); sent before any bundle. */
  | { type: 'keys'; keys: string[] }
  /** The first fetch's outcome (sent before SLOT_FIRST_ANSWER is set). */
  | { type: 'answer'; outcome: string }
  | { type: 'log'; line: string };

export type ToLink =
  | { type: 'deliver'; id: number; records: DenyRecord[]; hits?: HitCount[] }
  /** A platform wrapper fetches bundles itself from now on: stop fetching, keep delivering records. */
  | { type: 'stop-fetching' };
