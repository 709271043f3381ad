"""The shim in real CPython children: real sockets on loopback, names through a hosts file in a private
network namespace, real urllib/urllib3/requests, real child processes."""

from __future__ import annotations

import sys
from typing import Any

from conftest import needs_namespaces
from harness import Fixture, probe

HOSTS = '\n'.join(
    [
        '127.0.0.1 api.allowed.test other.test',
        '127.0.0.2 evil.allowed.test evil.test',
        '127.0.0.3 by-cidr.test',
    ]
)
LISTEN = {
    'one': {'host': '127.0.0.1', 'port': 8080},
    'two': {'host': '127.0.0.2', 'port': 8080},
    'three': {'host': '127.0.0.3', 'port': 8080},
}
RULES = [
    '{ to: { host: api.allowed.test, port: 8080, methods: [GET], paths: ["/v1/**"] } }',
    '{ to: { cidr: 127.0.0.3/32, port: 8080 } }',
]


@needs_namespaces
def test_names_ports_paths_and_addresses_are_enforced(fixture: Fixture) -> None:
    fixture.write(allow=RULES)
    run = probe(
        fixture.env(),
        [
            {'op': 'tcp', 'host': 'api.allowed.test', 'port': 8080},
            {'op': 'dns', 'host': 'evil.test'},
            {'op': 'tcp', 'host': 'evil.test', 'port': 8080},
            {'op': 'tcp', 'host': '127.0.0.2', 'port': 8080},
            {'op': 'tcp', 'host': '127.0.0.3', 'port': 8080},
            {'op': 'http', 'lib': 'urllib', 'url': 'http://api.allowed.test:8080/v1/items'},
            {'op': 'http', 'lib': 'urllib', 'url': 'http://api.allowed.test:8080/admin'},
            {'op': 'http', 'lib': 'requests', 'url': 'http://api.allowed.test:8080/v1/a/b?q=1'},
            {'op': 'http', 'lib': 'requests', 'url': 'http://api.allowed.test:8080/v1/../admin'},
            {'op': 'http', 'lib': 'urllib3', 'url': 'http://api.allowed.test:8080/v1/x'},
            {'op': 'http', 'lib': 'urllib3', 'url': 'http://by-cidr.test:8080/anything'},
            {'op': 'http', 'lib': 'urllib3', 'url': 'http://127.0.0.3:8080/anything'},
        ],
        listen=LISTEN,
        hosts=HOSTS,
    )
    assert run.results == [
        'ok',
        'denied:default-deny',
        'denied:default-deny',
        'denied:default-deny',
        'ok',
        'ok:GET /v1/items host=api.allowed.test:8080',
        'denied:default-deny',
        'ok:GET /v1/a/b?q=1 host=api.allowed.test:8080',
        'denied:default-deny',
        'ok:GET /v1/x host=api.allowed.test:8080',
        # CIDR rules never make a name resolvable (as in Node): by address only.
        'denied:default-deny',
        'ok:GET /anything host=127.0.0.3:8080',
    ], run.stderr


@needs_namespaces
def test_an_address_is_allowed_only_for_the_name_this_process_resolved(fixture: Fixture) -> None:
    # other.test resolves to the same address as api.allowed.test: a Host header cannot borrow the binding.
    fixture.write(allow=['{ to: { host: api.allowed.test, port: 8080 } }'])
    run = probe(
        fixture.env(),
        [
            {'op': 'dns', 'host': 'api.allowed.test'},
            {'op': 'tcp', 'host': '127.0.0.1', 'port': 8080},
            {
                'op': 'http',
                'lib': 'requests',
                'url': 'http://127.0.0.1:8080/x',
                'headers': {'Host': 'other.test'},
            },
        ],
        listen=LISTEN,
        hosts=HOSTS,
    )
    assert run.results == ['ok:127.0.0.1', 'ok', 'denied:default-deny'], run.stderr


@needs_namespaces
def test_deny_beats_allow_and_observe_only_records(fixture: Fixture) -> None:
    fixture.write(
        allow=['{ to: { host: "*.allowed.test" } }'],
        deny=['{ to: { host: evil.allowed.test } }'],
        mode='observe',
    )
    run = probe(
        fixture.env(),
        [
            {'op': 'tcp', 'host': 'evil.allowed.test', 'port': 8080},
            {'op': 'tcp', 'host': 'api.allowed.test', 'port': 8080},
        ],
        listen=LISTEN,
        hosts=HOSTS,
    )
    assert run.results == ['ok', 'ok'], run.stderr
    records = fixture.records()
    assert {(r['kind'], r['decision'], r['mode'], r['rule']) for r in records} >= {
        ('dns', 'deny', 'observe', 'py/deny[0]'),
    }
    fixture.write(
        revision=2, allow=['{ to: { host: "*.allowed.test" } }'], deny=['{ to: { host: evil.allowed.test } }']
    )
    run = probe(
        fixture.env(), [{'op': 'tcp', 'host': 'evil.allowed.test', 'port': 8080}], listen=LISTEN, hosts=HOSTS
    )
    assert run.results == ['denied:py/deny[0]'], run.stderr


def test_udp_and_loopback_addresses_without_names(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32, port: 9999, protocol: udp } }'])
    run = probe(
        fixture.env(),
        [
            {'op': 'udp', 'host': '127.0.0.9', 'port': 9999},
            {'op': 'udp', 'host': '127.0.0.8', 'port': 9999},
            {'op': 'tcp', 'host': '0x7f.1', 'port': 9},
        ],
    )
    assert run.results == ['ok', 'denied:default-deny', 'denied:default-deny'], run.stderr


def test_deny_records_carry_the_same_shape_as_node(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
    run = probe(fixture.env(), [{'op': 'tcp', 'host': '127.0.0.7', 'port': 4242}] * 3)
    assert run.results == ['denied:default-deny'] * 3
    records = [r for r in fixture.records() if r['kind'] == 'connect']
    assert len(records) == 1, records
    record = records[0]
    assert record['count'] == 3
    assert record['destination'] == {'ip': '127.0.0.7', 'port': 4242, 'protocol': 'tcp'}
    assert (record['decision'], record['mode'], record['rule'], record['revision']) == (
        'deny',
        'enforce',
        'default-deny',
        1,
    )
    assert record['workload'] == {'cloud': 'other', 'name': 'py-test', 'tag.app': 'demo'}
    assert record['origin']['file'].endswith('probe.py')
    assert isinstance(record['origin']['line'], int)
    assert set(record) >= {'id', 'time', 'lastTime', 'count', 'workload', 'kind', 'destination'}


def test_processes_are_decided_and_python_children_stay_governed(fixture: Fixture) -> None:
    fixture.write(
        allow=['{ to: { cidr: 127.0.0.9/32 } }'],
        extra=['  exec: { allow: ["true"] }'],
    )
    child = (
        'import socket\ntry:\n socket.create_connection(("127.0.0.7", 9), timeout=2)\n'
        'except OSError as e:\n print(e)'
    )
    run = probe(
        fixture.env(),
        [
            {'op': 'exec', 'argv': ['true']},
            {'op': 'exec', 'argv': ['/bin/echo', 'hi']},
            {'op': 'system', 'command': 'true'},
            {'op': 'exec', 'argv': [sys.executable, '-c', child]},
            {'op': 'exec', 'argv': [sys.executable, '-I', '-c', child]},
            {'op': 'exec', 'argv': [sys.executable, '-c', child], 'env': {'PATH': '/usr/bin:/bin'}},
        ],
    )
    assert run.results[0] == 'ok:0:'
    assert run.results[1] == 'denied:default-deny'
    assert run.results[2] == 'denied:default-deny'
    assert run.results[3].startswith('ok:0:Bulkhead denied connect to 127.0.0.7:9 (rule default-deny'), (
        run.results
    )
    assert run.results[4] == 'denied:exec:ungoverned-python'
    # A clean environment given as a dict is completed with the shim's: the child is governed.
    assert run.results[5].startswith('ok:0:Bulkhead denied connect'), run.results


def test_native_modules_and_ctypes_follow_the_addon_rule(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
    run = probe(
        fixture.env(),
        [
            {'op': 'import', 'module': '_decimal'},
            {'op': 'import', 'module': 'ctypes'},
            {'op': 'import', 'module': 'yaml._yaml'},
        ],
    )
    # Standard-library extensions load; ctypes is native code access and follows the addon rule.
    assert run.results[0] == 'ok'
    assert run.results[1] == 'denied:default-deny'


def test_fail_closed_without_a_valid_bundle(fixture: Fixture) -> None:
    attempts: list[dict[str, Any]] = [
        {'op': 'tcp', 'host': '127.0.0.7', 'port': 9},
        {'op': 'exec', 'argv': ['true']},
    ]
    run = probe(fixture.env(BULKHEAD_BUNDLE_FILE=str(fixture.dir / 'missing.json')), attempts)
    assert run.results == ['denied:fail-closed', 'denied:fail-closed']
    assert 'refused bundle' in run.stderr and 'unreadable' in run.stderr
    text = fixture.write(allow=['{ to: { cidr: 127.0.0.7/32 } }'])
    fixture.bundle_file.write_text(text.replace('"payload":"', '"payload":"A'))
    run = probe(fixture.env(), attempts)
    assert run.results == ['denied:fail-closed', 'denied:fail-closed']
    assert run.stderr.count('refused bundle') == 1, run.stderr
    run = probe(fixture.env(BULKHEAD_FAIL_MODE='observe', BULKHEAD_BUNDLE_FILE='/nonexistent'), attempts[:1])
    assert run.results == ['error:ConnectionRefusedError']
    assert any(r['rule'] == 'fail-observe' for r in fixture.records())


def test_the_shim_reloads_a_new_revision_and_refuses_a_rollback(fixture: Fixture) -> None:
    fixture.write(revision=1, allow=['{ to: { cidr: 127.0.0.9/32 } }'])
    script = (
        'import os, socket, sys, time, json\n'
        'def attempt():\n'
        '    try:\n'
        '        socket.create_connection(("127.0.0.7", 9), timeout=1)\n'
        '    except OSError as e:\n'
        '        return str(e)\n'
        'first = attempt()\n'
        'print("ready", flush=True)\n'
        'sys.stdin.readline()\n'
        'time.sleep(1.0)\n'
        'print(json.dumps([first, attempt()]), flush=True)\n'
    )
    import subprocess

    child = subprocess.Popen(
        [sys.executable, '-c', script],
        env=fixture.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == 'ready'
    fixture.write(revision=2, allow=['{ to: { cidr: 127.0.0.7/32 } }'])
    child.stdin.write('\n')
    child.stdin.flush()
    out, err = child.communicate(timeout=30)
    import json

    first, second = json.loads(out.strip().splitlines()[-1])
    assert 'rule default-deny, revision 1' in first
    assert 'Connection refused' in second or 'Errno 111' in second, (second, err)
    assert 'enforcing bundle revision 2' in err
