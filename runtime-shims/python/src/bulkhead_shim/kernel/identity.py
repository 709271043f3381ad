"""Workload identity text form and SmartGroup selectors (port of policy/identity.ts).
Standard library only.

An identity is a flat `dict[str, str]` (`cloud`, `account`, `region`, `name`, `runtime`,
`tag.<key>`, ...). Its text form is `cloud=aws,name=charge-card,tag.app=payments`, values holding
`,` `=` or `%` percent-encoded. JavaScript semantics kept where Python's differ: `trim()` strips
JavaScript's whitespace set, escapes decode like `decodeURIComponent` (strict UTF-8, malformed
escapes refused), and keys sort by UTF-16 code unit.
"""

from __future__ import annotations

from .path import wildcard_match

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    Selector = Mapping[str, Sequence[str]]

MAX_IDENTITY_TEXT = 8192
MAX_IDENTITY_KEYS = 128

# String.prototype.trim: WhiteSpace (incl. U+FEFF and category Zs) and LineTerminator. Not
# str.strip(): that also strips U+001C-U+001F and U+0085 and keeps U+FEFF.
_JS_WHITESPACE = (
    '\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a'
    '\u2028\u2029\u202f\u205f\u3000\ufeff'
)
_HEX_DIGITS = frozenset('0123456789abcdefABCDEF')
_RESERVED_KEYS = frozenset(('__proto__', 'constructor', 'prototype'))


def _quote(text: str) -> str:
    import json  # messages only: keep json off the start-up path

    return json.dumps(text, ensure_ascii=False)


def _encode_part(text: str) -> str:
    # Only what would break the k=v,k=v grammar (plus control characters) is escaped.
    out: list[str] = []
    for c in text:
        code = ord(c)
        out.append(f'%{code:02X}' if c in '%,=' or code < 0x20 or code == 0x7F else c)
    return ''.join(out)


def decode_uri_component(text: str) -> str:
    """`decodeURIComponent`: raises ValueError where JavaScript throws URIError."""
    if '%' not in text:
        return text
    out: list[str] = []
    k = 0
    n = len(text)
    while k < n:
        percent = text.find('%', k)
        if percent == -1:
            out.append(text[k:])
            break
        out.append(text[k:percent])
        k = percent
        first = _escape_at(text, k)
        k += 3
        if first < 0x80:
            out.append(chr(first))
            continue
        if first & 0xE0 == 0xC0:
            length = 2
        elif first & 0xF0 == 0xE0:
            length = 3
        elif first & 0xF8 == 0xF0:
            length = 4
        else:
            raise ValueError('URI malformed')
        octets = bytearray([first])
        for _ in range(length - 1):
            if k >= n or text[k] != '%':
                raise ValueError('URI malformed')
            octet = _escape_at(text, k)
            if octet & 0xC0 != 0x80:
                raise ValueError('URI malformed')
            octets.append(octet)
            k += 3
        try:
            # Strict UTF-8 refuses what ECMAScript's Decode refuses: overlong forms, surrogates,
            # code points above U+10FFFF.
            out.append(octets.decode('utf-8'))
        except UnicodeDecodeError:
            raise ValueError('URI malformed') from None
    return ''.join(out)


def _escape_at(text: str, k: int) -> int:
    if k + 2 >= len(text) or text[k + 1] not in _HEX_DIGITS or text[k + 2] not in _HEX_DIGITS:
        raise ValueError('URI malformed')
    return int(text[k + 1 : k + 3], 16)


def _decode_part(text: str, what: str) -> str:
    try:
        return decode_uri_component(text)
    except ValueError:
        raise ValueError(f'workload identity: bad percent-encoding in {what} {_quote(text)}') from None


def parse_identity(text: str) -> dict[str, str]:
    """Parse the `BULKHEAD_WORKLOAD` / `?workload=` form `cloud=aws,name=charge-card,tag.app=payments`.
    Raises ValueError naming the problem (TS: TypeError, same messages) on malformed input: empty
    key, missing `=`, duplicate or reserved key, bad escape, too long."""
    if not isinstance(text, str):
        raise ValueError('workload identity must be a string')
    if len(text) > MAX_IDENTITY_TEXT or (
        len(text) > MAX_IDENTITY_TEXT // 2
        and len(text.encode('utf-16-le', 'surrogatepass')) // 2 > MAX_IDENTITY_TEXT
    ):
        raise ValueError(f'workload identity longer than {MAX_IDENTITY_TEXT} characters')
    identity: dict[str, str] = {}
    trimmed = text.strip(_JS_WHITESPACE)
    if trimmed == '':
        return identity
    pairs = trimmed.split(',')
    if len(pairs) > MAX_IDENTITY_KEYS:
        raise ValueError(f'workload identity has more than {MAX_IDENTITY_KEYS} attributes')
    for pair in pairs:
        eq = pair.find('=')
        if eq == -1:
            raise ValueError(f'workload identity: expected key=value, got {_quote(pair)}')
        key = _decode_part(pair[:eq].strip(_JS_WHITESPACE), 'key')
        value = _decode_part(pair[eq + 1 :].strip(_JS_WHITESPACE), 'value')
        if key == '':
            raise ValueError(f'workload identity: empty key in {_quote(pair)}')
        if key in _RESERVED_KEYS:
            raise ValueError(f'workload identity: reserved key {_quote(key)}')
        if key in identity:
            raise ValueError(f'workload identity: duplicate key {_quote(key)}')
        identity[key] = value
    return identity


def _utf16_key(text: str) -> bytes:
    # JavaScript's default sort compares UTF-16 code units; big-endian UTF-16 bytes sort alike.
    return text.encode('utf-16-be', 'surrogatepass')


def format_identity(identity: Mapping[str, str]) -> str:
    """The text form of an identity: keys sorted, so equal identities give equal text."""
    return ','.join(
        f'{_encode_part(key)}={_encode_part(identity[key])}' for key in sorted(identity, key=_utf16_key)
    )


def identity_glob_matches(glob: str, value: str) -> bool:
    """`*` any run of characters, `?` one character; linear time whatever the value (values come
    from workloads)."""
    if '*' not in glob and '?' not in glob:
        return glob == value
    return wildcard_match(glob, value, question=True)


def selector_matches(selector: Selector, identity: Mapping[str, str]) -> bool:
    """A compiled SmartGroup selector: every key must be present in the identity and its value
    must match one of the globs. An empty selector matches every workload."""
    for key, globs in selector.items():
        value = identity.get(key)
        if not isinstance(value, str):
            return False
        if not any(identity_glob_matches(glob, value) for glob in globs):
            return False
    return True
