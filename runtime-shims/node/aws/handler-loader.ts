// Finds and loads a Lambda handler the way the Node runtime interface client does
// (aws-lambda-ric UserFunctionLoader / module-loader / handler-resolver): `path/module.fn[.nested]`
// relative to LAMBDA_TASK_ROOT, no `..`, extension order '', .js, .mjs, .cjs, then a bare module
// resolved from the task root. CommonJS files load synchronously with require (so the handler's
// streaming flag is known when the runtime inspects our export); ES modules load with import().
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyHandler } from './with-bulkhead.js';

/** Error names the runtime uses, so logs and error types read the same as without Bulkhead. */
export type HandlerErrorName =
  | 'Runtime.MalformedHandlerName'
  | 'Runtime.ImportModuleError'
  | 'Runtime.HandlerNotFound'
  | 'Runtime.UserCodeSyntaxError';

export class HandlerLoadError extends Error {
  constructor(
    override readonly name: HandlerErrorName,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface HandlerSpec {
  /** Directory part of the handler string, relative to the task root (or absolute). */
  moduleRoot: string;
  moduleName: string;
  /** Export path, dot-separated for nested exports. */
  handlerName: string;
}

const FUNCTION_EXPRESSION = /^([^.]*)\.(.*)$/;

export function parseHandlerString(handlerString: string): HandlerSpec {
  if (handlerString.includes('..'))
    throw new HandlerLoadError(
      'Runtime.MalformedHandlerName',
      `'${handlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  const file = basename(handlerString);
  const moduleRoot = handlerString.slice(0, handlerString.length - file.length).replace(/\/$/, '');
  const match = FUNCTION_EXPRESSION.exec(file);
  if (!match?.[1] || !match[2])
    throw new HandlerLoadError(
      'Runtime.MalformedHandlerName',
      `Bad handler '${handlerString}' (expected module.function)`,
    );
  return { moduleRoot, moduleName: match[1], handlerName: match[2] };
}

export type ModuleFormat = 'commonjs' | 'module';

export interface LocatedModule {
  file: string;
  format: ModuleFormat;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** `type` of the nearest package.json walking up from `dir`, stopping at node_modules (as the RIC does). */
export function packageScopeIsModule(dir: string): boolean {
  let current = dir;
  for (;;) {
    const manifest = join(current, 'package.json');
    if (existsSync(manifest)) {
      try {
        return (JSON.parse(readFileSync(manifest, 'utf8')) as { type?: unknown }).type === 'module';
      } catch {
        return false;
      }
    }
    const parent = dirname(current);
    if (parent === current || basename(current) === 'node_modules') return false;
    current = parent;
  }
}

/** Locate the handler module file; undefined when only a bare module name resolution can find it. */
export function locateHandlerModule(appRoot: string, spec: HandlerSpec): LocatedModule | undefined {
  const base = resolve(appRoot, spec.moduleRoot, spec.moduleName);
  if (isFile(base)) return { file: base, format: 'commonjs' };
  if (isFile(`${base}.js`))
    return { file: `${base}.js`, format: packageScopeIsModule(dirname(base)) ? 'module' : 'commonjs' };
  if (isFile(`${base}.mjs`)) return { file: `${base}.mjs`, format: 'module' };
  if (isFile(`${base}.cjs`)) return { file: `${base}.cjs`, format: 'commonjs' };
  return undefined;
}

function wrapLoadError(error: unknown, what: string): HandlerLoadError {
  if (error instanceof HandlerLoadError) return error;
  if (error instanceof SyntaxError)
    return new HandlerLoadError('Runtime.UserCodeSyntaxError', `${error.name}: ${error.message}`, {
      cause: error,
    });
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND')
    return new HandlerLoadError('Runtime.ImportModuleError', `Error: Cannot find module '${what}'`, {
      cause: error,
    });
  throw error;
}

/** Load a module with require; a bare name is resolved from the task root and the handler's folder. */
export function requireHandlerModule(
  appRoot: string,
  spec: HandlerSpec,
  located: LocatedModule | undefined,
): unknown {
  const requireFromRoot = createRequire(join(resolve(appRoot), 'noop.js'));
  try {
    if (located) return requireFromRoot(located.file);
    const resolved = requireFromRoot.resolve(spec.moduleName, {
      paths: [resolve(appRoot), resolve(appRoot, spec.moduleRoot)],
    });
    return requireFromRoot(resolved);
  } catch (error) {
    throw wrapLoadError(error, spec.moduleName);
  }
}

/**
 * Load an ES module synchronously where Node supports require(esm) (20.19+, 22.12+; off when the
 * runtime disables it). Same module instance as import() would give. `undefined` when it cannot be done
 * synchronously (require(esm) unavailable, top-level await): the caller falls back to import().
 */
export function requireEsmIfSupported(located: LocatedModule): { module: unknown } | undefined {
  if ((process.features as { require_module?: boolean }).require_module !== true) return undefined;
  try {
    return { module: createRequire(located.file)(located.file) };
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === 'ERR_REQUIRE_ASYNC_MODULE' || code === 'ERR_REQUIRE_ESM') return undefined;
    throw wrapLoadError(error, located.file);
  }
}

export async function importHandlerModule(located: LocatedModule): Promise<unknown> {
  try {
    return await import(pathToFileURL(located.file).href);
  } catch (error) {
    throw wrapLoadError(error, located.file);
  }
}

function findIn(handlerName: string, container: unknown): unknown {
  return handlerName
    .split('.')
    .reduce<unknown>(
      (nested, key) =>
        nested !== null && (typeof nested === 'object' || typeof nested === 'function')
          ? (nested as Record<string, unknown>)[key]
          : undefined,
      container,
    );
}

export function resolveHandlerExport(loaded: unknown, spec: HandlerSpec, handlerString: string): AnyHandler {
  let handler = findIn(spec.handlerName, loaded);
  if (handler === undefined && loaded !== null && typeof loaded === 'object' && 'default' in loaded)
    handler = findIn(spec.handlerName, (loaded as { default: unknown }).default);
  if (handler === undefined)
    throw new HandlerLoadError('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  if (typeof handler !== 'function')
    throw new HandlerLoadError('Runtime.HandlerNotFound', `${handlerString} is not a function`);
  return handler as AnyHandler;
}
