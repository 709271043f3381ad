// Which application code started a denied operation: the nearest stack frame that is neither
// Node's own nor the shim's, and the npm package that file belongs to. Runs on the deny path
// only; package.json lookups are cached per directory.
import { readFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';

export interface Origin {
  package?: string | undefined;
  file?: string | undefined;
  line?: number | undefined;
}

const packageByDir = new Map<string, string | null>();
const FRAME = /\(?((?:file:\/\/)?[^\s()]+?):(\d+):(\d+)\)?\s*$/;

function packageOf(file: string): string | undefined {
  let dir = dirname(file);
  const seen: string[] = [];
  for (let depth = 0; depth < 40; depth++) {
    const cached = packageByDir.get(dir);
    if (cached !== undefined) {
      for (const d of seen) packageByDir.set(d, cached);
      return cached ?? undefined;
    }
    seen.push(dir);
    let found: string | null | undefined;
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      // A package.json without a name (a `"type": "module"` marker) does not end the walk.
      if (typeof pkg.name === 'string' && pkg.name !== '')
        found = typeof pkg.version === 'string' ? `${pkg.name}@${pkg.version}` : pkg.name;
    } catch {
      found = undefined;
    }
    const parent = dirname(dir);
    if (found !== undefined || parent === dir || dir.endsWith(`${sep}node_modules`)) {
      const value = found ?? null;
      for (const d of seen) packageByDir.set(d, value);
      if (packageByDir.size > 5000) packageByDir.clear();
      return value ?? undefined;
    }
    dir = parent;
  }
  return undefined;
}

/**
 * The first frame of the current stack that belongs to the application, with its package.
 * `isOwnFile` tells the shim's own files apart (they are skipped like Node's internals).
 */
export function captureOrigin(isOwnFile: (file: string) => boolean): Origin | undefined {
  const holder: { stack?: string } = {};
  const limit = Error.stackTraceLimit;
  try {
    Error.stackTraceLimit = 40;
    Error.captureStackTrace(holder, captureOrigin);
  } catch {
    return undefined;
  } finally {
    Error.stackTraceLimit = limit;
  }
  return originFromStack(holder.stack, isOwnFile);
}

/** A stack captured earlier (where the operation was started), formatted only now, on the deny path. */
export function originFromStack(
  stackText: unknown,
  isOwnFile: (file: string) => boolean,
): Origin | undefined {
  const stack = typeof stackText === 'string' ? stackText : '';
  for (const raw of stack.split('\n')) {
    const line = raw.trim();
    if (!line.startsWith('at ')) continue;
    const match = FRAME.exec(line);
    if (!match?.[1]) continue;
    let file = match[1];
    if (file.startsWith('node:') || file.startsWith('internal/') || !file.includes('/')) continue;
    if (file.startsWith('file://')) {
      try {
        file = decodeURIComponent(new URL(file).pathname);
      } catch {
        continue;
      }
    }
    if (isOwnFile(file)) continue;
    return { package: packageOf(file), file, line: Number(match[2]) };
  }
  return undefined;
}
