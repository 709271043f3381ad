// The Bulkhead policy kernel. The in-process shim imports the dependency-free modules directly
// (decide, bundle, keys, identity, cidr, host, path, unix) so the YAML parser stays out of its bundle.
export * from './blast-radius.js';
export * from './bundle.js';
export * from './canonical.js';
export * from './cidr.js';
export * from './compile.js';
export * from './compiled.js';
export * from './decide.js';
export * from './diff.js';
export * from './documents.js';
export * from './errors.js';
export * from './guardrails.js';
export * from './host.js';
export * from './identity.js';
export * from './keys.js';
export * from './parse.js';
export * from './path.js';
export * from './rule-usage.js';
export * from './suggest.js';
export * from './suggest-render.js';
export * from './types.js';
export * from './unix.js';
export * from './would-break.js';
