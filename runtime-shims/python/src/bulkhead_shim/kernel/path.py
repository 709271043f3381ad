"""URL path normalisation and glob matching (port of policy/path.ts). Standard library only.

Strings are compared as code points where the TypeScript kernel compares UTF-16 code units; the
two agree except for `?` (one UTF-16 unit in TS) against a character outside the BMP, which
`wildcard_match` handles by comparing UTF-16 units in that one case.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    GlobMatcher = Callable[[str], bool]

_UNRESERVED = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~')
_HEX_DIGITS = frozenset('0123456789abcdefABCDEF')
_HEX = '0123456789ABCDEF'
# What makes a path not normal already: escapes, backslashes, `;`, query or fragment, dot
# segments, doubled slashes, or no leading slash.
_NEEDS_WORK = re.compile(r'[%\\;?#]|/\.|//|^[^/]')
_SCHEME = re.compile(r'[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*')


def normalize_path(raw: str) -> str:
    """The path a server will act on, so a rule cannot be slipped past by spelling:
    query/fragment dropped, `\\` read as `/` (as many servers do), percent-encoded unreserved
    characters decoded (`%2e` -> `.`, `%41` -> `A`), remaining escapes upper-cased, duplicate
    slashes collapsed, `.` and `..` segments resolved (also Tomcat's `..;` form), never above `/`.
    Encoded slashes (`%2F`) stay encoded: they are not segment separators to the matcher."""
    # Already normal (the common case): returned as is.
    if len(raw) > 0 and _NEEDS_WORK.search(raw) is None:
        return raw
    end = len(raw)
    q = raw.find('?')
    if q != -1:
        end = q
    h = raw.find('#')
    if h != -1 and h < end:
        end = h
    text = raw[:end]
    # Absolute-form request targets: keep only the path.
    scheme = _SCHEME.match(text)
    if scheme is not None:
        text = text[scheme.end() :]
    decoded: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '%' and i + 2 < n and text[i + 1] in _HEX_DIGITS and text[i + 2] in _HEX_DIGITS:
            code = int(text[i + 1 : i + 3], 16)
            ch = chr(code)
            decoded.append(ch if ch in _UNRESERVED else f'%{_HEX[code >> 4]}{_HEX[code & 15]}')
            i += 3
            continue
        decoded.append('/' if c == '\\' else c)
        i += 1
    joined = ''.join(decoded)
    out: list[str] = []
    for segment in joined.split('/'):
        semicolon = segment.find(';')
        bare = segment if semicolon == -1 else segment[:semicolon]
        if segment == '' or bare == '.':
            continue
        if bare == '..':
            if out:
                out.pop()
            continue
        out.append(segment)
    trailing_slash = len(joined) > 1 and joined.endswith('/') and len(out) > 0
    return '/' + '/'.join(out) + ('/' if trailing_slash else '')


def _utf16(text: str) -> list[int]:
    data = text.encode('utf-16-be', 'surrogatepass')
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]


def _has_astral(text: str) -> bool:
    return any(ord(c) > 0xFFFF for c in text)


def _wildcard_units(pattern: Sequence[object], text: Sequence[object], question: bool) -> bool:
    # The TypeScript loop, unchanged: one backtrack point (the last `*`), so linear in practice
    # and never exponential, whatever the input.
    p = 0
    t = 0
    star = -1
    mark = 0
    plen = len(pattern)
    tlen = len(text)
    while t < tlen:
        c = pattern[p] if p < plen else None
        if c in ('*', 42):
            star = p
            p += 1
            mark = t
        elif c is not None and (c == text[t] or (question and (c in ('?', 63)))):
            p += 1
            t += 1
        elif star != -1:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < plen and pattern[p] in ('*', 42):
        p += 1
    return p == plen


def _star_match(pattern: str, text: str) -> bool:
    # `*`-only globs: the literal pieces between stars must appear in order, the first as a
    # prefix and the last as a suffix; taking each middle piece at its leftmost place is optimal.
    # Same answers as the loop above, with the scanning done by str.find / startswith.
    pieces = pattern.split('*')
    if len(pieces) == 1:
        return pattern == text
    first = pieces[0]
    last = pieces[-1]
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    pos = len(first)
    stop = len(text) - len(last)
    for piece in pieces[1:-1]:
        if not piece:
            continue
        found = text.find(piece, pos, stop)
        if found == -1:
            return False
        pos = found + len(piece)
    return True


def wildcard_match(pattern: str, text: str, question: bool = False) -> bool:
    """Wildcard match in linear time (no regular expression, so no catastrophic backtracking on
    hostile input): `*` matches any run of characters, `?` one character when `question` is set."""
    if not question or '?' not in pattern:
        return _star_match(pattern, text)
    if _has_astral(text) or _has_astral(pattern):
        # TypeScript's `?` matches one UTF-16 code unit: half of a character outside the BMP.
        return _wildcard_units(_utf16(pattern), _utf16(text), question)
    return _wildcard_units(pattern, text, question)


def _match_segments(glob: Sequence[str], path: Sequence[str]) -> bool:
    # Segment-level match: `**` stands for any number of whole segments (the same greedy scheme).
    g = 0
    p = 0
    star = -1
    mark = 0
    glen = len(glob)
    plen = len(path)
    while p < plen:
        if g < glen and glob[g] == '**':
            star = g
            g += 1
            mark = p
        elif g < glen and _star_match(glob[g], path[p]):
            g += 1
            p += 1
        elif star != -1:
            g = star + 1
            mark += 1
            p = mark
        else:
            return False
    while g < glen and glob[g] == '**':
        g += 1
    return g == glen


def compile_glob(glob: str) -> GlobMatcher:
    """Compile a glob once: `*` matches within one segment (no `/`), a whole `**` segment any
    number of segments, so `/v1/**` matches `/v1`, `/v1/` and `/v1/a/b`. Everything else is
    literal. Matching is linear in the path for each wildcard (no backtracking blow-up)."""
    if '*' not in glob:
        return glob.__eq__
    segments = glob.split('/')
    if len(segments) == 1:
        return lambda text: '/' not in text and _star_match(glob, text)
    parts = tuple(segments)
    return lambda text: _match_segments(parts, text.split('/'))


def check_glob_stars(glob: str) -> str | None:
    """`**` only as a whole segment: "/a/**" or "/a/**/b". The problem, or None."""
    if any('**' in segment and segment != '**' for segment in glob.split('/')):
        return f'"**" must be a whole segment ("/a/**/b"); use "*" within a segment, got {_quote(glob)}'
    return None


def check_path_glob(glob: str) -> str | None:
    """Path globs of a policy must be normal already, so the author sees what gets matched."""
    if not glob.startswith('/'):
        return f'path must start with "/", got {_quote(glob)}'
    if '?' in glob or '#' in glob:
        return f'path must not contain a query or fragment, got {_quote(glob)}'
    stars = check_glob_stars(glob)
    if stars is not None:
        return stars
    literal = re.sub(r'\*+', 'x', glob)
    normal = normalize_path(literal)
    if normal not in (literal, literal + '/'):
        return (
            'path is not normalised (dot segments, "//", "\\" or encoded unreserved characters): '
            f'{_quote(glob)} reads as {_quote(normal)}'
        )
    return None


def _quote(text: str) -> str:
    import json  # messages only: keep json off the start-up path

    return json.dumps(text, ensure_ascii=False)
