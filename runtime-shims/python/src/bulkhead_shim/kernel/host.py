"""Host names: normalisation, patterns, and the reversed-label trie the decision engine walks
(port of policy/host.ts). Standard library only.

IDN: the TypeScript kernel maps names with WHATWG `domainToASCII` (UTS #46, non-transitional).
CPython's standard library has only the IDNA 2003 codec (`str.encode('idna')`), and that codec is
what `socket.getaddrinfo` and `socket.create_connection` apply to a non-ASCII name, so a name must
be decided as IDNA 2003 spells it here: the resolver will query that spelling. The two standards
agree on ASCII names and on ordinary IDN (`BÜCHER.example` and `bücher.example` are both
`xn--bcher-kva.example`), and differ on:

- deviation characters: IDNA 2003 maps `ß` to `ss` and final sigma (U+03C2) to sigma (U+03C3),
  and deletes ZWJ/ZWNJ; UTS #46 non-transitional keeps `ß` and final sigma (`straße.de` is
  `strasse.de` here, `xn--strae-oqa.de` in TS) and refuses a ZWJ/ZWNJ outside its joining context;
- the Unicode version: IDNA 2003 is frozen at Unicode 3.2, so code points assigned later (many
  symbols and emoji, U+E0100 variation selectors) are passed through or refused differently;
- bidi: IDNA 2003 refuses a label mixing left-to-right and right-to-left characters (`a` + U+0627),
  UTS #46 accepts some that IDNA 2008 allows;
- invalid ACE labels: UTS #46 refuses an `xn--` label that is not valid punycode of a valid
  label; the codec passes ASCII labels through, so this module checks `xn--` labels itself
  (outside the canonical fast path, exactly where domainToASCII runs in TS).

The conformance table keeps such names out; every ASCII name and common IDN must agree.
"""

from __future__ import annotations

import re

from ._typing import Generic, TypeVar
from .cidr import format_ip, normalize_ip, parse_ipv4

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    HostClass = tuple[Literal['ip', 'host'], str]

T = TypeVar('T')

_WILDCARD_PLACEHOLDER = 'bulkhead-any-label'
# A canonical name: lower-case LDH (and `_`) labels of 1-63 characters, 253 at most in all
# (the length is checked apart: `re` has no need for the lookahead TS uses).
_CANONICAL_HOST = re.compile(
    r'(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?'
)
_NUMERIC_LABEL = re.compile(r'[0-9]+|0[xX][0-9a-fA-F]*')
_ALL_DIGITS = re.compile(r'[0-9]+')
# ASCII other than letters, digits, "-", "." and "_" (control characters included).
_FORBIDDEN_ASCII = re.compile(r'[\x00-\x2c\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]')
# The label separators IDNA 2003 and UTS #46 both read: full stop, ideographic full stop,
# full-width full stop, half-width ideographic full stop.
_DOTS = re.compile('[.\u3002\uff0e\uff61]')
_ASCII_UPPER = str.maketrans('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')


def _is_canonical(text: str) -> bool:
    return 0 < len(text) <= 253 and _CANONICAL_HOST.fullmatch(text) is not None


def _utf16_length(text: str) -> int:
    # JavaScript's `length`: characters outside the BMP count twice.
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _valid_ace_label(label: str) -> bool:
    # UTS #46 decodes an `xn--` label and refuses it when that fails, when it decodes to plain
    # ASCII, when the decoded label begins with a combining mark, or when it is not in its mapped
    # form (it would not encode back to the same label).
    import unicodedata  # IDN only: keep it off the start-up path

    try:
        decoded = label[4:].encode('ascii').decode('punycode')
    except Exception:
        return False
    if decoded == '' or decoded.isascii() or unicodedata.category(decoded[0]).startswith('M'):
        return False
    try:
        return _idna_label(decoded) == label
    except Exception:
        return False


def _idna_label(label: str) -> str:
    # One label through the IDNA 2003 codec (what socket.getaddrinfo applies): ASCII labels pass
    # as they are, others are nameprep-mapped and, when still not ASCII, punycode-encoded.
    from encodings import idna  # IDN only

    return idna.ToASCII(label).decode('ascii')


def _idna_encode(text: str) -> str | None:
    # The codec label by label: a label nameprep maps to nothing (a lone soft hyphen or variation
    # selector) is an empty label, as UTS #46 makes it, where the codec would raise; any other
    # failure is no name at all.
    from encodings import idna  # IDN only

    out: list[str] = []
    try:
        for label in _DOTS.split(text):
            if label == '' or label.isascii():
                out.append(label)
            elif idna.nameprep(label) == '':
                out.append('')
            else:
                out.append(_idna_label(label))
    except Exception:
        # UnicodeError for a prohibited character, a bidi violation or an over-long label.
        return None
    return '.'.join(out)


def _ends_in_number(name: str) -> bool:
    # WHATWG "ends in a number": the last label (one trailing empty label dropped) is all digits
    # or a 0x hex number.
    parts = name.split('.')
    if parts[-1] == '':
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    return last != '' and _NUMERIC_LABEL.fullmatch(last) is not None


def _domain_to_ascii(text: str) -> str | None:
    # What `domainToASCII` gives, for text that passed the forbidden-ASCII check: lower-case
    # ASCII, IDN through the IDNA 2003 codec (see the module comment), ACE labels checked, and
    # WHATWG's rule that a name ending in a number is an IPv4 address (or nothing).
    lowered = text.translate(_ASCII_UPPER)
    if lowered.isascii():
        host = lowered
    else:
        encoded = _idna_encode(lowered)
        if encoded is None:
            return None
        host = encoded.translate(_ASCII_UPPER)
    if 'xn--' in host:
        for label in host.split('.'):
            if label.startswith('xn--') and not _valid_ace_label(label):
                return None
    if _ends_in_number(host):
        address = parse_ipv4(host)
        return format_ip(address) if address is not None else None
    return host


def normalize_host(text: str) -> str | None:
    """Canonical form of a DNS name: lower case, no trailing dot, IDN as punycode (xn--).
    None for text that is not a usable host name (empty, spaces, empty labels, over 253
    characters). IP literals are not host names: see `classify_host`."""
    if len(text) == 0 or len(text) > 1024 or (len(text) > 512 and _utf16_length(text) > 1024):
        return None
    # Already canonical (the common case): no allocation.
    if _is_canonical(text):
        return text
    # A name must be decided as the resolver will see it, so any ASCII outside LDH, "_" and "."
    # is refused before IDN mapping (TS: domainToASCII would cut at "/", "?" or "#", strip tabs
    # and decode "%2e").
    if _FORBIDDEN_ASCII.search(text) is not None:
        return None
    host = _domain_to_ascii(text)
    if host is None:
        return None
    if host.endswith('.'):
        host = host[:-1]
    return host if _is_canonical(host) else None


def _last_label_is_numeric(name: str) -> bool:
    """The last label is all digits or `0x` hex."""
    start = name.rfind('.') + 1
    if start >= len(name):
        return False
    return _NUMERIC_LABEL.fullmatch(name, start) is not None


def classify_host(text: str) -> HostClass | None:
    """What a destination string names: `('ip', canonical address)` for an IP literal (every
    IPv4 form, IPv6 with or without brackets, IPv4-mapped -> IPv4), `('host', canonical name)`
    for a DNS name, None for neither. The WHATWG rule applies: a name whose last label is
    numeric is an IPv4 literal (`0x7f.1`, `2130706433`), never a host name. Never raises on str."""
    if ':' in text or text.startswith('['):
        ip = normalize_ip(text)
        return ('ip', ip) if ip is not None else None
    trimmed = text[:-1] if text.endswith('.') else text
    if _last_label_is_numeric(trimmed):
        ip = normalize_ip(trimmed)
        return ('ip', ip) if ip is not None else None
    host = normalize_host(text)
    if host is None:
        return None
    # IDN mapping can turn full-width digits into ASCII ones: the WHATWG rule applies again.
    if _last_label_is_numeric(host):
        ip = normalize_ip(host)
        return ('ip', ip) if ip is not None else None
    return ('host', host)


class HostPattern:
    """A host pattern from a policy: `api.example.com` (that name only) or `*.example.com` (any
    name below example.com, at any depth, not example.com itself). Internally `*` may also stand
    for exactly one label in the middle (`b.s3.*.amazonaws.com`), used by the AWS expansions.
    `labels` run from the top (`('com', 'example', '*')`); `subtree` is the leading `*.`."""

    __slots__ = ('labels', 'subtree', 'text')
    labels: tuple[str, ...]
    subtree: bool
    text: str

    def __init__(self, labels: tuple[str, ...], subtree: bool, text: str) -> None:
        object.__setattr__(self, 'labels', labels)
        object.__setattr__(self, 'subtree', subtree)
        object.__setattr__(self, 'text', text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError('HostPattern is immutable')

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, HostPattern)
            and self.labels == other.labels
            and self.subtree == other.subtree
            and self.text == other.text
        )

    def __hash__(self) -> int:
        return hash((self.labels, self.subtree, self.text))

    def __repr__(self) -> str:
        return f'HostPattern({self.text!r})'


def parse_host_pattern(text: str, *, allow_inner_wildcard: bool = False) -> HostPattern:
    """Parse a host pattern; raises ValueError with the TypeScript kernel's message."""
    if text == '*':
        return HostPattern((), True, '*')
    subtree = text.startswith('*.')
    rest = text[2:] if subtree else text
    # Canonical already (what compiled bundles hold): no IDN or placeholder work.
    if _is_canonical(rest) and not _last_label_is_numeric(rest):
        return HostPattern(tuple(reversed(rest.split('.'))), subtree, text)
    if ':' in rest or '[' in rest or normalize_ip(rest) is not None:
        raise ValueError(f'{_quote(text)} is an IP address: use cidr')
    placeholders: list[str] = []
    for label in rest.split('.'):
        if label == '*' and allow_inner_wildcard:
            placeholders.append(_WILDCARD_PLACEHOLDER)
        elif '*' in label:
            raise ValueError(f'wildcard only as a whole leading label ("*.example.com"), got {_quote(text)}')
        else:
            placeholders.append(label)
    normal = normalize_host('.'.join(placeholders))
    if normal is None:
        raise ValueError(f'not a valid host name: {_quote(text)}')
    if _ALL_DIGITS.fullmatch(normal[normal.rfind('.') + 1 :]) is not None:
        raise ValueError(f'{_quote(text)} is an IP address: use cidr')
    labels = tuple('*' if label == _WILDCARD_PLACEHOLDER else label for label in reversed(normal.split('.')))
    canonical = ('*.' if subtree else '') + '.'.join(reversed(labels))
    return HostPattern(labels, subtree, canonical)


def host_pattern_matches(pattern: HostPattern, host: str) -> bool:
    """Does the pattern match the (normalised) name? The linear reference the trie agrees with."""
    labels = host.split('.')[::-1]
    if (len(labels) <= len(pattern.labels)) if pattern.subtree else (len(labels) != len(pattern.labels)):
        return False
    return all(label == '*' or label == labels[i] for i, label in enumerate(pattern.labels))


# A deliberately small public-suffix list (the common ones, plus shared-hosting suffixes where
# one customer's subdomain is another's attacker): `*.<suffix>` is broader than a registrable
# domain. Any single label (`*.com`, `*.internal`) counts too. Not the full PSL.
_PUBLIC_SUFFIXES = frozenset(
    ' '.join(
        [
            'com net org edu gov mil int info biz name pro io co ai app dev cloud xyz online site tech me',
            'tv cc ws us uk eu de fr nl be ch at es it se no dk fi pl cz ru ua cn jp kr in au nz ca br mx',
            'ar za sg hk tw co.uk org.uk ac.uk gov.uk com.au net.au org.au co.jp ne.jp or.jp co.nz com.br',
            'com.cn com.mx co.in co.za com.sg com.hk',
            'amazonaws.com s3.amazonaws.com compute.amazonaws.com elb.amazonaws.com cloudfront.net',
            'awsapprunner.com lambda-url.us-east-1.on.aws on.aws execute-api.us-east-1.amazonaws.com',
            'azurewebsites.net blob.core.windows.net core.windows.net cloudapp.net azurestaticapps.net',
            'azure-api.net appspot.com run.app cloudfunctions.net web.app firebaseapp.com',
            'googleusercontent.com storage.googleapis.com herokuapp.com github.io githubusercontent.com',
            'gitlab.io vercel.app netlify.app pages.dev workers.dev ngrok.io ngrok-free.app ngrok.app',
            'trycloudflare.com fly.dev onrender.com glitch.me repl.co',
        ]
    ).split(' ')
)


def is_broader_than_registrable(pattern: HostPattern) -> bool:
    """`*.<suffix>` where suffix is a public suffix or a single label."""
    if not pattern.subtree:
        return False
    if len(pattern.labels) <= 1:
        return True
    if '*' in pattern.labels:
        return False
    return '.'.join(reversed(pattern.labels)) in _PUBLIC_SUFFIXES


class _HostTrieNode(Generic[T]):
    __slots__ = ('any_label', 'below', 'children', 'exact')

    def __init__(self) -> None:
        self.children: dict[str, _HostTrieNode[T]] | None = None
        # Single-label wildcard child (`*` in the middle of a pattern).
        self.any_label: _HostTrieNode[T] | None = None
        # Patterns ending exactly here.
        self.exact: list[T] | None = None
        # `*.` patterns rooted here: match names strictly below this node.
        self.below: list[T] | None = None


class HostTrie(Generic[T]):
    """Reversed-label trie: a lookup walks the labels of the name from the top (com -> example ->
    api), so its cost grows with the length of the name, not the number of patterns. Values come
    back most specific first (exact, then the deepest `*.` wildcard), in the TS kernel's order."""

    __slots__ = ('_root', 'size')

    def __init__(self) -> None:
        self._root: _HostTrieNode[T] = _HostTrieNode()
        self.size = 0

    def insert(self, pattern: HostPattern, value: T) -> None:
        node = self._root
        for label in pattern.labels:
            if label == '*':
                if node.any_label is None:
                    node.any_label = _HostTrieNode()
                node = node.any_label
            else:
                if node.children is None:
                    node.children = {}
                child = node.children.get(label)
                if child is None:
                    child = node.children[label] = _HostTrieNode()
                node = child
        if pattern.subtree:
            if node.below is None:
                node.below = []
            node.below.append(value)
        else:
            if node.exact is None:
                node.exact = []
            node.exact.append(value)
        self.size += 1

    def lookup(self, host: str) -> list[T]:
        """Every value whose pattern matches `host` (already normalised)."""
        exact: list[T] = []
        below: list[list[T]] = []
        labels = host.split('.')
        self._walk(self._root, labels, len(labels) - 1, exact, below)
        for values in reversed(below):
            exact.extend(values)
        return exact

    def _walk(
        self, node: _HostTrieNode[T], labels: list[str], index: int, exact: list[T], below: list[list[T]]
    ) -> None:
        # `index`: the label to consume next, from the end of the name (-1 when all are).
        if index < 0:
            if node.exact is not None:
                exact.extend(node.exact)
            return
        if node.below is not None:
            below.append(node.below)
        if node.children is not None:
            child = node.children.get(labels[index])
            if child is not None:
                self._walk(child, labels, index - 1, exact, below)
        if node.any_label is not None:
            self._walk(node.any_label, labels, index - 1, exact, below)


def _quote(text: str) -> str:
    import json  # messages only: keep json off the start-up path

    return json.dumps(text, ensure_ascii=False)
