"""Host names: normalisation (IDNA 2003, as the socket module sends names), patterns, the trie."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkhead_shim.kernel.host import (
    HostPattern,
    HostTrie,
    classify_host,
    host_pattern_matches,
    is_broader_than_registrable,
    normalize_host,
    parse_host_pattern,
)


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('API.Example.COM', 'api.example.com'),
        ('api.example.com.', 'api.example.com'),
        ('bücher.de', 'xn--bcher-kva.de'),
        ('BÜCHER.de.', 'xn--bcher-kva.de'),
        ('bu\u0308cher.de', 'xn--bcher-kva.de'),
        ('XN--BCHER-KVA.DE', 'xn--bcher-kva.de'),
        ('xn--bcher-kva.de', 'xn--bcher-kva.de'),
        ('_dmarc.example.com', '_dmarc.example.com'),
        ('\uff21\uff22\uff23.com', 'abc.com'),  # full-width letters
        ('a\u3002b\uff0ec\uff61d', 'a.b.c.d'),  # the other full stops
        ('a.\u00ad', 'a'),
        ('\uff11\uff12\uff17.\uff10.\uff10.\uff11', '127.0.0.1'),
        ('0X7F.1', '127.0.0.1'),
        # Where IDNA 2003 (this kernel, and what getaddrinfo queries) and UTS #46 (the TS kernel)
        # differ, this kernel follows the name the resolver will be asked for.
        ('straße.de', 'strasse.de'),
        ('a\u200db.com', 'ab.com'),
    ],
)
def test_normalize_host(text: str, expected: str) -> None:
    assert normalize_host(text) == expected


@pytest.mark.parametrize(
    'text',
    [
        '',
        '.',
        'a..b',
        'exa mple.com',
        '-x.com',
        'x-.com',
        'a' * 64 + '.com',
        'a.' * 127 + 'com',
        'api.example.com/evil',
        'api.example.com?x',
        'api.example.com#x',
        'api.example.com\\x',
        'a%2eb.com',
        'a\tb.com',
        'user@example.com',
        'example.com:443',
        'example.com\n',
        'XN--ZZ.com',
        'a\x80.com',
        'XN--A.com',
        '\u0301a.com',
        'A.1',
        'a.\uff11',
        'x' * 1100,
    ],
)
def test_normalize_host_refuses(text: str) -> None:
    assert normalize_host(text) is None


@settings(max_examples=500)
@given(st.text(max_size=40))
def test_classify_host_never_raises_and_normalize_is_idempotent(text: str) -> None:
    kind = classify_host(text)
    if kind is not None:
        assert kind[0] in ('ip', 'host')
        assert classify_host(kind[1]) == kind
    once = normalize_host(text)
    if once is not None:
        assert normalize_host(once) == once


@given(st.text(alphabet=st.sampled_from('aZ0-_.\u00fc\u00df\u00dc\u3002*:[]%\u00ad\u0301'), max_size=24))
def test_classify_host_never_raises_on_name_shaped_text(text: str) -> None:
    classify_host(text)
    with contextlib.suppress(ValueError):
        parse_host_pattern(text, allow_inner_wildcard=True)


def test_classify_host() -> None:
    assert classify_host('0x7f.1') == ('ip', '127.0.0.1')
    assert classify_host('2130706433') == ('ip', '127.0.0.1')
    assert classify_host('127.0.0.1.') == ('ip', '127.0.0.1')
    assert classify_host('[::ffff:169.254.169.254]') == ('ip', '169.254.169.254')
    assert classify_host('\uff11\uff12\uff17.\uff10.\uff10.\uff11') == ('ip', '127.0.0.1')
    assert classify_host('1.2.3.999') is None
    assert classify_host('Example.COM.') == ('host', 'example.com')


def test_host_patterns() -> None:
    p = parse_host_pattern('*.allowed.com')
    assert p == HostPattern(('com', 'allowed'), True, '*.allowed.com')
    assert host_pattern_matches(p, 'evil.allowed.com')
    assert host_pattern_matches(p, 'a.b.allowed.com')
    assert not host_pattern_matches(p, 'allowed.com')
    assert not host_pattern_matches(p, 'allowed.com.evil.com')
    assert parse_host_pattern('Bücher.DE.').text == 'xn--bcher-kva.de'
    inner = parse_host_pattern('b.s3.*.amazonaws.com', allow_inner_wildcard=True)
    assert inner.labels == ('com', 'amazonaws', '*', 's3', 'b')
    assert host_pattern_matches(inner, 'b.s3.us-east-1.amazonaws.com')
    assert not host_pattern_matches(inner, 'b.s3.amazonaws.com')
    assert parse_host_pattern('*').labels == ()
    with pytest.raises(ValueError, match='is an IP address: use cidr'):
        parse_host_pattern('10.0.0.1')
    with pytest.raises(ValueError, match='is an IP address: use cidr'):
        parse_host_pattern('[::1]')
    with pytest.raises(ValueError, match='wildcard only as a whole leading label'):
        parse_host_pattern('a.*b.example')
    with pytest.raises(ValueError, match='wildcard only as a whole leading label'):
        parse_host_pattern('b.s3.*.amazonaws.com')
    with pytest.raises(ValueError, match='not a valid host name'):
        parse_host_pattern('a..b')


def test_broad_wildcards() -> None:
    assert is_broader_than_registrable(parse_host_pattern('*.com'))
    assert is_broader_than_registrable(parse_host_pattern('*.co.uk'))
    assert is_broader_than_registrable(parse_host_pattern('*.s3.amazonaws.com'))
    assert not is_broader_than_registrable(parse_host_pattern('*.example.com'))
    assert not is_broader_than_registrable(parse_host_pattern('api.com'))


_LABEL = st.sampled_from(['a', 'b', 'c', 'com', 'x'])
_PATTERNS = st.builds(
    lambda labels, subtree, inner: HostPattern(
        tuple(
            '*' if inner and 0 < i < len(labels) - 1 and label == 'x' else label
            for i, label in enumerate(labels)
        ),
        subtree,
        'p',
    ),
    st.lists(_LABEL, max_size=4),
    st.booleans(),
    st.booleans(),
).filter(lambda p: p.subtree or len(p.labels) > 0)


@settings(max_examples=300)
@given(st.lists(_PATTERNS, max_size=12), st.lists(st.lists(_LABEL, min_size=1, max_size=5), max_size=10))
def test_trie_agrees_with_the_linear_matcher(patterns: list[HostPattern], names: list[list[str]]) -> None:
    trie: HostTrie[int] = HostTrie()
    for i, pattern in enumerate(patterns):
        trie.insert(pattern, i)
    assert trie.size == len(patterns)
    for labels in names:
        host = '.'.join(labels)
        found = trie.lookup(host)
        assert sorted(found) == [i for i, p in enumerate(patterns) if host_pattern_matches(p, host)]
        # Exact patterns come before every `*.` pattern.
        kinds = [patterns[i].subtree for i in found]
        assert kinds == sorted(kinds)
