"""The part of Azure and GCP support that is the same on both platforms (port of
runtime-shims/node/client/in-process.ts). There is no extension beside the function: the function's
own process installs enforcement, fetches and verifies its bundle from the control API, refreshes it
before an invocation when it may be stale, long-polls while invocations run (a new revision reaches a
busy instance in well under a second), and delivers deny records before the platform can throttle or
freeze the instance. Nothing here raises into the function: failures are logged (`bulkhead: …` on
stderr, never the token) and the invocation carries on under the last good bundle, or the shim's fail
mode when it never had one.

Times are in seconds; the defaults are the Node controller's: first fetch 3 s, refresh 1 s, staleness
1 s, long-poll kept 30 s after the last invocation, record delivery 2 s.

Deny records go to the control API (`{BULKHEAD_CONTROL_URL}/v1/reports`, with BULKHEAD_TOKEN) unless
BULKHEAD_REPORT names another sink: the default is put in `os.environ` before the shim's core is built
(so Python children report there too) and adopted by a core that was built earlier (the PYTHONPATH
preload, `Shim.adopt_report`).

With BULKHEAD_ATTEST=gcp or azure the function attests its identity before the first bundle fetch
(client/attest.py, `POST /v1/attest`, within the first fetch's time bound) and the bundle fetches and
the record deliveries to the control API carry the session token the control API answered instead of
BULKHEAD_TOKEN; when attesting fails, they carry BULKHEAD_TOKEN (a warning says why).

Each invocation runs with its tag in `core.current_invocation`, a context variable: concurrent
invocations in one process (a worker's thread pool, tasks on one event loop, gunicorn threads) each
tag their own records. Threads the function starts itself do not inherit it (CPython threads start
with an empty context), so records of those threads carry no invocationId.
"""

from __future__ import annotations

import os
import threading
import time

from ..kernel._typing import TYPE_CHECKING
from .bundle_client import BundleClient, FetchError, Updated

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Callable, Mapping, MutableMapping
    from typing import Any, Protocol, TypeVar

    from ..kernel.keys import TrustedKey
    from .attest import Attestor
    from .bundle_client import FetchOutcome

    Log = Callable[[str], None]
    F = TypeVar('F', bound=Callable[..., Any])
    #: (positional, keyword) arguments of a call → (invocation tag, the arguments to call the function with)
    Prepare = Callable[
        [tuple[Any, ...], dict[str, Any]], tuple['str | None', tuple[Any, ...], dict[str, Any]]
    ]

    class ShimBinding(Protocol):
        """What the controller needs from the shim (the process-wide one: `ProcessShim`)."""

        def install(self) -> None: ...
        def reload(self, envelope_text: str) -> bool: ...
        def pending(self) -> int: ...
        def flush(self, timeout: float) -> int: ...
        def enter_invocation(self, tag: str | None) -> contextvars.Token[str | None]: ...
        def leave_invocation(self, token: contextvars.Token[str | None]) -> None: ...
        def revision(self) -> int | None: ...

    # Optional on a ShimBinding (ProcessShim has it): records to the control API carry the session token.
    UseSession = Callable[[str, Callable[[], 'str | None'], Callable[[], None]], object]


DEFAULT_STARTUP_TIMEOUT = 3.0
DEFAULT_REFRESH_TIMEOUT = 1.0
DEFAULT_MAX_STALENESS = 1.0
DEFAULT_IDLE_LONG_POLL = 30.0
DEFAULT_FLUSH_TIMEOUT = 2.0
#: A failing delivery is said at most this often (it is retried by the delivery thread meanwhile).
DELIVERY_LOG_INTERVAL = 60.0


def _log(line: str) -> None:
    from ..boot import log

    log(line)


def _seconds(name: str, value: float | None, fallback: float) -> float:
    if value is None:
        return fallback
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 600:
        raise ValueError(f'bulkhead: option {name} must be a number of seconds from 0 to 600')
    return float(value)


def report_default(env: Mapping[str, str]) -> str | None:
    """`{BULKHEAD_CONTROL_URL}/v1/reports` when only the control API is configured, else None."""
    control = env.get('BULKHEAD_CONTROL_URL', '').strip()
    if env.get('BULKHEAD_REPORT', '').strip() or not control:
        return None
    return control.rstrip('/') + '/v1/reports'


class _Internal:
    """The shim's own work on this thread (its control API traffic, the verifier's first import): the
    audit hook does not judge the events it raises. Only code of this module runs inside."""

    __slots__ = ()

    def __enter__(self) -> None:
        from ..hooks import audit

        audit.enter()

    def __exit__(self, *exc: object) -> None:
        from ..hooks import audit

        audit.leave()


_INTERNAL = _Internal()


class ProcessShim:
    """The process-wide shim (`boot`), installed late if the PYTHONPATH preload did not already."""

    def __init__(self, env: MutableMapping[str, str] | None = None) -> None:
        self._env: MutableMapping[str, str] = os.environ if env is None else env
        self._core: Any = None
        self._current: Any = None

    def install(self) -> None:
        from .. import boot
        from ..core import current_invocation

        self._current = current_invocation
        url = report_default(self._env)
        if url is not None:
            # Children (and a core built from now on) read it from the environment.
            self._env['BULKHEAD_REPORT'] = url
        boot.install()
        self._core = boot.get_shim()
        if url is not None:
            # A core built before (the preload, at the process's first governed operation) adopts it.
            self._core.adopt_report(url, self._env.get('BULKHEAD_TOKEN'))

    def reload(self, envelope_text: str) -> bool:
        with _INTERNAL:
            return bool(self._core.reload(envelope_text))

    def pending(self) -> int:
        core = self._core
        return int(core.queue.queued) if core is not None else 0

    def flush(self, timeout: float) -> int:
        with _INTERNAL:
            return int(self._core.queue.flush(timeout=timeout))

    def enter_invocation(self, tag: str | None) -> contextvars.Token[str | None]:
        token: contextvars.Token[str | None] = self._current.set(tag)
        return token

    def leave_invocation(self, token: contextvars.Token[str | None]) -> None:
        self._current.reset(token)

    def revision(self) -> int | None:
        core = self._core
        if core is None or core.revision < 0:
            return None
        return int(core.revision)

    def use_session(
        self, control_url: str, token: Callable[[], str | None], on_unauthorized: Callable[[], None]
    ) -> bool:
        """Records delivered to the control API carry `token()` (an attested session's)."""
        core = self._core
        return bool(core.use_session(control_url, token, on_unauthorized)) if core is not None else False


class _ShimClient(BundleClient):
    """The bundle client inside the governed process: every fetch is the shim's own work."""

    def fetch_once(self, *, wait_seconds: int | None = None, timeout: float | None = None) -> FetchOutcome:
        with _INTERNAL:
            return super().fetch_once(wait_seconds=wait_seconds, timeout=timeout)


class InProcessController:
    """Start, refresh, long-poll and deliver for one process. Thread-safe; never raises from its
    invocation methods."""

    def __init__(
        self,
        *,
        env: MutableMapping[str, str] | None = None,
        workload: Mapping[str, str] | None = None,
        startup_timeout: float | None = None,
        refresh_timeout: float | None = None,
        max_staleness: float | None = None,
        idle_long_poll: float | None = None,
        flush_timeout: float | None = None,
        long_poll: bool = True,
        log: Log | None = None,
        shim: ShimBinding | None = None,
    ) -> None:
        self._env: MutableMapping[str, str] = os.environ if env is None else env
        self.startup_timeout = _seconds('startup_timeout', startup_timeout, DEFAULT_STARTUP_TIMEOUT)
        self.refresh_timeout = _seconds('refresh_timeout', refresh_timeout, DEFAULT_REFRESH_TIMEOUT)
        self.max_staleness = _seconds('max_staleness', max_staleness, DEFAULT_MAX_STALENESS)
        self.idle_long_poll = _seconds('idle_long_poll', idle_long_poll, DEFAULT_IDLE_LONG_POLL)
        self.flush_timeout = _seconds('flush_timeout', flush_timeout, DEFAULT_FLUSH_TIMEOUT)
        self.long_poll = bool(long_poll)
        self._log: Log = log or _log
        self._shim: ShimBinding = shim if shim is not None else ProcessShim(self._env)
        self._workload: dict[str, str] | None = dict(workload) if workload is not None else None
        self._client: BundleClient | None = None
        self._attestor: Attestor | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._running = 0
        self._idle_deadline: float | None = None
        self._reaper: threading.Thread | None = None
        self._rebuild_client = False
        self._delivery_logged_at = 0.0
        #: How long the first bundle fetch took (ms), once started with a control API.
        self.first_fetch_ms: float | None = None
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def configure(
        self,
        *,
        refresh_timeout: float | None = None,
        max_staleness: float | None = None,
        idle_long_poll: float | None = None,
        flush_timeout: float | None = None,
        long_poll: bool | None = None,
        log: Log | None = None,
    ) -> None:
        """Change what governs the next invocations (a started controller: the environment, the
        workload and the first fetch are settled)."""
        self.refresh_timeout = _seconds('refresh_timeout', refresh_timeout, self.refresh_timeout)
        self.max_staleness = _seconds('max_staleness', max_staleness, self.max_staleness)
        self.idle_long_poll = _seconds('idle_long_poll', idle_long_poll, self.idle_long_poll)
        self.flush_timeout = _seconds('flush_timeout', flush_timeout, self.flush_timeout)
        if long_poll is not None:
            self.long_poll = bool(long_poll)
        if log is not None:
            self._log = log

    # ---- start ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Install enforcement and fetch the first bundle (bounded by `startup_timeout`). Idempotent;
        concurrent callers wait for the first one."""
        if self._started:
            return
        with self._start_lock:
            if self._started:
                return
            try:
                try:
                    self._shim.install()
                except Exception as error:
                    self._log(f'could not install enforcement: {type(error).__name__}: {error}')
                if self._workload is None:
                    from ..identity import detect_identity

                    self._workload = detect_identity(self._env)
                self._client = self._client_from_env(None)
                if self._client is not None:
                    began = time.monotonic()
                    self._refresh(self.startup_timeout)
                    self.first_fetch_ms = round((time.monotonic() - began) * 1000, 1)
            except Exception as error:  # never into the function's module import
                self._log(f'could not start: {type(error).__name__}: {error}')
            finally:
                self._started = True

    def _client_from_env(self, last_good: str | None) -> BundleClient | None:
        """A bundle client from BULKHEAD_CONTROL_URL, BULKHEAD_TOKEN and BULKHEAD_TRUSTED_KEYS, or None
        (with one line saying what is missing)."""
        env = self._env
        control_url = env.get('BULKHEAD_CONTROL_URL', '').strip()
        if not control_url:
            self._log('BULKHEAD_CONTROL_URL is not set; bundles are not fetched')
            return None
        token = env.get('BULKHEAD_TOKEN', '')
        specs = [s.strip() for s in env.get('BULKHEAD_TRUSTED_KEYS', '').split(',') if s.strip()]
        if not token or not specs:
            missing = 'BULKHEAD_TOKEN' if not token else 'BULKHEAD_TRUSTED_KEYS'
            self._log(f'BULKHEAD_CONTROL_URL is set but {missing} is not; bundles are not fetched')
            return None
        try:
            from ..kernel.keys import load_trusted_keys

            with _INTERNAL:  # the verifier's native module is the shim's own import
                trusted: list[TrustedKey] = load_trusted_keys(specs)
            log = self._log

            def client_log(level: str, message: str) -> None:
                if level != 'debug':
                    log(message)

            return _ShimClient(
                control_url=control_url,
                token=token,
                workload=self._workload or {},
                trusted_keys=trusted,
                timeout=max(self.refresh_timeout, 0.001),
                last_good=last_good,
                log=client_log,
                credentials=self._attestor_from_env(control_url, token),
            )
        except Exception as error:
            # ValueError messages of the client and the key loader never carry the token.
            self._log(f'bundle client not started: {error}')
            return None

    def _attestor_from_env(self, control_url: str, token: str) -> Attestor | None:
        """The process's attested session when BULKHEAD_ATTEST is gcp or azure (kept across a fork and a
        rebuilt client), the record sink told to use it; None (said once) otherwise or when it cannot be."""
        if self._attestor is not None:
            return self._attestor
        from .attest import Attestor, attest_kind

        try:
            kind = attest_kind(self._env)
            if kind is None:
                return None
            from ..kernel.identity import format_identity

            attestor = Attestor(
                kind=kind,
                control_url=control_url,
                workload_token=token,
                workload=format_identity(self._workload or {}),
                env=self._env,
                log=self._log,
                internal=_INTERNAL,
            )
        except Exception as error:  # messages name the variable, never the token
            self._log(f'attestation not started: {error}; using BULKHEAD_TOKEN')
            return None
        self._attestor = attestor
        use_session: UseSession | None = getattr(self._shim, 'use_session', None)
        if use_session is not None:
            try:
                use_session(control_url, attestor.bearer, attestor.report_refused)
            except Exception as error:
                self._log(f'records keep BULKHEAD_TOKEN: {type(error).__name__}: {error}')
        return attestor

    # ---- bundles ---------------------------------------------------------------------------------

    def _enforce(self, envelope_text: str) -> None:
        try:
            self._shim.reload(envelope_text)
        except Exception as error:
            self._log(f'could not load the fetched bundle: {type(error).__name__}: {error}')

    def _on_update(self, outcome: Updated) -> None:
        self._enforce(outcome.envelope_text)

    def _refresh(self, timeout: float) -> None:
        client = self._client
        if client is None:
            return
        outcome = client.fetch_once(timeout=max(timeout, 0.001))
        if isinstance(outcome, Updated):
            self._enforce(outcome.envelope_text)
        elif isinstance(outcome, FetchError):
            self._log(f'bundle refresh failed ({outcome.cause}): {outcome.message}')
        # Rejected: the client logged the reason; the last good bundle stays.

    def _current_client(self) -> BundleClient | None:
        if self._rebuild_client:
            with self._lock:
                if self._rebuild_client:
                    self._rebuild_client = False
                    old = self._client
                    held = old.current() if old is not None else None
                    self._client = self._client_from_env(held.envelope_text if held is not None else None)
        return self._client

    def _long_poll_healthy(self, client: BundleClient) -> bool:
        return client.long_polling and client.consecutive_failures == 0 and client.last_check_at is not None

    def _stale(self, client: BundleClient) -> bool:
        checked = client.last_check_at
        return checked is None or time.monotonic() - checked > self.max_staleness

    def refresh_due(self) -> bool:
        """Whether `before_invocation` would wait on the network (start, or a stale bundle)."""
        if not self._started or self._rebuild_client:
            return True
        client = self._client
        return client is not None and self._stale(client) and not self._long_poll_healthy(client)

    # ---- invocations -----------------------------------------------------------------------------

    def before_invocation(self) -> None:
        """Start when needed, refresh when stale (bounded), keep the long-poll running."""
        try:
            with self._lock:
                self._running += 1
                self._idle_deadline = None
            self.start()
            client = self._current_client()
            if client is None:
                return
            if self._stale(client) and not self._long_poll_healthy(client):
                self._refresh(self.refresh_timeout)
            if self.long_poll and not client.long_polling:
                client.start_long_poll(self._on_update)
        except Exception as error:
            self._log(f'before invocation: {type(error).__name__}: {error}')

    def after_invocation(self) -> None:
        """Deliver deny records (bounded by `flush_timeout`); stop long-polling once idle for a while."""
        idle = self._finish()
        self.deliver()
        if idle:
            self._arm_idle()

    async def before_invocation_async(self) -> None:
        """`before_invocation` for a coroutine: network waits run on a thread, not on the event loop."""
        if self.refresh_due():
            import asyncio

            await asyncio.to_thread(self.before_invocation)
        else:
            self.before_invocation()

    async def after_invocation_async(self) -> None:
        idle = self._finish()
        if self._has_pending():
            import asyncio

            await asyncio.to_thread(self.deliver)
        if idle:
            self._arm_idle()

    def _finish(self) -> bool:
        with self._lock:
            self._running = max(0, self._running - 1)
            return self._running == 0

    def _has_pending(self) -> bool:
        try:
            return self._shim.pending() > 0
        except Exception:
            return False

    def enter_invocation(self, tag: str | None) -> contextvars.Token[str | None] | None:
        try:
            return self._shim.enter_invocation(tag)
        except Exception:
            return None

    def leave_invocation(self, token: contextvars.Token[str | None] | None) -> None:
        if token is None:
            return
        try:  # noqa: SIM105  (contextlib for one suppress is not worth its import)
            self._shim.leave_invocation(token)
        except Exception:
            pass  # a token of another context (the function switched contexts): nothing to undo here

    def deliver(self) -> None:
        """Deliver queued deny records now, bounded by `flush_timeout`. Never raises."""
        if not self._has_pending():
            return
        try:
            left = self._shim.flush(self.flush_timeout)
        except Exception as error:
            self._say_delivery(f'deny report delivery failed: {type(error).__name__}: {error}')
            return
        if left:
            self._say_delivery(
                f'{left} deny records not delivered within {round(self.flush_timeout * 1000)} ms; '
                'the delivery thread keeps trying'
            )

    def _say_delivery(self, line: str) -> None:
        now = time.monotonic()
        if now - self._delivery_logged_at >= DELIVERY_LOG_INTERVAL or self._delivery_logged_at == 0.0:
            self._delivery_logged_at = now
            self._log(line)

    # ---- idle long-poll --------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        if not self.long_poll or self._client is None:
            return
        with self._lock:
            if self._running:
                return
            self._idle_deadline = time.monotonic() + self.idle_long_poll
            if self._reaper is None or not self._reaper.is_alive():
                self._reaper = threading.Thread(target=self._reap, name='bulkhead-idle', daemon=True)
                self._reaper.start()
            else:
                self._wake.notify()

    def _reap(self) -> None:
        """One daemon thread: stops the long-poll `idle_long_poll` seconds after the last invocation."""
        while True:
            with self._lock:
                while True:
                    deadline = self._idle_deadline
                    if deadline is not None and self._running == 0:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._wake.wait(remaining)
                    else:
                        self._wake.wait()
                self._idle_deadline = None
                client = self._client
            if client is not None and client.long_polling:
                client.stop()

    # ---- process life ----------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """A forked child (gunicorn's worker, after the master imported the function) has none of the
        parent's threads: new locks, and a new client (from the bundle held) at its first invocation."""
        self._start_lock = threading.Lock()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._reaper = None
        self._running = 0
        self._idle_deadline = None
        if self._attestor is not None:
            self._attestor.after_fork_in_child()
        if self._client is not None:
            self._rebuild_client = True

    def shutdown(self) -> None:
        """Best effort at process exit: stop long-polling and deliver what is queued."""
        client = self._client
        if client is not None:
            client.stop()
        self.deliver()

    def client(self) -> BundleClient | None:
        return self._client

    def workload(self) -> dict[str, str] | None:
        return dict(self._workload) if self._workload is not None else None

    def attestor(self) -> Attestor | None:
        """The attested session (BULKHEAD_ATTEST), once started."""
        return self._attestor

    def status(self) -> dict[str, Any]:
        client = self._client
        attestor = self._attestor
        return {
            'revision': self._shim.revision(),
            'controlled': client is not None,
            'running': self._running,
            'longPolling': client.long_polling if client is not None else False,
            'lastOutcome': client.last_outcome if client is not None else None,
            'firstFetchMs': self.first_fetch_ms,
            'attestation': attestor.status() if attestor is not None else None,
        }


# ---- the process-wide controller and the wrapper both platforms use ---------------------------

_controller: InProcessController | None = None
_controller_lock = threading.Lock()


def get_controller(**options: Any) -> InProcessController:
    """The process-wide controller, started at once so the first bundle is in force before the rest of
    the function's module is imported. The first call's options are `InProcessController`'s keyword
    arguments; a later call may change only what `configure` takes."""
    global _controller
    with _controller_lock:
        controller = _controller
        if controller is None:
            controller = InProcessController(**options)
            _controller = controller
            import atexit

            atexit.register(controller.shutdown)
        elif options:
            controller.configure(**options)
    controller.start()
    return controller


def configure(**options: Any) -> InProcessController:
    """The process's controller (started on import already). Options change what governs the next
    invocations: `refresh_timeout`, `max_staleness`, `idle_long_poll`, `flush_timeout` (seconds),
    `long_poll`, `log`."""
    return get_controller(**options)


def status() -> dict[str, Any]:
    """Revision enforced, whether a control API is configured, invocations running, long-poll state,
    the last fetch outcome and how long the first fetch took."""
    return get_controller().status()


def wrap_invocation(function: F, controller: InProcessController, prepare: Prepare) -> F:
    """`function` governed per call: refreshed bundle before, tag around, records delivered before it
    returns (so before the platform sends the response). A coroutine function gets a coroutine
    function (platforms tell the two apart by `inspect.iscoroutinefunction`)."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        # It would return before its body runs: nothing to tag, nothing delivered in time.
        raise TypeError(
            f'bulkhead: {getattr(function, "__name__", "the function")} is a generator function; '
            'the process-wide enforcement governs it, but it cannot be wrapped per invocation'
        )
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def bulkhead_governed_async(*args: Any, **kwargs: Any) -> Any:
            tag, args, kwargs = _prepared(prepare, args, kwargs)
            await controller.before_invocation_async()
            token = controller.enter_invocation(tag)
            try:
                return await function(*args, **kwargs)
            finally:
                controller.leave_invocation(token)
                await controller.after_invocation_async()

        wrapper: Any = bulkhead_governed_async
    else:

        @functools.wraps(function)
        def bulkhead_governed(*args: Any, **kwargs: Any) -> Any:
            tag, args, kwargs = _prepared(prepare, args, kwargs)
            controller.before_invocation()
            token = controller.enter_invocation(tag)
            try:
                return function(*args, **kwargs)
            finally:
                controller.leave_invocation(token)
                controller.after_invocation()

        wrapper = bulkhead_governed
    wrapper.__bulkhead_governed__ = True
    result: F = wrapper
    return result


def _prepared(
    prepare: Prepare, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, tuple[Any, ...], dict[str, Any]]:
    try:
        return prepare(args, kwargs)
    except Exception:
        return None, args, kwargs


def is_governed(function: object) -> bool:
    return getattr(function, '__bulkhead_governed__', False) is True
