"""The bundle client against a real control API (`bulkhead control serve`): first fetch, conditional
re-fetch, long-poll propagation, refused bundles, and every way the network can fail."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bulkhead_shim.client.bundle_client import (
    BundleClient,
    FetchError,
    NotModified,
    Rejected,
    Updated,
    parse_control_url,
)
from bulkhead_shim.kernel.keys import load_trusted_keys
from harness import Control, Fixture, policy_yaml

WORKLOAD = {'cloud': 'other', 'name': 'py-test', 'tag.app': 'demo'}


@pytest.fixture
def control(fixture: Fixture) -> Iterator[Control]:
    running = Control(fixture.dir)
    yield running
    running.close()


def client_for(control: Control, **options: object) -> BundleClient:
    logs: list[str] = []
    made = BundleClient(
        control_url=control.url,
        token=control.workload_token,
        workload=WORKLOAD,
        trusted_keys=load_trusted_keys(control.public_key_pem()),
        timeout=5.0,
        log=lambda level, message: logs.append(f'{level} {message}'),
        **options,  # type: ignore[arg-type]
    )
    made.logs = logs  # type: ignore[attr-defined]
    return made


def test_first_fetch_then_conditional_fetch(control: Control) -> None:
    revision = control.apply(policy_yaml(allow=['{ to: { host: api.example.com } }']))
    client = client_for(control)
    first = client.fetch_once()
    assert isinstance(first, Updated) and first.revision == revision
    assert first.etag is not None and '"sig"' in first.envelope_text
    again = client.fetch_once()
    assert isinstance(again, NotModified) and again.revision == revision
    assert client.current() is not None and client.current().revision == revision  # type: ignore[union-attr]
    assert client.consecutive_failures == 0 and client.last_outcome == 'not-modified'


def test_a_long_poll_returns_the_next_revision_at_once(control: Control) -> None:
    control.apply(policy_yaml(allow=['{ to: { host: api.example.com } }']))
    client = client_for(control, long_poll_seconds=20)
    assert isinstance(client.fetch_once(), Updated)
    seen: list[tuple[int, float]] = []
    arrived = threading.Event()

    def on_update(outcome: Updated) -> None:
        seen.append((outcome.revision, time.monotonic()))
        arrived.set()

    client.start_long_poll(on_update)
    time.sleep(0.3)  # the long-poll is parked at the control API
    applied_at = time.monotonic()
    revision = control.apply(policy_yaml(allow=['{ to: { host: api2.example.com } }']))
    assert arrived.wait(10)
    client.stop()
    assert seen[0][0] == revision
    assert seen[0][1] - applied_at < 2.0
    assert not client.long_polling


def test_a_bundle_signed_by_another_key_is_rejected_and_the_held_one_kept(
    control: Control, fixture: Fixture
) -> None:
    control.apply(policy_yaml(allow=['{ to: { host: api.example.com } }']))
    good = client_for(control)
    held = good.fetch_once()
    assert isinstance(held, Updated)
    stranger = BundleClient(
        control_url=control.url,
        token=control.workload_token,
        workload=WORKLOAD,
        trusted_keys=load_trusted_keys(str(fixture.public_key)),
        timeout=5.0,
    )
    outcome = stranger.fetch_once()
    assert isinstance(outcome, Rejected) and outcome.reason == 'unknown-key'
    assert stranger.current() is None
    # A last-good bundle is verified before it is held, and a refused one is not held.
    assert client_for(control, last_good=held.envelope_text).current() is not None
    signature = held.envelope_text.rindex('"sig":"') + 7
    flipped = 'A' if held.envelope_text[signature] != 'A' else 'B'
    tampered = held.envelope_text[:signature] + flipped + held.envelope_text[signature + 1 :]
    assert client_for(control, last_good=tampered).current() is None


def test_http_errors_name_the_status_and_never_the_token(control: Control) -> None:
    control.apply(policy_yaml(allow=['{ to: { host: api.example.com } }']))
    client = BundleClient(
        control_url=control.url,
        token='bh_wrong-token-value',
        workload=WORKLOAD,
        trusted_keys=load_trusted_keys(control.public_key_pem()),
        timeout=5.0,
    )
    outcome = client.fetch_once()
    assert isinstance(outcome, FetchError) and outcome.cause == 'http' and outcome.status == 401
    assert 'wrong-token-value' not in outcome.message
    assert client.consecutive_failures == 1


def test_unreachable_and_silent_servers_are_errors_not_exceptions() -> None:
    keys = load_trusted_keys('MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=')
    with socket.socket() as closed:
        closed.bind(('127.0.0.1', 0))
        port = closed.getsockname()[1]
    client = BundleClient(
        control_url=f'http://127.0.0.1:{port}', token='t', workload=WORKLOAD, trusted_keys=keys, timeout=2.0
    )
    outcome = client.fetch_once()
    assert isinstance(outcome, FetchError) and outcome.cause == 'network'
    assert 'ECONNREFUSED' in outcome.message

    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen()
        client = BundleClient(
            control_url=f'http://127.0.0.1:{silent.getsockname()[1]}',
            token='t',
            workload=WORKLOAD,
            trusted_keys=keys,
            timeout=0.3,
        )
        started = time.monotonic()
        outcome = client.fetch_once()
        assert isinstance(outcome, FetchError) and outcome.cause == 'timeout'
        assert time.monotonic() - started < 2.0


class _Huge(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        declared = self.path.endswith('declared')
        self.send_response(200)
        if declared:
            self.send_header('content-length', str(10**9))
        self.end_headers()
        if not declared:
            for _ in range(40):
                self.wfile.write(b'x' * 65536)

    def log_message(self, *args: object) -> None:
        pass


def test_oversized_answers_are_cut_off() -> None:
    keys = load_trusted_keys('MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=')
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for prefix in ('/declared/', '/streamed/'):
            client = BundleClient(
                control_url=f'http://127.0.0.1:{server.server_address[1]}{prefix}',
                token='t',
                workload=WORKLOAD,
                trusted_keys=keys,
                timeout=5.0,
                max_bytes=1024 * 1024,
            )
            outcome = client.fetch_once()
            assert isinstance(outcome, FetchError) and outcome.cause == 'too-large', prefix
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ('url', 'message'),
    [
        ('ftp://x', 'must be http or https'),
        ('http://user:pw@host', 'must not carry credentials'),
        ('http://host:99999', 'is not a URL'),
        ('not a url', 'must be http or https'),
    ],
)
def test_bad_control_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_control_url(url)


def test_control_url_prefix_is_kept() -> None:
    assert parse_control_url('https://ctl.example.com/bulkhead') == (
        'https',
        'ctl.example.com',
        443,
        '/bulkhead/',
    )
