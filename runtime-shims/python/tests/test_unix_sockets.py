"""Unix domain sockets under the `unix` destination: real sockets, both kinds (paths and Linux abstract
names), denied by default under enforce, links resolved, recorded with the socket they name."""

from __future__ import annotations

import os

from harness import Fixture, probe


def test_unix_sockets_are_decided_by_path_and_abstract_name(fixture: Fixture) -> None:
    folder = fixture.dir / 'run'
    folder.mkdir()
    allowed, other = str(folder / 'app.sock'), str(folder / 'other.sock')
    link = str(fixture.dir / 'app-link.sock')
    os.symlink(other, link)
    tag = f'bulkhead-test-{os.getpid()}'
    fixture.write(
        allow=[
            f'{{ to: {{ unix: "{folder}/app*.sock" }} }}',
            f'{{ to: {{ unix: "{fixture.dir}/app-link.sock" }} }}',
            f'{{ to: {{ unix: "@{tag}-ok*" }} }}',
        ]
    )
    run = probe(
        fixture.env(),
        [
            {'op': 'unix', 'path': allowed},
            {'op': 'unix', 'path': other},
            {'op': 'unix', 'path': f'{folder}/../run/other.sock'},
            {'op': 'unix', 'path': link},  # an allowed name that is a link to a socket no rule allows
            {'op': 'unix', 'path': f'@{tag}-ok-1'},
            {'op': 'unix', 'path': f'@{tag}-no'},
        ],
        unix={'a': allowed, 'b': other, 'c': f'@{tag}-ok-1', 'd': f'@{tag}-no'},
    )
    assert run.results == [
        'ok',
        'denied:default-deny',
        'denied:default-deny',
        'denied:default-deny',
        'ok',
        'denied:default-deny',
    ], run.stderr
    sockets = {r['destination']['socket'] for r in fixture.records() if r['kind'] == 'unix'}
    assert sockets == {other, f'@{tag}-no'}


def test_unix_sockets_under_observe_are_recorded_not_refused(fixture: Fixture) -> None:
    path = str(fixture.dir / 'db.sock')
    fixture.write(allow=['{ to: { cidr: 127.0.0.9/32 } }'], mode='observe')
    run = probe(fixture.env(), [{'op': 'unix', 'path': path}], unix={'a': path})
    assert run.results == ['ok'], run.stderr
    (record,) = [r for r in fixture.records() if r['kind'] == 'unix']
    assert (record['decision'], record['mode'], record['destination']) == (
        'deny',
        'observe',
        {'socket': path},
    )
