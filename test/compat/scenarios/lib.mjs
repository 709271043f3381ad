// Shared by the scenario scripts: the servers' addresses (COMPAT_CONFIG), a fake name lookup, result
// normalisation (no ports, paths, timings or messages) and the case runner that prints ONE JSON line.
import { lookup as dnsLookup } from 'node:dns';

/** @type {{http:number, https:number, h2:number, proxy:number, s3:number, dns:number, unix:string, wsUnix:string, dir:string, ca:string}} */
export const cfg = JSON.parse(process.env.COMPAT_CONFIG ?? '{}');

const CASE_TIMEOUT_MS = Number(process.env.COMPAT_CASE_TIMEOUT_MS ?? 5000);

/** Names under .compat.test (and nothing else) resolve to 127.0.0.1 without asking DNS. */
export function fakeLookup(hostname, options, callback) {
  const cb = typeof options === 'function' ? options : callback;
  const opts = typeof options === 'object' && options !== null ? options : {};
  if (!String(hostname).endsWith('.compat.test')) return dnsLookup(hostname, opts, cb);
  if (opts.all) return process.nextTick(cb, null, [{ address: '127.0.0.1', family: 4 }]);
  return process.nextTick(cb, null, '127.0.0.1', 4);
}

/** Replace every server port and the temp dir in strings by their names. */
export function scrub(value) {
  if (typeof value === 'string') {
    let out = value;
    if (cfg.dir) out = out.split(cfg.dir).join('<dir>');
    for (const [name, port] of Object.entries(cfg)) {
      if (typeof port === 'number') out = out.replace(new RegExp(`(?<=:)${port}(?!\\d)`, 'g'), `<${name}>`);
    }
    return out;
  }
  if (Array.isArray(value)) return value.map(scrub);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = scrub(v);
    return out;
  }
  return value;
}

/** Error → the chain of {name, code} through `.cause` and AggregateError `.errors`; no messages. */
export function errorShape(error) {
  const chain = [];
  const seen = new Set();
  const walk = (e, depth) => {
    if (!e || typeof e !== 'object' || seen.has(e) || depth > 8) return;
    seen.add(e);
    const entry = { name: e.name ?? e.constructor?.name ?? 'Error' };
    if (e.code !== undefined) entry.code = e.code;
    chain.push(entry);
    if (Array.isArray(e.errors)) for (const inner of e.errors) walk(inner, depth + 1);
    walk(e.cause, depth + 1);
    // got wraps the original as .cause; axios keeps it as .cause too; the AWS SDK sets $metadata.
  };
  walk(error, 0);
  const denied = chain.some((c) => c.code === 'ERR_BULKHEAD_DENIED');
  return { error: chain, denied };
}

/** Pick headers (lower case) from a Headers instance or a plain object. */
export function pickHeaders(headers, names = ['content-type', 'x-compat', 'x-via-proxy']) {
  const out = {};
  for (const name of names) {
    const value = typeof headers?.get === 'function' ? headers.get(name) : headers?.[name];
    if (value !== undefined && value !== null) out[name] = String(value);
  }
  return out;
}

/** Parse a body as JSON when it is JSON. */
export function body(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** One step of a multi-step case: its result, or its error shape (the later steps still run). */
export async function settle(fn) {
  try {
    return await fn();
  } catch (error) {
    return errorShape(error);
  }
}

function withTimeout(promise) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(Object.assign(new Error('case timed out'), { code: 'CASE_TIMEOUT' })),
        CASE_TIMEOUT_MS,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Run the named cases one after the other (COMPAT_CASES=a,b limits them), print one JSON line
 * `{case: result}` and exit. A case that throws reports its error shape.
 */
export async function runCases(cases) {
  const only = process.env.COMPAT_CASES ? new Set(process.env.COMPAT_CASES.split(',')) : undefined;
  const results = {};
  for (const [name, fn] of Object.entries(cases)) {
    if (only && !only.has(name)) continue;
    try {
      results[name] = scrub(await withTimeout(Promise.resolve().then(fn)));
    } catch (error) {
      results[name] = scrub(errorShape(error));
    }
  }
  process.stdout.write(`${JSON.stringify(results)}\n`, () => process.exit(0));
}
