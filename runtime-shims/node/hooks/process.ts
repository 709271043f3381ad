// Child processes through the process_wrap (spawn, exec, execFile, fork) and spawn_sync bindings.
// Executables are decided by policy; every child gets the shim's configuration back in its
// environment, and a Node child gets the preload on its command line and in NODE_OPTIONS, so
// stripping NODE_OPTIONS, execArgv or the environment does not shed enforcement.
import { accessSync, constants as fsConstants, realpathSync } from 'node:fs';
import { basename, delimiter, isAbsolute, join, resolve } from 'node:path';
import { isControlledVariable } from '../config.js';
import { DENIED_ERRNO } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { type BindingLoader, callOriginal, lockHook } from './lock.js';

interface SpawnOptions {
  file?: unknown;
  args?: unknown;
  envPairs?: unknown;
  cwd?: unknown;
}

const NODE_NAME = /^node(js)?(\d+)?(\.exe)?$/i;

function envValue(pairs: readonly string[], name: string): string | undefined {
  const prefix = `${name}=`;
  for (let i = pairs.length - 1; i >= 0; i--) {
    const pair = pairs[i];
    if (pair?.startsWith(prefix)) return pair.slice(prefix.length);
  }
  return undefined;
}

function resolveExecutable(
  file: string,
  pathList: string | undefined,
  cwd: string | undefined,
): string | undefined {
  const candidates = file.includes('/')
    ? [isAbsolute(file) ? file : resolve(cwd ?? process.cwd(), file)]
    : (pathList ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((dir) => join(dir, file));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      return realpathSync(candidate);
    } catch {
      // Not this one.
    }
  }
  return undefined;
}

/** `--require "<path>"` for NODE_OPTIONS (quoted: the path may hold spaces). */
function nodeOptionsWith(existing: string | undefined, registerPath: string): string {
  const flag = `--require ${JSON.stringify(registerPath)}`;
  return existing ? `${flag} ${existing}` : flag;
}

/**
 * Decide an exec and rewrite its options in place for enforcement. Returns the deny decision to
 * act on, or undefined when it may start.
 */
export function governSpawn(core: HookPort, options: SpawnOptions): { blocked: boolean } | undefined {
  if (typeof options !== 'object' || options === null || typeof options.file !== 'string') return undefined;
  const file = options.file;
  const env = Array.isArray(options.envPairs) ? (options.envPairs as string[]) : [];
  const resolved = resolveExecutable(
    file,
    envValue(env, 'PATH') ?? process.env.PATH,
    typeof options.cwd === 'string' ? options.cwd : undefined,
  );
  const isNode = resolved === core.execRealPath || (resolved === undefined && NODE_NAME.test(basename(file)));
  const registerPath = core.registerPath;
  let decision = core.decideExec(isNode ? process.execPath : (resolved ?? file));
  if (isNode && !registerPath && decision.decision === 'allow')
    decision = { decision: 'deny', mode: decision.mode, blocked: true, rule: 'exec:node-without-preload' };
  if (decision.decision !== 'allow') {
    core.report('exec', decision, { command: resolved ?? file });
    if (decision.blocked) return { blocked: true };
  }
  // The child enforces the same policy: our configuration wins over whatever the caller passed.
  const propagate = core.config.propagate;
  const kept = env.filter((pair) => {
    const name = pair.slice(0, pair.indexOf('='));
    if (name === 'NODE_OPTIONS') return !registerPath;
    return !(isControlledVariable(name) || Object.hasOwn(propagate, name));
  });
  for (const [name, value] of Object.entries(propagate)) kept.push(`${name}=${value}`);
  if (registerPath) {
    kept.push(`NODE_OPTIONS=${nodeOptionsWith(envValue(env, 'NODE_OPTIONS'), registerPath)}`);
    if (isNode && Array.isArray(options.args) && options.args.length > 0) {
      const args = options.args as string[];
      options.args = [args[0], '--require', registerPath, ...args.slice(1)];
    }
  }
  options.envPairs = kept;
  return undefined;
}

export function installProcess(core: HookPort, binding: BindingLoader): void {
  const processWrap = binding('process_wrap') as
    | { Process?: { prototype: Record<string, Function> } }
    | undefined;
  const proto = processWrap?.Process?.prototype;
  const spawn = proto?.spawn;
  if (proto && typeof spawn === 'function') {
    const hook = function spawnHook(this: unknown, options: SpawnOptions) {
      const verdict = governSpawn(core, options);
      if (verdict?.blocked) return DENIED_ERRNO;
      return callOriginal(spawn, this, [options]);
    };
    core.hooks.childProcess = lockHook(
      core,
      proto,
      'spawn',
      hook,
      'Process.prototype.spawn',
      'childProcess',
      {
        layered: true,
      },
    );
  } else core.hooks.childProcess = false;

  const spawnSync = binding('spawn_sync') as { spawn?: Function } | undefined;
  const syncSpawn = spawnSync?.spawn;
  if (spawnSync && typeof syncSpawn === 'function') {
    const hook = function spawnSyncHook(this: unknown, options: SpawnOptions) {
      const verdict = governSpawn(core, options);
      if (verdict?.blocked) return { error: DENIED_ERRNO, status: null, signal: null, output: null, pid: 0 };
      return callOriginal(syncSpawn, this, [options]);
    };
    core.hooks.spawnSync = lockHook(core, spawnSync, 'spawn', hook, 'spawn_sync.spawn', 'spawnSync', {
      layered: true,
    });
  } else core.hooks.spawnSync = false;
}
