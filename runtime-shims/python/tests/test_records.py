"""Deny records: attribution to the installed distribution that opened the connection, and delivery to a
real control API (the Node server, SQLite) over HTTP with a workload token."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness import CLI, NODE, Fixture

SITE = Path(__file__).resolve().parent / 'fixtures' / 'site-packages'
CALL_DEPENDENCY = (
    'import analytics_lite\ntry:\n    analytics_lite.track()\nexcept OSError as e:\n    print(e)\n'
)


def test_a_deny_names_the_distribution_and_line_that_caused_it(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
    env = fixture.env()
    env['PYTHONPATH'] = os.pathsep.join([env['PYTHONPATH'], str(SITE)])
    done = subprocess.run([sys.executable, '-c', CALL_DEPENDENCY], env=env, capture_output=True, text=True)
    assert 'Bulkhead denied connect to 127.0.0.7:9 (rule default-deny, revision 1)' in done.stdout, (
        done.stderr
    )
    (record,) = [r for r in fixture.records() if r['kind'] == 'connect']
    assert record['origin']['package'] == 'analytics-lite@2.4.1'
    assert record['origin']['file'] == str(SITE / 'analytics_lite' / '__init__.py')
    assert record['origin']['line'] == 7


def _start_control(folder: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [
            NODE,
            str(CLI),
            'control',
            'serve',
            '--db',
            str(folder / 'control.db'),
            '--port',
            '0',
            '--host',
            '127.0.0.1',
            '--key',
            str(folder / 'signing.pem'),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=folder,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        match = re.search(r'https?://127\.0\.0\.1:(\d+)', line)
        if match:
            return server, f'http://127.0.0.1:{match.group(1)}'
    server.kill()
    raise AssertionError('control serve did not start')


def _token(folder: Path, scope: str) -> str:
    done = subprocess.run(
        [NODE, str(CLI), 'token', 'create', '--scope', scope, '--db', str(folder / 'control.db'), '--json'],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(done.stdout)['token'])


def test_deny_records_reach_a_real_control_api(fixture: Fixture) -> None:
    folder = fixture.dir
    server, url = _start_control(folder)
    try:
        workload_token = _token(folder, 'workload')
        admin_token = _token(folder, 'admin')
        fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
        env = fixture.env(BULKHEAD_REPORT=f'{url}/v1/reports', BULKHEAD_TOKEN=workload_token)
        env['PYTHONPATH'] = os.pathsep.join([env['PYTHONPATH'], str(SITE)])
        done = subprocess.run(
            [sys.executable, '-c', CALL_DEPENDENCY], env=env, capture_output=True, text=True
        )
        assert 'Bulkhead denied connect' in done.stdout, done.stderr
        request = urllib.request.Request(
            f'{url}/v1/denies?limit=10', headers={'authorization': f'Bearer {admin_token}'}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        denies = answer.get('denies') or answer.get('records') or []
        assert len(denies) == 1, answer
        deny = denies[0]
        assert deny['destination']['ip'] == '127.0.0.7'
        assert deny['origin']['package'] == 'analytics-lite@2.4.1'
        assert deny['workload']['name'] == 'py-test'
        assert deny['seq'] == 1 and deny['sandboxId']
        assert workload_token not in done.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
