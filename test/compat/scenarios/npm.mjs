// The npm CLI shipped with this Node, as a child: run plainly by the test, or with the shim in
// NODE_OPTIONS (COMPAT_NPM_NODE_OPTIONS). Isolated from the user's config; offline.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { runCases } from './lib.mjs';

// The npm that runs the tests, else where Node's own installers and Debian put it.
const npmCli = [
  process.env.COMPAT_NPM_CLI,
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
  '/usr/share/nodejs/npm/bin/npm-cli.js',
  '/usr/lib/node_modules/npm/bin/npm-cli.js',
].find((file) => file && existsSync(file));
if (!npmCli) throw new Error('npm CLI not found (set COMPAT_NPM_CLI)');
const home = mkdtempSync(join(tmpdir(), 'compat-npm-'));
const pkg = join(home, 'pkg');
mkdirSync(join(pkg, 'lib'), { recursive: true });
writeFileSync(
  join(pkg, 'package.json'),
  JSON.stringify({
    name: 'compat-fixture',
    version: '1.2.3',
    main: 'lib/index.js',
    dependencies: { 'compat-dep': '1.0.0' },
  }),
);
writeFileSync(join(pkg, 'lib', 'index.js'), 'module.exports = 42;\n');
writeFileSync(join(pkg, 'README.md'), '# compat fixture\n');
mkdirSync(join(pkg, 'node_modules', 'compat-dep'), { recursive: true });
writeFileSync(
  join(pkg, 'node_modules', 'compat-dep', 'package.json'),
  JSON.stringify({ name: 'compat-dep', version: '1.0.0' }),
);

const env = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: home,
  npm_config_cache: join(home, 'cache'),
  npm_config_userconfig: join(home, 'npmrc'),
  npm_config_globalconfig: join(home, 'global-npmrc'),
  npm_config_update_notifier: 'false',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_offline: 'true',
  npm_config_loglevel: 'error',
};
for (const [k, v] of Object.entries(process.env)) if (k.startsWith('BULKHEAD_')) env[k] = v;
if (process.env.COMPAT_NPM_NODE_OPTIONS) env.NODE_OPTIONS = process.env.COMPAT_NPM_NODE_OPTIONS;

function npm(args, parse = (s) => s.trim()) {
  const run = spawnSync(process.execPath, [npmCli, ...args], {
    cwd: pkg,
    env,
    encoding: 'utf8',
    timeout: 20_000,
  });
  let stdout;
  try {
    stdout = parse(run.stdout);
  } catch {
    stdout = run.stdout.trim().slice(0, 200);
  }
  const firstError = run.stderr
    .split('\n')
    .find((l) => /Error|ERR/.test(l))
    ?.replace(/\/[^\s:)]+/g, '<path>');
  return { status: run.status, stdout, ...(run.status === 0 ? {} : { stderr: firstError ?? null }) };
}

const json = (s) => JSON.parse(s);

try {
  await runCases({
    'npm --version': () => npm(['--version']),
    'npm config get registry': () => npm(['config', 'get', 'registry']),
    'npm pack --dry-run --json': () =>
      npm(['pack', '--dry-run', '--json'], (s) =>
        json(s).map((p) => ({
          name: p.name,
          version: p.version,
          filename: p.filename,
          files: p.files.map((f) => f.path).sort(),
          entryCount: p.entryCount,
        })),
      ),
    'npm ls --json': () => npm(['ls', '--json'], json),
    'npm run (script)': () => {
      writeFileSync(
        join(pkg, 'package.json'),
        JSON.stringify({
          name: 'compat-fixture',
          version: '1.2.3',
          main: 'lib/index.js',
          dependencies: { 'compat-dep': '1.0.0' },
          scripts: { hello: 'node -e "console.log(6*7)"' },
        }),
      );
      return npm(['run', '--silent', 'hello']);
    },
  });
} finally {
  rmSync(home, { recursive: true, force: true });
}
