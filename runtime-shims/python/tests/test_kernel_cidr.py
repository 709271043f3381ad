"""IP literals and CIDR prefixes: every socket spelling of an address, and the prefix trie."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkhead_shim.kernel.cidr import (
    Cidr,
    CidrTrie,
    cidr_contains,
    cidr_covers,
    cidr_overlaps,
    format_cidr,
    format_ip,
    normalize_ip,
    parse_cidr,
    parse_ip,
)


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('127.0.0.1', '127.0.0.1'),
        ('0177.0.0.1', '127.0.0.1'),
        ('0x7f.1', '127.0.0.1'),
        ('0X7F.0X0.0X0.0X1', '127.0.0.1'),
        ('2130706433', '127.0.0.1'),
        ('017700000001', '127.0.0.1'),
        ('127.1', '127.0.0.1'),
        ('127.0.1', '127.0.0.1'),
        ('127.0.0.1.', '127.0.0.1'),
        ('0x', '0.0.0.0'),
        ('::ffff:127.0.0.1', '127.0.0.1'),
        ('::ffff:7f00:1', '127.0.0.1'),
        ('[::ffff:127.0.0.1]', '127.0.0.1'),
        ('::1', '::1'),
        ('::', '::'),
        ('2001:DB8:0:0:0:0:0:1', '2001:db8::1'),
        ('2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'),
        ('fd00:ec2::254%eth0', 'fd00:ec2::254'),
        ('1:0:0:2:0:0:0:3', '1:0:0:2::3'),
        ('1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'),
    ],
)
def test_normalize_ip_forms(text: str, expected: str) -> None:
    assert normalize_ip(text) == expected


@pytest.mark.parametrize(
    'text',
    [
        '',
        '.',
        '127.0.0.256',
        '0x100000000',
        '4294967296',
        '08.0.0.1',
        '1.2.3.4.5',
        '1:2:3:4:5:6:7:8:9',
        ':::',
        '1::2::3',
        '12345::',
        'g::1',
        'fe80::1%',
        '[::1',
        '1.2.3.4\n',
        '\u0661.\u0662.\u0663.\u0664',  # Arabic-Indic digits
        '::ffff:0177.0.0.1',
        'x' * 65,
    ],
)
def test_not_ip_literals(text: str) -> None:
    assert normalize_ip(text) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_round_trips_in_every_spelling(value: int) -> None:
    dotted = str(ipaddress.IPv4Address(value))
    for spelling in (dotted, str(value), hex(value), f'0{value:o}', f'::ffff:{dotted}'):
        assert normalize_ip(spelling) == dotted
    assert normalize_ip(dotted) == dotted


@given(st.binary(min_size=16, max_size=16))
def test_ipv6_text_is_rfc_5952_and_round_trips(address: bytes) -> None:
    text = normalize_ip(format_ip(address))
    assert text is not None
    assert normalize_ip(text) == text
    if address[:12] != bytes(10) + b'\xff\xff':
        assert parse_ip(text) == address
        assert text == ipaddress.IPv6Address(address).compressed


@given(st.text(max_size=60))
def test_parse_ip_never_raises(text: str) -> None:
    result = normalize_ip(text)
    if result is not None:
        assert normalize_ip(result) == result


def test_parse_cidr_strict() -> None:
    assert format_cidr(parse_cidr('10.0.0.0/8')) == '10.0.0.0/8'
    assert format_cidr(parse_cidr('192.168.1.7')) == '192.168.1.7/32'
    assert format_cidr(parse_cidr('::ffff:172.16.0.0/108')) == '172.16.0.0/12'
    assert format_cidr(parse_cidr('2001:db8::/32')) == '2001:db8::/32'
    with pytest.raises(ValueError, match=r'host bits set in 10\.0\.0\.1/8; did you mean 10\.0\.0\.0/8\?'):
        parse_cidr('10.0.0.1/8')
    with pytest.raises(ValueError, match='prefix length must be 0-32, got "33"'):
        parse_cidr('10.0.0.0/33')
    with pytest.raises(ValueError, match='not an IP address or CIDR'):
        parse_cidr('0x7f.1/8')
    with pytest.raises(ValueError, match='not an IP address or CIDR'):
        parse_cidr('010.0.0.0/8')


def test_cidr_relations() -> None:
    a = parse_cidr('10.0.0.0/8')
    b = parse_cidr('10.9.0.0/16')
    assert cidr_covers(a, b)
    assert not cidr_covers(b, a)
    assert cidr_overlaps(a, b)
    assert not cidr_overlaps(a, parse_cidr('11.0.0.0/8'))
    assert not cidr_contains(a, bytes(16))
    assert a == Cidr(bytes([10, 0, 0, 0]), 8)
    with pytest.raises(AttributeError):
        a.prefix = 9


_V4_CIDRS = st.builds(
    lambda value, prefix: Cidr(((value >> (32 - prefix)) << (32 - prefix)).to_bytes(4, 'big'), prefix),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=32),
)


@settings(max_examples=200)
@given(st.lists(_V4_CIDRS, max_size=20), st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=20))
def test_trie_finds_what_a_linear_scan_finds(cidrs: list[Cidr], addresses: list[int]) -> None:
    trie: CidrTrie[int] = CidrTrie()
    for i, cidr in enumerate(cidrs):
        trie.insert(cidr, i)
    for value in addresses:
        address = value.to_bytes(4, 'big')
        found = trie.lookup(address)
        expected = [i for i, c in enumerate(cidrs) if cidr_contains(c, address)]
        assert sorted(found) == expected
        # Longest prefix first.
        prefixes = [cidrs[i].prefix for i in found]
        assert prefixes == sorted(prefixes, reverse=True)
