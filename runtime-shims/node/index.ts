// Programmatic API of the runtime shim (contract §7 in docs/contracts.md). The preload
// (`dist/register.cjs`, `dist/register.mjs`) calls `install()`; platform wrappers call the rest.
// One installation per process: it lives on a `Symbol.for` global, so every copy of this code
// (the CJS preload, an ESM wrapper bundle) drives the same hooks, bundle and record queue.

import { fileURLToPath } from 'node:url';
import type { AttestationProof } from '../../policy/attestation.js';
import type { DenyRecord } from '../../policy/types.js';
import type { ControlCredentials } from './client/credentials.js';
import { postJson } from './client/post-json.js';
import {
  API_VERSION,
  type CoverageManifest,
  findRegisterPath,
  INSTANCE_KEY,
  type ReloadResult,
  ShimCore,
  type ShimInstance,
  type ShimStatus,
} from './core.js';
import { registerDeniedErrno } from './errors.js';
import { hardenIntrinsics, intrinsicsIntact } from './harden.js';
import { installAddon } from './hooks/addon.js';
import { installDns } from './hooks/dns.js';
import { installHttp, installHttp2, installUndici } from './hooks/http.js';
import { installInspector } from './hooks/inspector.js';
import { bindingLoader } from './hooks/lock.js';
import { installConnectOrigin, installTcp, installTlsSni } from './hooks/net.js';
import { installProcess } from './hooks/process.js';
import { installUdp } from './hooks/udp.js';
import { installUnix } from './hooks/unix.js';
import { installWorker } from './hooks/worker.js';
import type { FlushResult } from './records.js';

export type { CoverageManifest, ReloadResult, ShimStatus } from './core.js';
export { DENIED_CODE, type DeniedError } from './errors.js';
export { detectIdentity } from './identity.js';
export type { FlushResult } from './records.js';

export interface InstallOptions {
  /** Configuration source (default `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * Start the control link when the environment names a control API and no bundle file (default
   * true). A wrapper with its own bundle client passes false: no thread, no second fetch.
   */
  controlLink?: boolean;
  /** Where the shim's own log lines go (default: stderr, prefixed `bulkhead: `). */
  log?: (line: string) => void;
  /** The standalone preload to inject into Node children and workers (default: found next to this file). */
  registerPath?: string;
}

const ownFile = (() => {
  try {
    return fileURLToPath(import.meta.url);
  } catch {
    return undefined;
  }
})();

const SHIM_FILE =
  /[\\/](?:dist|bulkhead)[\\/](?:register|shim|aws|middy|azure|gcp|lambda-handler)\.(?:c|m)?js$/;
function isOwnFile(file: string): boolean {
  return file === ownFile || file.includes('/runtime-shims/') || SHIM_FILE.test(file);
}

function current(): ShimInstance | undefined {
  return (globalThis as Record<symbol, unknown>)[INSTANCE_KEY] as ShimInstance | undefined;
}

function defaultLog(env: Readonly<Record<string, string | undefined>>): (line: string) => void {
  const level = env.BULKHEAD_LOG?.trim().toLowerCase();
  if (level === 'silent') return () => undefined;
  return (line: string) => {
    try {
      process.stderr.write(`bulkhead: ${line}\n`);
    } catch {
      // No stderr: nothing to do.
    }
  };
}

/**
 * Install enforcement in this process (idempotent; a no-op returning the status when any copy of
 * the shim already did). Hooks go in first, under the fail mode; the bundle is loaded before the
 * first decision (or this call's status).
 */
export function install(options: InstallOptions = {}): ShimStatus {
  installCore(options);
  return (current() as ShimInstance).status();
}

/** The preload's entry: install without reading the bundle yet (it is read at first use). */
export function preload(): void {
  installCore({});
}

function installCore(options: InstallOptions): void {
  const existing = current();
  if (existing) return;
  const env = options.env ?? process.env;
  const log = options.log ?? defaultLog(env);
  const core = new ShimCore({
    env,
    log,
    registerPath: findRegisterPath(ownFile, options.registerPath ?? env.BULKHEAD_REGISTER_PATH),
    isOwnFile,
    post: postJson,
  });
  Object.defineProperty(globalThis, INSTANCE_KEY, {
    value: core,
    writable: false,
    configurable: false,
    enumerable: false,
  });
  try {
    core.hooks.intrinsics = hardenIntrinsics() > 0;
    core.hookChecks.intrinsics = intrinsicsIntact;
  } catch {
    core.hooks.intrinsics = false;
  }
  const binding = bindingLoader();
  core.hooks.errorCode = binding ? registerDeniedErrno(binding) : false;
  const installers: [string, () => void][] = [
    ['tcp', () => binding && installTcp(core, binding, () => installL7(core, log))],
    ['connectOrigin', () => installConnectOrigin(core, () => installL7(core, log))],
    ['tlsSni', () => binding && installTlsSni(core, binding)],
    ['dns', () => binding && installDns(core, binding)],
    ['udp', () => binding && installUdp(core, binding)],
    ['unix', () => binding && installUnix(core, binding)],
    ['childProcess', () => binding && installProcess(core, binding)],
    ['dlopen', () => installAddon(core)],
    ['inspector', () => binding && installInspector(core, binding)],
    ['workerThreads', () => installWorker(core)],
    ['undici', () => installUndici(core)],
  ];
  for (const [name, installer] of installers) {
    try {
      installer();
    } catch (error) {
      core.hooks[name] = false;
      log(`hook ${name} failed to install: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  // http and http2 are hooked at the first Socket#connect (no request can be sent before one): loading
  // them here would cost every cold start. coverage() reports them armed until then.
  core.hooks.http = true;
  core.hooks.http2 = true;
  core.start({ controlLink: options.controlLink !== false });
  const manifest = core.coverage();
  const live = Object.entries(manifest.hooks);
  const down = live.filter(([, ok]) => !ok).map(([name]) => name);
  const control = core.config.control;
  const bundle = core.config.bundleFile
    ? `bundle ${core.config.bundleFile} (verified at first use)`
    : control && core.bundleSource === 'control-api'
      ? `bundles from the control API ${control.url.origin} (verified before the first decision), fail mode ${core.config.failMode} until then`
      : `no bundle configured, fail mode ${core.config.failMode}`;
  log(
    `installed: ${bundle}; ` +
      `hooks ${live
        .filter(([, ok]) => ok)
        .map(([name]) => name)
        .join(',')}${down.length ? `; NOT live: ${down.join(',')}` : ''}; ` +
      `not governed: native addons (addons.allow), non-Node children (exec.allow)`,
  );
}

let httpInstalled = false;
let http2Installed = false;
/** How much of `process.moduleLoadList` was searched for http2 already. */
let modulesSeen = 0;

/**
 * L7 hooks, at the first connection rather than at start. http2's is installed once the process has
 * loaded `node:http2` (loading it costs ~5 ms, and most functions never do): a session connects
 * before it can send a request, so its first connection comes here, after the module loaded, and the
 * prototype hook is in place before the first `session.request`. Where the runtime does not list its
 * loaded modules, http2 is hooked at the first connection as before.
 */
function installL7(core: ShimCore, log: (line: string) => void): void {
  if (!httpInstalled) {
    httpInstalled = true;
    installL7Hook(core, log, 'http', installHttp);
  }
  if (http2Installed) return;
  const loaded = (process as { moduleLoadList?: unknown }).moduleLoadList;
  if (Array.isArray(loaded)) {
    let found = false;
    for (let i = modulesSeen; i < loaded.length && !found; i++) found = loaded[i] === 'NativeModule http2';
    modulesSeen = loaded.length;
    if (!found) return;
  }
  http2Installed = true;
  installL7Hook(core, log, 'http2', installHttp2);
}

function installL7Hook(
  core: ShimCore,
  log: (line: string) => void,
  name: 'http' | 'http2',
  installer: (core: ShimCore) => void,
): void {
  try {
    installer(core);
  } catch (error) {
    core.hooks[name] = false;
    log(`hook ${name} failed to install: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Re-read the bundle file (or verify `envelopeText`); a refused bundle leaves the last good one in force. */
export function reload(envelopeText?: string): ReloadResult {
  const instance = current();
  if (!instance) install();
  return (current() as ShimInstance).reload(envelopeText);
}

/** Reload only when the bundle file changed since it was last read: one stat when it did not. */
export function refresh(): ReloadResult {
  const instance = current();
  if (!instance) install();
  const shim = current() as ShimInstance;
  return typeof shim.refresh === 'function' ? shim.refresh() : shim.reload();
}

/** Deliver queued deny records; never rejects. */
/** A proof of this process's platform identity for the control API (BULKHEAD_ATTEST; docs/identity.md). */
export function proveIdentity(timeoutMs: number): Promise<AttestationProof> {
  const instance = current();
  if (!instance?.proveIdentity)
    return Promise.reject(new Error('the installed shim cannot prove its identity'));
  return instance.proveIdentity(timeoutMs);
}

/** Deny records go with `credentials` from now on; the first caller (a wrapper, at start) wins. */
export function useCredentials(credentials: ControlCredentials): boolean {
  return current()?.useCredentials?.(credentials) ?? false;
}

export function flush(): Promise<FlushResult> {
  const instance = current();
  return instance ? instance.flush() : Promise.resolve({ delivered: 0, pending: 0, dropped: 0 });
}

/** Which hooks are live, and what a JS shim cannot govern (with the setting that closes it). */
export function coverage(): CoverageManifest {
  const instance = current();
  return instance ? instance.coverage() : { hooks: {}, notGoverned: [] };
}

/** Run `fn` with every deny record it causes (through async continuations) tagged with `invocationId`. */
export function runInInvocation<T>(invocationId: string, fn: () => T): T {
  const instance = current();
  return instance ? instance.runInInvocation(invocationId, fn) : fn();
}

/** Single-concurrency runtimes: the invocation records are tagged with when no async context says. */
/** A wrapper with its own bundle client takes over fetching from the preload's control link. */
export function handOverFetching(): void {
  current()?.handOverFetching?.();
}

export function setInvocationId(invocationId: string | undefined): void {
  current()?.setInvocationId(invocationId);
}

export function status(): ShimStatus {
  const instance = current();
  if (instance) return instance.status();
  return {
    installed: false,
    revision: -1,
    mode: 'enforce',
    failMode: 'closed',
    failing: true,
    bundleFile: undefined,
    bundleSource: undefined,
    expiresAt: undefined,
    workload: {},
    dropped: 0,
    queued: 0,
    delivered: 0,
    sink: undefined,
    lastReloadError: undefined,
    lastDeliveryError: undefined,
  };
}

/** Deny records not yet delivered (copies), oldest first. */
export function pendingRecords(): DenyRecord[] {
  return current()?.pendingRecords() ?? [];
}

export const SHIM_API_VERSION = API_VERSION;
