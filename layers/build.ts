// The Lambda layer: an unpacked tree (docs/contracts.md §6) and a deterministic zip of it.
// Same input → same bytes → same sha256: entries sorted, fixed timestamps, fixed attributes,
// no extra fields. Exec bits travel in the Unix external attributes so Lambda can start
// /opt/extensions/bulkhead and /opt/bulkhead-wrapper.
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import zlib from 'node:zlib';
import { loadTrustedKeys } from '../policy/keys.js';
import { packageRoot } from './package-root.js';
import { LAYER_ARCHES, type LayerArch, PYTHON_RUNTIMES, unpackPythonDeps } from './python-deps.js';

export { packageRoot };

/** Lambda runtimes the layer governs (`bulkhead attach` refuses the others). */
export const NODE_RUNTIMES = ['nodejs20.x', 'nodejs22.x', 'nodejs24.x'] as const;
export const LAYER_RUNTIMES: readonly string[] = [...NODE_RUNTIMES, ...PYTHON_RUNTIMES];

export interface LayerConfigInput {
  controlUrl?: string | undefined;
  /** Public key files or inline PEM/base64 (as `loadTrustedKeys` accepts). */
  trustedKeys?: string[] | undefined;
  failMode?: 'closed' | 'observe' | undefined;
  /** A signed envelope file baked into the layer for cold starts without the control API. */
  fallbackBundle?: string | undefined;
  fetchTimeoutMs?: number | undefined;
}

export interface AssembleOptions extends LayerConfigInput {
  /** Built artefacts (`dist/`); default the package's own. */
  distDir?: string | undefined;
  /** Layer scripts (`layers/files`); default the package's own. */
  filesDir?: string | undefined;
  /** The Python shim's sources (`runtime-shims/python/src`); default the package's own. */
  pythonSrcDir?: string | undefined;
  /** Architecture of the native Python wheels. Default x86_64. */
  arch?: LayerArch | undefined;
  /**
   * Vendor `cryptography` (+ `cffi`) for Python functions (default true). Without it a Python function
   * must ship `cryptography` itself, or its shim fails closed.
   */
  pythonDeps?: boolean | undefined;
  /** Folder of the pinned wheels (an offline build); else the cache, else pip download. */
  pythonWheelsDir?: string | undefined;
}

export interface AssembledFile {
  /** Path inside the layer, `/`-separated. */
  path: string;
  mode: number;
  size: number;
}

/** Base64 of the SPKI DER: one token per key, safe for a comma-separated env value. */
function keyToken(publicKeyPem: string): string {
  return publicKeyPem
    .replace(/-----[A-Z ]+-----/g, '')
    .replace(/\s+/g, '')
    .trim();
}

/**
 * Writes the unpacked layer into `dir` (created if needed) and returns its files. `dir` plays
 * the role of /opt: point the emulator's `optDir` at it.
 */
export function assembleLayer(dir: string, options: AssembleOptions = {}): AssembledFile[] {
  const root = options.distDir && options.filesDir ? '' : packageRoot();
  const distDir = options.distDir ?? join(root, 'dist');
  const filesDir = options.filesDir ?? join(root, 'layers', 'files');
  const pythonSrcDir = options.pythonSrcDir ?? join(root || packageRoot(), 'runtime-shims', 'python', 'src');
  const arch = options.arch ?? 'x86_64';
  if (!LAYER_ARCHES.includes(arch))
    throw new Error(`--arch must be x86_64 or arm64, got ${JSON.stringify(arch)}`);
  const extension = join(distDir, 'extension.cjs');
  if (!existsSync(extension)) throw new Error(`${extension} is missing: run \`npm run build\` first`);

  const put = (source: string, target: string, mode: number) => {
    const destination = join(dir, target);
    mkdirSync(dirname(destination), { recursive: true });
    copyFileSync(source, destination);
    chmodSync(destination, mode);
  };
  const write = (target: string, content: string, mode = 0o644) => {
    const destination = join(dir, target);
    mkdirSync(dirname(destination), { recursive: true });
    writeFileSync(destination, content);
    chmodSync(destination, mode);
  };

  put(join(filesDir, 'bulkhead-wrapper'), 'bulkhead-wrapper', 0o755);
  put(join(filesDir, 'extensions', 'bulkhead'), 'extensions/bulkhead', 0o755);
  put(extension, 'bulkhead/extension.cjs', 0o644);
  for (const optional of ['register.cjs', 'register.mjs', 'lambda-handler.cjs']) {
    const source = join(distDir, optional);
    if (existsSync(source)) put(source, `bulkhead/${optional}`, 0o644);
  }

  // Python functions: the shim's sources (put first on PYTHONPATH by the exec wrapper; the extension
  // for Python runtimes is in the same package) and the vendored verifier for this architecture.
  copyTree(pythonSrcDir, join(dir, 'bulkhead', 'python'));
  const pythonDeps = options.pythonDeps ?? true;
  if (pythonDeps)
    unpackPythonDeps(join(dir, 'bulkhead', 'python-deps'), arch, { wheelsDir: options.pythonWheelsDir });
  write(
    'bulkhead/layer.json',
    `${JSON.stringify({ architecture: arch, runtimes: LAYER_RUNTIMES, pythonDeps }, null, 2)}\n`,
  );

  const config: Record<string, unknown> = {};
  if (options.controlUrl) {
    const url = new URL(options.controlUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new Error('--control must be an http(s) URL');
    if (url.username || url.password) throw new Error('--control must not carry credentials');
    config.controlUrl = url.href.replace(/\/$/, '');
  }
  if (options.trustedKeys && options.trustedKeys.length > 0) {
    const keys = loadTrustedKeys(options.trustedKeys);
    const pems = keys.map((k) => k.key.export({ type: 'spki', format: 'pem' }).toString());
    config.trustedKeys = pems;
    // The exec wrapper hands these to the shim without parsing JSON.
    write('bulkhead/trusted-keys', pems.map(keyToken).join(','));
  }
  if (options.failMode) {
    if (options.failMode !== 'closed' && options.failMode !== 'observe')
      throw new Error('--fail-mode must be closed or observe');
    config.failMode = options.failMode;
    write('bulkhead/fail-mode', options.failMode);
  }
  if (options.fallbackBundle) {
    put(options.fallbackBundle, 'bulkhead/fallback-bundle.json', 0o644);
    config.fallbackBundle = 'fallback-bundle.json';
  }
  if (options.fetchTimeoutMs !== undefined) config.fetchTimeoutMs = options.fetchTimeoutMs;
  write('bulkhead/config.json', `${JSON.stringify(config, null, 2)}\n`);
  return listTree(dir);
}

/** Copies a source tree without caches or build metadata (`__pycache__`, `*.egg-info`). */
function copyTree(from: string, to: string): void {
  for (const name of readdirSync(from)) {
    if (name === '__pycache__' || name.endsWith('.egg-info') || name.startsWith('.')) continue;
    const source = join(from, name);
    const info = statSync(source);
    if (info.isDirectory()) copyTree(source, join(to, name));
    else if (info.isFile()) {
      mkdirSync(to, { recursive: true });
      copyFileSync(source, join(to, name));
      chmodSync(join(to, name), 0o644);
    }
  }
}

function listTree(dir: string): AssembledFile[] {
  const files: AssembledFile[] = [];
  const walk = (folder: string) => {
    for (const name of readdirSync(folder)) {
      const full = join(folder, name);
      const info = statSync(full);
      if (info.isDirectory()) walk(full);
      else if (info.isFile())
        files.push({
          path: relative(dir, full).split(sep).join('/'),
          mode: info.mode & 0o777,
          size: info.size,
        });
    }
  };
  walk(dir);
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

// ───────────────────────────── deterministic zip ─────────────────────────────

export interface ZipEntry {
  path: string;
  data: Uint8Array;
  /** Unix permission bits (0o644, 0o755). */
  mode: number;
}

/** 1980-01-01 00:00:00, the earliest DOS timestamp: fixed so builds are reproducible. */
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const UTF8_FLAG = 0x0800;
const VERSION_MADE_BY_UNIX = (3 << 8) | 20;
const VERSION_NEEDED = 20;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(data: Uint8Array): number {
  const native = (zlib as unknown as { crc32?: (data: Uint8Array) => number }).crc32;
  if (native) return native(data) >>> 0;
  let c = 0xffffffff;
  for (const byte of data) c = (CRC_TABLE[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Builds a zip from `entries` (directory entries are derived). Same entries → same bytes. */
export function deterministicZip(entries: readonly ZipEntry[]): Buffer {
  const all = new Map<string, { data: Uint8Array; mode: number; directory: boolean }>();
  for (const entry of entries) {
    if (entry.path === '' || entry.path.startsWith('/') || entry.path.split('/').includes('..'))
      throw new Error(`zip: unsafe entry path ${JSON.stringify(entry.path)}`);
    const parts = entry.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const folder = `${parts.slice(0, i).join('/')}/`;
      if (!all.has(folder)) all.set(folder, { data: new Uint8Array(0), mode: 0o755, directory: true });
    }
    all.set(entry.path, { data: entry.data, mode: entry.mode & 0o777, directory: false });
  }
  const names = [...all.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const name of names) {
    const item = all.get(name);
    if (!item) continue;
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = crc32(item.data);
    const deflated = item.directory ? Buffer.alloc(0) : zlib.deflateRawSync(item.data, { level: 9 });
    const stored = item.directory || deflated.length >= item.data.length;
    const body = stored ? Buffer.from(item.data) : deflated;
    const method = stored ? 0 : 8;

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(VERSION_NEEDED, 4);
    local.writeUInt16LE(UTF8_FLAG, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(DOS_TIME, 10);
    local.writeUInt16LE(DOS_DATE, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(item.data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, nameBytes, body);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(VERSION_MADE_BY_UNIX, 4);
    central.writeUInt16LE(VERSION_NEEDED, 6);
    central.writeUInt16LE(UTF8_FLAG, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt16LE(DOS_TIME, 12);
    central.writeUInt16LE(DOS_DATE, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(item.data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt16LE(0, 30);
    central.writeUInt16LE(0, 32);
    central.writeUInt16LE(0, 34);
    central.writeUInt16LE(0, 36);
    const unixMode = (item.directory ? S_IFDIR : S_IFREG) | item.mode;
    // High 16 bits: Unix mode; bit 4 of the low byte: MS-DOS directory flag.
    central.writeUInt32LE(((unixMode << 16) | (item.directory ? 0x10 : 0)) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, nameBytes);

    offset += local.length + nameBytes.length + body.length;
  }
  const centralDirectory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(names.length, 8);
  end.writeUInt16LE(names.length, 10);
  end.writeUInt32LE(centralDirectory.length, 12);
  end.writeUInt32LE(offset, 16);
  end.writeUInt16LE(0, 20);
  return Buffer.concat([...locals, centralDirectory, end]);
}

export interface LayerZip {
  zip: Buffer;
  sha256: string;
  files: AssembledFile[];
}

/** Zips an assembled layer tree. */
export function zipLayerTree(dir: string): LayerZip {
  const files = listTree(dir);
  const zip = deterministicZip(
    files.map((f) => ({ path: f.path, mode: f.mode, data: readFileSync(join(dir, ...f.path.split('/'))) })),
  );
  return { zip, sha256: createHash('sha256').update(zip).digest('hex'), files };
}

/** Assembles into `workDir` and zips it: the whole `bulkhead layer build`. */
export function buildLayer(workDir: string, options: AssembleOptions = {}): LayerZip {
  assembleLayer(workDir, options);
  return zipLayerTree(workDir);
}
