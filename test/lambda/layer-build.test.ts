// The layer: unpacked tree per docs/contracts.md §6, the deterministic zip (read back with an
// independent reader and with Python's zipfile), and `bulkhead layer build`.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIO } from '../../cli/command.js';
import { layerBuildCommand } from '../../cli/commands/layer-build.js';
import {
  assembleLayer,
  deterministicZip,
  packageRoot,
  type ZipEntry,
  zipLayerTree,
} from '../../layers/build.js';
import { PINNED_WHEELS, pinnedWheelFiles } from '../../layers/python-deps.js';
import { generateKeyPair, loadTrustedKeys } from '../../policy/keys.js';

const temps: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'layer-test-'));
  temps.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

/** A minimal, independent zip reader: central directory → entries with data and Unix mode. */
function readZip(zip: Buffer): { path: string; mode: number; data: Buffer; time: number; date: number }[] {
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = zip.readUInt16LE(end + 10);
  let offset = zip.readUInt32LE(end + 16);
  const entries = [];
  for (let i = 0; i < count; i++) {
    expect(zip.readUInt32LE(offset)).toBe(0x02014b50);
    const method = zip.readUInt16LE(offset + 10);
    const time = zip.readUInt16LE(offset + 12);
    const date = zip.readUInt16LE(offset + 14);
    const crc = zip.readUInt32LE(offset + 16);
    const compressed = zip.readUInt32LE(offset + 20);
    const nameLength = zip.readUInt16LE(offset + 28);
    const extraLength = zip.readUInt16LE(offset + 30);
    const commentLength = zip.readUInt16LE(offset + 32);
    const external = zip.readUInt32LE(offset + 38);
    const local = zip.readUInt32LE(offset + 42);
    const path = zip.toString('utf8', offset + 46, offset + 46 + nameLength);
    const dataStart = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const raw = zip.subarray(dataStart, dataStart + compressed);
    const data = method === 8 ? zlib.inflateRawSync(raw) : Buffer.from(raw);
    expect(zlib.crc32(data) >>> 0).toBe(crc);
    entries.push({ path, mode: (external >>> 16) & 0o777, data, time, date });
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

describe('deterministic zip', () => {
  it('round-trips any set of entries byte for byte, with modes, fixed times and sorted names (property)', () => {
    const entry = fc.record({
      path: fc.stringMatching(/^[a-z][a-z0-9._-]{0,12}(\/[a-z][a-z0-9._-]{0,12}){0,2}$/),
      data: fc.uint8Array({ maxLength: 2_000 }),
      mode: fc.constantFrom(0o644, 0o755, 0o600),
    });
    fc.assert(
      fc.property(fc.uniqueArray(entry, { selector: (e) => e.path, minLength: 1, maxLength: 12 }), (list) => {
        // A path that is also a folder of another path is not a valid tree.
        const paths = new Set(list.map((e) => e.path));
        fc.pre(!list.some((e) => [...paths].some((p) => p.startsWith(`${e.path}/`))));
        const zip = deterministicZip(list as ZipEntry[]);
        expect(deterministicZip([...list].reverse() as ZipEntry[]).equals(zip)).toBe(true);
        const files = readZip(zip).filter((e) => !e.path.endsWith('/'));
        expect(files.map((f) => f.path)).toEqual([...paths].sort());
        for (const file of files) {
          const original = list.find((e) => e.path === file.path);
          expect(file.data.equals(Buffer.from(original?.data ?? []))).toBe(true);
          expect(file.mode).toBe(original?.mode);
          expect([file.time, file.date]).toEqual([0, 0x21]);
        }
      }),
      { numRuns: 100 },
    );
  });

  it('refuses unsafe paths', () => {
    for (const path of ['../x', '/abs', 'a/../../b', ''])
      expect(() => deterministicZip([{ path, data: new Uint8Array(1), mode: 0o644 }])).toThrow(/unsafe/);
  });
});

describe('layer', () => {
  const distDir = join(packageRoot(), 'dist');
  let keys: ReturnType<typeof generateKeyPair>;
  beforeAll(() => {
    keys = generateKeyPair();
    expect(existsSync(join(distDir, 'extension.cjs')), 'run `npm run build` first').toBe(true);
  });

  it('assembles the §6 layout with exec bits and a baked configuration', () => {
    const dir = tempDir();
    const bundle = join(tempDir(), 'fallback.json');
    writeFileSync(bundle, '{"payloadType":"application/vnd.bulkhead.bundle+json"}');
    const files = assembleLayer(dir, {
      controlUrl: 'https://control.example/',
      trustedKeys: [keys.publicKeyPem],
      failMode: 'observe',
      fallbackBundle: bundle,
    });
    const byPath = new Map(files.map((f) => [f.path, f]));
    expect(byPath.get('bulkhead-wrapper')?.mode).toBe(0o755);
    expect(byPath.get('extensions/bulkhead')?.mode).toBe(0o755);
    expect(byPath.get('bulkhead/extension.cjs')?.mode).toBe(0o644);
    expect([...byPath.keys()].filter((p) => p.startsWith('extensions/'))).toEqual(['extensions/bulkhead']);
    const config = JSON.parse(readFileSync(join(dir, 'bulkhead/config.json'), 'utf8'));
    expect(config).toEqual({
      controlUrl: 'https://control.example',
      trustedKeys: [keys.publicKeyPem],
      failMode: 'observe',
      fallbackBundle: 'fallback-bundle.json',
    });
    // The wrapper hands the keys on as one env value the kernel can load.
    const token = readFileSync(join(dir, 'bulkhead/trusted-keys'), 'utf8');
    expect(loadTrustedKeys(token).map((k) => k.keyId)).toEqual([keys.keyId]);
    expect(readFileSync(join(dir, 'bulkhead/fail-mode'), 'utf8')).toBe('observe');
  });

  it('zips the same tree to the same sha256, and Python reads the exec bits', () => {
    const first = tempDir();
    const second = tempDir();
    assembleLayer(first, { trustedKeys: [keys.publicKeyPem] });
    assembleLayer(second, { trustedKeys: [keys.publicKeyPem] });
    const a = zipLayerTree(first);
    const b = zipLayerTree(second);
    expect(a.sha256).toBe(b.sha256);
    expect(a.sha256).toBe(createHash('sha256').update(a.zip).digest('hex'));
    const zipFile = join(tempDir(), 'layer.zip');
    writeFileSync(zipFile, a.zip);
    const python = spawnSync(
      'python3',
      [
        '-c',
        'import sys,zipfile,json\nz=zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint(json.dumps({i.filename: (i.external_attr>>16)&0o777 for i in z.infolist()}))',
        zipFile,
      ],
      { encoding: 'utf8' },
    );
    expect(python.status, python.stderr).toBe(0);
    const modes = JSON.parse(python.stdout) as Record<string, number>;
    expect(modes['bulkhead-wrapper']).toBe(0o755);
    expect(modes['extensions/bulkhead']).toBe(0o755);
    expect(modes['bulkhead/config.json']).toBe(0o644);
  });

  it('`bulkhead layer build --out` writes the zip and prints its size and sha256', async () => {
    const out = join(tempDir(), 'nested', 'layer.zip');
    const lines: string[] = [];
    const progress: string[] = [];
    const io: CliIO = { out: (t) => lines.push(t), err: (t) => progress.push(t) };
    const code = await layerBuildCommand.run(
      {
        values: { out, 'trusted-key': [keys.publicKeyPem], control: 'http://127.0.0.1:1' },
        positionals: [],
        rest: [],
      },
      io,
    );
    expect(code).toBe(0);
    const zip = readFileSync(out);
    const sha = createHash('sha256').update(zip).digest('hex');
    expect(lines.join('\n')).toBe(`${out}  ${statSync(out).size} bytes  sha256 ${sha}  x86_64`);
    expect(progress.some((p) => p.includes('bulkhead/extension.cjs'))).toBe(true);
    // The budget: Node and Python sides, cryptography for one architecture included.
    expect(zip.length).toBeLessThan(10 * 1024 * 1024);
    expect(progress.some((p) => p.includes('bulkhead/python-deps/cryptography/'))).toBe(true);
    await expect(
      layerBuildCommand.run({ values: { out, 'fail-mode': 'open' }, positionals: [], rest: [] }, io),
    ).rejects.toThrow(/fail-mode/);
  });

  it('exec wrapper: preload for the runtime only, hand-off variables, handler redirect, from any folder', () => {
    const dir = tempDir();
    assembleLayer(dir, { trustedKeys: [keys.publicKeyPem], failMode: 'observe' });
    // Stand-ins for the shim files, so the wrapper has something to point at.
    writeFileSync(join(dir, 'bulkhead/register.cjs'), '');
    writeFileSync(join(dir, 'bulkhead/lambda-handler.cjs'), '');
    const state = tempDir();
    const run = spawnSync(
      join(dir, 'bulkhead-wrapper'),
      [process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.env))'],
      {
        env: {
          PATH: process.env.PATH,
          BULKHEAD_STATE_DIR: state,
          _HANDLER: 'src/index.handler',
          NODE_OPTIONS: '--enable-source-maps',
        },
        encoding: 'utf8',
        cwd: tempDir(),
      },
    );
    expect(run.status, run.stderr).toBe(0);
    const env = JSON.parse(run.stdout) as Record<string, string>;
    expect(env.NODE_OPTIONS).toBe(`--enable-source-maps --require "${dir}/bulkhead/register.cjs"`);
    // The files the extension and the shim exchange (docs/contracts.md §6); no local endpoint.
    expect(env.BULKHEAD_EXTENSION_URL).toBeUndefined();
    expect(env.BULKHEAD_EXTENSION_STATUS).toBe(join(state, 'extension-status.json'));
    expect(env.BULKHEAD_READY_FILE).toBe(join(state, 'invocation-ready'));
    expect(env.BULKHEAD_DONE_FILE).toBe(join(state, 'invocation-done'));
    expect(env.BULKHEAD_BUNDLE_FILE).toBe(join(state, 'bundle.json'));
    expect(env.BULKHEAD_REPORT).toBe(join(state, 'spool.ndjson'));
    expect(env.BULKHEAD_FAIL_MODE).toBe('observe');
    expect(loadTrustedKeys(env.BULKHEAD_TRUSTED_KEYS ?? '').map((k) => k.keyId)).toEqual([keys.keyId]);
    expect(env.BULKHEAD_ORIGINAL_HANDLER).toBe('src/index.handler');
    expect(env._HANDLER).toBe(`${dir}/bulkhead/lambda-handler.handler`);
  });
});

describe('the Python side of the layer', () => {
  it('carries the shim, the Python extension and the pinned wheels of the architecture asked for', () => {
    const x86 = tempDir();
    const arm = tempDir();
    const x86Files = assembleLayer(x86, { arch: 'x86_64' }).map((f) => f.path);
    const armFiles = assembleLayer(arm, { arch: 'arm64' }).map((f) => f.path);
    for (const files of [x86Files, armFiles]) {
      expect(files).toContain('bulkhead/python/sitecustomize.py');
      expect(files).toContain('bulkhead/python/bulkhead_shim/lambda_extension/main.py');
      expect(files.some((f) => f.startsWith('bulkhead/python-deps/cryptography/'))).toBe(true);
      expect(files.some((f) => /__pycache__|\.pyc$|egg-info/.test(f))).toBe(false);
    }
    expect(x86Files.some((f) => /_cffi_backend\.cpython-312-x86_64-linux-gnu\.so$/.test(f))).toBe(true);
    expect(x86Files.some((f) => /_cffi_backend\.cpython-313-x86_64-linux-gnu\.so$/.test(f))).toBe(true);
    expect(armFiles.some((f) => /_cffi_backend\.cpython-313-aarch64-linux-gnu\.so$/.test(f))).toBe(true);
    expect(JSON.parse(readFileSync(join(arm, 'bulkhead/layer.json'), 'utf8'))).toMatchObject({
      architecture: 'arm64',
      runtimes: ['nodejs20.x', 'nodejs22.x', 'nodejs24.x', 'python3.12', 'python3.13'],
    });
    // Both zipped layers stay inside the 10 MB budget.
    for (const dir of [x86, arm]) expect(zipLayerTree(dir).zip.length).toBeLessThan(10 * 1024 * 1024);
  }, 300_000);

  it('never unpacks a wheel whose digest is not the pinned one', () => {
    const wheels = tempDir();
    const pinned = PINNED_WHEELS.x86_64[0];
    if (!pinned) throw new Error('no pinned wheel');
    writeFileSync(join(wheels, pinned.file), 'not the wheel');
    expect(() =>
      pinnedWheelFiles('x86_64', { wheelsDir: wheels, cacheDir: tempDir(), python: '/bin/false' }),
    ).toThrow(/cannot fetch cryptography-.*--python-wheels DIR, or build with --no-python-deps/);
  });
});
