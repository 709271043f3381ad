"""Workload identity text and SmartGroup selectors."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkhead_shim.kernel.identity import (
    decode_uri_component,
    format_identity,
    identity_glob_matches,
    parse_identity,
    selector_matches,
)


def test_parse_identity() -> None:
    assert parse_identity('cloud=aws,name=charge-card,tag.app=payments') == {
        'cloud': 'aws',
        'name': 'charge-card',
        'tag.app': 'payments',
    }
    assert parse_identity(' name = a%2Cb%3Dc%25 , tag.x= ') == {'name': 'a,b=c%', 'tag.x': ''}
    assert parse_identity('') == {}
    assert parse_identity('\ufeff \u3000') == {}
    assert parse_identity('name=caf%C3%A9') == {'name': 'café'}


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('name', 'expected key=value'),
        ('=x', 'empty key'),
        ('a=1,a=2', 'duplicate key "a"'),
        ('__proto__=1', 'reserved key'),
        ('name=%zz', 'bad percent-encoding in value'),
        ('name=%C3', 'bad percent-encoding in value'),
        ('name=%C0%80', 'bad percent-encoding in value'),
        ('name=%ED%A0%80', 'bad percent-encoding in value'),
        ('na%me=1', 'bad percent-encoding in key'),
        ('x' * 8193, 'longer than 8192'),
        (','.join(f'k{i}=v' for i in range(129)), 'more than 128 attributes'),
    ],
)
def test_parse_identity_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_identity(text)


def test_python_strip_is_not_javascript_trim() -> None:
    # U+001F is whitespace to str.strip(), not to String.prototype.trim: it stays in the key.
    assert parse_identity('\x1fname=a') == {'\x1fname': 'a'}


# JavaScript's trim() set: what parse_identity strips around keys and values.
_JS_SPACE = (
    '\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a'
    '\u2028\u2029\u202f\u205f\u3000\ufeff'
)
_RESERVED = ('__proto__', 'constructor', 'prototype')
_IDENTITIES = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(lambda k: k.strip(_JS_SPACE) == k and k not in _RESERVED),
    st.text(max_size=8).filter(lambda v: v.strip(_JS_SPACE) == v),
    max_size=6,
)


@given(_IDENTITIES)
def test_format_then_parse_round_trips(identity: dict[str, str]) -> None:
    # Keys and values with JavaScript whitespace at their ends lose it (trim): kept out.
    assert parse_identity(format_identity(identity)) == identity


def test_format_identity_sorts_by_utf16_units() -> None:
    # U+FF5E sorts after U+1F600 by code point, before it by UTF-16 unit (JavaScript's sort).
    assert format_identity({'\U0001f600': '1', '\uff5e': '2', 'a': 'x,y'}) == 'a=x%2Cy,\U0001f600=1,\uff5e=2'


@given(st.text(max_size=20))
def test_decode_uri_component_agrees_with_urllib_on_encoded_text(text: str) -> None:
    encoded = urllib.parse.quote(text, safe='', errors='surrogatepass')
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return
    assert decode_uri_component(encoded) == text


def test_selectors() -> None:
    identity = {'cloud': 'aws', 'name': 'charge-card', 'tag.app': 'payments'}
    assert selector_matches({}, identity)
    assert selector_matches({'cloud': ['aws'], 'name': ['charge-*']}, identity)
    assert selector_matches({'name': ['x', 'charge-car?']}, identity)
    assert not selector_matches({'name': ['charge-car']}, identity)
    assert not selector_matches({'region': ['*']}, identity)
    assert selector_matches({'tag.app': ['*']}, identity)
    assert identity_glob_matches('a?c', 'abc')
    assert not identity_glob_matches('a?c', 'ac')
