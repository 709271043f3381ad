// Unix-domain socket addresses: the normal form a decision is made on, the patterns policies write
// for them, and matching. No dependencies: the in-process shims import this.
import { checkGlobStars, compileGlob, type GlobMatcher, wildcardMatch } from './path.js';

const SLASH = 47;
const AT = 64;
// `//`, a `.` or `..` segment, or a trailing `/` after something.
const NOT_NORMAL = /\/\/|\/\.\.?(?:\/|$)|.\/$/;

/**
 * The address a Unix-socket decision is made on, as a shim reports it, or undefined when it cannot
 * be read. An absolute path is normalised lexically, the way the kernel walks it: `//` collapsed,
 * `.` dropped, `..` resolved never above `/`, a trailing `/` dropped; so `/tmp/../var/run/docker.sock`
 * is decided as `/var/run/docker.sock`. Symbolic links are not followed: the kernel of the policy
 * never touches the file system (a shim that resolves links asks for both names, see contracts).
 * An abstract name (`@name`: the shim writes the leading NUL byte as `@`) is returned unchanged:
 * it is a name, not a path, and `/` or `..` in it mean nothing.
 * Unreadable (undefined): not a string, empty, starting with neither `/` nor `@` (the shim resolves
 * relative paths before it asks), or holding a NUL byte (the system call would end the path there,
 * so a rule would be matched against a name other than the one connected to).
 */
export function normalizeUnixPath(text: string): string | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.includes('\0')) return undefined;
  const first = text.charCodeAt(0);
  if (first === AT) return text;
  if (first !== SLASH) return undefined;
  // Already normal (the common case): returned as is, no allocation.
  if (!NOT_NORMAL.test(text)) return text;
  const out: string[] = [];
  for (const segment of text.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return `/${out.join('/')}`;
}

/**
 * Why a `unix` pattern of a policy is wrong, or undefined. Path patterns must be absolute and normal
 * already (what the author writes is what gets matched: no `..`, `.`, `//` or trailing `/`), with
 * `**` only as a whole segment; abstract patterns are `@` and a non-empty name.
 */
export function checkUnixPattern(pattern: string): string | undefined {
  if (pattern.includes('\0')) return 'must not contain a NUL byte (write an abstract socket name as "@name")';
  if (pattern.charCodeAt(0) === AT)
    return pattern.length === 1 ? 'the abstract socket name after "@" must not be empty' : undefined;
  if (pattern.charCodeAt(0) !== SLASH)
    return `expected an absolute socket path ("/var/run/app.sock") or an abstract socket name ("@name"), got ${JSON.stringify(pattern)}`;
  if (pattern.split('/').includes('..'))
    return `".." segments are not allowed: write the path they lead to, got ${JSON.stringify(pattern)}`;
  const stars = checkGlobStars(pattern);
  if (stars) return stars;
  if (pattern === '/') return '"/" is a directory, not a socket ("/**" is every path)';
  const normal = normalizeUnixPath(pattern);
  if (normal !== pattern)
    return `path is not normal ("//", "." segments or a trailing "/"): ${JSON.stringify(pattern)} reads as ${JSON.stringify(normal)}`;
  return undefined;
}

/**
 * A matcher on normal addresses (`normalizeUnixPath`). Path patterns use the URL path globs (`*`
 * within one segment, a whole `**` segment any number of segments) and match only paths; `@`
 * patterns match only abstract names, `*` standing for any run of characters.
 */
export function compileUnixPattern(pattern: string): GlobMatcher {
  if (pattern.charCodeAt(0) === AT) {
    const name = pattern.slice(1);
    if (!name.includes('*')) return (address) => address === pattern;
    return (address) => address.charCodeAt(0) === AT && wildcardMatch(name, address.slice(1));
  }
  const glob = compileGlob(pattern);
  return (address) => address.charCodeAt(0) === SLASH && glob(address);
}
