// URL path normalisation and glob matching. No dependencies: the in-process shim imports this.

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const HEX = '0123456789ABCDEF';

/**
 * The path a server will act on, so a rule cannot be slipped past by spelling:
 * query/fragment dropped, `\` read as `/` (as many servers do), percent-encoded unreserved
 * characters decoded (`%2e` → `.`, `%41` → `A`), remaining escapes upper-cased, duplicate
 * slashes collapsed, `.` and `..` segments resolved (also Tomcat's `..;` form), never above `/`.
 * Encoded slashes (`%2F`) stay encoded: they are not segment separators to the matcher.
 */
const NEEDS_WORK = /[%\\;?#]|\/\.|\/\/|^[^/]/;

export function normalizePath(raw: string): string {
  // Already normal (the common case): returned as is, no allocation.
  if (raw.length > 0 && !NEEDS_WORK.test(raw)) return raw;
  let end = raw.length;
  const q = raw.indexOf('?');
  if (q !== -1) end = q;
  const h = raw.indexOf('#');
  if (h !== -1 && h < end) end = h;
  let text = raw.slice(0, end);
  // Absolute-form request targets: keep only the path.
  const scheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/]*/.exec(text);
  if (scheme) text = text.slice(scheme[0].length);
  let decoded = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '%' && i + 2 < text.length && isHex(text[i + 1]) && isHex(text[i + 2])) {
      const code = Number.parseInt(text.slice(i + 1, i + 3), 16);
      const ch = String.fromCharCode(code);
      decoded += UNRESERVED.test(ch) ? ch : `%${HEX[code >> 4]}${HEX[code & 15]}`;
      i += 2;
    } else decoded += c === '\\' ? '/' : c;
  }
  const out: string[] = [];
  for (const segment of decoded.split('/')) {
    const bare = segment.includes(';') ? segment.slice(0, segment.indexOf(';')) : segment;
    if (segment === '' || bare === '.') continue;
    if (bare === '..') {
      out.pop();
      continue;
    }
    out.push(segment);
  }
  const trailingSlash = decoded.length > 1 && decoded.endsWith('/') && out.length > 0;
  return `/${out.join('/')}${trailingSlash ? '/' : ''}`;
}

function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9a-fA-F]$/.test(c);
}

export type GlobMatcher = (text: string) => boolean;

/**
 * Compile a glob once: `*` matches within one segment (no `/`), `**` across segments;
 * a trailing `/**` also matches the bare prefix (`/v1/**` matches `/v1`). Everything else is literal.
 */
export function compileGlob(glob: string): GlobMatcher {
  if (!glob.includes('*')) return (text) => text === glob;
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const trailing = i + 2 === glob.length && source.endsWith('/');
        if (trailing) source = `${source.slice(0, -1)}(?:/.*)?`;
        else source += '.*';
        i++;
      } else source += '[^/]*';
    } else source += c.replace(/[\\^$.|?+()[\]{}]/g, '\\$&');
  }
  const re = new RegExp(`^${source}$`, 's');
  return (text) => re.test(text);
}

/** Path globs of a policy must be normal already, so the author sees what gets matched. */
export function checkPathGlob(glob: string): string | undefined {
  if (!glob.startsWith('/')) return `path must start with "/", got ${JSON.stringify(glob)}`;
  if (/[?#]/.test(glob)) return `path must not contain a query or fragment, got ${JSON.stringify(glob)}`;
  if (/\*\*\*/.test(glob)) return `"***" is not a glob, got ${JSON.stringify(glob)}`;
  const literal = glob.replace(/\*+/g, 'x');
  if (normalizePath(literal) !== literal && normalizePath(literal) !== `${literal}/`)
    return `path is not normalised (dot segments, "//", "\\" or encoded unreserved characters): ${JSON.stringify(glob)} reads as ${JSON.stringify(normalizePath(literal))}`;
  return undefined;
}
