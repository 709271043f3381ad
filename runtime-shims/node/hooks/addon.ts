// Native addons run machine code that no JavaScript hook can see: process.dlopen (under every
// `require('x.node')`) is governed by the policy's addon list.
import { realpathSync } from 'node:fs';
import { sep } from 'node:path';
import { deniedError } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { callOriginal, lockHook } from './lock.js';

/** Is `file` (resolved through symlinks) inside `dir` (already a real path)? */
function isInside(dir: string, file: string): boolean {
  try {
    return realpathSync(file).startsWith(dir + sep);
  } catch {
    return false;
  }
}

export function installAddon(core: HookPort): void {
  const dlopen = process.dlopen;
  if (typeof dlopen !== 'function') {
    core.hooks.dlopen = false;
    return;
  }
  const runtimeDir = core.config.runtimeDir;
  const hook = function dlopenHook(this: unknown, module: unknown, filename: unknown, ...rest: unknown[]) {
    const path = typeof filename === 'string' ? filename : String(filename);
    if (runtimeDir && isInside(runtimeDir, path))
      return callOriginal(dlopen as Function, this, [module, filename, ...rest]);
    const decision = core.decideAddon(path);
    if (decision.decision !== 'allow') {
      core.report('addon', decision, { command: path });
      if (decision.blocked) throw deniedError('dlopen', path, decision.rule, core.revision);
    }
    return callOriginal(dlopen as Function, this, [module, filename, ...rest]);
  };
  core.hooks.dlopen = lockHook(core, process, 'dlopen', hook, 'process.dlopen', 'dlopen');
}
