"""What the Python Lambda extension sends the control API as credentials: its configuration
(BULKHEAD_TOKEN, BULKHEAD_TOKEN_SECRET, BULKHEAD_ATTEST, as extensions/config.ts reads them) and the
forwarder's bearer once the token is known (read from a secret) or an attested session's, with a 401
told to the attestor. The whole extension with the AWS stand-in and the real control API:
test/lambda/python-attest.test.ts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bulkhead_shim.lambda_extension.config import ConfigError, load_config
from bulkhead_shim.lambda_extension.forwarder import Forwarder

ARN = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:bulkhead/charge-card-AbC123'


def test_reads_the_token_secret_only_without_a_token(tmp_path: Path) -> None:
    base = {'BULKHEAD_CONTROL_URL': 'http://127.0.0.1:1', 'BULKHEAD_STATE_DIR': str(tmp_path)}
    config = load_config({**base, 'BULKHEAD_TOKEN_SECRET': ARN}, str(tmp_path))
    assert (config.token, config.token_secret, config.attest) == (None, ARN, None)
    # BULKHEAD_TOKEN wins: the secret is not read (nor checked).
    config = load_config({**base, 'BULKHEAD_TOKEN': 'bhk_x', 'BULKHEAD_TOKEN_SECRET': 'junk'}, str(tmp_path))
    assert (config.token, config.token_secret) == ('bhk_x', None)
    with pytest.raises(ConfigError, match=r"^BULKHEAD_TOKEN_SECRET: 'junk' is not an ARN"):
        load_config({**base, 'BULKHEAD_TOKEN_SECRET': 'junk'}, str(tmp_path))


def test_reads_bulkhead_attest_and_refuses_an_unknown_kind(tmp_path: Path) -> None:
    base = {'BULKHEAD_STATE_DIR': str(tmp_path)}
    assert load_config({**base, 'BULKHEAD_ATTEST': 'AWS'}, str(tmp_path)).attest == 'aws'
    assert load_config({**base, 'BULKHEAD_ATTEST': 'off'}, str(tmp_path)).attest is None
    with pytest.raises(ConfigError, match='BULKHEAD_ATTEST must be aws, gcp or azure'):
        load_config({**base, 'BULKHEAD_ATTEST': 'vault'}, str(tmp_path))


class Reports:
    """POST /v1/reports: 401 for `refused` tokens, else accepted; the bearer of each batch recorded."""

    def __init__(self) -> None:
        self.bearers: list[str] = []
        self.refused: set[str] = set()
        reports = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self) -> None:
                length = int(self.headers.get('Content-Length', '0'))
                batch = json.loads(self.rfile.read(length))
                bearer = self.headers.get('Authorization', '')[len('Bearer ') :]
                reports.bearers.append(bearer)
                status = 401 if bearer in reports.refused else 200
                body = json.dumps({'accepted': len(batch['records'])}).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'


@pytest.fixture
def reports() -> Iterator[Reports]:
    running = Reports()
    yield running
    running.server.shutdown()
    running.server.server_close()


def _spool(state_dir: Path, n: int) -> None:
    with (state_dir / 'spool.ndjson').open('a') as spool:
        for i in range(n):
            spool.write(json.dumps({'id': f'r{i}', 'kind': 'connect'}) + '\n')


def test_the_forwarder_waits_for_its_token_then_sends_the_session_and_reports_a_401(
    tmp_path: Path, reports: Reports
) -> None:
    lines: list[str] = []
    # The token is to be read from a secret: nothing to send with yet, the records stay.
    forwarder = Forwarder(str(tmp_path), reports.url, None, lines.append)
    _spool(tmp_path, 2)
    result = forwarder.forward(time.monotonic() + 2)
    assert result.pending and result.error == 'no control API configured; records stay in the spool'
    assert reports.bearers == []

    session = ['bhk_session-1']
    refused: list[int] = []
    forwarder.use_credentials('bhk_workload', lambda: session[0], lambda: refused.append(1))
    assert forwarder.forward(time.monotonic() + 2).sent == 2
    assert reports.bearers == ['bhk_session-1']

    # A 401: the batch stays for a retry, and the attestor hears of it.
    reports.refused.add('bhk_session-1')
    _spool(tmp_path, 1)
    result = forwarder.forward(time.monotonic() + 2)
    assert result.pending and result.error == 'control API answered 401' and refused == [1]
    session[0] = 'bhk_session-2'
    assert forwarder.forward(time.monotonic() + 2).sent == 1
    assert reports.bearers[-1] == 'bhk_session-2'
    # Without attestation: the workload token as it is.
    forwarder.use_credentials('bhk_workload')
    _spool(tmp_path, 1)
    forwarder.forward(time.monotonic() + 2)
    assert reports.bearers[-1] == 'bhk_workload'
    assert not any('bhk_' in line for line in lines)
