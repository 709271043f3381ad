"""The extension's life: prepare (bundle on disk) → Register → long-poll + spool watch → INVOKE/SHUTDOWN
loop. See the package docstring for the order and why.

As the Node extension (extensions/extension.ts): the workload token is BULKHEAD_TOKEN, or read at init
from BULKHEAD_TOKEN_SECRET (Secrets Manager / SSM, aws/secret_token.py; bounded by the fetch timeout,
read again at a later INVOKE after a failure, backing off from 2 s to a minute); with BULKHEAD_ATTEST=aws
the bundle fetches and the forwarder's reports carry the session of a signed sts:GetCallerIdentity
(client/attest.py Attestor) instead, the workload token while none can be had."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

from ..client.bundle_client import BundleClient, FetchError, NotModified, Rejected, Updated
from ..identity import detect_identity
from ..kernel._typing import TYPE_CHECKING
from ..kernel.bundle import VerifyFailure, verify_bundle
from ..kernel.identity import format_identity
from .api import ExtensionsApi, ExtensionsApiError
from .config import ConfigError, ExtensionConfig, load_config
from .forwarder import Forwarder
from .state import BUNDLE_FILE, READY_FILE, STATUS_FILE, ensure_state_dir, read_text, write_atomic

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..client.attest import Attestor

#: Kept before a platform deadline.
DEADLINE_MARGIN_SECONDS = 0.15
#: How often the spool is looked at while the sandbox runs (a stat; nothing when it has not grown).
SPOOL_WATCH_SECONDS = 0.1
RETRY_MAX_SECONDS = 30.0
#: Bound on forwarding a previous invocation's records at INVOKE (before `next`).
FORWARD_AT_INVOKE_SECONDS = 1.0
#: Rule hit counts with no record to go with are sent at most this often (and at SHUTDOWN), by the
#: spool watch, never at INVOKE: the shim writes them as invocations end, and they are statistics.
HITS_FORWARD_SECONDS = 60.0
#: First wait before reading a token secret again after a failure; doubles up to the maximum.
SECRET_RETRY_MIN_SECONDS = 2.0
SECRET_RETRY_MAX_SECONDS = 60.0


def log(message: str) -> None:
    sys.stderr.write(f'[bulkhead-extension] {message}\n')
    sys.stderr.flush()


def lambda_identity(env: Mapping[str, str], workload_text: str | None, account: str | None) -> dict[str, str]:
    """The shim's own detection from what an extension sees, plus the account id Register returns."""
    source = dict(env)
    if workload_text and not source.get('BULKHEAD_WORKLOAD'):
        source['BULKHEAD_WORKLOAD'] = workload_text
    identity = detect_identity(source)
    if account:
        identity['account'] = account  # a platform fact: it wins over BULKHEAD_WORKLOAD
    return identity


class Session:
    def __init__(
        self,
        config: ExtensionConfig,
        env: Mapping[str, str],
        logger: Callable[[str], None],
        account: str | None,
    ) -> None:
        self.config = config
        self.env = env
        self.log = logger
        self.identity = lambda_identity(env, config.workload_text, account)
        self.bundle_file = os.path.join(config.state_dir, BUNDLE_FILE)
        self.ready_file = os.path.join(config.state_dir, READY_FILE)
        self.forwarder = Forwarder(config.state_dir, config.control_url, config.token, logger)
        self.client: BundleClient | None = None
        self.attestor: Attestor | None = None
        #: With BULKHEAD_TOKEN_SECRET and no token yet: when to read it again (monotonic), and the next wait.
        self._secret_retry_at = 0.0
        self._secret_retry_wait = SECRET_RETRY_MIN_SECONDS
        self.revision = 0
        self.source = 'none'
        self.reason: str | None = None
        self.fetch_ms: int | None = None
        self._hold_lock = threading.Lock()
        self._forward_wake = threading.Event()
        #: When the spool watch last let hit counts go without records (HITS_FORWARD_SECONDS).
        self._hits_forwarded_at = time.monotonic()
        self._stopped = threading.Event()

    # ---- before Register --------------------------------------------------------------------------

    def prepare(self) -> None:
        """The first bundle: fetched and verified (bounded), else the sandbox's last good one, else the
        layer's, else none (the fail mode). Runs after Register, while the runtime initialises."""
        config = self.config
        if not config.trusted_keys:
            message = (
                'no trusted keys (BULKHEAD_TRUSTED_KEYS or the layer config.json): no bundle can be verified'
            )
            if config.fail_mode == 'closed':
                raise ConfigError(message)
            self.log(f'{message}; fail mode observe')
        last_good = self._pick_last_good()
        token = config.token
        if token is None and self._secret_usable():
            token = self._fetch_secret_token(config.fetch_timeout)
        if config.control_url and token and config.trusted_keys:
            self.client = self._new_client(token, last_good[0] if last_good else None)
            started = time.monotonic()
            self.refresh(config.fetch_timeout, last_good[2] if last_good else None)
            self.fetch_ms = round((time.monotonic() - started) * 1000)
        elif last_good:
            # A token secret that could not be read falls back like an unreachable control API.
            self._hold(last_good[0], last_good[1], last_good[2])
            self.reason = self.reason or 'no control API or token configured'
        else:
            self.reason = self.reason or 'no control API configured and no bundle in the layer'
        if self.source == 'none':
            why = self.reason or 'unknown'
            self.log(f'no verified bundle: the shim applies fail mode {config.fail_mode} ({why})')

    def _new_client(self, token: str, last_good: str | None) -> BundleClient:
        """The bundle client, and the credentials it shares with the forwarder: with BULKHEAD_ATTEST, an
        attested session (docs/identity.md), else the workload token."""
        control_url = self.config.control_url
        assert control_url is not None

        def client_log(level: str, message: str) -> None:
            if level != 'debug':
                self.log(message)

        attestor = self._new_attestor(control_url, token)
        client = BundleClient(
            control_url=control_url,
            token=token,
            workload=self.identity,
            trusted_keys=self.config.trusted_keys,
            timeout=self.config.fetch_timeout,
            last_good=last_good,
            log=client_log,
            credentials=attestor,
        )
        if attestor is not None:
            self.forwarder.use_credentials(token, attestor.bearer, attestor.report_refused)
        else:
            self.forwarder.use_credentials(token)
        return client

    def _new_attestor(self, control_url: str, token: str) -> Attestor | None:
        kind = self.config.attest
        if kind is None:
            return None
        from ..client.attest import Attestor

        try:
            self.attestor = Attestor(
                kind=kind,
                control_url=control_url,
                workload_token=token,
                workload=format_identity(self.identity),
                env=self.env,
                log=self.log,
            )
        except ValueError as error:  # messages name the setting, never the token
            self.log(f'attestation not started: {error}; using the workload token')
            return None
        return self.attestor

    # ---- the token secret ---------------------------------------------------------------------------

    def _secret_usable(self) -> bool:
        """A token secret is configured and could give the client everything else it needs."""
        config = self.config
        return config.token_secret is not None and bool(config.control_url) and bool(config.trusted_keys)

    def _fetch_secret_token(self, timeout: float) -> str | None:
        """The token from BULKHEAD_TOKEN_SECRET, or None (logged, the reason kept) when it cannot be had."""
        from ..aws.secret_token import TokenSecretError, fetch_token_from_secret

        arn = self.config.token_secret
        assert arn is not None
        try:
            token = fetch_token_from_secret(arn, env=self.env, timeout=max(0.001, timeout))
        except Exception as error:
            # TokenSecretError, AwsCredentialsError: the ARN, AWS's answer or a variable, never a value.
            message = (
                str(error) if isinstance(error, (TokenSecretError, ValueError)) else type(error).__name__
            )
            self.reason = f'token secret: {message}'
            self.log(f'cannot read the workload token: {message}')
            self._secret_retry_at = time.monotonic() + self._secret_retry_wait
            self._secret_retry_wait = min(SECRET_RETRY_MAX_SECONDS, self._secret_retry_wait * 2)
            return None
        self.log(f'workload token read from {arn}')
        return token

    def _retry_secret(self, budget: float) -> None:
        """At INVOKE, while the token secret has not been read: read it when due, then fetch the bundle."""
        if self.client is not None or not self._secret_usable() or time.monotonic() < self._secret_retry_at:
            return
        started = time.monotonic()
        token = self._fetch_secret_token(budget)
        if token is None:
            return
        held = read_text(self.bundle_file) if self.revision > 0 else None
        client = self._new_client(token, held)
        self.client = client
        self.refresh(max(0.025, budget - (time.monotonic() - started)), None)
        if not self._stopped.is_set():
            client.start_long_poll(lambda outcome: self._adopt(outcome, None))

    def _pick_last_good(self) -> tuple[str, int, str] | None:
        """The best verified bundle without the network: this sandbox's last, else the layer's."""
        for text, source in (
            (read_text(self.bundle_file), 'last-good'),
            (self.config.fallback_envelope, 'layer'),
        ):
            if text is None:
                continue
            verified = verify_bundle(text, trusted_keys=self.config.trusted_keys, workload=self.identity)
            if isinstance(verified, VerifyFailure):
                self.log(f'{source} bundle refused ({verified.reason}): {verified.message}')
                continue
            return text, int(verified.payload['revision']), source
        return None

    # ---- bundle -----------------------------------------------------------------------------------

    def refresh(self, timeout: float, fallback_source: str | None) -> None:
        client = self.client
        if client is None:
            return
        outcome = client.fetch_once(timeout=timeout)
        self._adopt(outcome, fallback_source)

    def _adopt(
        self, outcome: Updated | NotModified | Rejected | FetchError, fallback_source: str | None
    ) -> None:
        client = self.client
        if isinstance(outcome, Updated):
            self._hold(outcome.envelope_text, outcome.revision, 'control-api')
            return
        held = client.current() if client is not None else None
        if isinstance(outcome, NotModified):
            # The control API confirmed what the client held (a last good or baked bundle).
            if held is not None and held.revision != self.revision:
                self._hold(held.envelope_text, held.revision, 'control-api')
            elif held is not None:
                self.source = 'control-api'
            return
        self.reason = outcome.message
        if isinstance(outcome, Rejected):
            self.log(f'refused bundle from the control API ({outcome.reason}): {outcome.message}')
        else:
            self.log(f'bundle fetch failed ({outcome.cause}): {outcome.message}')
        if held is not None and held.revision != self.revision:
            self._hold(held.envelope_text, held.revision, fallback_source or 'last-good')

    def _hold(self, envelope_text: str, revision: int, source: str) -> None:
        with self._hold_lock:
            write_atomic(self.bundle_file, envelope_text, 0o644)
            self.revision = revision
            self.source = source

    # ---- after Register -----------------------------------------------------------------------------

    def start(self, ready_ms: int) -> None:
        """The first answer is in: tell the shim (the status file it waits for), then keep the bundle
        fresh by long-poll and the spool drained, on threads."""
        self._write_status(ready_ms)
        self.log(
            f'ready: bundle revision {self.revision} from {self.source} for {format_identity(self.identity)} '
            f'in {ready_ms} ms'
        )
        if self.client is not None:
            self.client.start_long_poll(lambda outcome: self._adopt(outcome, None))
        threading.Thread(target=self._watch_spool, name='bulkhead-spool-watch', daemon=True).start()

    def _watch_spool(self) -> None:
        """Forwards records as soon as the shim spools them, off the invocation's critical path. While
        the sandbox is frozen this thread is too; it carries on at the thaw."""
        retry = 1.0
        while not self._stopped.is_set():
            self._forward_wake.wait(SPOOL_WATCH_SECONDS)
            self._forward_wake.clear()
            if self._stopped.is_set() or self.forwarder.backlog() == 0:
                continue
            hits_alone = time.monotonic() - self._hits_forwarded_at >= HITS_FORWARD_SECONDS
            if hits_alone:
                self._hits_forwarded_at = time.monotonic()
            result = self.forwarder.forward(time.monotonic() + 10, hits_alone)
            if result.pending and result.error:
                self.log(f'reports: {result.error}; will retry')
                if self._stopped.wait(retry):
                    return
                retry = min(RETRY_MAX_SECONDS, retry * 2)
            else:
                retry = 1.0

    def invoke(self, request_id: str, deadline_ms: float) -> None:
        """INVOKE: make sure the bundle on disk is the newest before the shim's first decision in this
        invocation (which waits for the ready file, bounded), then forward a previous invocation's
        leftover records. A parked, quiet long-poll proves nothing changed: no network then."""
        left = deadline_ms / 1000 - time.time()
        budget = max(0.025, min(self.config.fetch_timeout, left / 4))
        if self.client is not None and not self.client.parked():
            # The long-poll is between requests or has an answer waiting: ask once, bounded.
            self.refresh(budget, None)
        elif self.client is None:
            self._retry_secret(budget)
        try:
            write_atomic(self.ready_file, f'{request_id} {self.revision}\n', 0o644)
        except OSError as error:
            self.log(f'cannot write the ready file ({type(error).__name__}); the shim waits its bound')
        # Records a previous invocation left in the spool (the freeze came before the spool watch sent
        # them) go out now, bounded, before `next`: billed time only after a deny, and never lost.
        if self.forwarder.backlog() > 0:
            result = self.forwarder.forward(
                time.monotonic() + max(0.05, min(FORWARD_AT_INVOKE_SECONDS, left / 4)), hits_alone=False
            )
            if result.pending and result.error:
                self.log(f'reports: {result.error}; will retry')
        self._forward_wake.set()

    def shutdown(self, deadline_ms: float, reason: str) -> None:
        self._stopped.set()
        self._forward_wake.set()
        remaining = deadline_ms / 1000 - time.time() - DEADLINE_MARGIN_SECONDS
        result = self.forwarder.forward(time.monotonic() + max(0.05, remaining))
        left = f', some left in the spool: {result.error or "deadline"}' if result.pending else ''
        self.log(f'shutdown ({reason}): forwarded {self.forwarder.total_sent} records{left}')
        if self.client is not None:
            self.client.stop()

    def _write_status(self, ready_ms: int) -> None:
        status: dict[str, object] = {
            'source': self.source,
            'revision': self.revision,
            'failMode': self.config.fail_mode,
            'sandboxId': self.forwarder.cursor.sandbox_id,
            'readyMs': ready_ms,
            'runtimeFamily': 'python',
        }
        if self.fetch_ms is not None:
            status['fetchMs'] = self.fetch_ms
        if self.reason:
            status['reason'] = self.reason
        write_atomic(os.path.join(self.config.state_dir, STATUS_FILE), json.dumps(status), 0o644)


def run(env: Mapping[str, str], layer_dir: str, started: float, extension_id: str, registered: bytes) -> int:
    """After Register (see __main__): prepare, then serve events until SHUTDOWN; returns the exit code.
    `started`: time.monotonic() at process start; `registered`: Register's answer body."""
    api = ExtensionsApi(env.get('AWS_LAMBDA_RUNTIME_API', ''), extension_id)
    try:
        answer = json.loads(registered)
        account = answer.get('accountId') if isinstance(answer, dict) else None
    except ValueError:
        account = None
    problem: tuple[str, str] | None = None
    session: Session | None = None
    try:
        config = load_config(env, layer_dir)
        ensure_state_dir(config.state_dir)
        session = Session(config, env, log, account if isinstance(account, str) else None)
        session.prepare()
    except ConfigError as error:
        problem = ('Extension.ConfigInvalid', str(error))
    except Exception as error:
        problem = ('Extension.InitFailed', f'{type(error).__name__}: {error}')
    if problem is not None or session is None:
        error_type, message = problem or ('Extension.InitFailed', 'not initialised')
        log(f'init failed: {message}')
        with contextlib.suppress(ExtensionsApiError):
            api.init_error(error_type, message)
        # After init/error no API call succeeds; the platform tears the sandbox down.
        return 1
    try:
        session.start(round((time.monotonic() - started) * 1000))
    except Exception as error:
        # Registered: exiting would be a crash. Keep serving what is held.
        log(f'start failed: {type(error).__name__}: {error}')

    failures = 0
    while True:
        try:
            event = api.next()
            failures = 0
        except ExtensionsApiError as error:
            # Never exit on our own: back off and ask again.
            failures += 1
            log(f'event/next failed: {error}')
            time.sleep(min(1.0, 0.05 * 2 ** min(failures, 5)))
            continue
        if event.event_type == 'SHUTDOWN':
            session.shutdown(event.deadline_ms, event.shutdown_reason)
            return 0
        try:
            session.invoke(event.request_id, event.deadline_ms)
        except Exception as error:
            log(f'invoke handling failed: {type(error).__name__}: {error}')
