"""Unix-domain socket addresses: the normal form a decision is made on, and matching (policy/unix.ts).

An absolute path is normalised lexically (`//` collapsed, `.` dropped, `..` resolved never above `/`,
a trailing `/` dropped); symbolic links are not followed here (the shim asks for the resolved path too).
An abstract name is `@name` (the shim writes the leading NUL byte as `@`) and is returned unchanged.
Unreadable (None): empty, starting with neither `/` nor `@`, or holding a NUL byte."""

from __future__ import annotations

import re
from collections.abc import Callable

from .path import compile_glob, wildcard_match

# `//`, a `.` or `..` segment, or a trailing `/` after something.
# As JavaScript reads it: `.` not matching a newline, `$` only at the very end (Python's `\Z`).
_NOT_NORMAL = re.compile(r'//|/\.\.?(?:/|\Z)|./\Z')

UnixMatcher = Callable[[str], bool]


def normalize_unix_path(text: object) -> str | None:
    if not isinstance(text, str) or text == '' or '\0' in text:
        return None
    if text[0] == '@':
        return text
    if text[0] != '/':
        return None
    if not _NOT_NORMAL.search(text):
        return text  # already normal (the common case)
    out: list[str] = []
    for segment in text.split('/'):
        if segment in ('', '.'):
            continue
        if segment == '..':
            if out:
                out.pop()
        else:
            out.append(segment)
    return '/' + '/'.join(out)


def compile_unix_pattern(pattern: str) -> UnixMatcher:
    """Path patterns use the URL path globs and match only paths; `@` patterns match only abstract
    names, `*` standing for any run of characters."""
    if pattern.startswith('@'):
        name = pattern[1:]
        if '*' not in name:
            return lambda address: address == pattern
        return lambda address: address.startswith('@') and wildcard_match(name, address[1:])
    glob = compile_glob(pattern)
    return lambda address: address.startswith('/') and glob(address)
