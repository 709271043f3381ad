"""Unit and property tests for what the shim parses from outside: the environment, interpreter command
lines, Unix socket addresses, composed HTTP requests."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bulkhead_shim.config import host_key, read_config
from bulkhead_shim.hooks.audit import unix_path
from bulkhead_shim.hooks.children import (
    SHIM_PATH,
    complete_env,
    env_problem,
    is_python,
    isolating_flag,
)
from bulkhead_shim.hooks.http import request_facts


def test_configuration_reads_the_node_shim_variables() -> None:
    config = read_config(
        {
            'BULKHEAD_BUNDLE_FILE': ' /tmp/b.json ',
            'BULKHEAD_TRUSTED_KEYS': 'a.pub, b.pub,',
            'BULKHEAD_WORKLOAD': 'cloud=other,name=x',
            'BULKHEAD_REPORT': 'https://control.example:8443/v1/reports',
            'BULKHEAD_TOKEN': 'secret',
            'BULKHEAD_FAIL_MODE': 'Observe',
            'AWS_LAMBDA_RUNTIME_API': '127.0.0.1:9001',
        }
    )
    assert config.bundle_file == '/tmp/b.json'
    assert config.trusted_keys == ['a.pub', 'b.pub']
    assert config.fail_mode == 'observe'
    assert config.report is not None and config.report.kind == 'http'
    assert {(e.host, e.port) for e in config.exempt} == {('control.example', 8443), ('127.0.0.1', 9001)}
    assert config.problems == []


def test_bad_configuration_is_named_and_closed_governs() -> None:
    config = read_config(
        {'BULKHEAD_FAIL_MODE': 'sometimes', 'BULKHEAD_WORKLOAD': 'novalue', 'BULKHEAD_REPORT': 'ftp://x/'}
    )
    assert config.fail_mode == 'closed'
    assert any('BULKHEAD_FAIL_MODE' in p for p in config.problems)
    assert any('BULKHEAD_WORKLOAD' in p for p in config.problems)
    assert config.report is not None and config.report.kind == 'spool'  # not a URL scheme we know: a path


def test_the_platform_identity_wins_over_the_variable() -> None:
    config = read_config(
        {
            'BULKHEAD_WORKLOAD': 'cloud=other,name=x,account=123',
            'AWS_LAMBDA_FUNCTION_NAME': 'charge-card',
            'AWS_REGION': 'eu-west-1',
            'AWS_EXECUTION_ENV': 'AWS_Lambda_python3.12',
            'BULKHEAD_TAGS': 'app=payments',
        }
    )
    assert config.workload == {
        'cloud': 'aws',
        'name': 'charge-card',
        'account': '123',
        'region': 'eu-west-1',
        'runtime': 'python3.12',
        'tag.app': 'payments',
    }


@given(st.dictionaries(st.sampled_from(sorted(_ for _ in [
    'BULKHEAD_BUNDLE_FILE', 'BULKHEAD_TRUSTED_KEYS', 'BULKHEAD_WORKLOAD', 'BULKHEAD_REPORT',
    'BULKHEAD_FAIL_MODE', 'BULKHEAD_CONTROL_URL', 'AWS_LAMBDA_RUNTIME_API', 'BULKHEAD_TAGS',
    'AWS_LAMBDA_FUNCTION_NAME', 'K_SERVICE', 'WEBSITE_SITE_NAME',
])), st.text(max_size=60)))  # fmt: skip
def test_any_environment_is_read_without_raising(env: dict[str, str]) -> None:
    config = read_config(env)
    assert config.fail_mode in ('closed', 'observe')
    assert isinstance(config.workload.get('cloud'), str)


def test_interpreter_flags_that_skip_the_shim() -> None:
    assert isolating_flag(['python', '-I', 'x.py']) == '-I'
    assert isolating_flag(['python', '-bS', '-c', 'pass']) == '-S'
    assert isolating_flag(['python', '-W', 'ignore', '-E']) == '-E'
    assert isolating_flag(['python', '-Werror', '-u', 'x.py']) is None
    assert isolating_flag(['python', '-c', 'import sys', '-I']) is None  # after -c: the program's argv
    assert isolating_flag(['python', 'x.py', '-I']) is None
    assert isolating_flag(['python', '-m', 'pip', '-I']) is None
    assert isolating_flag(['python', '--version']) is None
    assert isolating_flag([b'python', b'-I']) == '-I'


@given(st.lists(st.one_of(st.text(max_size=8), st.binary(max_size=8)), max_size=8))
def test_isolating_flag_never_raises(argv: list[Any]) -> None:
    assert isolating_flag(['python', *argv]) in (None, '-I', '-S', '-E')


def test_python_executables_are_recognised() -> None:
    own = os.path.realpath('/usr/bin/python3')
    for name in ('python', 'python3', 'python3.12', '/opt/bin/python3.13t', 'PYTHON.EXE'):
        assert is_python(name, own), name
    for name in ('pythonista', 'node', '/bin/sh', 'ipython'):
        assert not is_python(name, '/nonexistent'), name


def test_a_child_environment_is_completed_or_judged() -> None:
    ours = {'BULKHEAD_BUNDLE_FILE': '/b.json', 'BULKHEAD_FAIL_MODE': 'closed'}
    env: dict[Any, Any] = {'PATH': '/bin', 'BULKHEAD_FAIL_MODE': 'observe', 'BULKHEAD_EXTRA': '1'}
    assert env_problem(env, ours) == 'PYTHONPATH does not carry the Bulkhead shim'
    complete_env(env, ours)
    assert env_problem(env, ours) is None
    assert env['PYTHONPATH'] == SHIM_PATH
    assert 'BULKHEAD_EXTRA' not in env
    raw: dict[Any, Any] = {b'PYTHONPATH': b'/app'}
    complete_env(raw, ours)
    assert raw[b'PYTHONPATH'] == f'{SHIM_PATH}:/app'.encode()
    assert env_problem(raw, ours) is None
    assert env_problem({'PYTHONPATH': SHIM_PATH, **ours, 'BULKHEAD_TRUSTED_KEYS': 'evil'}, ours) == (
        'BULKHEAD_TRUSTED_KEYS is set for the child only'
    )


def test_unix_socket_addresses_as_the_kernel_reads_them() -> None:
    assert unix_path('/var/run/docker.sock') == '/var/run/docker.sock'
    assert unix_path(b'\0my-name') == '@my-name'
    assert unix_path(b'\0a b\\\x01\xff') == '@a b\\x5c\\x01\\xff'
    assert unix_path('rel.sock') == os.path.join(os.getcwd(), 'rel.sock')
    assert unix_path(42) == ''


@given(st.binary(max_size=40))
def test_abstract_names_are_printable_and_unambiguous(raw: bytes) -> None:
    text = unix_path(b'\0' + raw)
    assert text.startswith('@')
    assert all(0x20 <= ord(c) <= 0x7E for c in text)
    decoded = text[1:].encode().decode('unicode_escape').encode('latin-1')
    assert decoded == raw


class _Conn:
    def __init__(self, lines: list[bytes], host: str = 'api.example.com', port: int = 443) -> None:
        self._buffer = lines
        self.host = host
        self.port = port
        self.default_port = 443


def test_request_facts_come_from_the_composed_request() -> None:
    conn = _Conn([b'POST /v1/charges?x=1 HTTP/1.1', b'Host: api.example.com', b'Accept: */*'])
    assert request_facts(conn) == ('api.example.com', 443, 'https', 'POST', '/v1/charges?x=1')
    fronted = _Conn([b'GET / HTTP/1.1', b'host: evil.example:8443'])
    assert request_facts(fronted)[0] == 'evil.example'
    proxied = _Conn(
        [b'GET http://target.example:8080/p HTTP/1.1', b'Host: target.example:8080'], 'proxy', 3128
    )
    proxied.default_port = 80
    assert request_facts(proxied) == ('target.example', 8080, 'http', 'GET', '/p')
    v6 = _Conn([b'GET / HTTP/1.1', b'Host: [::1]:8080'])
    assert request_facts(v6)[0] == '::1'


@given(st.lists(st.binary(max_size=30), min_size=1, max_size=5))
def test_request_facts_never_raise_on_a_composed_buffer(lines: list[bytes]) -> None:
    try:
        host, port, protocol, _method, _path = request_facts(_Conn(lines))
    except ValueError:
        return  # a port that is not a number: http.client refuses such a request too
    assert protocol in ('http', 'https') and isinstance(host, str) and isinstance(port, int)


def test_host_keys_normalise_addresses() -> None:
    assert host_key('[::ffff:127.0.0.1]') == '127.0.0.1'
    assert host_key('API.Example.com.') == 'api.example.com'
