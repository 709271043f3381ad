// Validation of incoming deny records. Each record is judged alone: a bad one is counted
// and reported back by index, the rest of the batch is stored. What is stored is rebuilt
// from the known fields only, so nothing unvalidated reaches the forensic log.
import { checkIdentityBounds, IDENTITY_BOUNDS } from '../policy/identity.js';
import type { DenyRecord, Protocol, WorkloadIdentity } from '../policy/types.js';
import type { HitRow } from './store/types.js';

export const DENY_KINDS: readonly DenyRecord['kind'][] = [
  'connect',
  'http',
  'dns',
  'udp',
  'exec',
  'addon',
  'worker',
  'tamper',
  'unix',
];
export const DENY_SEVERITIES: readonly NonNullable<DenyRecord['severity']>[] = ['normal', 'high'];
const KINDS: ReadonlySet<string> = new Set(DENY_KINDS);
const SEVERITIES: ReadonlySet<string> = new Set(DENY_SEVERITIES);
const PROTOCOLS = new Set(['tcp', 'udp', 'http', 'https', 'dns']);
const ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
// ISO-8601 date-time with a zone, the only form shims produce.
const TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/;
/** Aggregate records (contract §3): the shim sends up to 8 sample values of at most 300 characters. */
export const MAX_AGGREGATE_SAMPLE = 16;
export const MAX_AGGREGATE_TEXT = 512;

export class RecordError extends Error {}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(value: unknown, field: string, max: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) {
    throw new RecordError(`${field}: expected a non-empty string of at most ${max} characters`);
  }
  return value;
}

function optionalText(value: unknown, field: string, max: number): string | undefined {
  return value === undefined || value === null ? undefined : text(value, field, max);
}

function integer(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RecordError(`${field}: expected an integer from ${min} to ${max}`);
  }
  return value;
}

function optionalInteger(value: unknown, field: string, min: number, max: number): number | undefined {
  return value === undefined || value === null ? undefined : integer(value, field, min, max);
}

function time(value: unknown, field: string): { text: string; ms: number } {
  const t = text(value, field, 40);
  const ms = TIME_PATTERN.test(t) ? Date.parse(t) : Number.NaN;
  if (!Number.isFinite(ms))
    throw new RecordError(`${field}: expected an ISO-8601 time, got ${JSON.stringify(t)}`);
  return { text: t, ms };
}

function oneOf<T extends string>(value: unknown, field: string, allowed: ReadonlySet<string>): T {
  if (typeof value !== 'string' || !allowed.has(value)) {
    throw new RecordError(`${field}: expected one of ${[...allowed].join(', ')}`);
  }
  return value as T;
}

const RESERVED_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** The record's workload: string attributes within IDENTITY_BOUNDS, as the bundle route accepts them. */
function workloadOf(value: unknown): WorkloadIdentity {
  if (!isObject(value)) throw new RecordError('workload: expected an object of string attributes');
  const entries = Object.entries(value);
  if (entries.length > IDENTITY_BOUNDS.attributes) {
    throw new RecordError(`workload: more than ${IDENTITY_BOUNDS.attributes} attributes`);
  }
  const identity: Record<string, string> = {};
  for (const [key, attribute] of entries) {
    if (key.length === 0 || key.length > IDENTITY_BOUNDS.keyLength)
      throw new RecordError(`workload: attribute names are 1-${IDENTITY_BOUNDS.keyLength} characters`);
    if (RESERVED_KEYS.has(key))
      throw new RecordError(`workload: reserved attribute name ${JSON.stringify(key)}`);
    identity[key] = text(attribute, `workload.${key}`, IDENTITY_BOUNDS.valueLength);
  }
  try {
    checkIdentityBounds(identity);
  } catch (error) {
    throw new RecordError(`workload: ${(error as Error).message}`);
  }
  return identity;
}

export interface ValidatedRecord {
  record: DenyRecord;
  timeMs: number;
}

/** Checks one record from outside; throws RecordError naming the first bad field. */
export function validateDenyRecord(input: unknown): ValidatedRecord {
  if (!isObject(input)) throw new RecordError('record: expected an object');
  const id = text(input.id, 'id', 128);
  if (!ID_PATTERN.test(id)) throw new RecordError('id: letters, digits and . _ : - only');
  const first = time(input.time, 'time');
  const last =
    input.lastTime === undefined || input.lastTime === null ? undefined : time(input.lastTime, 'lastTime');
  const destinationInput = input.destination;
  if (!isObject(destinationInput)) throw new RecordError('destination: expected an object');
  const destination: DenyRecord['destination'] = {};
  const host = optionalText(destinationInput.host, 'destination.host', 1024);
  if (host !== undefined) destination.host = host.toLowerCase();
  const ip = optionalText(destinationInput.ip, 'destination.ip', 64);
  if (ip !== undefined) destination.ip = ip;
  const port = optionalInteger(destinationInput.port, 'destination.port', 0, 65535);
  if (port !== undefined) destination.port = port;
  if (destinationInput.protocol !== undefined && destinationInput.protocol !== null) {
    destination.protocol = oneOf<Protocol>(destinationInput.protocol, 'destination.protocol', PROTOCOLS);
  }
  const sni = optionalText(destinationInput.sni, 'destination.sni', 1024);
  if (sni !== undefined) destination.sni = sni;
  const method = optionalText(destinationInput.method, 'destination.method', 32);
  if (method !== undefined) destination.method = method;
  const path = optionalText(destinationInput.path, 'destination.path', 8192);
  if (path !== undefined) destination.path = path;
  const command = optionalText(destinationInput.command, 'destination.command', 8192);
  if (command !== undefined) destination.command = command;
  const socket = optionalText(destinationInput.socket, 'destination.socket', 8192);
  if (socket !== undefined) destination.socket = socket;

  const record: DenyRecord = {
    id,
    time: first.text,
    count: integer(input.count ?? 1, 'count', 1, Number.MAX_SAFE_INTEGER),
    workload: workloadOf(input.workload),
    kind: oneOf<DenyRecord['kind']>(input.kind, 'kind', KINDS),
    destination,
    decision: oneOf<'allow' | 'deny'>(input.decision, 'decision', new Set(['allow', 'deny'])),
    mode: oneOf<'enforce' | 'observe'>(input.mode, 'mode', new Set(['enforce', 'observe'])),
    rule: text(input.rule, 'rule', 512),
    revision: integer(input.revision, 'revision', 0, Number.MAX_SAFE_INTEGER),
  };
  if (last) record.lastTime = last.text;
  if (input.severity !== undefined && input.severity !== null) {
    record.severity = oneOf<'normal' | 'high'>(input.severity, 'severity', SEVERITIES);
  }
  if (input.origin !== undefined && input.origin !== null) {
    if (!isObject(input.origin)) throw new RecordError('origin: expected an object');
    const origin: NonNullable<DenyRecord['origin']> = {};
    const pkg = optionalText(input.origin.package, 'origin.package', 512);
    if (pkg !== undefined) origin.package = pkg;
    const file = optionalText(input.origin.file, 'origin.file', 4096);
    if (file !== undefined) origin.file = file;
    const line = optionalInteger(input.origin.line, 'origin.line', 0, 100_000_000);
    if (line !== undefined) origin.line = line;
    record.origin = origin;
  }
  const invocationId = optionalText(input.invocationId, 'invocationId', 256);
  if (invocationId !== undefined) record.invocationId = invocationId;
  const sandboxId = optionalText(input.sandboxId, 'sandboxId', 256);
  const seq = optionalInteger(input.seq, 'seq', 1, Number.MAX_SAFE_INTEGER);
  if ((sandboxId === undefined) !== (seq === undefined)) {
    throw new RecordError('sandboxId and seq: send both or neither');
  }
  if (sandboxId !== undefined) record.sandboxId = sandboxId;
  if (seq !== undefined) record.seq = seq;
  if (input.aggregate !== undefined && input.aggregate !== null)
    record.aggregate = aggregateOf(input.aggregate, record.count);
  return { record, timeMs: first.ms };
}

/**
 * The first record of a batch whose aggregate summary is out of bounds (more than
 * MAX_AGGREGATE_SAMPLE sample values, or a value or pattern longer than MAX_AGGREGATE_TEXT), as a
 * reason; undefined when none is. Only sizes: everything else is judged per record.
 */
export function oversizedAggregate(records: readonly unknown[]): string | undefined {
  for (let index = 0; index < records.length; index++) {
    const record = records[index];
    if (!isObject(record) || !isObject(record.aggregate)) continue;
    const { pattern, sample } = record.aggregate;
    if (typeof pattern === 'string' && pattern.length > MAX_AGGREGATE_TEXT)
      return `records[${index}].aggregate.pattern: longer than ${MAX_AGGREGATE_TEXT} characters`;
    if (!Array.isArray(sample)) continue;
    if (sample.length > MAX_AGGREGATE_SAMPLE)
      return `records[${index}].aggregate.sample: more than ${MAX_AGGREGATE_SAMPLE} values`;
    for (const value of sample)
      if (typeof value === 'string' && value.length > MAX_AGGREGATE_TEXT)
        return `records[${index}].aggregate.sample: a value longer than ${MAX_AGGREGATE_TEXT} characters`;
  }
  return undefined;
}

/** The summary of an aggregate record: bounded, and consistent with its count. */
function aggregateOf(input: unknown, count: number): NonNullable<DenyRecord['aggregate']> {
  if (!isObject(input)) throw new RecordError('aggregate: expected an object');
  const pattern = text(input.pattern, 'aggregate.pattern', MAX_AGGREGATE_TEXT);
  const distinct = integer(input.distinct, 'aggregate.distinct', 0, count);
  const sampleInput = input.sample;
  if (!Array.isArray(sampleInput) || sampleInput.length > MAX_AGGREGATE_SAMPLE)
    throw new RecordError(`aggregate.sample: expected an array of at most ${MAX_AGGREGATE_SAMPLE} strings`);
  const sample = sampleInput.map((value, i) => text(value, `aggregate.sample[${i}]`, MAX_AGGREGATE_TEXT));
  if (sample.length > distinct)
    throw new RecordError('aggregate.sample: more values than aggregate.distinct counts');
  const aggregate: NonNullable<DenyRecord['aggregate']> = { pattern, distinct, sample };
  if (input.distinctCapped !== undefined && input.distinctCapped !== null) {
    if (typeof input.distinctCapped !== 'boolean')
      throw new RecordError('aggregate.distinctCapped: expected a boolean');
    if (input.distinctCapped) aggregate.distinctCapped = true;
  }
  return aggregate;
}

export const MAX_HIT_COUNTS = 100;
export const MAX_HIT_RULES = 10_000;
const MAX_RULE_ID = 512;

/**
 * The hit counts of a report batch (contract §3, "Rule hit counts") as rows of `day` (the day they
 * arrived: statistics, not forensic records, so the server's clock dates them), or the first
 * problem as a reason (the batch is then refused whole: a sender that writes malformed counts is broken).
 */
export function hitRowsOf(hits: unknown, day: string): HitRow[] | string {
  if (hits === undefined) return [];
  if (!Array.isArray(hits)) return 'hits: expected an array';
  if (hits.length > MAX_HIT_COUNTS) return `hits: more than ${MAX_HIT_COUNTS} entries`;
  const rows = new Map<string, HitRow>();
  for (let index = 0; index < hits.length; index++) {
    const entry = hits[index];
    if (!isObject(entry)) return `hits[${index}]: expected an object`;
    const { revision, rules } = entry;
    if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0)
      return `hits[${index}].revision: expected a non-negative integer`;
    if (!isObject(rules)) return `hits[${index}].rules: expected an object of rule id → count`;
    const ids = Object.keys(rules);
    if (ids.length > MAX_HIT_RULES) return `hits[${index}].rules: more than ${MAX_HIT_RULES} rules`;
    for (const rule of ids) {
      const count = rules[rule];
      if (rule.length === 0 || rule.length > MAX_RULE_ID)
        return `hits[${index}].rules: a rule id of 1-${MAX_RULE_ID} characters expected`;
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0)
        return `hits[${index}].rules[${JSON.stringify(rule.slice(0, 60))}]: expected a non-negative integer`;
      if (count === 0) continue;
      const key = `${revision}\n${rule}`;
      const row = rows.get(key);
      if (row) row.hits = Math.min(Number.MAX_SAFE_INTEGER, row.hits + count);
      else rows.set(key, { day, revision, rule, hits: count });
    }
  }
  return [...rows.values()];
}
