"""Bundle verification: never raises, refuses in the TypeScript kernel's order, reads times as
JavaScript does."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkhead_shim.kernel.bundle import (
    BUNDLE_PAYLOAD_TYPE,
    MAX_ENVELOPE_BYTES,
    VerifyFailure,
    VerifyOk,
    check_compiled_policy,
    parse_time,
    pre_auth_encoding,
    scope_mismatch,
    verify_bundle,
)
from bulkhead_shim.kernel.keys import TrustedKey, key_id_of

TABLE = json.loads(
    (Path(__file__).parent / '../../../test/conformance/table.json').read_text(encoding='utf-8')
)
SMALL: dict[str, Any] = json.loads(base64.b64decode(json.loads(TABLE['bundles']['small'])['payload']))
NOW = TABLE['now'] / 1000

PRIVATE = Ed25519PrivateKey.generate()
TRUSTED = [TrustedKey(key_id_of(PRIVATE.public_key()), PRIVATE.public_key())]


def _signed(payload: object, *, key: Ed25519PrivateKey = PRIVATE, **envelope: object) -> str:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signature = key.sign(pre_auth_encoding(BUNDLE_PAYLOAD_TYPE, body))
    return json.dumps(
        {
            'payloadType': BUNDLE_PAYLOAD_TYPE,
            'payload': base64.b64encode(body).decode(),
            'signatures': [
                {'keyid': key_id_of(key.public_key()), 'sig': base64.b64encode(signature).decode()}
            ],
            **envelope,
        }
    )


def _payload(**changes: object) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(json.dumps(SMALL))
    payload['keyId'] = TRUSTED[0].key_id
    payload.update(changes)
    return payload


def _reason(result: VerifyOk | VerifyFailure) -> str:
    return 'ok' if isinstance(result, VerifyOk) else result.reason


def test_verifies_and_refuses_in_order() -> None:
    good = _signed(_payload())
    result = verify_bundle(good, trusted_keys=TRUSTED, now=NOW)
    assert isinstance(result, VerifyOk)
    assert result.payload['revision'] == 5
    assert result.key_id == TRUSTED[0].key_id
    assert verify_bundle(good.encode(), trusted_keys=TRUSTED, now=NOW) == result
    assert verify_bundle(json.loads(good), trusted_keys=TRUSTED, now=NOW) == result
    assert _reason(verify_bundle(good, trusted_keys=[], now=NOW)) == 'unknown-key'
    assert _reason(verify_bundle(good, trusted_keys=TRUSTED, now=NOW, min_revision=6)) == 'rollback'
    assert _reason(verify_bundle(good, trusted_keys=TRUSTED, now=NOW, min_revision=5)) == 'ok'
    expired = verify_bundle(good, trusted_keys=TRUSTED, now=NOW + 86_400, min_revision=6)
    assert _reason(expired) == 'expired'
    assert _reason(verify_bundle(good, trusted_keys=TRUSTED, now=NOW, workload={})) == 'wrong-scope'
    assert _reason(verify_bundle(good, trusted_keys=TRUSTED, now=NOW, workload={'tag.app': 'demo'})) == 'ok'
    other = Ed25519PrivateKey.generate()
    assert (
        _reason(verify_bundle(_signed(_payload(), key=other), trusted_keys=TRUSTED, now=NOW)) == 'unknown-key'
    )
    tampered = json.loads(good)
    tampered['payload'] = base64.b64encode(json.dumps(_payload(revision=6)).encode()).decode()
    assert _reason(verify_bundle(json.dumps(tampered), trusted_keys=TRUSTED, now=NOW)) == 'bad-signature'
    assert _reason(verify_bundle(_signed(_payload(), extra=1), trusted_keys=TRUSTED, now=NOW)) == 'malformed'
    assert (
        _reason(verify_bundle(_signed(_payload(), signatures=[]), trusted_keys=TRUSTED, now=NOW))
        == 'unsigned'
    )
    assert (
        _reason(verify_bundle(_signed(_payload(keyId='x' * 32)), trusted_keys=TRUSTED, now=NOW))
        == 'malformed'
    )


def test_refuses_what_javascript_would_not_parse() -> None:
    good = _signed(_payload())
    assert (
        _reason(verify_bundle(good.replace('{', '{"x": NaN, ', 1), trusted_keys=TRUSTED, now=NOW))
        == 'malformed'
    )
    assert _reason(verify_bundle('\ufeff' + good, trusted_keys=TRUSTED, now=NOW)) == 'malformed'
    assert _reason(verify_bundle(b'\xef\xbb\xbf' + good.encode(), trusted_keys=TRUSTED, now=NOW)) == 'ok'
    assert _reason(verify_bundle(b'\xff', trusted_keys=TRUSTED, now=NOW)) == 'malformed'
    assert _reason(verify_bundle('[' * 100_000, trusted_keys=TRUSTED, now=NOW)) == 'malformed'
    # Numbers as JavaScript reads them: 1.0 is an integer, true is not a number, 10**5000 is a double.
    assert _reason(verify_bundle(_signed(_payload(revision=5.0)), trusted_keys=TRUSTED, now=NOW)) == 'ok'
    assert (
        _reason(verify_bundle(_signed(_payload(revision=True)), trusted_keys=TRUSTED, now=NOW)) == 'malformed'
    )
    long_number = _signed(
        json.dumps(_payload()).replace('"revision": 5', '"revision": 1' + '0' * 5000).encode()
    )
    assert _reason(verify_bundle(long_number, trusted_keys=TRUSTED, now=NOW)) == 'malformed'


def test_size_limit() -> None:
    result = verify_bundle(' ' * (MAX_ENVELOPE_BYTES + 1), trusted_keys=TRUSTED, now=NOW)
    assert isinstance(result, VerifyFailure)
    assert result.reason == 'malformed'
    assert 'larger than' in result.message


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_never_raises_on_bytes(data: bytes) -> None:
    assert _reason(verify_bundle(data, trusted_keys=TRUSTED, now=NOW)) == 'malformed'


@settings(max_examples=300)
@given(_JSON)
def test_never_raises_on_json(value: object) -> None:
    assert _reason(verify_bundle(json.dumps(value), trusted_keys=TRUSTED, now=NOW)) != 'ok'


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(['payloadType', 'payload', 'signatures', 'x']),
        _JSON | st.just(BUNDLE_PAYLOAD_TYPE) | st.just([{'keyid': TRUSTED[0].key_id, 'sig': 'AA=='}]),
    )
)
def test_never_raises_on_envelope_shapes(envelope: dict[str, object]) -> None:
    verify_bundle(json.dumps(envelope), trusted_keys=TRUSTED, now=NOW)


@settings(max_examples=300)
@given(
    _JSON,
    st.sampled_from(['schemaVersion', 'revision', 'issuedAt', 'expiresAt', 'keyId', 'scope', 'policy']),
)
def test_never_raises_on_signed_payloads(value: object, field: str) -> None:
    # Signed, so every payload check runs on it.
    result = verify_bundle(_signed(_payload(**{field: value})), trusted_keys=TRUSTED, now=NOW)
    assert _reason(result) in ('ok', 'malformed', 'expired')


@settings(max_examples=300)
@given(_JSON, st.sampled_from(['format', 'mode', 'fallback', 'scope', 'policies', 'rules', 'exec', 'addons']))
def test_never_raises_on_signed_policies(value: object, field: str) -> None:
    payload = _payload()
    payload['policy'][field] = value
    verify_bundle(_signed(payload), trusted_keys=TRUSTED, now=NOW)
    check_compiled_policy(payload['policy'])


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        # Values V8's Date.parse gives (Node 20, TZ=UTC for the forms without an offset).
        ('2026-01-01T00:00:00.000Z', 1767225600000),
        ('2026-01-01T00:00:00Z', 1767225600000),
        ('2026-01-01', 1767225600000),
        ('2026-01', 1767225600000),
        ('2026', 1767225600000),
        ('2026-01-01T00:00Z', 1767225600000),
        ('2026-01-01T00:00:00.123456Z', 1767225600123),
        ('2026-01-01T00:00:00.1Z', 1767225600100),
        ('2026-01-01t00:00:00z', 1767225600000),
        ('2026-02-31T00:00:00Z', 1772496000000),
        ('2026-01-01T24:00:00Z', 1767312000000),
        ('+002026-01-01T00:00:00Z', 1767225600000),
        ('-002026-01-01T00:00:00Z', -126101577600000),
        ('2026-01-01T00:00:00+01:00', 1767222000000),
        ('2026-01-01T00:00:00+0100', 1767222000000),
        ('2026-01-01T23:59:59.999+14:00', 1767261599999),
        ('2026-01-01T12:00:00-23:59', 1767355140000),
        ('0000-01-01T00:00:00Z', -62167219200000),
        ('+275760-09-13T00:00:00.000Z', 8640000000000000),
        ('-271821-04-20T00:00:00.000Z', -8640000000000000),
        ('2024-02-30T00:00:00Z', 1709251200000),
    ],
)
def test_parse_time_as_date_parse(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    'text',
    [
        '2026-01-01T24:00:01Z',
        '-000000-01-01T00:00:00Z',
        '2026-13-01',
        '2026-00-01',
        '2026-01-00',
        '2026-01-32',
        'not a time',
        '2026-01-01T00:00:60Z',
        '2026-01-01T00:00:00.Z',
        '2026-01-01T00Z',
        '2026-01-01T00:00:00.000+24:00',
        '2026-01-01T12:00:00+12:60',
        ' 2026-01-01T00:00:00Z',
        '2026-01-01T00:00:00Z\n',
        '+275760-09-13T00:00:00.001Z',
        '-271821-04-19T23:59:59.999Z',
        '2026-01-01T0:00:00Z',
        # V8's legacy parser reads these; this kernel does not (see bundle.py).
        'Thu, 01 Jan 2026 00:00:00 GMT',
        '2026-1-1',
    ],
)
def test_parse_time_refuses(text: str) -> None:
    assert parse_time(text) is None


def test_scope_mismatch_messages() -> None:
    scope = {
        'id': 's',
        'groups': [{'name': 'app', 'match': {'tag.app': ['demo']}}],
        'excludes': [{'cloud': ['gcp']}],
    }
    assert scope_mismatch(scope, {'tag.app': 'demo'}) is None
    assert (
        scope_mismatch(scope, {})
        == 'bundle scope s is for SmartGroup app, which does not select this workload'
    )
    assert scope_mismatch(scope, {'tag.app': 'demo', 'cloud': 'gcp'}) == (
        'bundle scope s was compiled without a SmartGroup that selects this workload'
    )


def test_check_compiled_policy_messages() -> None:
    policy = SMALL['policy']
    assert check_compiled_policy(policy) is None
    assert check_compiled_policy([]) == 'policy.format: expected 1'
    assert check_compiled_policy(None) == 'policy: not an object'
    broken = json.loads(json.dumps(policy))
    broken['rules'][0]['ports'] = [[443, 80]]
    assert (
        check_compiled_policy(broken) == 'policy.rules[0]: ports: expected [from, to] ranges within 0-65535'
    )


@given(st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)))
def test_parse_time_agrees_with_datetime(moment: datetime.datetime) -> None:
    text = (
        f'{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:'
        f'{moment.second:02d}.{moment.microsecond // 1000:03d}Z'
    )
    expected = (
        moment.replace(microsecond=moment.microsecond // 1000 * 1000) - datetime.datetime(1970, 1, 1)
    ) // (datetime.timedelta(milliseconds=1))
    assert parse_time(text) == expected
