"""The Python kernel against the conformance table the TypeScript kernel generates
(test/conformance/table.json, format in docs/contracts.md "Conformance table"): one test per row,
named after the row, so every disagreeing row is reported by name."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from bulkhead_shim.kernel.bundle import VerifyOk, verify_bundle
from bulkhead_shim.kernel.decide import Decider, Decision, create_decider
from bulkhead_shim.kernel.identity import parse_identity
from bulkhead_shim.kernel.keys import TrustedKey, load_trusted_keys

TABLE_FILE = (Path(__file__).parent / '../../../test/conformance/table.json').resolve()
TABLE: dict[str, Any] = json.loads(TABLE_FILE.read_text(encoding='utf-8'))
ROWS: list[dict[str, Any]] = TABLE['rows']
TRUSTED: list[TrustedKey] = load_trusted_keys(TABLE['trustedKeys'])
KNOWN_OPS = frozenset(('decide', 'decideName', 'decideExec', 'decideAddon', 'decideUnix', 'create', 'verify'))

_payloads: dict[str, dict[str, Any]] = {}
_deciders: dict[tuple[str, str], Decider] = {}


def _payload(bundle: str) -> dict[str, Any]:
    payload = _payloads.get(bundle)
    if payload is None:
        result = verify_bundle(TABLE['bundles'][bundle], trusted_keys=TRUSTED, now=TABLE['now'] / 1000)
        assert isinstance(result, VerifyOk), f'bundle {bundle} does not verify: {result!r}'
        payload = _payloads[bundle] = result.payload
    return payload


def _exec_path(row: dict[str, Any]) -> str:
    exec_path: str = row['input'].get('execPath', TABLE['execPath'])
    return exec_path


def _decider(row: dict[str, Any]) -> Decider:
    key = (row['bundle'], _exec_path(row))
    decider = _deciders.get(key)
    if decider is None:
        decider = _deciders[key] = create_decider(_payload(row['bundle']), exec_path=key[1])
    return decider


def _decide(row: dict[str, Any]) -> dict[str, object]:
    decider = _decider(row)
    i = row['input']
    facts = (i.get('sni'), i.get('method'), i.get('path'))
    args = (i.get('host'), i.get('ip'), i['port'], i['protocol'], *facts)
    first = decider.decide(*args)
    # The cache must give what the full evaluation gives, and a hit the very same object.
    assert decider.decide_uncached(*args) == first
    assert decider.decide(*args) is first
    return first.as_dict()


def _verify(row: dict[str, Any]) -> dict[str, object]:
    i = row['input']
    text: str = TABLE['bundles'][row['bundle']]
    data: str | bytes = text
    if 'raw' in i:
        data = base64.b64decode(i['raw'])
    elif i.get('asBytes'):
        data = text.encode('utf-8')
    result = verify_bundle(
        data,
        trusted_keys=[TRUSTED[k] for k in i.get('trustedKeys', [0])],
        min_revision=i.get('minRevision'),
        workload=parse_identity(i['workload']) if 'workload' in i else None,
        now=i['now'] / 1000,
    )
    if isinstance(result, VerifyOk):
        return {'ok': True, 'keyId': result.key_id, 'revision': result.payload['revision']}
    return {'ok': False, 'reason': result.reason}


def _create(row: dict[str, Any]) -> dict[str, object]:
    try:
        decider = create_decider(_payload(row['bundle']), exec_path=_exec_path(row))
    except ValueError:
        return {'ok': False}
    return {
        'ok': True,
        'revision': decider.revision,
        'mode': decider.mode,
        'allowsAddresses': decider.allows_addresses,
    }


def _run(row: dict[str, Any]) -> dict[str, object]:
    op = row['op']
    i = row['input']
    decision: Decision
    if op == 'decide':
        return _decide(row)
    if op == 'decideName':
        decision = _decider(row).decide_name(i['host'])
    elif op == 'decideExec':
        decision = _decider(row).decide_exec(i['file'])
    elif op == 'decideAddon':
        decision = _decider(row).decide_addon(i['path'])
    elif op == 'decideUnix':
        decision = _decider(row).decide_unix(i['path'])
    elif op == 'create':
        return _create(row)
    elif op == 'verify':
        return _verify(row)
    else:
        pytest.fail(f'op {op!r} is not known to the Python kernel tests: port it (docs/contracts.md)')
    return decision.as_dict()


def test_table_format() -> None:
    assert TABLE['format'] == 1
    assert len(ROWS) > 300
    assert len({row['name'] for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize('row', ROWS, ids=[row['name'] for row in ROWS])
def test_row(row: dict[str, Any]) -> None:
    if row['op'] not in KNOWN_OPS:
        pytest.fail(f'op {row["op"]!r} is not known to the Python kernel: port it (docs/contracts.md)')
    got = _run(row)
    assert got == row['expect'], f'{row["name"]}: input {row["input"]!r}'
