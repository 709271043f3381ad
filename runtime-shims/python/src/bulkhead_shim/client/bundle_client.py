"""The bundle client (port of runtime-shims/node/client/bundle-client.ts): fetches the signed bundle for
one workload from the control API (conditional GET with ETag, optional long-poll), verifies it with the
kernel, and keeps the last good one.

`fetch_once` never raises: every answer is an outcome (`Updated`, `NotModified`, `Rejected`,
`FetchError`). The token is sent only in the Authorization header and never appears in a message.
Used by the Lambda extension for Python runtimes (no shim loaded) and by the Azure and GCP wrappers
(inside the shim: the control API is an exempt endpoint, so its connections are allowed).
"""

from __future__ import annotations

import json
import random
import threading
import time
from urllib.parse import quote, urlsplit

from ..kernel._typing import TYPE_CHECKING
from ..kernel.bundle import VerifyFailure, verify_bundle
from ..kernel.identity import format_identity

if TYPE_CHECKING:
    import http.client
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, Protocol

    from ..kernel.keys import TrustedKey

    Log = Callable[[str, str], None]

    class Credentials(Protocol):
        """Where the bearer token comes from when it is not fixed (attestation: `attest.Attestor`)."""

        def prepare(self, budget: float) -> str:
            """The token for the next request; may take up to `budget` seconds to get a better one."""

        def refused(self, budget: float) -> str | None:
            """The request was answered 401: a new token to retry with (within `budget`), or None."""

        def accepted(self) -> None:
            """The request was answered, not with 401."""

        def identity(self) -> Mapping[str, str] | None:
            """The identity bundles are checked against while the token is an attested session's (the
            claimed identity with what the attestation vouched for), else None (the claimed one)."""


DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_LONG_POLL_SECONDS = 25
MAX_LONG_POLL_SECONDS = 60
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# Pause after a long-poll answered much earlier than asked, so a server ignoring `wait` is not hammered.
EARLY_ANSWER_PAUSE_SECONDS = 1.0
#: Share of a fetch's time bound that getting credentials (attesting) may take before the fetch itself.
CREDENTIALS_SHARE = 2 / 3


class HeldBundle:
    """A bundle this client verified and holds."""

    __slots__ = ('envelope_text', 'etag', 'payload', 'revision')

    def __init__(self, envelope_text: str, payload: dict[str, Any], etag: str | None) -> None:
        self.envelope_text = envelope_text
        self.payload = payload
        self.revision: int = payload['revision']
        self.etag = etag


class Updated:
    """A newer (or first) verified bundle; it is now `current()`."""

    kind = 'updated'
    __slots__ = ('envelope_text', 'etag', 'payload', 'revision')

    def __init__(self, held: HeldBundle) -> None:
        self.envelope_text = held.envelope_text
        self.payload = held.payload
        self.revision = held.revision
        self.etag = held.etag


class NotModified:
    """The control API has nothing newer than what this client holds."""

    kind = 'not-modified'
    __slots__ = ('revision',)

    def __init__(self, revision: int | None) -> None:
        self.revision = revision


class Rejected:
    """The control API answered with a bundle that failed verification; the last good one is kept."""

    kind = 'rejected'
    __slots__ = ('message', 'reason', 'revision')

    def __init__(self, reason: str, message: str, revision: int | None) -> None:
        self.reason = reason
        self.message = message
        self.revision = revision


class FetchError:
    """No usable answer: `cause` is network, timeout, http or too-large."""

    kind = 'error'
    __slots__ = ('cause', 'message', 'status')

    def __init__(self, cause: str, message: str, status: int | None = None) -> None:
        self.cause = cause
        self.message = message
        self.status = status


if TYPE_CHECKING:
    FetchOutcome = Updated | NotModified | Rejected | FetchError


def parse_control_url(text: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix ending in `/`) of an http(s) control API URL without credentials.
    Raises ValueError with a message that never repeats more than the URL's first 200 characters."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f'control URL is not a URL: {json.dumps(str(text)[:200])}') from None
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        raise ValueError(f'control URL must be http or https with a host, got {json.dumps(str(text)[:200])}')
    if parts.username is not None or parts.password is not None:
        raise ValueError('control URL must not carry credentials; pass the token separately')
    prefix = parts.path if parts.path.endswith('/') else parts.path + '/'
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == 'https' else 80), prefix


def _describe_error_body(body: bytes) -> str:
    """A short printable excerpt of an error body (the control API answers JSON `{error}`)."""
    if not body:
        return ''
    text = ''.join(c if 0x20 <= ord(c) <= 0x7E else '?' for c in body[:200].decode('utf-8', 'replace'))
    return f': {text}'


def _revision_header(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    return int(value)


class BundleClient:
    """One workload's bundle from one control API. Thread-safe: the long-poll runs on its own daemon
    thread while callers use `fetch_once` and `current`."""

    def __init__(
        self,
        *,
        control_url: str,
        token: str,
        workload: Mapping[str, str],
        trusted_keys: Sequence[TrustedKey],
        timeout: float,
        last_good: str | None = None,
        log: Log | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        long_poll_seconds: int = DEFAULT_LONG_POLL_SECONDS,
        now: Callable[[], float] | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._scheme, self._host, self._port, self._prefix = parse_control_url(control_url)
        if not _single_line(token):
            raise ValueError('bundle client: token must be a non-empty single-line string')
        if not timeout > 0:
            raise ValueError('bundle client: timeout must be a positive number of seconds')
        self._authorization = f'Bearer {token}'
        #: With credentials, every fetch asks them for the token (`token` is the one used until then).
        self._credentials = credentials
        self._workload = dict(workload)
        self._workload_param = quote(format_identity(self._workload), safe='')
        self._trusted = list(trusted_keys)
        self._timeout = timeout
        self._log: Log = log or (lambda _level, _message: None)
        self._max_bytes = max_bytes
        self._long_poll_seconds = min(MAX_LONG_POLL_SECONDS, max(1, int(long_poll_seconds)))
        self._now = now
        self._lock = threading.Lock()
        self._held: HeldBundle | None = None
        self._generation = 0
        self._stop = threading.Event()
        self._connections: set[http.client.HTTPConnection] = set()
        #: The long-poll's connection while its request waits at the control API for an answer.
        self._parked: http.client.HTTPConnection | None = None
        self.long_polling = False
        self.last_outcome: str | None = None
        self.last_check_at: float | None = None
        self.consecutive_failures = 0
        if last_good is not None:
            verified = verify_bundle(
                last_good, trusted_keys=self._trusted, workload=self._workload, now=self._clock()
            )
            if isinstance(verified, VerifyFailure):
                self._log(
                    'warn', f'bundle client: last good bundle refused ({verified.reason}): {verified.message}'
                )
            else:
                self._held = HeldBundle(last_good, verified.payload, None)
                self._log('info', f'bundle client: holding last good bundle revision {self._held.revision}')

    def _clock(self) -> float | None:
        return self._now() if self._now is not None else None

    def current(self) -> HeldBundle | None:
        return self._held

    # ---- one fetch ------------------------------------------------------------------------------

    def fetch_once(self, *, wait_seconds: int | None = None, timeout: float | None = None) -> FetchOutcome:
        """One GET of the bundle (conditional when a bundle is held). With `wait_seconds`, the control
        API holds the request until a newer revision exists (long-poll; the wait is added to the
        timeout). Never raises."""
        bound = self._timeout if timeout is None else timeout
        wait = None
        if wait_seconds is not None and wait_seconds > 0:
            wait = min(MAX_LONG_POLL_SECONDS, int(wait_seconds))
        try:
            credentials = self._credentials
            if credentials is None:
                outcome = self._fetch(wait, max(0.001, bound + (wait or 0)))
            else:
                outcome = self._fetch_with(credentials, wait, bound)
        except Exception as error:  # never into the caller: a bug here is an error outcome
            outcome = FetchError('network', f'bundle fetch failed: {type(error).__name__}')
        self.last_outcome = outcome.kind
        if isinstance(outcome, (Updated, NotModified)):
            self.last_check_at = time.monotonic()
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
        return outcome

    def _fetch_with(self, credentials: Credentials, wait: int | None, bound: float) -> FetchOutcome:
        """A fetch whose token comes from `credentials`: getting it takes at most CREDENTIALS_SHARE of
        `bound`, and a 401 gets one new token and one retry, all within `bound` (plus the long-poll wait)."""
        deadline = time.monotonic() + bound
        self._use_token(credentials.prepare(bound * CREDENTIALS_SHARE))
        outcome = self._fetch(wait, max(0.001, deadline - time.monotonic()) + (wait or 0))
        if isinstance(outcome, FetchError) and outcome.status == 401:
            fresh = credentials.refused(max(0.0, deadline - time.monotonic()) * CREDENTIALS_SHARE)
            if fresh is not None:
                self._use_token(fresh)
                outcome = self._fetch(wait, max(0.001, deadline - time.monotonic()) + (wait or 0))
        if not isinstance(outcome, FetchError) or outcome.status not in (None, 401):
            credentials.accepted()
        return outcome

    def _scope_identity(self) -> Mapping[str, str]:
        """Who a bundle must be for: the attested identity while the credentials hold a session (the
        control API scoped the bundle by it), else the claimed one."""
        if self._credentials is not None:
            attested = self._credentials.identity()
            if attested:
                return attested
        return self._workload

    def _use_token(self, token: str) -> None:
        if _single_line(token):
            self._authorization = f'Bearer {token}'

    def _fetch(self, wait: int | None, timeout: float) -> FetchOutcome:
        import http.client

        held = self._held
        path = f'{self._prefix}v1/bundle?workload={self._workload_param}'
        if wait is not None:
            path += f'&wait={wait}'
        headers = {'authorization': self._authorization, 'accept': 'application/json'}
        if held is not None and held.etag is not None:
            headers['if-none-match'] = held.etag
        connection: http.client.HTTPConnection
        if self._scheme == 'https':
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        with self._lock:
            self._connections.add(connection)
        deadline = time.monotonic() + timeout
        try:
            connection.request('GET', path, headers=headers)
            if wait is not None:
                self._parked = connection
            try:
                response = connection.getresponse()
            finally:
                self._parked = None
            status = response.status
            declared = response.getheader('content-length')
            if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                return FetchError(
                    'too-large',
                    f'bundle response of {declared} bytes exceeds the {self._max_bytes}-byte limit',
                    status,
                )
            body = bytearray()
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError
                chunk = response.read1(65536) if hasattr(response, 'read1') else response.read(65536)
                if not chunk:
                    break
                body += chunk
                if len(body) > self._max_bytes:
                    return FetchError(
                        'too-large', f'bundle response exceeds the {self._max_bytes}-byte limit', status
                    )
            etag = response.getheader('etag')
            revision_header = _revision_header(response.getheader('x-bulkhead-revision'))
        except TimeoutError:
            return FetchError(
                'timeout', f'no complete answer from the control API within {round(timeout * 1000)} ms'
            )
        except (OSError, http.client.HTTPException) as error:
            if self._stop.is_set():
                return FetchError('network', 'bundle client stopped')
            return FetchError('network', f'control API unreachable: {_error_name(error)}')
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

        if status == 304:
            return NotModified(held.revision if held is not None else revision_header)
        if status != 200:
            return FetchError(
                'http', f'control API answered {status}{_describe_error_body(bytes(body))}', status
            )
        envelope_text = body.decode('utf-8', 'replace')
        verified = verify_bundle(
            envelope_text,
            trusted_keys=self._trusted,
            workload=self._scope_identity(),
            now=self._clock(),
            min_revision=held.revision if held is not None else None,
        )
        if isinstance(verified, VerifyFailure):
            keeping = 'no bundle' if held is None else f'revision {held.revision}'
            self._log(
                'warn',
                f'bundle client: refused bundle from control API ({verified.reason}): {verified.message}; '
                f'keeping {keeping}',
            )
            return Rejected(verified.reason, verified.message, held.revision if held is not None else None)
        if held is not None and verified.payload['revision'] == held.revision:
            # Same revision under a new ETag (the server re-signed): nothing changes for the shim.
            self._held = HeldBundle(held.envelope_text, held.payload, etag)
            return NotModified(held.revision)
        self._held = HeldBundle(envelope_text, verified.payload, etag)
        self._log('info', f'bundle client: now holding revision {self._held.revision}')
        return Updated(self._held)

    def parked(self) -> bool:
        """True when a long-poll waits at the control API and nothing has come back on it: then nothing
        changed since it was sent (the control API answers a parked long-poll the moment a revision
        applies, even to a frozen sandbox, whose kernel buffers the answer). False otherwise: between
        polls, backing off, or an answer waiting to be read."""
        connection = self._parked
        sock = connection.sock if connection is not None else None
        if sock is None:
            return False
        import select

        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable and self._parked is connection

    # ---- long-poll ------------------------------------------------------------------------------

    def start_long_poll(self, on_update: Callable[[Updated], None]) -> None:
        """Loops on long-polls on a daemon thread until `stop()`; `on_update` gets every newly held bundle."""
        with self._lock:
            if self.long_polling:
                return
            self.long_polling = True
            self._generation += 1
            generation = self._generation
            self._stop.clear()
        thread = threading.Thread(
            target=self._poll_loop, args=(generation, on_update), name='bulkhead-long-poll', daemon=True
        )
        thread.start()

    def _poll_loop(self, generation: int, on_update: Callable[[Updated], None]) -> None:
        retry = RETRY_MIN_SECONDS
        while generation == self._generation and not self._stop.is_set():
            started = time.monotonic()
            outcome = self.fetch_once(wait_seconds=self._long_poll_seconds)
            if generation != self._generation:
                return
            delay = 0.0
            if isinstance(outcome, Updated):
                retry = RETRY_MIN_SECONDS
                try:
                    on_update(outcome)
                except Exception as error:
                    self._log(
                        'warn', f'bundle client: update handler failed: {type(error).__name__}: {error}'
                    )
            elif isinstance(outcome, NotModified):
                retry = RETRY_MIN_SECONDS
                if time.monotonic() - started < self._long_poll_seconds / 2:
                    delay = EARLY_ANSWER_PAUSE_SECONDS
            else:
                # Errors and refused bundles back off (a bad bundle would otherwise come back at once).
                delay = retry + random.random() * retry / 2
                retry = min(RETRY_MAX_SECONDS, retry * 2)
                if isinstance(outcome, FetchError):
                    self._log('debug', f'bundle client: long-poll failed: {outcome.message}')
            if delay > 0 and self._stop.wait(delay):
                return

    def stop(self) -> None:
        """Stops the long-poll loop and closes requests in flight."""
        with self._lock:
            self._generation += 1
            self.long_polling = False
            self._stop.set()
            connections = list(self._connections)
        for connection in connections:
            sock = connection.sock
            if sock is not None:
                try:
                    import socket

                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _single_line(token: object) -> bool:
    return isinstance(token, str) and token != '' and '\r' not in token and '\n' not in token


def _error_name(error: BaseException) -> str:
    import errno

    # An ssl.SSLError's errno is OpenSSL's error class (1 for a refused certificate), not an errno:
    # its reason says what happened (CERTIFICATE_VERIFY_FAILED), and a refused certificate why.
    reason = getattr(error, 'reason', None)
    if type(error).__module__ == 'ssl' and isinstance(reason, str):
        detail = getattr(error, 'verify_message', None)
        return f'{reason} ({detail})' if isinstance(detail, str) and detail else reason
    number = getattr(error, 'errno', None)
    if isinstance(number, int) and number in errno.errorcode:
        return errno.errorcode[number]
    return type(error).__name__
