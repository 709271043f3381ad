import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HandlerLoadError,
  importHandlerModule,
  locateHandlerModule,
  parseHandlerString,
  requireEsmIfSupported,
  requireHandlerModule,
  resolveHandlerExport,
} from '../../runtime-shims/node/aws/handler-loader.js';

let root: string;

function write(relative: string, text: string): void {
  const file = join(root, relative);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text);
}

/** Load a handler string the way lambda-handler does, always awaiting (for the test's convenience). */
async function load(handlerString: string) {
  const spec = parseHandlerString(handlerString);
  const located = locateHandlerModule(root, spec);
  const loaded =
    located === undefined || located.format === 'commonjs'
      ? requireHandlerModule(root, spec, located)
      : await importHandlerModule(located);
  return { located, handler: resolveHandlerExport(loaded, spec, handlerString) };
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'bulkhead-loader-'));
  write('index.js', "exports.handler = async () => 'cjs-js';");
  write('plain.cjs', "module.exports.handler = async () => 'cjs';");
  write('esm.mjs', "export const handler = async () => 'mjs';");
  write('src/api/deep.js', "exports.routes = { get: { main: async () => 'nested' } };");
  write('esmpkg/package.json', '{"type":"module"}');
  write('esmpkg/lib/app.js', "export async function handler() { return 'type-module-js'; }");
  write('defaults.mjs', "export default { handler: async () => 'default-export' };");
  write('noext', "exports.handler = async () => 'no-extension';");
  write('broken.js', 'exports.handler = async () => {');
  write('notfn.js', 'exports.handler = 42;');
  write('tla.mjs', "await Promise.resolve(); export const handler = async () => 'top-level-await';");
  write('node_modules/shared-handlers/index.js', "exports.handler = async () => 'bare-module';");
  write('node_modules/shared-handlers/package.json', '{"name":"shared-handlers","main":"index.js"}');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('handler loading like the runtime interface client', () => {
  it.each([
    ['index.handler', 'cjs-js', 'commonjs'],
    ['plain.handler', 'cjs', 'commonjs'],
    ['esm.handler', 'mjs', 'module'],
    ['src/api/deep.routes.get.main', 'nested', 'commonjs'],
    ['esmpkg/lib/app.handler', 'type-module-js', 'module'],
    ['defaults.handler', 'default-export', 'module'],
    ['noext.handler', 'no-extension', 'commonjs'],
    ['tla.handler', 'top-level-await', 'module'],
  ])('%s', async (handlerString, expected, format) => {
    const { located, handler } = await load(handlerString);
    expect(located?.format).toBe(format);
    await expect(handler()).resolves.toBe(expected);
  });

  it('resolves a bare module name from the task root', async () => {
    const { located, handler } = await load('shared-handlers.handler');
    expect(located).toBeUndefined();
    await expect(handler()).resolves.toBe('bare-module');
  });

  it('accepts an absolute module root', async () => {
    const { handler } = await load(`${root}/src/api/deep.routes.get.main`);
    await expect(handler()).resolves.toBe('nested');
  });

  it.each([
    ['../escape.handler', 'Runtime.MalformedHandlerName'],
    ['nodot', 'Runtime.MalformedHandlerName'],
    ['missing.handler', 'Runtime.ImportModuleError'],
    ['index.nothere', 'Runtime.HandlerNotFound'],
    ['notfn.handler', 'Runtime.HandlerNotFound'],
    ['broken.handler', 'Runtime.UserCodeSyntaxError'],
  ])('%s fails as %s', async (handlerString, name) => {
    const failure = await load(handlerString).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(HandlerLoadError);
    expect((failure as Error).name).toBe(name);
  });

  it('loads ES modules synchronously where Node has require(esm), except with top-level await', () => {
    expect((process.features as { require_module?: boolean }).require_module).toBe(true);
    const esm = locateHandlerModule(root, parseHandlerString('esm.handler'));
    expect(esm?.format).toBe('module');
    const loaded = requireEsmIfSupported(esm as NonNullable<typeof esm>);
    expect(typeof (loaded?.module as { handler?: unknown } | undefined)?.handler).toBe('function');
    const tla = locateHandlerModule(root, parseHandlerString('tla.handler'));
    expect(requireEsmIfSupported(tla as NonNullable<typeof tla>)).toBeUndefined();
    write('broken.mjs', 'export const handler = async () => {');
    const broken = locateHandlerModule(root, parseHandlerString('broken.handler'));
    // broken.js exists too and comes first; point at the .mjs directly.
    expect(() =>
      requireEsmIfSupported({ file: `${broken?.file.replace(/\.js$/, '')}.mjs`, format: 'module' }),
    ).toThrow(expect.objectContaining({ name: 'Runtime.UserCodeSyntaxError' }));
  });

  it('parseHandlerString never throws anything but HandlerLoadError', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        try {
          const spec = parseHandlerString(text);
          expect(spec.moduleName.length).toBeGreaterThan(0);
          expect(spec.handlerName.length).toBeGreaterThan(0);
          expect(text.includes('..')).toBe(false);
        } catch (error) {
          expect(error).toBeInstanceOf(HandlerLoadError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
