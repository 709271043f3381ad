"""TLS server names, tampering with the shim's wrappers, forked children, and a shim that cannot load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_namespaces
from harness import SRC, Fixture, probe

HOSTS = '127.0.0.1 api.allowed.test evil.allowed.test'


def _certificate(folder: Path) -> tuple[str, str]:
    cert, key = folder / 'cert.pem', folder / 'key.pem'
    subprocess.run(
        [
            'openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
            '-nodes', '-days', '1', '-subj', '/CN=api.allowed.test', '-keyout', str(key), '-out', str(cert),
            '-addext', 'subjectAltName=DNS:api.allowed.test,DNS:evil.allowed.test',
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@needs_namespaces
@pytest.mark.skipif(shutil.which('openssl') is None, reason='needs openssl to make a certificate')
def test_https_is_decided_by_host_path_and_server_name(fixture: Fixture) -> None:
    cert, key = _certificate(fixture.dir)
    fixture.write(allow=['{ to: { host: api.allowed.test, port: 8443, paths: ["/v1/**"] } }'])
    run = probe(
        fixture.env(),
        [
            {'op': 'http', 'lib': 'requests', 'url': 'https://api.allowed.test:8443/v1/x', 'ca': cert},
            {'op': 'http', 'lib': 'requests', 'url': 'https://api.allowed.test:8443/v2/x', 'ca': cert},
            {'op': 'tls', 'host': 'api.allowed.test', 'port': 8443, 'sni': 'api.allowed.test', 'ca': cert},
            # Domain fronting: an allowed name's address, a forbidden server name.
            {'op': 'tls', 'host': 'api.allowed.test', 'port': 8443, 'sni': 'evil.allowed.test', 'ca': cert},
        ],
        listen={'tls': {'host': '127.0.0.1', 'port': 8443, 'tls': {'cert': cert, 'key': key}}},
        hosts=HOSTS,
    )
    assert run.results[0] == 'ok:GET /v1/x host=api.allowed.test:8443', run.stderr
    assert run.results[1] == 'denied:default-deny'
    assert run.results[2].startswith('ok:TLS')
    assert run.results[3] == 'denied:default-deny'
    (fronted,) = [r for r in fixture.records() if r['destination'].get('sni') == 'evil.allowed.test']
    assert fronted['destination']['ip'] == '127.0.0.1'


@needs_namespaces
@pytest.mark.skipif(shutil.which('openssl') is None, reason='needs openssl to make a certificate')
def test_through_a_proxy_the_target_is_decided_never_the_proxy(fixture: Fixture) -> None:
    cert, key = _certificate(fixture.dir)
    fixture.write(
        allow=[
            '{ to: { host: api.allowed.test, port: 8443, paths: ["/v1/**"] } }',
            '{ to: { cidr: 127.0.0.5/32, port: 3128 } }',  # the proxy
        ]
    )
    proxies = {'https': 'http://127.0.0.5:3128'}
    run = probe(
        fixture.env(),
        [
            {'op': 'http', 'lib': 'requests', 'url': 'https://api.allowed.test:8443/v1/x', 'ca': cert,
             'proxies': proxies},
            {'op': 'http', 'lib': 'requests', 'url': 'https://api.allowed.test:8443/v2/x', 'ca': cert,
             'proxies': proxies},
            {'op': 'http', 'lib': 'requests', 'url': 'https://evil.allowed.test:8443/v1/x', 'ca': cert,
             'proxies': proxies},
        ],
        listen={'tls': {'host': '127.0.0.1', 'port': 8443, 'tls': {'cert': cert, 'key': key}}},
        proxies={'proxy': {'host': '127.0.0.5', 'port': 3128}},
        hosts=HOSTS,
    )  # fmt: skip
    assert run.results == [
        'ok:GET /v1/x host=api.allowed.test:8443',
        'denied:default-deny',
        'denied:default-deny',  # refused before the CONNECT is written, though the proxy is allowed
    ], run.stderr
    (connect,) = [r for r in fixture.records() if r['kind'] == 'connect']
    assert connect['destination'] == {'host': 'evil.allowed.test', 'port': 8443, 'protocol': 'tcp'}


TAMPER = """
import http.client, json, urllib.request
http.client.HTTPConnection.endheaders = http.client.HTTPConnection.endheaders.__wrapped__
out = []
for attempt in range(2):
    try:
        urllib.request.urlopen('http://127.0.0.9:9/', timeout=2)
        out.append('ok')
    except OSError as error:
        out.append(str(getattr(error, 'reason', error)))
print(json.dumps(out))
"""


def test_replacing_a_wrapper_is_refused_and_reported(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
    done = subprocess.run([sys.executable, '-c', TAMPER], env=fixture.env(), capture_output=True, text=True)
    assert 'rule tamper' in done.stdout, done.stderr
    (record,) = [r for r in fixture.records() if r['kind'] == 'tamper']
    assert record['severity'] == 'high'
    assert record['count'] == 2
    assert 'endheaders' in record['destination']['command']


FORK = """
import os, socket, sys
pid = os.fork()
if pid == 0:
    try:
        socket.create_connection(('127.0.0.7', 9), timeout=2)
    except OSError as error:
        print('child', error, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_forked_child_stays_governed_and_reports(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
    done = subprocess.run([sys.executable, '-c', FORK], env=fixture.env(), capture_output=True, text=True)
    assert 'child Bulkhead denied connect to 127.0.0.7:9' in done.stdout, done.stderr


def test_a_shim_that_cannot_load_fails_closed(fixture: Fixture) -> None:
    # A copy of the shim folder whose package is broken: the interpreter must end up governed anyway.
    broken = fixture.dir / 'broken'
    shutil.copytree(SRC, broken, ignore=shutil.ignore_patterns('__pycache__'))
    (broken / 'bulkhead_shim' / 'boot.py').write_text('raise RuntimeError("disk corrupted")\n')
    fixture.write(allow=['{ to: { cidr: 127.0.0.7/32 } }'])
    script = (
        'import socket, subprocess\n'
        'for step in (lambda: socket.create_connection(("127.0.0.7", 9), timeout=1),'
        ' lambda: subprocess.run(["true"])):\n'
        '    try:\n'
        '        step()\n'
        '    except OSError as e:\n'
        '        print(e)\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', script],
        env=fixture.env(PYTHONPATH=str(broken)),
        capture_output=True,
        text=True,
    )
    assert 'shim failed to load (RuntimeError: disk corrupted); failing closed' in done.stderr
    assert done.stdout.count('rule fail-closed') == 2, done.stdout


def test_expired_and_older_bundles_are_refused_with_one_line(fixture: Fixture) -> None:
    import time

    fixture.write(revision=3, expires='1s', allow=['{ to: { cidr: 127.0.0.7/32 } }'])
    time.sleep(1.2)
    run = probe(fixture.env(), [{'op': 'tcp', 'host': '127.0.0.7', 'port': 9}])
    assert run.results == ['denied:fail-closed']
    assert 'refused bundle' in run.stderr and 'expired' in run.stderr
    assert run.stderr.count('\n') == 1, run.stderr


FORK_EXEC = """
import _posixsubprocess, importlib.util, json, os, subprocess, sys
out = []
def attempt(step):
    try:
        step()
        out.append('ok')
    except (OSError, ImportError) as error:
        out.append(str(error).split(' (rule ')[1].split(',')[0] if 'Bulkhead' in str(error) else repr(error))
def direct():
    # What subprocess does on POSIX, without subprocess (and so without its audit event).
    pid = _posixsubprocess.fork_exec(
        [b'/bin/echo', b'hi'], [b'/bin/echo'], True, (), None, None,
        -1, -1, -1, -1, -1, -1, -1, -1, False, False, *([None] * (22 - 16)))
    os.waitpid(pid, 0)
attempt(direct)
def fresh_copy():
    import _imp
    _imp.create_dynamic(importlib.util.find_spec('_posixsubprocess'))
attempt(fresh_copy)
attempt(lambda: __import__('ctypes'))
attempt(lambda: __import__('_interpreters' if sys.version_info >= (3, 13) else '_xxsubinterpreters'))
print(json.dumps(out))
"""


def test_the_primitives_under_subprocess_and_ctypes_are_governed(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
    done = subprocess.run(
        [sys.executable, '-c', FORK_EXEC], env=fixture.env(), capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith('[')]
    assert lines, done.stderr
    results = json.loads(lines[-1])
    assert results[0] == 'default-deny', (results, done.stderr)
    assert results[1] == 'tamper'
    assert results[2] == 'default-deny'
    assert results[3] == 'default-deny'
    fixture.write(
        revision=2, allow=['{ to: { cidr: 127.0.0.9/32 } }'], extra=['  addons: { allow: ["_ctypes*"] }']
    )
    done = subprocess.run(
        [sys.executable, '-c', 'import ctypes; print(ctypes.sizeof(ctypes.c_int))'],
        env=fixture.env(),
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == '4', done.stderr
    # ctypes allowed, its FFI works; the C library's network and exec entry points are not reached through it.
    script = (
        'import ctypes\n'
        'print(ctypes.CDLL(None).strlen(b"abc"))\n'
        'try:\n'
        '    ctypes.CDLL(None).connect\n'
        'except ImportError as e:\n'
        '    print(e)\n'
    )
    done = subprocess.run([sys.executable, '-c', script], env=fixture.env(), capture_output=True, text=True)
    assert done.stdout.splitlines() == [
        '3',
        'Bulkhead denied load to ctypes:connect (rule default-deny, revision 2)',
    ], done.stderr


def test_the_sitecustomize_the_shim_shadows_still_runs(fixture: Fixture) -> None:
    theirs = fixture.dir / 'theirs'
    theirs.mkdir()
    (theirs / 'sitecustomize.py').write_text('import builtins\nbuiltins.CHAINED = True\n')
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
    env = fixture.env(PYTHONPATH=f'{SRC}:{theirs}')
    done = subprocess.run(
        [
            sys.executable,
            '-c',
            'import builtins, sys; print(builtins.CHAINED, "bulkhead_shim.boot" in sys.modules)',
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == 'True True', done.stderr
