"""URL path normalisation and glob matching: spelling tricks, linear time, a regex reference."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkhead_shim.kernel.path import (
    check_glob_stars,
    check_path_glob,
    compile_glob,
    normalize_path,
    wildcard_match,
)


@pytest.mark.parametrize(
    ('raw', 'expected'),
    [
        ('/v1/charges', '/v1/charges'),
        ('/v1/charges/', '/v1/charges/'),
        ('/v1/charges/../customers', '/v1/customers'),
        ('/v1/charges/%2e%2e/customers', '/v1/customers'),
        ('/v1/charges/%2E%2E/%2E%2E/admin', '/admin'),
        ('/v1/charges/..;/customers', '/v1/customers'),
        ('/v1/charges\\..\\customers', '/v1/customers'),
        ('//v1/charges/../../admin', '/admin'),
        ('/../../x', '/x'),
        ('/a/./b', '/a/b'),
        ('/a?x=/../b', '/a'),
        ('/a#/../b', '/a'),
        ('/%41%7e%2d', '/A~-'),
        ('/a%2fb', '/a%2Fb'),
        ('/a%zz', '/a%zz'),
        ('/a%4', '/a%4'),
        ('https://host.example/a/../b', '/b'),
        ('v1/x', '/v1/x'),
        ('', '/'),
        ('/..', '/'),
        ('/a;b/c', '/a;b/c'),
    ],
)
def test_normalize_path(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


_PATH_TEXT = st.text(alphabet=st.sampled_from('/.;%2eEfF\\?#a~:'), max_size=30) | st.text(max_size=30)


@settings(max_examples=500)
@given(_PATH_TEXT)
def test_normalize_path_is_idempotent_and_rooted(raw: str) -> None:
    once = normalize_path(raw)
    assert once.startswith('/')
    assert normalize_path(once) == once
    segments = once.split('/')
    assert '..' not in segments
    assert '.' not in segments


def _reference(pattern: str, text: str, question: bool) -> bool:
    parts = []
    for c in pattern:
        if c == '*':
            parts.append('.*')
        elif c == '?' and question:
            parts.append('.')
        else:
            parts.append(re.escape(c))
    return re.fullmatch(''.join(parts), text, re.DOTALL) is not None


@settings(max_examples=1000)
@given(
    st.text(alphabet=st.sampled_from('ab*?'), max_size=8),
    st.text(alphabet=st.sampled_from('ab?*'), max_size=10),
    st.booleans(),
)
def test_wildcard_agrees_with_a_regex(pattern: str, text: str, question: bool) -> None:
    assert wildcard_match(pattern, text, question) == _reference(pattern, text, question)


def test_question_mark_is_one_utf16_unit() -> None:
    # As in the TS kernel (JavaScript strings): a character outside the BMP is two units.
    assert wildcard_match('a??b', 'a\U0001f600b', question=True)
    assert not wildcard_match('a?b', 'a\U0001f600b', question=True)
    assert wildcard_match('a?b', 'aüb', question=True)
    assert wildcard_match('a*b', 'a\U0001f600b')


def _glob_reference(glob: str, path: str) -> bool:
    # The documented semantics, written naively (exponential, fine on small inputs): `*` within a
    # segment, a whole `**` segment for any number of segments, a glob without `/` never spans one.
    if '*' not in glob:
        return glob == path
    if '/' not in glob:
        return '/' not in path and _reference(glob, path, False)
    globs = glob.split('/')
    parts = path.split('/')

    def match(i: int, j: int) -> bool:
        if i == len(globs):
            return j == len(parts)
        if globs[i] == '**':
            return any(match(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and _reference(globs[i], parts[j], False) and match(i + 1, j + 1)

    return match(0, 0)


@settings(max_examples=1000)
@given(
    st.lists(st.sampled_from(['a', 'b', '*', '**', 'a*', '*b', '']), min_size=1, max_size=5),
    st.lists(st.sampled_from(['a', 'b', 'ab', 'ba', '']), max_size=6),
)
def test_compile_glob_agrees_with_a_regex(glob_segments: list[str], path_segments: list[str]) -> None:
    glob = '/'.join(glob_segments)
    path = '/'.join(path_segments)
    assert compile_glob(glob)(path) == _glob_reference(glob, path), (glob, path)


@pytest.mark.parametrize(
    ('glob', 'path', 'matches'),
    [
        ('/v1/**', '/v1', True),
        ('/v1/**', '/v1/', True),
        ('/v1/**', '/v1/a/b', True),
        ('/v1/**', '/v2', False),
        ('/public/*', '/public/a', True),
        ('/public/*', '/public/a/b', False),
        ('/docs/**/index.html', '/docs/index.html', True),
        ('/docs/**/index.html', '/docs/a/b/index.html', True),
        ('git', 'git', True),
        ('py*', 'python3', True),
        ('py*', 'a/python3', False),
        ('/exact', '/exact/', False),
    ],
)
def test_compile_glob(glob: str, path: str, matches: bool) -> None:
    assert compile_glob(glob)(path) is matches


def test_matching_is_linear_on_hostile_input() -> None:
    text = 'a' * 20_000
    path = '/' + '/'.join(['a'] * 5_000)
    started = time.perf_counter()
    assert not wildcard_match('*a*a*a*a*a*a*b', text)
    assert not wildcard_match('*a?a*a?a*b', text, question=True)
    assert not compile_glob('/**/a/**/a/**/b')(path)
    assert compile_glob('/**/a/**/a/**')(path)
    assert time.perf_counter() - started < 5


def test_glob_checks() -> None:
    assert check_glob_stars('/a/**/b') is None
    assert check_glob_stars('/a/**b') is not None
    assert check_path_glob('/v1/**') is None
    assert check_path_glob('v1') == 'path must start with "/", got "v1"'
    assert check_path_glob('/a?b') is not None
    assert check_path_glob('/a/../b') is not None
    assert check_path_glob('/a/') is None
