"""Attested identity for the Azure and GCP wrappers and the Lambda extension for Python runtimes (port of
runtime-shims/node/client/attest-jwt.ts and control-credentials.ts): the function proves which function it
is with a token its platform issues for the control API's audience (or, on AWS, a signed
sts:GetCallerIdentity), and uses the session token the control API answers instead of its workload token.

- `gcp_proof`: a Google identity token from the metadata server
  (`http://$GCE_METADATA_HOST|metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience=…&format=full`,
  `Metadata-Flavor: Google`).
- `aws_proof` (attest_aws.py): an `sts:GetCallerIdentity` request signed with the role's credentials
  (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), made locally.
- `azure_proof`: a managed-identity access token from the App Service / Functions identity endpoint
  (IDENTITY_ENDPOINT, `X-IDENTITY-HEADER: $IDENTITY_HEADER`, `resource=<audience>&api-version=2019-08-01`,
  `client_id=$BULKHEAD_AZURE_CLIENT_ID` for a user-assigned identity).
- `request_session`: `POST <control>/v1/attest` with `{"workload", "proof"}` and the workload token; the
  answer's identity must be the claimed one with only attributes the proof's kind vouches for added.
- `Attestor`: the session of one process: attests before the first bundle fetch, renews in the
  background within 5 minutes of `expiresAt`, once more after a 401, and falls back to the workload
  token (with a warning, after a back-off) when attestation fails.

Standard library only. Every request is bounded in time and size; no message holds a token, the
identity header or the proof.
"""

from __future__ import annotations

import json
import threading
import time

from ..kernel._typing import TYPE_CHECKING
from .bounded_read import AnswerTooLarge, read_bounded
from .bundle_client import _describe_error_body, _error_name, parse_control_url

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractContextManager
    from typing import Any, Literal, TypedDict

    class GcpProof(TypedDict):
        type: Literal['gcp']
        token: str

    class AzureProof(TypedDict):
        type: Literal['azure']
        token: str

    from .attest_aws import AwsProof

    Proof = GcpProof | AzureProof | AwsProof
    Log = Callable[[str], None]

#: The values of BULKHEAD_ATTEST that attest (anything else empty, `off` or `none` does not).
ATTEST_KINDS = ('aws', 'gcp', 'azure')
#: The identity attribute that marks an attested identity (policy/attestation.ts ATTESTED_ATTRIBUTE).
ATTESTED_ATTRIBUTE = 'attested'
#: The attributes a proof of each kind vouches for (policy/attestation.ts ATTESTABLE_ATTRIBUTES).
ATTESTABLE_ATTRIBUTES = {
    'aws': ('cloud', 'account', 'role', 'name'),
    'gcp': ('cloud', 'account', 'serviceAccount'),
    'azure': ('cloud', 'tenant', 'principal', 'account', 'name'),
}
#: Bound on one proof request (s): both endpoints are local to the instance.
PROOF_TIMEOUT = 2.0
#: Bound on a background renewal (proof and attestation together, s): it blocks nothing.
RENEW_TIMEOUT = 10.0
#: Largest answer read from a proof endpoint or from `/v1/attest` (bytes).
MAX_ANSWER_BYTES = 64 * 1024
#: Longest token accepted (characters), as the control API's verifier.
MAX_TOKEN_CHARS = 16 * 1024
METADATA_IDENTITY_PATH = '/computeMetadata/v1/instance/service-accounts/default/identity'
IDENTITY_API_VERSION = '2019-08-01'
#: A session is renewed when it ends within this many seconds (or within half its lifetime, if shorter).
RENEW_BEFORE = 300.0
#: Back-off after a failed attestation: doubled from the first to the last (s).
RETRY_MIN = 30.0
RETRY_MAX = 900.0


class ProofError(Exception):
    """No proof could be had. `reason`: not-configured, unreachable, timeout, refused (an error status,
    in `status`) or malformed. The message never holds a token or the identity header."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class AttestError(ProofError):
    """`POST /v1/attest` failed (same reasons; `refused` carries the control API's status)."""


def _is_jwt(text: str) -> bool:
    parts = text.split('.')
    if len(parts) != 3 or len(text) > MAX_TOKEN_CHARS:
        return False
    allowed = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_')
    return all(part and allowed.issuperset(part) for part in parts)


def _check_audience(audience: object) -> str:
    if not isinstance(audience, str) or not audience:
        raise ProofError('not-configured', 'attestation audience is empty')
    if len(audience) > 2048 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in audience):
        raise ProofError('not-configured', 'attestation audience must be one line of at most 2048 characters')
    return audience


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError('timeout must be a positive number of seconds')
    return float(timeout)


def _request(
    method: str,
    scheme: str,
    host: str,
    port: int,
    target: str,
    headers: dict[str, str],
    timeout: float,
    what: str,
    body: bytes | None = None,
    error: type[ProofError] = ProofError,
) -> tuple[int, bytes]:
    """One request to the control API (an exempt endpoint), answered within `timeout` (connect, headers and
    body together), its body capped."""
    import http.client

    deadline = time.monotonic() + timeout
    connection: http.client.HTTPConnection
    if scheme == 'https':
        connection = http.client.HTTPSConnection(host, port, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            declared = response.getheader('content-length')
            if declared is not None and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                raise error('malformed', f'{what} answered more than {MAX_ANSWER_BYTES} bytes')
            try:
                data = read_bounded(response, connection.sock, deadline, MAX_ANSWER_BYTES)
            except AnswerTooLarge:
                raise error('malformed', f'{what} answered more than {MAX_ANSWER_BYTES} bytes') from None
            return response.status, data
        except TimeoutError:
            raise error('timeout', f'{what} did not answer within {round(timeout * 1000)} ms') from None
        except (OSError, http.client.HTTPException) as failure:
            raise error('unreachable', f'{what} unreachable ({_error_name(failure)})') from None
        except ValueError:
            # http.client refuses a header value or target it cannot send; never echoed.
            raise error('not-configured', f'request to {what} could not be made') from None
    finally:
        connection.close()


def _get_local(
    host: str, port: int, target: str, headers: dict[str, str], timeout: float, what: str
) -> tuple[int, bytes]:
    """One plain-HTTP GET to an endpoint of the platform's, on a socket of its own: inside the governed
    process, the shim's own connect (the caller marks its work internal) is not judged, while an
    http.client request would be (the metadata server is no exempt endpoint, and must not be one: the
    function's own code may not reach it unless the policy says so). The answer is parsed by
    http.client's response reader; bounded like `_request`."""
    import http.client
    import socket

    deadline = time.monotonic() + timeout
    shown = f'[{host}]' if ':' in host else host
    lines = [
        f'GET {target} HTTP/1.1',
        f'Host: {shown}' + ('' if port == 80 else f':{port}'),
        'Connection: close',
    ]
    lines += [f'{name}: {value}' for name, value in headers.items()]
    try:
        request = ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')
    except UnicodeEncodeError:
        raise ProofError('not-configured', f'request to {what} could not be made') from None
    sock: socket.socket | None = None
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method='GET')
        response.begin()
        declared = response.getheader('content-length')
        if declared is not None and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise ProofError('malformed', f'{what} answered more than {MAX_ANSWER_BYTES} bytes')
        try:
            data = read_bounded(response, sock, deadline, MAX_ANSWER_BYTES)
        except AnswerTooLarge:
            raise ProofError('malformed', f'{what} answered more than {MAX_ANSWER_BYTES} bytes') from None
        return response.status, data
    except TimeoutError:
        raise ProofError('timeout', f'{what} did not answer within {round(timeout * 1000)} ms') from None
    except (OSError, http.client.HTTPException) as failure:
        raise ProofError('unreachable', f'{what} unreachable ({_error_name(failure)})') from None
    finally:
        if sock is not None:
            sock.close()


def _metadata_host(text: str) -> tuple[str, int]:
    """host and port of GCE_METADATA_HOST (`host[:port]`, an IPv6 address in brackets)."""
    from urllib.parse import urlsplit

    invalid = ProofError('not-configured', 'GCE_METADATA_HOST must be host[:port] of the metadata server')
    if not text or len(text) > 260 or any(c in text for c in '/?#@ \t\r\n\\'):
        raise invalid
    try:
        parts = urlsplit(f'http://{text}')
        host, port = parts.hostname, parts.port
    except ValueError:
        raise invalid from None
    if not host:
        raise invalid
    return host, port or 80


def gcp_proof(
    *, audience: str, env: Mapping[str, str] | None = None, timeout: float = PROOF_TIMEOUT
) -> GcpProof:
    """A Google identity token for `audience` from the metadata server (the function's service account,
    with its email: format=full). Raises ProofError."""
    import os
    from urllib.parse import urlencode

    audience = _check_audience(audience)
    timeout = _check_timeout(timeout)
    source = os.environ if env is None else env
    text = source.get('GCE_METADATA_HOST', '').strip() or 'metadata.google.internal'
    host, port = _metadata_host(text)
    what = f'the metadata server ({text})'
    target = f'{METADATA_IDENTITY_PATH}?{urlencode({"audience": audience, "format": "full"})}'
    headers = {'Metadata-Flavor': 'Google', 'Accept': 'text/plain'}
    status, body = _get_local(host, port, target, headers, timeout, what)
    if status != 200:
        raise ProofError('refused', f'{what} answered {status} to the identity token request', status)
    token = body.decode('latin-1').strip()
    if not _is_jwt(token):
        raise ProofError('malformed', f'{what} did not answer a JWT')
    return {'type': 'gcp', 'token': token}


def azure_proof(
    *, audience: str, env: Mapping[str, str] | None = None, timeout: float = PROOF_TIMEOUT
) -> AzureProof:
    """A managed-identity access token for `audience` from IDENTITY_ENDPOINT (a user-assigned identity's
    with BULKHEAD_AZURE_CLIENT_ID). Raises ProofError."""
    import os
    from urllib.parse import urlencode, urlsplit

    audience = _check_audience(audience)
    timeout = _check_timeout(timeout)
    source = os.environ if env is None else env
    endpoint = source.get('IDENTITY_ENDPOINT', '').strip()
    secret = source.get('IDENTITY_HEADER', '')
    if not endpoint:
        raise ProofError(
            'not-configured', 'IDENTITY_ENDPOINT is not set: turn on a managed identity for the function app'
        )
    if not secret:
        raise ProofError(
            'not-configured', 'IDENTITY_HEADER is not set: turn on a managed identity for the function app'
        )
    if '\r' in secret or '\n' in secret:
        raise ProofError('not-configured', 'IDENTITY_HEADER must be one line')
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise ProofError('not-configured', 'IDENTITY_ENDPOINT is not a URL') from None
    if parts.scheme != 'http' or not parts.hostname:
        raise ProofError('not-configured', 'IDENTITY_ENDPOINT must be an http URL (a local endpoint)')
    query = {'resource': audience, 'api-version': IDENTITY_API_VERSION}
    client_id = source.get('BULKHEAD_AZURE_CLIENT_ID', '').strip()
    if client_id:
        query['client_id'] = client_id
    target = (parts.path or '/') + '?' + (f'{parts.query}&' if parts.query else '') + urlencode(query)
    what = f'the identity endpoint ({parts.hostname}{f":{port}" if port else ""})'
    headers = {'X-IDENTITY-HEADER': secret, 'Accept': 'application/json'}
    status, body = _get_local(parts.hostname, port or 80, target, headers, timeout, what)
    if status != 200:
        raise ProofError('refused', f'{what} answered {status} to the token request', status)
    try:
        answer = json.loads(body)
    except ValueError:
        raise ProofError('malformed', f'{what} did not answer JSON') from None
    token = answer.get('access_token') if isinstance(answer, dict) else None
    if not isinstance(token, str):
        raise ProofError('malformed', f'{what} answered no access_token')
    if not _is_jwt(token):
        raise ProofError('malformed', f'{what} did not answer a JWT')
    return {'type': 'azure', 'token': token}


def attest_kind(env: Mapping[str, str]) -> str | None:
    """`aws`, `gcp` or `azure` from BULKHEAD_ATTEST; None when it is unset, empty, `off` or `none`. Raises
    ValueError for another value."""
    value = env.get('BULKHEAD_ATTEST', '').strip().lower()
    if value in ('', 'off', 'none', 'false', '0'):
        return None
    if value not in ATTEST_KINDS:
        raise ValueError(f'BULKHEAD_ATTEST must be aws, gcp or azure, got {json.dumps(value[:40])}')
    return value


def default_audience(control_url: str) -> str:
    """The control URL's origin, `scheme://host[:port]` (the port only when it is not the scheme's)."""
    scheme, host, port, _ = parse_control_url(control_url)
    shown = f'[{host}]' if ':' in host else host
    default = 443 if scheme == 'https' else 80
    return f'{scheme}://{shown}' + ('' if port == default else f':{port}')


def _parse_time(text: object) -> float | None:
    """Epoch seconds of an ISO-8601 UTC time (`…Z` or `…+00:00`), or None."""
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        return None
    from datetime import datetime, timezone

    try:
        parsed = datetime.fromisoformat(text[:-1] + '+00:00' if text.endswith(('Z', 'z')) else text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


class Session:
    """An attested session: policy/attestation.ts AttestAnswer, with its expiry as epoch seconds.
    `attributes`: the identity the session is pinned to, parsed (None when the answer named none)."""

    __slots__ = (
        'attested',
        'attributes',
        'expires_at',
        'expires_text',
        'id',
        'identity',
        'renew_at',
        'token',
    )

    def __init__(self, answer: dict[str, Any], now: float) -> None:
        token = answer.get('token')
        expires = _parse_time(answer.get('expiresAt'))
        if (
            not isinstance(token, str)
            or not token
            or len(token) > 4096
            or any(c.isspace() or not c.isprintable() for c in token)
        ):
            raise AttestError('malformed', 'the control API answered no usable session token')
        if expires is None:
            raise AttestError('malformed', 'the control API answered no usable expiresAt')
        self.token = token
        self.id = str(answer.get('id', ''))[:200]
        self.identity = str(answer.get('identity', ''))[:2000]
        self.attributes: dict[str, str] | None = None
        attested = answer.get('attested')
        self.attested: dict[str, Any] = attested if isinstance(attested, dict) else {}
        self.expires_text = str(answer.get('expiresAt'))
        # A clock far from the control API's must not make every request attest again: at least a minute.
        lifetime = max(60.0, expires - now)
        self.expires_at = now + lifetime
        self.renew_at = self.expires_at - min(RENEW_BEFORE, lifetime / 2)


def request_session(
    *,
    control_url: str,
    workload_token: str,
    workload: str,
    proof: Proof,
    timeout: float,
    now: float | None = None,
) -> Session:
    """`POST <control>/v1/attest`; the session the control API answered. Raises AttestError."""
    scheme, host, port, prefix = parse_control_url(control_url)
    body = json.dumps({'workload': workload, 'proof': proof}, separators=(',', ':')).encode()
    headers = {
        'Authorization': f'Bearer {workload_token}',
        'Content-Type': 'application/json',
        'Accept': 'application/json',
        'Content-Length': str(len(body)),
    }
    what = 'the control API'
    status, answer = _request(
        'POST', scheme, host, port, f'{prefix}v1/attest', headers, timeout, what, body, AttestError
    )
    if status != 200:
        raise AttestError('refused', f'{what} answered {status}{_describe_error_body(answer)}', status)
    try:
        parsed = json.loads(answer)
    except ValueError:
        raise AttestError('malformed', f'{what} did not answer JSON') from None
    if not isinstance(parsed, dict):
        raise AttestError('malformed', f'{what} did not answer an object')
    session = Session(parsed, time.time() if now is None else now)
    session.attributes = _check_identity(parsed.get('identity'), workload, proof['type'])
    return session


def _check_identity(answered: object, claimed_text: str, kind: str) -> dict[str, str]:
    """The session's identity, checked as the Node client checks it: the claimed one with only attributes
    the proof's kind vouches for added. Bundles are then checked against it; an answer that made this
    workload someone else is refused."""
    from ..kernel.identity import parse_identity

    if not isinstance(answered, str):
        raise AttestError('malformed', 'the attestation answer has no identity')
    try:
        attested = parse_identity(answered)
        claimed = parse_identity(claimed_text)
    except ValueError:
        raise AttestError('malformed', 'the attestation answer has no usable identity') from None
    vouched = {ATTESTED_ATTRIBUTE, *ATTESTABLE_ATTRIBUTES.get(kind, ())}
    for key, value in claimed.items():
        if attested.get(key) != value:
            raise AttestError('malformed', f'the attested identity changed {key}')
    for key in attested:
        if key not in claimed and key not in vouched:
            raise AttestError(
                'malformed', f'the attested identity added {key}, which a {kind} proof does not vouch for'
            )
    return attested


def _aws_proof(audience: str, env: Mapping[str, str]) -> Proof:
    """attest_aws.aws_proof, its errors (which name variables, never values) a ProofError."""
    from .attest_aws import aws_proof

    try:
        return aws_proof(audience=audience, env=env)
    except ValueError as error:  # AwsCredentialsError, or the signer refusing the endpoint or region
        raise ProofError('not-configured', str(error)) from None


class Attestor:
    """The attested session of one process, shared by the bundle client (`prepare`, `refused`,
    `accepted`) and the record sink (`bearer`, `report_refused`). Thread-safe; never raises from those."""

    def __init__(
        self,
        *,
        kind: str,
        control_url: str,
        workload_token: str,
        workload: str,
        env: Mapping[str, str],
        log: Log,
        audience: str | None = None,
        internal: AbstractContextManager[None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if kind not in ATTEST_KINDS:
            raise ValueError(f'attestation kind must be aws, gcp or azure, got {json.dumps(str(kind)[:40])}')
        if not workload_token or '\r' in workload_token or '\n' in workload_token:
            raise ValueError('attestation: the workload token must be a non-empty single-line string')
        parse_control_url(control_url)
        self.kind = kind
        self.audience = _check_audience(
            audience or env.get('BULKHEAD_ATTEST_AUDIENCE', '').strip() or default_audience(control_url)
        )
        self._control_url = control_url
        self._workload_token = workload_token
        self._workload = workload
        self._env = env
        self._log = log
        self._internal = internal
        self._clock: Callable[[], float] = clock or time.time
        self._lock = threading.Lock()
        self._attempting = threading.Lock()
        self._session: Session | None = None
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self._unauthorized_used = False
        self._renewing = False
        self._said_attested = False
        #: Attestation attempts so far, and the failures among them.
        self.attempts = 0
        self.failures = 0

    # ---- what requests carry -----------------------------------------------------------------------

    def session(self) -> Session | None:
        """The session while it is valid."""
        held = self._session
        return held if held is not None and self._clock() < held.expires_at else None

    def bearer(self) -> str:
        """The token to send: the session's while it is valid, else the workload token."""
        held = self.session()
        return held.token if held is not None else self._workload_token

    def identity(self) -> dict[str, str] | None:
        """The identity bundles are scoped to while a session is valid (the attested one), else None (the
        claimed one applies)."""
        held = self.session()
        return held.attributes if held is not None else None

    # ---- the bundle client's side -------------------------------------------------------------------

    def prepare(self, budget: float) -> str:
        """Before a request to the control API: attest now (within `budget` seconds) when there is no
        valid session and the back-off allows an attempt; renew in the background when the session
        nears its end. The token to send."""
        held = self.session()
        if held is None:
            if time.monotonic() >= self._retry_at:
                self.attempt(budget)
        elif self._clock() >= held.renew_at:
            self.renew_in_background()
        return self.bearer()

    def refused(self, budget: float) -> str | None:
        """A request was answered 401: attest once more now (not again until a request is accepted).
        The new token, or None."""
        with self._lock:
            if self._unauthorized_used:
                return None
            self._unauthorized_used = True
        return self.bearer() if self.attempt(budget) else None

    def accepted(self) -> None:
        """A request was answered, not with 401: a later 401 may attest again."""
        self._unauthorized_used = False

    # ---- the record sink's side ----------------------------------------------------------------------

    def report_refused(self) -> None:
        """A record delivery was answered 401: attest again in the background, once (the queue retries)."""
        with self._lock:
            if self._unauthorized_used:
                return
            self._unauthorized_used = True
        self.renew_in_background(force=True)

    # ---- attesting ---------------------------------------------------------------------------------

    def attempt(self, timeout: float) -> bool:
        """Get a proof and a session within `timeout` seconds. True when a session is now held. Never raises;
        a failure is logged (without secrets) and backs off the next attempt."""
        began = time.monotonic()
        if not self._attempting.acquire(timeout=max(0.0, timeout)):
            return self.session() is not None  # another thread's attempt took the time
        try:
            remaining = timeout - (time.monotonic() - began)
            if remaining <= 0.001:
                return self.session() is not None
            return self._attempt(remaining)
        finally:
            self._attempting.release()

    def _attempt(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self.attempts += 1
        try:
            proof: Proof
            bound = min(PROOF_TIMEOUT, timeout)
            if self.kind == 'aws':
                proof = _aws_proof(self.audience, self._env)
            elif self.kind == 'gcp':
                proof = gcp_proof(audience=self.audience, env=self._env, timeout=bound)
            else:
                proof = azure_proof(audience=self.audience, env=self._env, timeout=bound)
            remaining = deadline - time.monotonic()
            if remaining <= 0.001:
                raise AttestError('timeout', f'no time left to attest within {round(timeout * 1000)} ms')
            session = request_session(
                control_url=self._control_url,
                workload_token=self._workload_token,
                workload=self._workload,
                proof=proof,
                timeout=remaining,
                now=self._clock(),
            )
        except Exception as error:
            message = str(error) if isinstance(error, ProofError) else f'{type(error).__name__}'
            self._failed(message)
            return False
        with self._lock:
            self._session = session
            self._retry_at = 0.0
            self._retry_delay = 0.0
        if not self._said_attested:
            self._said_attested = True
            who = session.attested.get('principal')
            shown = f' as {who}' if isinstance(who, str) and len(who) <= 200 else ''
            self._log(f'attested ({self.kind}){shown}; session {session.id} until {session.expires_text}')
        return True

    def _failed(self, message: str) -> None:
        with self._lock:
            self.failures += 1
            self._retry_delay = RETRY_MIN if self._retry_delay == 0 else min(RETRY_MAX, self._retry_delay * 2)
            self._retry_at = time.monotonic() + self._retry_delay
            delay = self._retry_delay
        held = self.session()
        keeping = (
            f'keeping the session until {held.expires_text}'
            if held is not None
            else 'using the workload token'
        )
        self._log(f'attestation ({self.kind}) failed: {message}; {keeping}; next attempt in {round(delay)} s')

    def renew_in_background(self, force: bool = False) -> None:
        """Attest on a daemon thread (one at a time; `force` ignores the back-off)."""
        with self._lock:
            if self._renewing or (not force and time.monotonic() < self._retry_at):
                return
            self._renewing = True
        threading.Thread(target=self._renew, name='bulkhead-attest', daemon=True).start()

    def _renew(self) -> None:
        try:
            if self._internal is not None:
                with self._internal:
                    self.attempt(RENEW_TIMEOUT)
            else:
                self.attempt(RENEW_TIMEOUT)
        finally:
            self._renewing = False

    def status(self) -> dict[str, Any]:
        held = self.session()
        return {
            'kind': self.kind,
            'attested': held is not None,
            'expiresAt': held.expires_text if held is not None else None,
            'attempts': self.attempts,
            'failures': self.failures,
        }

    def after_fork_in_child(self) -> None:
        """The child keeps the session (it is the same function); its threads and locks are new."""
        self._lock = threading.Lock()
        self._attempting = threading.Lock()
        self._renewing = False
