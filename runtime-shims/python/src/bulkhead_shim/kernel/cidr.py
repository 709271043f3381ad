"""IP literals and CIDR prefixes (port of policy/cidr.ts). Standard library only.

Every textual form an IPv4 address can take in a socket API (inet_aton rules: 1-4 parts, each
decimal, octal with a leading 0, or hex with 0x) is normalised to dotted decimal, and IPv4-mapped
IPv6 (::ffff:a.b.c.d, ::ffff:7f00:1) to the IPv4 address it reaches, so no spelling of an address
can dodge a CIDR rule. Addresses are `bytes`: 4 for IPv4, 16 for IPv6.

Not `ipaddress`: it refuses the inet_aton forms (`0x7f.1`, `2130706433`) that `socket.connect`
accepts, and its text forms differ from the TypeScript kernel's; both kernels must agree byte for byte.
"""

from __future__ import annotations

import re

from ._typing import Generic, TypeVar

T = TypeVar('T')

# `re` patterns are ASCII-only on purpose: `\d` would accept any Unicode digit, and `$` would
# accept a trailing newline, where the TypeScript patterns accept neither.
_IPV4_PART = re.compile(r'0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*')
_DOTTED = re.compile(r'([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})')
_HEX_GROUP = re.compile(r'[0-9a-fA-F]{1,4}')
_PREFIX = re.compile(r'[0-9]{1,3}')


def _parse_ipv4_part(part: str) -> int | None:
    if _IPV4_PART.fullmatch(part) is None:
        return None
    if len(part) > 1 and part[1] in 'xX':
        # "0x" alone is 0 for inet_aton; keep that behaviour.
        digits = part[2:]
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part[0] == '0':
        return int(part, 8)
    return int(part, 10)


def parse_ipv4(text: str) -> bytes | None:
    """inet_aton-compatible IPv4 parse (decimal, octal, hex, 1-4 parts)."""
    if len(text) == 0 or len(text) > 64:
        return None
    # A single trailing dot is accepted by the WHATWG host parser; accept it here too.
    trimmed = text[:-1] if text.endswith('.') else text
    parts = trimmed.split('.')
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _parse_ipv4_part(part)
        if value is None:
            return None
        values.append(value)
    last = values.pop()
    for v in values:
        if v > 255:
            return None
    remaining = 4 - len(values)
    if last >= 1 << (8 * remaining):
        return None
    return bytes(values) + last.to_bytes(remaining, 'big')


def parse_dotted_ipv4(text: str) -> bytes | None:
    """Strict dotted-quad IPv4 (what a policy author writes)."""
    m = _DOTTED.fullmatch(text)
    if m is None:
        return None
    out = bytearray(4)
    for i in range(4):
        part = m.group(i + 1)
        if len(part) > 1 and part[0] == '0':
            return None
        v = int(part)
        if v > 255:
            return None
        out[i] = v
    return bytes(out)


def parse_ipv6(text: str) -> bytes | None:
    """IPv6 parse (with optional brackets, zone id, embedded dotted IPv4 tail)."""
    if text.startswith('[') and text.endswith(']'):
        text = text[1:-1]
    zone = text.find('%')
    if zone != -1:
        if zone == len(text) - 1:
            return None
        text = text[:zone]
    if len(text) < 2 or len(text) > 45 or ':' not in text:
        return None
    tail: bytes | None = None
    last_colon = text.rfind(':')
    if text.find('.', last_colon) != -1:
        tail = parse_dotted_ipv4(text[last_colon + 1 :])
        if tail is None:
            return None
        text = text[: last_colon + 1] + '0:0'
    halves = text.split('::')
    if len(halves) > 2:
        return None
    head = [] if halves[0] == '' else halves[0].split(':')
    rest = ([] if halves[1] == '' else halves[1].split(':')) if len(halves) == 2 else []
    groups = len(head) + len(rest)
    if (groups != 8) if len(halves) == 1 else (groups > 7):
        return None
    out = bytearray(16)
    for i, g in enumerate([*head, *(['0'] * (8 - groups)), *rest]):
        if _HEX_GROUP.fullmatch(g) is None:
            return None
        v = int(g, 16)
        out[i * 2] = v >> 8
        out[i * 2 + 1] = v & 0xFF
    if tail is not None:
        out[12:16] = tail
    return bytes(out)


_MAPPED_PREFIX = bytes(10) + b'\xff\xff'


def unmap_ipv4(address: bytes) -> bytes:
    """If `address` is IPv4-mapped IPv6 (::ffff:0:0/96), the IPv4 address; else the input."""
    if len(address) == 16 and address[:12] == _MAPPED_PREFIX:
        return address[12:]
    return address


def parse_ip(text: str) -> bytes | None:
    """Parse any IP literal form a socket API accepts; IPv4-mapped IPv6 becomes IPv4."""
    if ':' in text:
        v6 = parse_ipv6(text)
        return unmap_ipv4(v6) if v6 is not None else None
    return parse_ipv4(text)


def format_ip(address: bytes) -> str:
    """Dotted decimal, or RFC 5952 IPv6 text (longest run of >= 2 zero groups compressed, first on ties)."""
    if len(address) == 4:
        return f'{address[0]}.{address[1]}.{address[2]}.{address[3]}'
    groups = [(address[i] << 8) | address[i + 1] for i in range(0, 16, 2)]
    best_start = -1
    best_length = 1
    i = 0
    while i < 8:
        if groups[i] != 0:
            i += 1
            continue
        j = i
        while j < 8 and groups[j] == 0:
            j += 1
        if j - i > best_length:
            best_start = i
            best_length = j - i
        i = j
    hexes = [format(g, 'x') for g in groups]
    if best_start == -1:
        return ':'.join(hexes)
    return ':'.join(hexes[:best_start]) + '::' + ':'.join(hexes[best_start + best_length :])


def normalize_ip(text: str) -> str | None:
    """Canonical text of an IP literal in any accepted form (`0177.0.0.1`, `0x7f.1`, `2130706433`,
    `::ffff:127.0.0.1`, `[::1]`), or None when `text` is not an IP literal."""
    address = parse_ip(text)
    return format_ip(address) if address is not None else None


class Cidr:
    """A prefix: `address` (4 or 16 bytes, host bits clear) and `prefix` length. Immutable."""

    __slots__ = ('address', 'prefix')
    address: bytes
    prefix: int

    def __init__(self, address: bytes, prefix: int) -> None:
        object.__setattr__(self, 'address', address)
        object.__setattr__(self, 'prefix', prefix)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError('Cidr is immutable')

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cidr) and self.address == other.address and self.prefix == other.prefix

    def __hash__(self) -> int:
        return hash((self.address, self.prefix))

    def __repr__(self) -> str:
        return f'Cidr({format_cidr(self)!r})'


def _bit(address: bytes, bit: int) -> int:
    return (address[bit >> 3] >> (7 - (bit & 7))) & 1


def _mask(address: bytes, prefix: int) -> bytes:
    bits = len(address) * 8
    value = int.from_bytes(address, 'big') & ~((1 << (bits - prefix)) - 1)
    return value.to_bytes(len(address), 'big')


def parse_cidr(text: str) -> Cidr:
    """Parse `a.b.c.d/n`, `v6::/n` or a bare address (a /32 or /128). Strict: dotted-quad IPv4
    only, no host bits set. IPv4-mapped IPv6 prefixes of /96 or longer become IPv4 prefixes.
    Raises ValueError with the same message as the TypeScript kernel."""
    slash = text.find('/')
    address_text = text if slash == -1 else text[:slash]
    address = parse_ipv6(address_text) if ':' in address_text else parse_dotted_ipv4(address_text)
    if address is None:
        raise ValueError(f'not an IP address or CIDR: {_quote(text)}')
    width = len(address) * 8
    prefix = width
    if slash != -1:
        prefix_text = text[slash + 1 :]
        if _PREFIX.fullmatch(prefix_text) is None or int(prefix_text) > width:
            raise ValueError(f'prefix length must be 0-{width}, got {_quote(prefix_text)}')
        prefix = int(prefix_text)
    for bit in range(prefix, width):
        if _bit(address, bit):
            base = format_ip(_mask(address, prefix))
            raise ValueError(f'host bits set in {text}; did you mean {base}/{prefix}?')
    if len(address) == 16 and prefix >= 96:
        unmapped = unmap_ipv4(address)
        if len(unmapped) == 4:
            address = unmapped
            prefix -= 96
    return Cidr(address, prefix)


def _quote(text: str) -> str:
    # JSON.stringify's quoting, for messages that read like the TypeScript kernel's.
    import json  # messages only: keep json off the start-up path

    return json.dumps(text, ensure_ascii=False)


def format_cidr(cidr: Cidr) -> str:
    return f'{format_ip(cidr.address)}/{cidr.prefix}'


def cidr_contains(cidr: Cidr, address: bytes) -> bool:
    """Does the prefix contain the address (same family)?"""
    if len(cidr.address) != len(address):
        return False
    full = cidr.prefix >> 3
    if cidr.address[:full] != address[:full]:
        return False
    remaining = cidr.prefix & 7
    if remaining == 0:
        return True
    mask = (0xFF << (8 - remaining)) & 0xFF
    return (cidr.address[full] & mask) == (address[full] & mask)


def cidr_covers(a: Cidr, b: Cidr) -> bool:
    """`a` contains or equals `b` (same family)."""
    return len(a.address) == len(b.address) and a.prefix <= b.prefix and cidr_contains(a, b.address)


def cidr_overlaps(a: Cidr, b: Cidr) -> bool:
    """Two prefixes share at least one address."""
    return cidr_covers(a, b) or cidr_covers(b, a)


class _TrieNode(Generic[T]):
    __slots__ = ('one', 'values', 'zero')

    def __init__(self) -> None:
        self.zero: _TrieNode[T] | None = None
        self.one: _TrieNode[T] | None = None
        self.values: list[T] | None = None


class CidrTrie(Generic[T]):
    """Binary prefix trie (one per address family): a lookup walks at most 32 / 128 bits, whatever
    the number of prefixes stored, and returns every value whose prefix contains the address,
    longest prefix first."""

    __slots__ = ('_v4', '_v6')

    def __init__(self) -> None:
        self._v4: _TrieNode[T] = _TrieNode()
        self._v6: _TrieNode[T] = _TrieNode()

    def insert(self, cidr: Cidr, value: T) -> None:
        node = self._v4 if len(cidr.address) == 4 else self._v6
        for bit in range(cidr.prefix):
            if _bit(cidr.address, bit):
                if node.one is None:
                    node.one = _TrieNode()
                node = node.one
            else:
                if node.zero is None:
                    node.zero = _TrieNode()
                node = node.zero
        if node.values is None:
            node.values = []
        node.values.append(value)

    def lookup(self, address: bytes) -> list[T]:
        """Values of every prefix containing `address`, longest prefix first."""
        found: list[list[T]] = []
        node: _TrieNode[T] | None = self._v4 if len(address) == 4 else self._v6
        bits = len(address) * 8
        number = int.from_bytes(address, 'big')
        bit = 0
        while node is not None:
            if node.values is not None:
                found.append(node.values)
            if bit == bits:
                break
            node = node.one if (number >> (bits - 1 - bit)) & 1 else node.zero
            bit += 1
        if len(found) == 1:
            return list(found[0])
        out: list[T] = []
        for values in reversed(found):
            out.extend(values)
        return out
