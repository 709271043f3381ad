"""The decision engine: its cache, shared immutable answers, arguments of any type, start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkhead_shim.kernel.bundle import VerifyOk, verify_bundle
from bulkhead_shim.kernel.decide import Decider, Decision, create_decider
from bulkhead_shim.kernel.keys import load_trusted_keys

TABLE = json.loads(
    (Path(__file__).parent / '../../../test/conformance/table.json').read_text(encoding='utf-8')
)
TRUSTED = load_trusted_keys(TABLE['trustedKeys'])
SRC = Path(__file__).parent.parent / 'src'


def _payload(bundle: str) -> dict[str, Any]:
    result = verify_bundle(TABLE['bundles'][bundle], trusted_keys=TRUSTED, now=TABLE['now'] / 1000)
    assert isinstance(result, VerifyOk)
    return result.payload


def _decider(bundle: str, **options: Any) -> Decider:
    return create_decider(_payload(bundle), exec_path=TABLE['execPath'], **options)


def test_decisions_are_shared_and_immutable() -> None:
    d = _decider('hosts')
    first = d.decide('allowed.com', None, 443, 'tcp')
    assert first == Decision('allow', 'enforce', False, 'p/allow[0]')
    assert d.decide('allowed.com', None, 443, 'tcp') is first
    assert d.decide_uncached('ALLOWED.COM.', None, 443, 'tcp') is first
    assert d.decide_name('allowed.com') is first
    with pytest.raises(AttributeError):
        first.blocked = True
    with pytest.raises(AttributeError):
        del first.rule
    assert first.as_dict() == {'decision': 'allow', 'mode': 'enforce', 'blocked': False, 'rule': 'p/allow[0]'}
    assert {first, Decision('allow', 'enforce', False, 'p/allow[0]')} == {first}


def test_revision_mode_and_exec_path() -> None:
    payload = _payload('cidr')
    d = create_decider(payload)
    assert (d.revision, d.mode, d.allows_addresses) == (1, 'enforce', True)
    assert d.exec_path == sys.executable
    assert d.decide_exec(sys.executable).rule == 'exec:node'
    assert create_decider(payload, revision=7).revision == 7
    assert create_decider(payload['policy']).revision == 0
    assert create_decider(_payload('exec-no-node')).exec_path is None


def test_a_full_cache_is_cleared_not_grown() -> None:
    d = _decider('sweep', max_cache_entries=4)
    hosts = [f'h{i}.wild.com' for i in range(20)]
    for host in hosts:
        assert d.decide(host, None, 443, 'tcp').decision == 'allow'
    assert len(d._cache) <= 4
    assert d.decide('bad.wild.com', None, 443, 'tcp').blocked


def test_protocol_names_are_never_object_keys() -> None:
    # The TS kernel reads `toString` as a protocol (an Object.prototype lookup); here it is unreadable.
    d = _decider('open')
    for protocol in ('toString', 'constructor', '__proto__', 'gopher', 'TCP'):
        assert d.decide('x.example', None, 443, protocol).rule == 'default-deny'
    assert d.decide('x.example', None, 443, 'tcp').rule == 'default-allow'


_ANY = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(
        ['allowed.com', '10.1.2.3', '169.254.169.254', '::ffff:a9fe:a9fe', '0x7f.1', '', '.', '[', '%']
    ),
)


@settings(max_examples=500)
@given(_ANY, _ANY, _ANY, _ANY, _ANY, _ANY, _ANY)
def test_never_raises_whatever_the_arguments(
    host: Any, ip: Any, port: Any, protocol: Any, sni: Any, method: Any, path: Any
) -> None:
    d = _decider('sweep', max_cache_entries=50)
    decision = d.decide(host, ip, port, protocol, sni, method, path)
    assert isinstance(decision, Decision)
    assert decision.decision in ('allow', 'deny')
    assert isinstance(d.decide_name(host), Decision)
    assert isinstance(d.decide_exec(path), Decision)
    assert isinstance(d.decide_addon(path), Decision)


_REQUESTS = st.tuples(
    st.sampled_from(
        [None, '', 'allowed.com', 'x.wild.com', 'bad.wild.com', 'B.WILD.COM.', 'api.example.com', '10.1.1.1']
    ),
    st.sampled_from([None, '10.1.1.1', '10.9.1.1', '::ffff:10.0.0.1', '169.254.169.254']),
    st.sampled_from([0, 25, 443, 80, 5432, 443.0, 443.5]),
    st.sampled_from(['tcp', 'https', 'udp', 'dns']),
    st.sampled_from([None, None, 'allowed.com', 'evil.example']),
    st.sampled_from([None, 'GET', 'POST', 'post']),
    st.sampled_from([None, '/v1/charges/x', '/v1/charges/secret/y', '/x/../v1/charges/z']),
)


@settings(max_examples=200)
@given(st.lists(_REQUESTS, max_size=40))
def test_cache_agrees_with_the_full_evaluation(requests: list[tuple[Any, ...]]) -> None:
    d = _decider('sweep', max_cache_entries=7)
    for request in requests:
        assert d.decide(*request) is d.decide_uncached(*request)


def test_a_float_port_is_the_integer_it_equals_but_never_a_cache_key() -> None:
    d = _decider('ports')
    whole: Any = 443.0
    fraction: Any = 443.5
    assert d.decide('fixed.example', None, whole, 'tcp').decision == 'allow'
    assert d.decide('fixed.example', None, fraction, 'tcp').rule == 'default-deny'
    assert d.decide('fixed.example', None, True, 'tcp').rule == 'default-deny'
    assert (('fixed.example', None, 443.5, 'tcp', None, None)) not in d._cache


def test_start_up_imports_stay_small() -> None:
    # The shim imports the kernel in every interpreter: no typing, dataclasses, json, hashlib or
    # cryptography until a bundle or key is actually read.
    code = (
        'import sys; sys.path.insert(0, sys.argv[1]); '
        'import bulkhead_shim.kernel.decide, bulkhead_shim.kernel.bundle, bulkhead_shim.kernel.keys; '
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, '-I', '-S', '-c', code, str(SRC)], capture_output=True, text=True, check=True
    )
    loaded = set(out.stdout.split())
    for heavy in (
        'typing',
        'dataclasses',
        'inspect',
        'json',
        'hashlib',
        'cryptography',
        'base64',
        'unicodedata',
    ):
        assert heavy not in loaded, heavy
