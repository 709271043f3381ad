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
 * Wildcard match in linear time (no regular expression, so no catastrophic backtracking on
 * hostile input): `*` matches any run of characters, `?` one character when `question` is set.
 */
export function wildcardMatch(pattern: string, text: string, question = false): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let mark = 0;
  while (t < text.length) {
    const c = pattern.charCodeAt(p);
    if (p < pattern.length && c === 42 /* * */) {
      star = p++;
      mark = t;
    } else if (p < pattern.length && (c === text.charCodeAt(t) || (question && c === 63)) /* ? */) {
      p++;
      t++;
    } else if (star !== -1) {
      p = star + 1;
      t = ++mark;
    } else return false;
  }
  while (p < pattern.length && pattern.charCodeAt(p) === 42) p++;
  return p === pattern.length;
}

/** Segment-level match: `**` stands for any number of whole segments (the same greedy scheme). */
function matchSegments(glob: readonly string[], path: readonly string[]): boolean {
  let g = 0;
  let p = 0;
  let star = -1;
  let mark = 0;
  while (p < path.length) {
    if (g < glob.length && glob[g] === '**') {
      star = g++;
      mark = p;
    } else if (g < glob.length && wildcardMatch(glob[g] as string, path[p] as string)) {
      g++;
      p++;
    } else if (star !== -1) {
      g = star + 1;
      p = ++mark;
    } else return false;
  }
  while (g < glob.length && glob[g] === '**') g++;
  return g === glob.length;
}

/**
 * Compile a glob once: `*` matches within one segment (no `/`), a whole `**` segment any number
 * of segments, so `/v1/**` matches `/v1`, `/v1/` and `/v1/a/b`. Everything else is literal.
 * Matching is linear in the path for each wildcard (no backtracking blow-up).
 */
export function compileGlob(glob: string): GlobMatcher {
  if (!glob.includes('*')) return (text) => text === glob;
  const segments = glob.split('/');
  if (segments.length === 1) return (text) => !text.includes('/') && wildcardMatch(glob, text);
  return (text) => matchSegments(segments, text.split('/'));
}

// `**` only as a whole segment: "/a/**" or "/a/**/b".
export function checkGlobStars(glob: string): string | undefined {
  if (glob.split('/').some((segment) => segment.includes('**') && segment !== '**'))
    return `"**" must be a whole segment ("/a/**/b"); use "*" within a segment, got ${JSON.stringify(glob)}`;
  return undefined;
}

/** Path globs of a policy must be normal already, so the author sees what gets matched. */
export function checkPathGlob(glob: string): string | undefined {
  if (!glob.startsWith('/')) return `path must start with "/", got ${JSON.stringify(glob)}`;
  if (/[?#]/.test(glob)) return `path must not contain a query or fragment, got ${JSON.stringify(glob)}`;
  const stars = checkGlobStars(glob);
  if (stars) return stars;
  const literal = glob.replace(/\*+/g, 'x');
  if (normalizePath(literal) !== literal && normalizePath(literal) !== `${literal}/`)
    return `path is not normalised (dot segments, "//", "\\" or encoded unreserved characters): ${JSON.stringify(glob)} reads as ${JSON.stringify(normalizePath(literal))}`;
  return undefined;
}
