// The Python side of the layer needs one vetted library for Ed25519: `cryptography` (and `cffi`, whose
// `_cffi_backend` its Rust extension loads). Both are native, so the layer carries the wheels of ONE
// architecture: cryptography alone is ~4.7 MB zipped per architecture, and both would not fit the
// 10 MB layer budget beside the Node side. `bulkhead layer build --arch` picks it; publish one layer
// per architecture, as Lambda's own and vendors' layers are.
//
// Supply chain: versions and sha256 digests are pinned here. Wheels come from a folder the caller
// names (air-gapped builds), else a per-user cache, else `python3 -m pip download`; every file's
// digest is checked before it is unpacked, whatever its source.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from './package-root.js';

export type LayerArch = 'x86_64' | 'arm64';
export const LAYER_ARCHES: readonly LayerArch[] = ['x86_64', 'arm64'];
/** Lambda's Python runtimes the layer governs: Amazon Linux 2023 (glibc 2.34), CPython 3.12 and 3.13. */
export const PYTHON_RUNTIMES = ['python3.12', 'python3.13'] as const;

interface PinnedWheel {
  name: string;
  version: string;
  file: string;
  sha256: string;
  /** pip download selectors for this exact file. */
  platform: string;
  pythonVersion: string;
  abi: string;
}

function wheel(
  name: string,
  version: string,
  file: string,
  sha256: string,
  platform: string,
  pythonVersion: string,
  abi: string,
): PinnedWheel {
  return { name, version, file, sha256, platform, pythonVersion, abi };
}

const CRYPTOGRAPHY = '50.0.2';
const CFFI = '2.1.1';

export const PINNED_WHEELS: Record<LayerArch, PinnedWheel[]> = {
  x86_64: [
    wheel(
      'cryptography',
      CRYPTOGRAPHY,
      `cryptography-${CRYPTOGRAPHY}-cp311-abi3-manylinux_2_34_x86_64.whl`,
      '9dab55f57c74c3cad24c323bacbbd04be4705ba6eb0d92e920b1fc4837ed5079',
      'manylinux_2_34_x86_64',
      '3.12',
      'abi3',
    ),
    wheel(
      'cffi',
      CFFI,
      `cffi-${CFFI}-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl`,
      'c1453022f490d2459a11819d83ad1d586e9ff65a12ac3e705ffebd46d3685dcf',
      'manylinux2014_x86_64',
      '3.12',
      'cp312',
    ),
    wheel(
      'cffi',
      CFFI,
      `cffi-${CFFI}-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.whl`,
      'a931079504ecc49efed7744c476a5c343a92fabf66dec2db95edb1b2fdc770e2',
      'manylinux2014_x86_64',
      '3.13',
      'cp313',
    ),
  ],
  arm64: [
    wheel(
      'cryptography',
      CRYPTOGRAPHY,
      `cryptography-${CRYPTOGRAPHY}-cp311-abi3-manylinux_2_34_aarch64.whl`,
      '87e9ce85beb6b328ba370cc6e6aea483c92617b4c95b1d33a49297eb662bfb04',
      'manylinux_2_34_aarch64',
      '3.12',
      'abi3',
    ),
    wheel(
      'cffi',
      CFFI,
      `cffi-${CFFI}-cp312-cp312-manylinux2014_aarch64.manylinux_2_17_aarch64.whl`,
      '68e62fe11f30d5ca8289242866f0a5291402d8529ca2178ab8afc5c9694ae890',
      'manylinux2014_aarch64',
      '3.12',
      'cp312',
    ),
    wheel(
      'cffi',
      CFFI,
      `cffi-${CFFI}-cp313-cp313-manylinux2014_aarch64.manylinux_2_17_aarch64.whl`,
      'f16c709686a78c727bbbf059f92b0bf41c6fc60deec706d2dc19f529175a6125',
      'manylinux2014_aarch64',
      '3.13',
      'cp313',
    ),
  ],
};

export class PythonDepsError extends Error {
  override readonly name = 'PythonDepsError';
}

export interface PythonDepsOptions {
  /** Folder holding the pinned wheel files (checked by digest); nothing is downloaded when all are there. */
  wheelsDir?: string | undefined;
  /** Download cache. Default `$XDG_CACHE_HOME/bulkhead/wheels` or `~/.cache/bulkhead/wheels`. */
  cacheDir?: string | undefined;
  /**
   * Interpreter used for `pip download` and for unpacking. Default `BULKHEAD_PYTHON`, else a checkout's
   * project virtualenv (`.venv/py3.X`, which has pip), else `python3`.
   */
  python?: string | undefined;
}

function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function defaultPython(): string {
  if (process.env.BULKHEAD_PYTHON) return process.env.BULKHEAD_PYTHON;
  for (const minor of ['3.13', '3.12', '3.11', '3.10']) {
    const venv = join(packageRoot(), '.venv', `py${minor}`, 'bin', 'python');
    if (existsSync(venv)) return venv;
  }
  return 'python3';
}

export function defaultWheelCache(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'bulkhead', 'wheels');
}

/** The pinned wheels for `arch`, as verified local files (downloading into the cache what is missing). */
export function pinnedWheelFiles(arch: LayerArch, options: PythonDepsOptions = {}): string[] {
  const wheels = PINNED_WHEELS[arch];
  if (!wheels) throw new PythonDepsError(`unknown architecture ${JSON.stringify(arch)} (x86_64 or arm64)`);
  const cache = options.cacheDir ?? defaultWheelCache();
  const python = options.python ?? defaultPython();
  const files: string[] = [];
  for (const pinned of wheels) {
    const candidates = [options.wheelsDir, cache]
      .filter((d): d is string => !!d)
      .map((d) => join(d, pinned.file));
    let found = candidates.find((file) => existsSync(file) && sha256Of(file) === pinned.sha256);
    if (!found) {
      mkdirSync(cache, { recursive: true, mode: 0o700 });
      const staging = join(cache, `download-${process.pid}`);
      try {
        execFileSync(
          python,
          [
            ...['-m', 'pip', 'download', '--quiet', '--disable-pip-version-check', '--no-deps'],
            ...['--only-binary=:all:', '--implementation', 'cp', '--platform', pinned.platform],
            ...['--python-version', pinned.pythonVersion, '--abi', pinned.abi, '--dest', staging],
            `${pinned.name}==${pinned.version}`,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 },
        );
      } catch (error) {
        const stderr = String((error as { stderr?: Buffer }).stderr ?? '')
          .trim()
          .split('\n')
          .slice(-2)
          .join(' ');
        throw new PythonDepsError(
          `cannot fetch ${pinned.file} with ${python} -m pip (${stderr || (error as Error).message}); ` +
            'put the pinned wheels in a folder and pass --python-wheels DIR, or build with --no-python-deps',
        );
      }
      const downloaded = join(staging, pinned.file);
      if (!existsSync(downloaded))
        throw new PythonDepsError(`pip did not produce ${pinned.file} (a different build was offered)`);
      const digest = sha256Of(downloaded);
      if (digest !== pinned.sha256)
        throw new PythonDepsError(
          `${pinned.file}: sha256 ${digest} does not match the pinned ${pinned.sha256}; refusing it`,
        );
      copyFileSync(downloaded, join(cache, pinned.file));
      execFileSync('rm', ['-rf', staging]);
      found = join(cache, pinned.file);
    }
    files.push(found);
  }
  return files;
}

/** Unpacks the pinned wheels for `arch` into `target` (one folder on sys.path: cffi's backend for both CPythons side by side). */
export function unpackPythonDeps(target: string, arch: LayerArch, options: PythonDepsOptions = {}): void {
  const files = pinnedWheelFiles(arch, options);
  mkdirSync(target, { recursive: true });
  for (const file of files) {
    // A wheel is a zip; Python's own zipfile unpacks it (no zip reader is shipped in this package).
    execFileSync(options.python ?? defaultPython(), ['-m', 'zipfile', '-e', file, target], { stdio: 'pipe' });
  }
  // Modes independent of the builder's umask, so the zip is the same everywhere.
  const normalize = (folder: string): void => {
    for (const name of readdirSync(folder)) {
      const full = join(folder, name);
      if (statSync(full).isDirectory()) normalize(full);
      else chmodSync(full, 0o644);
    }
  };
  normalize(target);
}
