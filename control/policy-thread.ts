// The policy thread: everything that costs time in proportion to the size of a policy set runs
// here, off the event loop that answers bundle fetches, reports and /healthz. It parses and
// checks applies (YAML of 60,000 rules takes seconds), diffs them, works out affected
// workloads, and for an installed revision resolves workload identities to scopes and signs
// their bundles. It holds the parsed sets; the main thread holds only answers (control/policy-state.ts).
// Built as its own entry: dist/policy-thread.cjs (control/worker-program.ts).
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import {
  blastRadius,
  type CompiledPolicy,
  canonicalJson,
  checkGuardrails,
  compilePolicy,
  diffPolicies,
  groupsSelecting,
  mergeSuggestion,
  type PolicySet,
  parseIdentity,
  parsePolicy,
  renderSuggestion,
  ruleUsage,
  scopeOf,
  serializeEnvelope,
  signBundle,
  suggestPolicy,
  wouldBreak,
} from '../policy/index.js';
import type { DenyRecord, WorkloadIdentity } from '../policy/types.js';
import { warmUpPass } from './policy-warm-up.js';
import type {
  InstallResult,
  PolicyThreadData,
  PolicyThreadReply,
  PolicyThreadRequest,
  ResolvedText,
  SignedScope,
} from './policy-worker.js';
import type { PolicySource } from './store/types.js';

const data = workerData as PolicyThreadData;
const privateKey: KeyObject = createPrivateKey(data.privateKeyPem);
const IDENTITY_CACHE_LIMIT = 50_000;
/** Time an install may spend signing the scopes of workloads that are not parked right now. */
const PRESIGN_BUDGET_MS = 50;

interface ScopeEntry {
  compiled: CompiledPolicy;
  groups: string[];
  /** canonicalJson(compiled), made when an apply compares it with another set's. */
  canonical?: string;
}

/** A parsed set and what has been compiled from it so far: an apply's checks fill what its install signs. */
interface PreparedSet {
  set: PolicySet;
  fingerprint: string;
  /** Compiled policy and SmartGroup names per scope id. */
  scopes: Map<string, ScopeEntry>;
}

interface Installed extends PreparedSet {
  revision: number;
  createdMs: number;
}

let installed: Installed | undefined;
/** Sets of applies checked and not yet installed or discarded, by token (a few at most). */
const candidates = new Map<number, PreparedSet>();
const MAX_CANDIDATES = 8;
/** Scope ids per identity key, one map per SmartGroup fingerprint (the current and the previous). */
const scopeIds = new Map<string, Map<string, string>>();

/** Parsed identities by canonical key: an apply and an install each walk the whole inventory. */
const identities = new Map<string, WorkloadIdentity | null>();

/** Keeps an identity the main thread parsed already, so that the next apply's walk of the inventory need not. */
function rememberIdentity(key: string, identity: WorkloadIdentity): void {
  if (identities.has(key)) return;
  if (identities.size >= IDENTITY_CACHE_LIMIT) identities.clear();
  identities.set(key, identity);
}

function identityOf(key: string): WorkloadIdentity | undefined {
  let identity = identities.get(key);
  if (identity === undefined) {
    try {
      identity = parseIdentity(key);
    } catch {
      identity = null;
    }
    if (identities.size >= IDENTITY_CACHE_LIMIT) identities.clear();
    identities.set(key, identity);
  }
  return identity ?? undefined;
}

let emptySet: PolicySet | undefined;
function empty(): PolicySet {
  if (!emptySet) {
    const parsed = parsePolicy([]);
    if (!parsed.ok) throw new Error('the kernel refuses an empty policy set');
    emptySet = parsed.set;
  }
  return emptySet;
}

function fingerprintOf(set: PolicySet): string {
  return canonicalJson(set.groups.map((g) => [g.metadata.name, g.spec.match]));
}

function scopeIn(set: PolicySet, fingerprint: string, identity: WorkloadIdentity, key: string): string {
  let scopes = scopeIds.get(fingerprint);
  if (!scopes) {
    scopes = new Map();
    scopeIds.set(fingerprint, scopes);
  }
  let scope = scopes.get(key);
  if (scope === undefined) {
    scope = scopeOf(set, identity);
    if (scopes.size >= IDENTITY_CACHE_LIMIT) scopes.clear();
    scopes.set(key, scope);
  }
  return scope;
}

function prepared(set: PolicySet): PreparedSet {
  return { set, fingerprint: fingerprintOf(set), scopes: new Map() };
}

function scopeEntry(target: PreparedSet, scope: string, identity: WorkloadIdentity): ScopeEntry {
  let entry = target.scopes.get(scope);
  if (!entry) {
    const compiled = compilePolicy(target.set, identity);
    entry = { compiled, groups: compiled.scope.groups.map((g) => g.name) };
    target.scopes.set(scope, entry);
  }
  return entry;
}

function canonicalOf(target: PreparedSet, scope: string, identity: WorkloadIdentity): string {
  const entry = scopeEntry(target, scope, identity);
  entry.canonical ??= canonicalJson(entry.compiled);
  return entry.canonical;
}

function resolveIn(target: Installed, identity: WorkloadIdentity, key: string): ResolvedText {
  const scope = scopeIn(target.set, target.fingerprint, identity, key);
  const entry = target.scopes.get(scope);
  const groups = entry ? entry.groups : groupsSelecting(target.set, identity).map((g) => g.metadata.name);
  return { key, scope, groups };
}

function sign(target: Installed, scope: string, identity: WorkloadIdentity, epoch: number): SignedScope {
  const entry = scopeEntry(target, scope, identity);
  const quarterMs = data.bundleTtlMs / 4;
  const epochStartMs = epoch * quarterMs;
  // Deterministic times: every replica signs byte-identical envelopes for the same epoch.
  const issuedAt = new Date(Math.max(epochStartMs, Number.isFinite(target.createdMs) ? target.createdMs : 0));
  const expiresAt = new Date(epochStartMs + data.bundleTtlMs);
  const envelope = signBundle(
    { policy: entry.compiled, revision: target.revision, issuedAt, expiresAt },
    privateKey,
  );
  return { scope, epoch, groups: entry.groups, body: Buffer.from(serializeEnvelope(envelope), 'utf8') };
}

/** Workloads whose compiled policy differs between the installed set and the candidate. */
function affected(token: number, keys: string[], limit: number) {
  const next = candidates.get(token);
  if (!next) throw new Error('no such checked policy set');
  const before = installed;
  if (before && before.fingerprint === next.fingerprint) return affectedInScopes(before, next, keys, limit);
  // Compiled policies depend on the scope only: compared once per (old scope, new scope) pair.
  const verdicts = new Map<string, Map<string, boolean>>();
  const workloads: { key: string; identity: WorkloadIdentity }[] = [];
  let count = 0;
  for (const key of keys) {
    const identity = identityOf(key);
    if (!identity) continue;
    const oldScope = before ? scopeIn(before.set, before.fingerprint, identity, key) : '';
    const newScope = scopeIn(next.set, next.fingerprint, identity, key);
    let byNew = verdicts.get(oldScope);
    if (!byNew) {
      byNew = new Map();
      verdicts.set(oldScope, byNew);
    }
    let changed = byNew.get(newScope);
    if (changed === undefined) {
      const was = before ? canonicalOf(before, oldScope, identity) : undefined;
      changed = was !== canonicalOf(next, newScope, identity);
      byNew.set(newScope, changed);
    }
    if (changed) {
      count++;
      if (workloads.length < limit) workloads.push({ key, identity });
    }
  }
  return { count, workloads };
}

/**
 * `affected` when the SmartGroups stay the same: every workload keeps its scope, so whether it
 * changed is one question per scope, and a known workload costs two lookups.
 */
function affectedInScopes(before: PreparedSet, next: PreparedSet, keys: string[], limit: number) {
  const known = scopeIds.get(next.fingerprint);
  const changedByScope = new Map<string, boolean>();
  const workloads: { key: string; identity: WorkloadIdentity }[] = [];
  let count = 0;
  for (const key of keys) {
    let identity: WorkloadIdentity | undefined;
    let scope = known?.get(key);
    if (scope === undefined) {
      identity = identityOf(key);
      if (!identity) continue;
      scope = scopeIn(next.set, next.fingerprint, identity, key);
    }
    let changed = changedByScope.get(scope);
    if (changed === undefined) {
      identity ??= identityOf(key);
      if (!identity) continue;
      changed = canonicalOf(before, scope, identity) !== canonicalOf(next, scope, identity);
      changedByScope.set(scope, changed);
    }
    if (!changed) continue;
    count++;
    if (workloads.length >= limit) continue;
    identity ??= identityOf(key);
    if (identity) workloads.push({ key, identity });
  }
  return { count, workloads };
}

/** Installs `set`: resolves the main thread's keys again when the SmartGroups changed, and signs the parked scopes. */
function install(request: Extract<PolicyThreadRequest, { op: 'install' }>, from: PreparedSet): InstallResult {
  const previous = installed;
  const { set, fingerprint } = from;
  const sameScopes = previous !== undefined && previous.fingerprint === fingerprint;
  // Every text must be resolved again: ask for all of them (nothing changes until then).
  if (!sameScopes && !request.everyKey)
    return { revision: request.revision, sameScopes, needsEveryKey: true, signed: [] };
  for (const key of scopeIds.keys()) if (key !== fingerprint && scopeIds.size > 1) scopeIds.delete(key);
  const target: Installed = {
    revision: request.revision,
    createdMs: request.createdMs,
    set,
    fingerprint,
    // What the apply's checks compiled already (the same set object).
    scopes: from.scopes,
  };
  installed = target;
  const identityAt = (index: number): WorkloadIdentity | undefined => {
    const key = request.keys[index];
    return key === undefined ? undefined : identityOf(key);
  };
  const result: InstallResult = { revision: request.revision, sameScopes, signed: [] };
  if (!sameScopes) {
    const scopeOfKey = new Int32Array(request.keys.length);
    const tableIndex = new Map<string, number>();
    const scopes: { scope: string; groups: string[] }[] = [];
    for (let i = 0; i < request.keys.length; i++) {
      const identity = identityAt(i);
      const key = request.keys[i];
      if (!identity || key === undefined) {
        scopeOfKey[i] = -1;
        continue;
      }
      const scope = scopeIn(set, fingerprint, identity, key);
      let index = tableIndex.get(scope);
      if (index === undefined) {
        index = scopes.length;
        tableIndex.set(scope, index);
        scopes.push({ scope, groups: groupsSelecting(set, identity).map((g) => g.metadata.name) });
      }
      scopeOfKey[i] = index;
    }
    result.scopeOfKey = scopeOfKey;
    result.scopes = scopes;
  }
  // Bundles of the scopes waiting now (parked long-polls) are signed before the swap; then, for
  // at most PRESIGN_BUDGET_MS, those of the other workloads seen, so that their next fetch does
  // not wait on this thread either (a scope of a large set takes tens of milliseconds to compile).
  // With the same SmartGroups, `keys` holds one text per scope: parked scopes first, then the rest.
  const signedScopes = new Set<string>();
  const signFor = (index: number) => {
    const identity = identityAt(index);
    const key = request.keys[index];
    if (!identity || key === undefined) return;
    const scope = scopeIn(set, fingerprint, identity, key);
    if (signedScopes.has(scope)) return;
    signedScopes.add(scope);
    result.signed.push(sign(target, scope, identity, request.epoch));
  };
  for (const index of request.parked) {
    if (signedScopes.size >= data.signAtInstall) break;
    signFor(index);
  }
  const until = performance.now() + PRESIGN_BUDGET_MS;
  for (let index = request.keys.length - 1; index >= 0; index--) {
    if (signedScopes.size >= data.signAtInstall || performance.now() > until) break;
    signFor(index);
  }
  return result;
}

/** Stored records as objects, skipping any row that no longer reads (they were validated on the way in). */
function* parsedRecords(texts: readonly string[]): Generator<DenyRecord> {
  for (const text of texts) {
    try {
      yield JSON.parse(text) as DenyRecord;
    } catch {
      // skipped
    }
  }
}

function suggest(request: Extract<PolicyThreadRequest, { op: 'suggest' }>): PolicyThreadReply {
  let set = installed?.revision === request.revision ? installed.set : undefined;
  if (!set) {
    const parsed = parsePolicy(request.sources);
    if (!parsed.ok) throw new Error(`stored revision ${request.revision} no longer parses`);
    set = parsed.set;
  }
  if (!set.groups.some((g) => g.metadata.name === request.group))
    return {
      ok: false,
      error: 'not-found',
      message: `revision ${request.revision} has no SmartGroup ${request.group} (it has: ${set.groups.map((g) => g.metadata.name).join(', ') || 'none'})`,
    };
  const suggestion = suggestPolicy(parsedRecords(request.records), set, request.group);
  const options = { mode: request.mode, owner: request.owner, window: request.window };
  return {
    ok: true,
    suggested: {
      suggestion,
      policy: renderSuggestion(suggestion, set, options),
      ...(request.mode
        ? {
            set: mergeSuggestion(request.sources, set, suggestion, {
              ...options,
              mode: request.mode,
              merge: request.merge,
            }),
          }
        : {}),
    },
  };
}

function handle(request: PolicyThreadRequest): PolicyThreadReply {
  switch (request.op) {
    case 'check': {
      const parsed = parsePolicy(request.sources);
      if (!parsed.ok) return { ok: false, error: 'invalid-policy', errors: parsed.errors };
      // The installed set lets `requireObserveFirst` tell new policies from existing ones.
      const guardrailErrors = checkGuardrails(parsed.set, { previous: installed?.set });
      if (guardrailErrors.length > 0)
        return { ok: false, error: 'guardrail-violation', errors: guardrailErrors };
      // Per SmartGroup only: the per-workload view is `affected`, bounded for large inventories.
      const { changed, groups } = diffPolicies(installed?.set ?? empty(), parsed.set);
      const radius = { before: blastRadius(installed?.set ?? empty()), after: blastRadius(parsed.set) };
      candidates.set(request.token, prepared(parsed.set));
      for (const old of candidates.keys()) if (candidates.size > MAX_CANDIDATES) candidates.delete(old);
      // Serialised here: the diff of a large set is megabytes, and it is only ever sent and stored as JSON.
      return {
        ok: true,
        diffJson: JSON.stringify({ changed, groups }),
        blastRadiusJson: JSON.stringify(radius),
        ...(request.forStore ? { sourcesJson: JSON.stringify(request.sources) } : {}),
      };
    }
    case 'blast-radius': {
      const identities: WorkloadIdentity[] = [];
      for (const key of request.keys) {
        const identity = identityOf(key);
        if (identity) identities.push(identity);
      }
      const report = blastRadius(installed?.set ?? empty(), { workloads: identities });
      return { ok: true, revision: installed?.revision ?? 0, blastRadiusJson: JSON.stringify(report) };
    }
    case 'affected':
      return { ok: true, affected: affected(request.token, request.keys, request.limit) };
    case 'discard':
      candidates.delete(request.token);
      return { ok: true };
    case 'install': {
      let from = request.candidate === undefined ? undefined : candidates.get(request.candidate);
      if (!from) {
        const parsed = parsePolicy(request.sources);
        if (!parsed.ok) throw new Error(`stored revision ${request.revision} no longer parses`);
        from = prepared(parsed.set);
      }
      const result = install(request, from);
      if (request.candidate !== undefined && !result.needsEveryKey) candidates.delete(request.candidate);
      return { ok: true, installed: result };
    }
    case 'resolve': {
      const target = installed;
      if (!target || target.revision !== request.revision) return { ok: true, stale: true };
      return {
        ok: true,
        resolvedMany: request.items.map((item) => {
          rememberIdentity(item.key, item.identity);
          return resolveIn(target, item.identity, item.key);
        }),
      };
    }
    case 'sign': {
      const target = installed;
      if (!target || target.revision !== request.revision) return { ok: true, stale: true };
      return { ok: true, signedOne: sign(target, request.scope, request.identity, request.epoch) };
    }
    case 'suggest':
      return suggest(request);
    case 'rule-usage': {
      const parse = (sources: PolicySource[], revision: number): PolicySet => {
        if (installed?.revision === revision) return installed.set;
        const parsed = parsePolicy(sources);
        if (!parsed.ok) throw new Error(`stored revision ${revision} no longer parses`);
        return parsed.set;
      };
      const current = parse(request.sources, request.revision);
      const sets = new Map<number, PolicySet>([[request.revision, current]]);
      for (const older of request.older) sets.set(older.revision, parse(older.sources, older.revision));
      return { ok: true, usage: ruleUsage(current, request.totals, sets) };
    }
    case 'would-break': {
      const candidate = candidates.get(request.token);
      if (!candidate) throw new Error('would-break: no checked set under this token');
      return { ok: true, wouldBreak: wouldBreak(parsedRecords(request.records), candidate.set) };
    }
  }
}

parentPort?.on('message', (message: { id: number; request: PolicyThreadRequest }) => {
  let reply: PolicyThreadReply;
  try {
    reply = handle(message.request);
  } catch (error) {
    reply = { ok: false, error: 'internal', message: (error as Error).message ?? String(error) };
  }
  parentPort?.postMessage({ id: message.id, reply });
});

// Warm-up (control/policy-warm-up.ts): one pass a turn, so that a request waits behind one pass at most.
if (data.warmUpPasses > 0) {
  let previous: PolicySet | undefined;
  let pass = 0;
  const step = () => {
    try {
      previous = warmUpPass(pass, previous, privateKey);
    } catch {
      return; // The sample is covered by a test; a warm-up never stands in the way of real work.
    }
    if (++pass < data.warmUpPasses) setImmediate(step);
  };
  setImmediate(step);
}
