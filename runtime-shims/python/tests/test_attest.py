"""Attested identity in the Python client (bulkhead_shim.client.attest and its wiring into the in-process
controller): the proofs asked of a stand-in GCP metadata server and App Service identity endpoint, and a
fake control API (`POST /v1/attest`, `GET /v1/bundle`, `POST /v1/reports`, http.server on 127.0.0.1)
that records which token each request carries. The bundle it serves is a real signed one (the CLI's).
The control API's own /v1/attest is tested after it exists; here it is a stand-in that verifies nothing."""

from __future__ import annotations

import base64
import contextvars
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from bulkhead_shim.client.attest import (
    MAX_ANSWER_BYTES,
    Attestor,
    ProofError,
    attest_kind,
    azure_proof,
    default_audience,
    gcp_proof,
)
from bulkhead_shim.client.in_process import InProcessController
from harness import SRC, WORKLOAD, Fixture

WORKLOAD_TOKEN = 'bh_workload-token-secret-0123456789'
IDENTITY_SECRET = 'identity-header-secret-9876543210'
CLIENT_ID = '11111111-2222-4333-8444-555555555555'


def test_pytest_imports_this_worktrees_source() -> None:
    import bulkhead_shim

    assert Path(bulkhead_shim.__file__).resolve().is_relative_to(SRC.resolve())


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip('=')


def _jwt(claims: dict[str, Any], n: int) -> str:
    header = _b64(json.dumps({'alg': 'RS256', 'kid': 'standin', 'typ': 'JWT'}).encode())
    return f'{header}.{_b64(json.dumps(claims).encode())}.{_b64(f"signature-{n}".encode())}'


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---- the platform: metadata server and identity endpoint ------------------------------------------


class Platform:
    """The GCP metadata server's identity endpoint and the App Service identity endpoint, on one port."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.issued: list[str] = []
        #: ok, hang, huge, html or an HTTP status to answer with.
        self.mode: str | int = 'ok'
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = dict(parse_qsl(url.query))
                platform.seen.append((url.path, query, {k.lower(): v for k, v in self.headers.items()}))
                if platform.mode == 'hang':
                    time.sleep(5)
                    return
                if platform.mode == 'huge':
                    return self._answer(200, b'x' * (MAX_ANSWER_BYTES + 10), 'text/plain')
                if platform.mode == 'html':
                    return self._answer(200, b'<html>captive portal</html>', 'text/html')
                if isinstance(platform.mode, int):
                    return self._answer(platform.mode, b'{"message":"no"}', 'application/json')
                if url.path == '/computeMetadata/v1/instance/service-accounts/default/identity':
                    if self.headers.get('Metadata-Flavor') != 'Google':
                        return self._answer(403, b'Missing Metadata-Flavor:Google header.\n', 'text/plain')
                    token = platform.mint({'aud': query.get('audience'), 'format': query.get('format')})
                    return self._answer(200, token.encode(), 'application/text')
                if url.path == '/msi/token':
                    if self.headers.get('X-IDENTITY-HEADER') != IDENTITY_SECRET:
                        return self._answer(401, b'{"statusCode":401}', 'application/json')
                    token = platform.mint({'aud': query.get('resource'), 'appid': query.get('client_id')})
                    body = {
                        'access_token': token,
                        'expires_on': str(int(time.time()) + 3600),
                        'resource': query.get('resource'),
                        'token_type': 'Bearer',
                    }
                    return self._answer(200, json.dumps(body).encode(), 'application/json')
                return self._answer(404, b'not found', 'text/plain')

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header('content-type', kind)
                self.send_header('content-length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _serve(Handler)
        self.port = self.server.server_address[1]
        self.host = f'127.0.0.1:{self.port}'

    def mint(self, claims: dict[str, Any]) -> str:
        token = _jwt(claims, len(self.issued))
        self.issued.append(token)
        return token

    def env(self) -> dict[str, str]:
        return {
            'GCE_METADATA_HOST': self.host,
            'IDENTITY_ENDPOINT': f'http://{self.host}/msi/token',
            'IDENTITY_HEADER': IDENTITY_SECRET,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- the control API ----------------------------------------------------------------------------


class FakeControl:
    """`POST /v1/attest` (answers a new session token for the workload token), `GET /v1/bundle` (the signed
    bundle; 401 for revoked sessions, 403 for plain workload tokens when sessions are required) and
    `POST /v1/reports`, recording (method, path, bearer token) of every request."""

    def __init__(self, envelope: str) -> None:
        self.envelope = envelope
        self.requests: list[tuple[str, str, str]] = []
        self.attest_bodies: list[dict[str, Any]] = []
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.sessions: list[str] = []
        self.revoked: set[str] = set()
        self.refuse_all = False
        self.require_session = False
        self.attest_status = 200
        self.ttl = 3600.0
        self.clock: Callable[[], float] = time.time
        #: The identity answered for a claimed one (default: the claimed one).
        self.answer_identity: Callable[[str], str] = lambda claimed: claimed
        control = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def _bearer(self) -> str:
                value = self.headers.get('Authorization', '')
                return value[len('Bearer ') :] if value.startswith('Bearer ') else value

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get('Content-Length', '0'))) or b'{}')
                token = self._bearer()
                control.requests.append(('POST', url.path, token))
                if url.path == '/v1/attest':
                    control.attest_bodies.append(body)
                    if token != WORKLOAD_TOKEN:
                        return self._json(401, {'error': 'unknown token'})
                    if control.attest_status != 200:
                        return self._json(
                            control.attest_status, {'error': 'project demo is not allowed to attest'}
                        )
                    session = f'bhk_session-{len(control.sessions) + 1}'
                    control.sessions.append(session)
                    expires = datetime.fromtimestamp(control.clock() + control.ttl, timezone.utc)
                    return self._json(
                        200,
                        {
                            'token': session,
                            'id': f'ses_{len(control.sessions)}',
                            'expiresAt': expires.isoformat(timespec='milliseconds').replace('+00:00', 'Z'),
                            'identity': control.answer_identity(body.get('workload', '')),
                            'attested': {'kind': body['proof']['type'], 'principal': 'fn@demo.example'},
                        },
                    )
                if url.path == '/v1/reports':
                    control.reports.append((token, body))
                    if token in control.revoked:
                        return self._json(401, {'error': 'session expired'})
                    return self._json(200, {'accepted': len(body.get('records', []))})
                self._json(404, {'error': 'not found'})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                token = self._bearer()
                control.requests.append(('GET', url.path + ('?wait' if 'wait=' in url.query else ''), token))
                if url.path != '/v1/bundle':
                    return self._json(404, {'error': 'not found'})
                if control.refuse_all or token in control.revoked:
                    return self._json(401, {'error': 'session expired'})
                if control.require_session and token not in control.sessions:
                    return self._json(403, {'error': 'attestation required'})
                if self.headers.get('If-None-Match') == '"r1"':
                    if 'wait=' in url.query:
                        time.sleep(0.2)
                    self.send_response(304)
                    self.send_header('ETag', '"r1"')
                    self.send_header('Content-Length', '0')
                    self.end_headers()
                    return
                body = control.envelope.encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('ETag', '"r1"')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, value: Any) -> None:
                body = json.dumps(value).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _serve(Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'

    def attests(self) -> int:
        return sum(1 for method, path, _ in self.requests if (method, path) == ('POST', '/v1/attest'))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RecordingShim:
    """A shim binding that records reloads and the session the controller hands the record sink."""

    def __init__(self) -> None:
        self.revisions: list[int] = []
        self.current: contextvars.ContextVar[str | None] = contextvars.ContextVar('tag', default=None)
        self.session: tuple[str, Callable[[], str | None], Callable[[], None]] | None = None

    def install(self) -> None:
        pass

    def reload(self, envelope_text: str) -> bool:
        payload = json.loads(base64.b64decode(json.loads(envelope_text)['payload']))
        self.revisions.append(int(payload['revision']))
        return True

    def pending(self) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def enter_invocation(self, tag: str | None) -> contextvars.Token[str | None]:
        return self.current.set(tag)

    def leave_invocation(self, token: contextvars.Token[str | None]) -> None:
        self.current.reset(token)

    def revision(self) -> int | None:
        return self.revisions[-1] if self.revisions else None

    def use_session(
        self, control_url: str, token: Callable[[], str | None], on_unauthorized: Callable[[], None]
    ) -> bool:
        self.session = (control_url, token, on_unauthorized)
        return True


@pytest.fixture(scope='module')
def signed() -> Iterator[Fixture]:
    made = Fixture()
    made.write(allow=['{ to: { cidr: 127.0.0.10/32 } }'])
    yield made
    made.cleanup()


@pytest.fixture
def platform() -> Iterator[Platform]:
    running = Platform()
    yield running
    running.close()


@pytest.fixture
def control(signed: Fixture) -> Iterator[FakeControl]:
    running = FakeControl(signed.bundle_file.read_text())
    yield running
    running.close()


def controller_env(control: FakeControl, platform: Platform, signed: Fixture, **extra: str) -> dict[str, str]:
    return {
        'BULKHEAD_CONTROL_URL': control.url,
        'BULKHEAD_TOKEN': WORKLOAD_TOKEN,
        'BULKHEAD_TRUSTED_KEYS': str(signed.public_key),
        'BULKHEAD_WORKLOAD': WORKLOAD,
        **platform.env(),
        **extra,
    }


def make_controller(
    env: dict[str, str], **options: Any
) -> tuple[InProcessController, RecordingShim, list[str]]:
    shim = RecordingShim()
    lines: list[str] = []
    controller = InProcessController(env=env, shim=shim, log=lines.append, **options)
    return controller, shim, lines


def assert_no_secrets(lines: list[str], *secrets: str) -> None:
    text = '\n'.join(lines)
    for secret in secrets:
        assert secret not in text, f'a secret is in the log:\n{text}'


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met in time')
        time.sleep(0.02)


# ---- proofs ---------------------------------------------------------------------------------------


def test_gcp_proof_asks_the_metadata_server_for_a_full_identity_token(platform: Platform) -> None:
    proof = gcp_proof(audience='https://control.example', env={'GCE_METADATA_HOST': platform.host})
    assert proof == {'type': 'gcp', 'token': platform.issued[-1]}
    path, query, headers = platform.seen[-1]
    assert path == '/computeMetadata/v1/instance/service-accounts/default/identity'
    assert query == {'audience': 'https://control.example', 'format': 'full'}
    assert headers['metadata-flavor'] == 'Google'
    # The stand-in refuses a request without the header, as the real server does.
    request = urllib.request.Request(f'http://{platform.host}{path}?audience=x&format=full')
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403


def test_azure_proof_asks_the_identity_endpoint(platform: Platform) -> None:
    proof = azure_proof(audience='api://bulkhead-control', env=platform.env())
    assert proof == {'type': 'azure', 'token': platform.issued[-1]}
    path, query, headers = platform.seen[-1]
    assert path == '/msi/token'
    assert query == {'resource': 'api://bulkhead-control', 'api-version': '2019-08-01'}
    assert headers['x-identity-header'] == IDENTITY_SECRET
    azure_proof(
        audience='api://bulkhead-control', env={**platform.env(), 'BULKHEAD_AZURE_CLIENT_ID': CLIENT_ID}
    )
    assert platform.seen[-1][1]['client_id'] == CLIENT_ID


def test_proof_errors_name_what_is_missing_and_never_the_secret(platform: Platform) -> None:
    with pytest.raises(ProofError, match=r'^IDENTITY_ENDPOINT is not set') as missing:
        azure_proof(audience='a', env={})
    assert missing.value.reason == 'not-configured'
    with pytest.raises(ProofError, match=r'^IDENTITY_HEADER is not set'):
        azure_proof(audience='a', env={'IDENTITY_ENDPOINT': f'http://{platform.host}/msi/token'})
    with pytest.raises(ProofError, match='must be an http URL'):
        azure_proof(audience='a', env={'IDENTITY_ENDPOINT': 'https://x.example/', 'IDENTITY_HEADER': 's'})
    wrong = 'not-the-identity-header-0000'
    with pytest.raises(ProofError) as refused:
        azure_proof(audience='a', env={**platform.env(), 'IDENTITY_HEADER': wrong})
    assert (refused.value.reason, refused.value.status) == ('refused', 401)
    assert wrong not in str(refused.value) and IDENTITY_SECRET not in str(refused.value)
    with pytest.raises(ProofError, match='GCE_METADATA_HOST'):
        gcp_proof(audience='a', env={'GCE_METADATA_HOST': 'evil.example/path?x'})
    with pytest.raises(ProofError, match='audience'):
        gcp_proof(audience='', env={'GCE_METADATA_HOST': platform.host})
    with pytest.raises(ProofError, match='audience'):
        gcp_proof(audience='a\r\nX-Injected: 1', env={'GCE_METADATA_HOST': platform.host})


def test_proof_requests_are_bounded_in_time_and_size(platform: Platform) -> None:
    env = {'GCE_METADATA_HOST': platform.host}
    platform.mode = 'hang'
    began = time.monotonic()
    with pytest.raises(ProofError) as late:
        gcp_proof(audience='a', env=env, timeout=0.3)
    assert late.value.reason == 'timeout' and time.monotonic() - began < 1.5
    platform.mode = 'huge'
    with pytest.raises(ProofError, match='more than') as huge:
        gcp_proof(audience='a', env=env)
    assert huge.value.reason == 'malformed'
    platform.mode = 'html'
    with pytest.raises(ProofError, match='did not answer a JWT'):
        gcp_proof(audience='a', env=env)
    platform.mode = 503
    with pytest.raises(ProofError, match='answered 503') as busy:
        gcp_proof(audience='a', env=env)
    assert busy.value.status == 503
    with pytest.raises(ProofError, match='ECONNREFUSED') as closed:
        gcp_proof(audience='a', env={'GCE_METADATA_HOST': f'127.0.0.1:{closed_port()}'})
    assert closed.value.reason == 'unreachable'


def test_the_audience_defaults_to_the_control_apis_origin() -> None:
    assert default_audience('https://Control.Example/bulkhead/') == 'https://control.example'
    assert default_audience('https://control.example:443') == 'https://control.example'
    assert default_audience('http://127.0.0.1:8080/x') == 'http://127.0.0.1:8080'
    assert default_audience('http://[::1]:9/') == 'http://[::1]:9'
    assert attest_kind({'BULKHEAD_ATTEST': ' GCP '}) == 'gcp'
    assert attest_kind({'BULKHEAD_ATTEST': 'off'}) is None and attest_kind({}) is None
    assert attest_kind({'BULKHEAD_ATTEST': 'aws'}) == 'aws'
    with pytest.raises(ValueError, match='aws, gcp or azure'):
        attest_kind({'BULKHEAD_ATTEST': 'vault'})


# ---- the controller ---------------------------------------------------------------------------------


def test_the_controller_attests_before_the_first_fetch_and_uses_the_session(
    control: FakeControl, platform: Platform, signed: Fixture
) -> None:
    env = controller_env(control, platform, signed, BULKHEAD_ATTEST='gcp')
    controller, shim, lines = make_controller(env, idle_long_poll=0.5)
    controller.start()
    assert control.requests[:2] == [
        ('POST', '/v1/attest', WORKLOAD_TOKEN),
        ('GET', '/v1/bundle', 'bhk_session-1'),
    ]
    assert shim.revisions == [1]
    (body,) = control.attest_bodies
    assert body == {'workload': WORKLOAD, 'proof': {'type': 'gcp', 'token': platform.issued[-1]}}
    assert platform.seen[-1][1] == {'audience': control.url, 'format': 'full'}
    # Records to the control API carry the session from now on.
    assert shim.session is not None and shim.session[0] == control.url
    assert shim.session[1]() == 'bhk_session-1'
    status = controller.status()['attestation']
    assert status['kind'] == 'gcp' and status['attested'] is True and status['attempts'] == 1
    # The long-poll the invocation starts carries it too.
    controller.before_invocation()
    wait_for(lambda: ('GET', '/v1/bundle?wait', 'bhk_session-1') in control.requests)
    controller.after_invocation()
    controller.shutdown()
    assert control.attests() == 1
    assert any(
        line.startswith('attested (gcp) as fn@demo.example; session ses_1 until ') for line in lines
    ), lines
    assert_no_secrets(lines, WORKLOAD_TOKEN, 'bhk_session-1', platform.issued[-1], IDENTITY_SECRET)


def test_azure_attests_with_its_own_audience_and_client_id(
    control: FakeControl, platform: Platform, signed: Fixture
) -> None:
    env = controller_env(
        control,
        platform,
        signed,
        BULKHEAD_ATTEST='azure',
        BULKHEAD_ATTEST_AUDIENCE='api://bulkhead-control',
        BULKHEAD_AZURE_CLIENT_ID=CLIENT_ID,
    )
    controller, shim, lines = make_controller(env, long_poll=False)
    controller.start()
    path, query, headers = platform.seen[-1]
    assert path == '/msi/token' and headers['x-identity-header'] == IDENTITY_SECRET
    assert query == {
        'resource': 'api://bulkhead-control',
        'api-version': '2019-08-01',
        'client_id': CLIENT_ID,
    }
    assert control.attest_bodies[0]['proof'] == {'type': 'azure', 'token': platform.issued[-1]}
    assert control.requests[1] == ('GET', '/v1/bundle', 'bhk_session-1') and shim.revisions == [1]
    assert_no_secrets(lines, WORKLOAD_TOKEN, 'bhk_session-1', platform.issued[-1], IDENTITY_SECRET)


def test_a_401_attests_once_more_and_then_not_until_a_fetch_is_accepted(
    control: FakeControl, platform: Platform, signed: Fixture
) -> None:
    env = controller_env(control, platform, signed, BULKHEAD_ATTEST='gcp')
    controller, shim, _ = make_controller(env, long_poll=False, max_staleness=0)
    controller.start()
    control.revoked.add('bhk_session-1')
    del control.requests[:]
    controller.before_invocation()
    controller.after_invocation()
    assert control.requests == [
        ('GET', '/v1/bundle', 'bhk_session-1'),
        ('POST', '/v1/attest', WORKLOAD_TOKEN),
        ('GET', '/v1/bundle', 'bhk_session-2'),
    ]
    # Every token refused now: one more attestation, then none while the refusals go on.
    control.refuse_all = True
    del control.requests[:]
    for _ in range(3):
        controller.before_invocation()
        controller.after_invocation()
    assert control.requests == [
        ('GET', '/v1/bundle', 'bhk_session-2'),
        ('POST', '/v1/attest', WORKLOAD_TOKEN),
        ('GET', '/v1/bundle', 'bhk_session-3'),
        ('GET', '/v1/bundle', 'bhk_session-3'),
        ('GET', '/v1/bundle', 'bhk_session-3'),
    ]
    # Accepted again: a later 401 may attest once more.
    control.refuse_all = False
    controller.before_invocation()
    controller.after_invocation()
    control.revoked.add('bhk_session-3')
    del control.requests[:]
    controller.before_invocation()
    controller.after_invocation()
    assert [r for r in control.requests if r[1] == '/v1/attest'] == [('POST', '/v1/attest', WORKLOAD_TOKEN)]
    assert control.requests[-1] == ('GET', '/v1/bundle', 'bhk_session-4')
    assert shim.revisions == [1]


def test_the_session_is_renewed_within_five_minutes_of_its_end(
    control: FakeControl, platform: Platform
) -> None:
    now = [time.time()]
    control.clock = lambda: now[0]
    lines: list[str] = []
    attestor = Attestor(
        kind='gcp',
        control_url=control.url,
        workload_token=WORKLOAD_TOKEN,
        workload=WORKLOAD,
        env=platform.env(),
        log=lines.append,
        clock=lambda: now[0],
    )
    assert attestor.bearer() == WORKLOAD_TOKEN
    assert attestor.prepare(2.0) == 'bhk_session-1'
    now[0] += 3600 - 301
    assert attestor.prepare(2.0) == 'bhk_session-1' and control.attests() == 1
    now[0] += 2
    # Due: the request goes out with the session it has, the renewal runs in the background.
    assert attestor.prepare(2.0) == 'bhk_session-1'
    wait_for(lambda: attestor.bearer() == 'bhk_session-2')
    assert control.attests() == 2
    # Past its end, a session is not sent: the next request attests first.
    now[0] += 3601
    assert attestor.bearer() == WORKLOAD_TOKEN
    assert attestor.prepare(2.0) == 'bhk_session-3'


def test_a_failed_attestation_falls_back_to_the_workload_token_and_backs_off(
    control: FakeControl, platform: Platform, signed: Fixture
) -> None:
    control.attest_status = 403
    env = controller_env(control, platform, signed, BULKHEAD_ATTEST='gcp')
    controller, shim, lines = make_controller(env, long_poll=False, max_staleness=0)
    controller.start()
    assert control.requests == [('POST', '/v1/attest', WORKLOAD_TOKEN), ('GET', '/v1/bundle', WORKLOAD_TOKEN)]
    assert shim.revisions == [1]
    assert (
        'attestation (gcp) failed: the control API answered 403: {"error": "project demo is not allowed to '
        'attest"}; using the workload token; next attempt in 30 s'
    ) in lines
    controller.before_invocation()
    controller.after_invocation()
    assert control.attests() == 1  # backing off
    assert controller.status()['attestation']['failures'] == 1
    assert_no_secrets(lines, WORKLOAD_TOKEN, platform.issued[-1], IDENTITY_SECRET)


def test_when_sessions_are_required_a_failed_attestation_leaves_the_fail_mode(
    control: FakeControl, platform: Platform, signed: Fixture
) -> None:
    control.require_session = True
    env = controller_env(
        control, platform, signed, BULKHEAD_ATTEST='gcp', GCE_METADATA_HOST=f'127.0.0.1:{closed_port()}'
    )
    controller, shim, lines = make_controller(env, long_poll=False)
    controller.start()
    assert control.requests == [('GET', '/v1/bundle', WORKLOAD_TOKEN)]
    assert shim.revisions == [] and controller.status()['lastOutcome'] == 'error'
    assert any(
        'attestation (gcp) failed: the metadata server' in line and 'ECONNREFUSED' in line for line in lines
    )
    assert any('bundle refresh failed (http): control API answered 403' in line for line in lines), lines


def test_attesting_stays_within_the_first_fetchs_bound(
    control: FakeControl, platform: Platform, signed: Fixture
) -> None:
    platform.mode = 'hang'
    env = controller_env(control, platform, signed, BULKHEAD_ATTEST='gcp')
    controller, shim, lines = make_controller(env, long_poll=False, startup_timeout=1.5)
    began = time.monotonic()
    controller.start()
    elapsed = time.monotonic() - began
    assert elapsed < 1.5 + 0.3, elapsed
    assert shim.revisions == [1] and control.requests == [('GET', '/v1/bundle', WORKLOAD_TOKEN)]
    assert any('did not answer within 1000 ms' in line for line in lines), lines


# ---- the real shim: records carry the session -------------------------------------------------------

CHILD = """
import json, socket, urllib.request
from bulkhead_shim import gcp as bulkhead

@bulkhead.http
def handler(request):
    try:
        socket.create_connection(('127.0.0.9', 9), timeout=2).close()
        connect = 'connected'
    except OSError as error:
        connect = type(error).__name__
    try:
        path = '/computeMetadata/v1/instance/service-accounts/default/identity?audience=x'
        urllib.request.urlopen('http://{metadata}' + path, timeout=2)
        metadata = 'reached'
    except OSError as error:  # urllib's URLError wraps the refusal
        metadata = type(getattr(error, 'reason', error)).__name__
    return {{'connect': connect, 'metadata': metadata}}

print(json.dumps({{'result': handler(None), 'status': bulkhead.status()}}))
"""


def test_the_governed_process_attests_and_its_records_carry_the_session(
    control: FakeControl, platform: Platform, signed: Fixture
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('BULKHEAD_', 'PYTHON', 'K_', 'GCE_'))}
    env.update(
        controller_env(control, platform, signed, BULKHEAD_ATTEST='gcp'),
        PYTHONPATH=str(SRC),
        PYTHONDONTWRITEBYTECODE='1',
    )
    done = subprocess.run(
        [sys.executable, '-c', CHILD.format(metadata=platform.host)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
    assert lines, done.stderr
    answer = json.loads(lines[-1])
    # The shim's own proof request reached the metadata server; the function's own is denied.
    assert answer['result'] == {'connect': 'EgressDenied', 'metadata': 'EgressDenied'}, done.stderr
    assert answer['status']['attestation']['attested'] is True and answer['status']['revision'] == 1
    assert control.requests[:2] == [
        ('POST', '/v1/attest', WORKLOAD_TOKEN),
        ('GET', '/v1/bundle', 'bhk_session-1'),
    ]
    assert [(path, query.get('format')) for path, query, _ in platform.seen] == [
        ('/computeMetadata/v1/instance/service-accounts/default/identity', 'full')
    ]
    assert control.reports, done.stderr
    assert {token for token, _ in control.reports} == {'bhk_session-1'}
    destinations = [r['destination'] for _, batch in control.reports for r in batch['records']]
    assert {'ip': '127.0.0.9', 'port': 9} in [{k: d.get(k) for k in ('ip', 'port')} for d in destinations]
    assert WORKLOAD_TOKEN not in done.stderr and 'bhk_session-1' not in done.stderr


# ---- AWS, and the identity a session is pinned to ------------------------------------------------------

AWS_ROLE = {
    'AWS_ACCESS_KEY_ID': 'ASIACHARGECARD000009',
    'AWS_SECRET_ACCESS_KEY': 'charge/card+role/secret9999999999999999',
    'AWS_SESSION_TOKEN': 'IQoJb3JpZ2luX2VjECHARGECARD//attest9==',
    'AWS_ENDPOINT_URL_STS': 'http://127.0.0.1:4566',
    'AWS_REGION': 'eu-west-1',
}


def aws_attestor(control: FakeControl, lines: list[str], env: dict[str, str]) -> Attestor:
    return Attestor(
        kind='aws',
        control_url=control.url,
        workload_token=WORKLOAD_TOKEN,
        workload=WORKLOAD,
        env=env,
        log=lines.append,
        audience='https://bulkhead.example.test',
    )


def test_aws_attests_with_a_signed_get_caller_identity_made_locally(control: FakeControl) -> None:
    lines: list[str] = []
    control.answer_identity = lambda claimed: f'{claimed},account=012345678912,attested=aws,role=fn-role'
    attestor = aws_attestor(control, lines, AWS_ROLE)
    assert attestor.prepare(2.0) == 'bhk_session-1'
    (body,) = control.attest_bodies
    assert body['workload'] == WORKLOAD
    proof = body['proof']
    assert proof['type'] == 'aws' and proof['request']['method'] == 'POST'
    assert proof['request']['url'] == 'http://127.0.0.1:4566/'
    assert proof['request']['body'] == 'Action=GetCallerIdentity&Version=2011-06-15'
    headers = proof['request']['headers']
    assert headers['x-bulkhead-server-id'] == 'https://bulkhead.example.test'
    assert headers['x-amz-security-token'] == AWS_ROLE['AWS_SESSION_TOKEN']
    assert headers['authorization'].startswith('AWS4-HMAC-SHA256 Credential=ASIACHARGECARD000009/')
    assert (
        '/eu-west-1/sts/aws4_request, SignedHeaders='
        'content-type;host;x-amz-date;x-amz-security-token;x-bulkhead-server-id, Signature='
    ) in headers['authorization']
    assert AWS_ROLE['AWS_SECRET_ACCESS_KEY'] not in json.dumps(body)
    # Bundles are checked against the attested identity from now on.
    identity = attestor.identity()
    assert identity is not None
    assert identity['role'] == 'fn-role' and identity['attested'] == 'aws' and identity['name'] == 'py-test'
    assert_no_secrets(lines, WORKLOAD_TOKEN, 'bhk_session-1', AWS_ROLE['AWS_SECRET_ACCESS_KEY'])


def test_aws_without_a_role_session_falls_back_naming_the_variable(control: FakeControl) -> None:
    lines: list[str] = []
    env = {k: v for k, v in AWS_ROLE.items() if k != 'AWS_SESSION_TOKEN'}
    attestor = aws_attestor(control, lines, env)
    assert attestor.prepare(2.0) == WORKLOAD_TOKEN
    assert control.attests() == 0 and attestor.identity() is None
    assert lines == [
        'attestation (aws) failed: no AWS credentials: AWS_SESSION_TOKEN is not set; '
        'using the workload token; next attempt in 30 s'
    ]
    assert_no_secrets(lines, AWS_ROLE['AWS_SECRET_ACCESS_KEY'])


@pytest.mark.parametrize(
    ('answered', 'why'),
    [
        (
            lambda claimed: claimed.replace('name=py-test', 'name=other-fn'),
            'the attested identity changed name',
        ),
        (
            lambda claimed: f'{claimed},serviceAccount=x@p.iam.gserviceaccount.com',
            'the attested identity added serviceAccount, which a aws proof does not vouch for',
        ),
        (lambda claimed: 'not an identity', 'the attestation answer has no usable identity'),
    ],
)
def test_a_session_for_another_identity_is_refused(
    control: FakeControl, answered: Callable[[str], str], why: str
) -> None:
    lines: list[str] = []
    control.answer_identity = answered
    attestor = aws_attestor(control, lines, AWS_ROLE)
    assert attestor.prepare(2.0) == WORKLOAD_TOKEN
    assert attestor.session() is None
    assert lines == [f'attestation (aws) failed: {why}; using the workload token; next attempt in 30 s']
