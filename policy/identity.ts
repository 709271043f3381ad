// Workload identity text form and SmartGroup selectors. No dependencies: the shim imports this.
import { wildcardMatch } from './path.js';
import type { WorkloadIdentity } from './types.js';

// What parseIdentity itself refuses: a guard for the parser (shims parse their environment with it
// and must keep working), not the bound on what the control API stores (IDENTITY_BOUNDS).
const MAX_IDENTITY_TEXT = 8192;
const MAX_IDENTITY_KEYS = 128;

/**
 * The largest workload identity the control API accepts: in a bundle fetch (`?workload=`, which
 * puts it in the inventory) and in a deny record. Real identities fit with room to spare: the
 * platform facts are at most 9 attributes, tags arrive as `tag.<key>` (AWS: 50 tags, keys of 128 and
 * values of 256 characters, and at most 4 KiB for all of a function's environment variables together,
 * BULKHEAD_TAGS included; Google Cloud: 64 labels of 63/63). Lengths count UTF-16 code units;
 * `text` is the canonical text (`formatIdentity`: sorted, percent-encoded).
 */
export const IDENTITY_BOUNDS = Object.freeze({
  attributes: 80,
  keyLength: 160,
  valueLength: 256,
  textLength: 6144,
});

/**
 * Throws a TypeError naming the bound the identity exceeds (IDENTITY_BOUNDS); the control API calls
 * it on every identity it is handed. Not part of parseIdentity: a shim whose own identity is larger
 * still parses it (and is told by the control API's 400).
 */
export function checkIdentityBounds(identity: WorkloadIdentity): void {
  const keys = Object.keys(identity);
  if (keys.length > IDENTITY_BOUNDS.attributes)
    throw new TypeError(
      `workload identity has ${keys.length} attributes, more than ${IDENTITY_BOUNDS.attributes}`,
    );
  for (const key of keys) {
    if (key.length > IDENTITY_BOUNDS.keyLength)
      throw new TypeError(
        `workload identity: attribute name ${JSON.stringify(`${key.slice(0, 40)}…`)} is longer than ${IDENTITY_BOUNDS.keyLength} characters`,
      );
    const value = identity[key] as string;
    if (value.length > IDENTITY_BOUNDS.valueLength)
      throw new TypeError(
        `workload identity: the value of ${JSON.stringify(key)} is longer than ${IDENTITY_BOUNDS.valueLength} characters`,
      );
  }
  const length = formatIdentity(identity).length;
  if (length > IDENTITY_BOUNDS.textLength)
    throw new TypeError(
      `workload identity is ${length} characters as text, more than ${IDENTITY_BOUNDS.textLength}`,
    );
}

function encodePart(text: string): string {
  // Only what would break the k=v,k=v grammar (plus control characters) is escaped.
  let out = '';
  for (const c of text) {
    const code = c.charCodeAt(0);
    out +=
      c === '%' || c === ',' || c === '=' || code < 0x20 || code === 0x7f
        ? `%${code.toString(16).toUpperCase().padStart(2, '0')}`
        : c;
  }
  return out;
}

function decodePart(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new TypeError(`workload identity: bad percent-encoding in ${what} ${JSON.stringify(text)}`);
  }
}

/**
 * Parse the `BULKHEAD_WORKLOAD` / `?workload=` form `cloud=aws,name=charge-card,tag.app=payments`.
 * Values holding `,` `=` or `%` are percent-encoded. Throws a TypeError naming the problem on
 * malformed input (empty key, missing `=`, duplicate key, bad escape, too long).
 */
export function parseIdentity(text: string): WorkloadIdentity {
  if (typeof text !== 'string') throw new TypeError('workload identity must be a string');
  if (text.length > MAX_IDENTITY_TEXT)
    throw new TypeError(`workload identity longer than ${MAX_IDENTITY_TEXT} characters`);
  const identity: Record<string, string> = Object.create(null);
  const trimmed = text.trim();
  if (trimmed === '') return Object.freeze({ ...identity });
  const pairs = trimmed.split(',');
  if (pairs.length > MAX_IDENTITY_KEYS)
    throw new TypeError(`workload identity has more than ${MAX_IDENTITY_KEYS} attributes`);
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq === -1) throw new TypeError(`workload identity: expected key=value, got ${JSON.stringify(pair)}`);
    const key = decodePart(pair.slice(0, eq).trim(), 'key');
    const value = decodePart(pair.slice(eq + 1).trim(), 'value');
    if (key === '') throw new TypeError(`workload identity: empty key in ${JSON.stringify(pair)}`);
    if (key === '__proto__' || key === 'constructor' || key === 'prototype')
      throw new TypeError(`workload identity: reserved key ${JSON.stringify(key)}`);
    if (Object.hasOwn(identity, key))
      throw new TypeError(`workload identity: duplicate key ${JSON.stringify(key)}`);
    identity[key] = value;
  }
  return Object.freeze({ ...identity });
}

/** The text form of an identity: keys sorted, so equal identities give equal text. */
export function formatIdentity(identity: WorkloadIdentity): string {
  return Object.keys(identity)
    .sort()
    .map((key) => `${encodePart(key)}=${encodePart(identity[key] ?? '')}`)
    .join(',');
}

/**
 * A compiled SmartGroup selector: every key must be present in the identity and its value
 * must match one of the globs (`*` any run of characters, `?` one character). Presence of a
 * tag is the glob `*`. An empty selector matches every workload.
 */
export type Selector = Readonly<Record<string, readonly string[]>>;

/** `*` any run of characters, `?` one character; linear time whatever the value (values come from workloads). */
export function identityGlobMatches(glob: string, value: string): boolean {
  if (!glob.includes('*') && !glob.includes('?')) return glob === value;
  return wildcardMatch(glob, value, true);
}

/**
 * Does `identity` satisfy every key of `selector`? A key the identity lacks fails, unless it is one
 * of `unknowable`: facts the workload cannot know about itself (the AWS account inside Lambda), which
 * the control API checked when it compiled the scope.
 */
export function selectorMatches(
  selector: Selector,
  identity: WorkloadIdentity,
  unknowable?: ReadonlySet<string>,
): boolean {
  for (const key of Object.keys(selector)) {
    if (!Object.hasOwn(identity, key)) {
      if (unknowable?.has(key)) continue;
      return false;
    }
    const value = identity[key] as string;
    const globs = selector[key] as readonly string[];
    if (!globs.some((glob) => identityGlobMatches(glob, value))) return false;
  }
  return true;
}
