// Builds dist/: ESM and CommonJS for every public entry point, plus the fully bundled
// artefacts that ship in the Lambda layer (preload and extension need no node_modules).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

// name -> source. `dual`: ESM + CJS with npm packages left external (library use).
// `standalone`: one self-contained CJS file (goes into the layer / preloads).
const entries = [
  { name: 'index', src: 'policy/index.ts', kind: 'dual' },
  { name: 'shim', src: 'runtime-shims/node/index.ts', kind: 'dual' },
  { name: 'aws', src: 'runtime-shims/node/aws/index.ts', kind: 'dual' },
  { name: 'middy', src: 'runtime-shims/node/middy/index.ts', kind: 'dual' },
  { name: 'azure', src: 'runtime-shims/node/azure/index.ts', kind: 'dual' },
  { name: 'gcp', src: 'runtime-shims/node/gcp/index.ts', kind: 'dual' },
  { name: 'register', src: 'runtime-shims/node/register.ts', kind: 'standalone' },
  { name: 'register', src: 'runtime-shims/node/register-esm.ts', kind: 'esm-preload' },
  { name: 'extension', src: 'extensions/main.ts', kind: 'standalone' },
  // The preload's control link thread (bundle fetch and long-poll, exit delivery), loaded by path beside register.cjs.
  { name: 'control-link', src: 'runtime-shims/node/link/link-thread.ts', kind: 'standalone' },
  // The wrappers' proof thread (a GCP or Azure identity proof made without the hooks), beside register.cjs.
  { name: 'proof-thread', src: 'runtime-shims/node/link/proof-thread.ts', kind: 'standalone' },
  {
    name: 'lambda-handler',
    src: 'runtime-shims/node/aws/lambda-handler.ts',
    kind: 'standalone',
    // The core comes from register.cjs beside it (already loaded by the preload: a module-cache hit).
    plugins: [coreFromRegister()],
  },
  {
    // The SQLite store's deny writer thread, loaded by path beside cli.mjs and demo.mjs.
    // better-sqlite3 is native: external (the thread requires it by the path the store resolved).
    name: 'sqlite-deny-writer',
    src: 'control/store/sqlite-deny-writer.ts',
    kind: 'standalone',
    plugins: [
      {
        name: 'external-sqlite',
        setup: (b) => b.onResolve({ filter: /^better-sqlite3$/ }, (a) => ({ path: a.path, external: true })),
      },
    ],
  },
  // The control API's policy thread (parse, check, diff, sign), loaded by path beside cli.mjs and demo.mjs.
  { name: 'policy-thread', src: 'control/policy-thread.ts', kind: 'standalone' },
  { name: 'cli', src: 'cli/main.ts', kind: 'cli' },
  { name: 'demo', src: 'scripts/demo.ts', kind: 'cli' },
  { name: 'azure-local', src: 'runtime-shims/node/azure/local-host.ts', kind: 'cli' },
];

/** Resolves the shim core's entry (runtime-shims/node/index.ts) to `./register.cjs`, left external. */
function coreFromRegister() {
  const core = join(root, 'runtime-shims', 'node', 'index.ts');
  return {
    name: 'core-from-register',
    setup(pluginBuild) {
      pluginBuild.onResolve({ filter: /\/index\.js$/ }, (args) => {
        const target = join(args.resolveDir, args.path.replace(/\.js$/, '.ts'));
        return target === core ? { path: './register.cjs', external: true } : undefined;
      });
    },
  };
}

// dist/ is overwritten, not wiped: tests running elsewhere may be reading it.
mkdirSync(dist, { recursive: true });

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: false,
  logLevel: 'warning',
  legalComments: 'none',
};
const cjsImportMetaShim = { 'import.meta.url': '__bulkhead_import_meta_url' };
const cjsBanner = {
  js: "const __bulkhead_import_meta_url = require('node:url').pathToFileURL(__filename).href;",
};

const jobs = [];
for (const entry of entries) {
  const src = join(root, entry.src);
  if (!existsSync(src)) continue;
  if (entry.kind === 'dual') {
    jobs.push(
      build({
        ...common,
        entryPoints: [src],
        outfile: join(dist, `${entry.name}.mjs`),
        format: 'esm',
        packages: 'external',
      }),
    );
    jobs.push(
      build({
        ...common,
        entryPoints: [src],
        outfile: join(dist, `${entry.name}.cjs`),
        format: 'cjs',
        packages: 'external',
        define: cjsImportMetaShim,
        banner: cjsBanner,
      }),
    );
  } else if (entry.kind === 'standalone') {
    jobs.push(
      build({
        ...common,
        entryPoints: [src],
        outfile: join(dist, `${entry.name}.cjs`),
        format: 'cjs',
        minifySyntax: true,
        define: cjsImportMetaShim,
        banner: cjsBanner,
        plugins: entry.plugins ?? [],
      }),
    );
  } else if (entry.kind === 'esm-preload') {
    jobs.push(
      build({
        ...common,
        entryPoints: [src],
        outfile: join(dist, `${entry.name}.mjs`),
        format: 'esm',
        packages: 'external',
      }),
    );
  } else if (entry.kind === 'cli') {
    // Split so that a command's heavy dependencies (Fastify, the AWS SDK, the YAML parser)
    // load only when that command runs: `bulkhead policy check` should not start a web server's worth of code.
    const outfile = join(dist, `${entry.name}.mjs`);
    jobs.push(
      build({
        ...common,
        entryPoints: { [entry.name]: src },
        outdir: dist,
        entryNames: '[name]',
        chunkNames: 'chunks/[name]-[hash]',
        outExtension: { '.js': '.mjs' },
        splitting: true,
        format: 'esm',
        packages: 'external',
        banner: { js: '#!/usr/bin/env node' },
      }).then(() => chmodSync(outfile, 0o755)),
    );
  }
}
await Promise.all(jobs);

// The preloads and the extension live in every governed process: V8 keeps a script's source for the
// process's life, as one byte per character only if every character fits in Latin-1. esbuild escapes
// non-ASCII in code (charset ascii, its default) but leaves comments as written, and one arrow in a
// comment doubled register.cjs's resident source (180 KB more heap; V8 then lets the old generation
// grow by a multiple of that before collecting). Comments only, so any spelling will do.
const WIDE_IN_COMMENTS = {
  '≥': '>=',
  '≤': '<=',
  '→': '->',
  '←': '<-',
  '—': '-',
  '–': '-',
  '…': '...',
  '’': "'",
  '‘': "'",
  '“': '"',
  '”': '"',
};
const inProcessOutputs = entries.flatMap((e) =>
  e.kind === 'dual'
    ? [`${e.name}.cjs`, `${e.name}.mjs`]
    : e.kind === 'standalone'
      ? [`${e.name}.cjs`]
      : e.kind === 'esm-preload'
        ? [`${e.name}.mjs`]
        : [],
);
for (const name of inProcessOutputs) {
  const file = join(dist, name);
  const text = readFileSync(file, 'utf8');
  const narrow = text.replace(
    /[\u0100-\u{10ffff}]/gu,
    (c) => WIDE_IN_COMMENTS[c] ?? `U+${c.codePointAt(0).toString(16)}`,
  );
  if (narrow !== text) writeFileSync(file, narrow);
}

if (process.env.BULKHEAD_SKIP_DTS !== '1' && existsSync(join(root, 'tsconfig.build.json'))) {
  const tsc = spawnSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  if (tsc.status !== 0)
    console.warn('build: declaration emit reported errors (see above); npm run typecheck is the gate');
}
