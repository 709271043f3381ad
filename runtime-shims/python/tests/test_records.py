"""Deny records: attribution to the installed distribution that opened the connection, and delivery to a
real control API (the Node server, SQLite) over HTTP with a workload token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import Control, Fixture

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


def test_deny_records_reach_a_real_control_api(fixture: Fixture) -> None:
    control = Control(fixture.dir)
    try:
        workload_token = control.workload_token
        fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'])
        env = fixture.env(BULKHEAD_REPORT=f'{control.url}/v1/reports', BULKHEAD_TOKEN=workload_token)
        env['PYTHONPATH'] = os.pathsep.join([env['PYTHONPATH'], str(SITE)])
        done = subprocess.run(
            [sys.executable, '-c', CALL_DEPENDENCY], env=env, capture_output=True, text=True
        )
        assert 'Bulkhead denied connect' in done.stdout, done.stderr
        denies = control.denies()
        assert len(denies) == 1, denies
        deny = denies[0]
        assert deny['destination']['ip'] == '127.0.0.7'
        assert deny['origin']['package'] == 'analytics-lite@2.4.1'
        assert deny['workload']['name'] == 'py-test'
        assert deny['seq'] == 1 and deny['sandboxId']
        assert workload_token not in done.stderr
    finally:
        control.close()
