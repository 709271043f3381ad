"""The process-wide enforcement core: holds the verified bundle (or the fail mode), decides every hook's
question through the kernel, binds DNS answers to names, and queues deny records. One instance per
interpreter, built at the first governed operation (not at start-up: a process that never reaches out
pays nothing for the bundle), then reloaded when the bundle file changes."""

from __future__ import annotations

import atexit
import contextvars
import os
import sys
import threading
import time

from .config import Endpoint, Report, ShimConfig, _endpoint_of_url, host_key, read_config
from .kernel._typing import TYPE_CHECKING
from .kernel.bundle import VerifyFailure, scope_mismatch, verify_bundle
from .kernel.cidr import normalize_ip
from .kernel.decide import Decider, Decision, create_decider
from .kernel.host import classify_host
from .kernel.keys import TrustedKey, load_trusted_keys
from .origin import capture_origin
from .records import HttpSink, RecordQueue, SpoolSink

if TYPE_CHECKING:
    from collections.abc import Callable
    from itertools import count
    from typing import Any, Literal

    from .records import Sink

    Log = Callable[[str], None]
    Kind = Literal['connect', 'http', 'dns', 'udp', 'exec', 'addon', 'unix', 'tamper']

EXEMPT = Decision('allow', 'enforce', False, 'exempt')
TAMPERED = Decision('deny', 'enforce', True, 'tamper')

#: Seconds between checks of the bundle file for a new revision (a daemon thread, off the hot path).
WATCH_INTERVAL = 0.25
#: Longest time interpreter exit waits for deny records to reach an HTTP sink.
EXIT_FLUSH_SECONDS = 2.0
#: At most one record write per window from the deciding thread itself (spool sinks, i.e. Lambda).
SPOOL_SYNC_WINDOW = 0.005
#: Longest an invocation's first decision waits for the extension's INVOKE answer (Node's is 2 s).
READY_WAIT_SECONDS = 2.0
#: Lambda: the end of an invocation writes its rule hit counts to the spool unless the last hand-over
#: is more recent than this (a busy sandbox: at most one line a second, not one per invocation).
END_HITS_GAP = 1.0

#: The invocation the running code serves (`<function>/<invocation id>` on Azure, the execution id on
#: GCP), set by the in-process wrappers around each call; records carry it as `invocationId`. A context
#: variable, because one process serves concurrent invocations (worker threads, tasks on one loop).
current_invocation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    'bulkhead_invocation', default=None
)


def _is_sensitive_address(ip: str) -> bool:
    """Cloud metadata and link-local: an allowed name whose answer is one of these (rebinding) is decided
    by address, so only a CIDR rule opens it (as in the Node shim)."""
    return ip.startswith(('169.254.', 'fe80:')) or ip in ('fd00:ec2::254', '100.100.100.200')


class FailDecider:
    """What decides while no valid bundle is held: everything but the exempt endpoints is denied (closed)
    or would be (observe)."""

    __slots__ = ('_deny', '_literal', 'allows_addresses', 'mode', 'revision')

    def __init__(self, fail_mode: str) -> None:
        closed = fail_mode == 'closed'
        self.mode = 'enforce' if closed else 'observe'
        self.revision = -1
        self.allows_addresses = False
        self._deny = Decision('deny', self.mode, closed, 'fail-closed' if closed else 'fail-observe')
        self._literal = Decision('allow', self.mode, False, 'ip-literal')

    def decide(self, *args: Any, **kwargs: Any) -> Decision:
        return self._deny

    def decide_name(self, host: str) -> Decision:
        kind = classify_host(host)
        return self._literal if kind is not None and kind[0] == 'ip' else self._deny

    def decide_exec(self, file: str) -> Decision:
        return self._deny

    def decide_addon(self, path: str) -> Decision:
        return self._deny

    def decide_unix(self, path: str) -> Decision:
        return self._deny


class Shim:
    def __init__(self, log: Log, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.config: ShimConfig = read_config(env)
        for problem in self.config.problems:
            log(f'configuration: {problem}')
        self.decider: Decider | FailDecider = FailDecider(self.config.fail_mode)
        self.revision = -1
        self.expires_at: str | None = None
        self.last_reload_error: str | None = None
        self._trusted: list[TrustedKey] | None = None
        self._exempt: set[tuple[str, int]] = set()
        self._exempt_names: set[str] = set()
        self._names_by_ip: dict[str, list[str]] = {}
        self._ip_cache: dict[str, str] = {}
        self._host_keys: dict[str, str] = {}
        self._bound_names: dict[str, str] = {}
        self._file_state: tuple[int, int, int] | None = None
        self._lock = threading.RLock()
        self.invocation_id: str | None = None
        for endpoint in self.config.exempt:
            self._add_exempt(endpoint)
        sink: Sink | None = None
        report = self.config.report
        if report is not None and report.kind == 'spool':
            sink = SpoolSink(report.target)
        elif report is not None:
            sink = HttpSink(report.target, self.config.token)
        self.queue = RecordQueue(
            sink,
            lambda: self.config.workload,
            log,
            # Straight to the control API: number the records so it can count the ones that never arrive.
            number_records=report is not None and report.kind == 'http',
            # A local spool costs a write: within 5 ms, so the record is on disk before the handler
            # returns and the sandbox is frozen (the Lambda extension forwards it), while events that
            # repeat within the window still become one record. Over HTTP, a longer window batches a
            # burst into one request.
            delay=0.005 if isinstance(sink, SpoolSink) else 0.2,
            hits_interval=self.config.hits_interval,
        )
        #: Allow decisions per rule id under the governing revision (records.HitCounts): the decide_*
        #: methods below increment it, `reload` replaces it with the new revision's.
        self._hits: dict[str, count[int]] = self.queue.hits.counts
        atexit.register(self.queue.drain_at_exit, EXIT_FLUSH_SECONDS)
        # Lambda only (the exec wrapper names the extension's status file): a frozen sandbox runs no thread.
        self._spool_sync = (
            isinstance(sink, SpoolSink)
            and self.config.extension_status is not None
            # With the handler redirect (lambda_handler.py) the spool is flushed as each invocation ends.
            and not os.environ.get('BULKHEAD_ORIGINAL_HANDLER')
        )
        #: The Lambda request whose first decision must wait for the extension's ready file (or None).
        self.ready_for: str | None = None
        self._spool_synced_at = 0.0
        if self.config.bundle_file is None:
            self.last_reload_error = 'BULKHEAD_BUNDLE_FILE is not set'
            log(f'no bundle configured (BULKHEAD_BUNDLE_FILE); fail mode {self.config.fail_mode} governs')
        else:
            self._await_extension()
            self.reload()
            self._start_watch()

    def adopt_report(self, url: str, token: str | None = None) -> bool:
        """Deliver deny records to this http(s) URL (numbered, with the token) when the environment named
        no BULKHEAD_REPORT: the Azure and GCP wrappers' default, the control API's `/v1/reports`. Its
        endpoint becomes exempt. False, changing nothing, when a report sink is configured already."""
        with self._lock:
            if self.config.report is not None:
                return False
            problems: list[str] = []
            endpoint = _endpoint_of_url(url, problems, 'report URL')
            if endpoint is None:
                self.log(f'configuration: {problems[0]}')
                return False
            self._add_exempt(endpoint)
            self.config.report = Report('http', url)
            self.queue.use_sink(HttpSink(url, token or self.config.token), number_records=True)
            return True

    def use_session(
        self,
        control_url: str,
        token: Callable[[], str | None],
        on_unauthorized: Callable[[], None] | None = None,
    ) -> bool:
        """Deliver records with `token()` as the bearer (an attested session's, client/attest.py) when the
        report sink is an http(s) sink at the control API's origin; `on_unauthorized` hears of a 401.
        False, changing nothing, for any other sink."""
        with self._lock:
            sink = self.queue.sink
            if not isinstance(sink, HttpSink) or not sink.same_origin(control_url):
                return False
            sink.token_source = token
            sink.on_unauthorized = on_unauthorized
            return True

    def _await_extension(self) -> None:
        """On Lambda the extension registers first and fetches while the runtime starts: the first
        decision waits (bounded) for its first answer, so the bundle is verified before the function's
        first connection. Past the bound, the fail mode governs until the bundle arrives."""
        status = self.config.extension_status
        if status is None or os.path.exists(status):
            return
        deadline = time.monotonic() + self.config.extension_wait
        while time.monotonic() < deadline:
            time.sleep(0.002)
            if os.path.exists(status):
                return
        self.log(
            f'the extension gave no bundle answer within {round(self.config.extension_wait * 1000)} ms; '
            f'fail mode {self.config.fail_mode} governs until it does'
        )

    # ---- Lambda invocations (lambda_handler.py) ----------------------------------------------------

    def begin_invocation(self, request_id: str | None) -> None:
        """A Lambda invocation starts: its first decision waits until the extension has made the
        bundle on disk the newest for it (see await_ready)."""
        self.invocation_id = request_id
        if request_id and self.config.ready_file is not None:
            self.ready_for = request_id

    def await_ready(self) -> None:
        """Called by the first governed operation of an invocation (boot.get_shim): waits (bounded) for
        the extension's ready file to name this request, then adopts a newer bundle at once instead of
        at the next watch tick, so a revision applied before the invocation governs it from its first
        connection."""
        with self._lock:
            request_id = self.ready_for
            file = self.config.ready_file
            if request_id is None or file is None:
                return
            prefix = (request_id + ' ').encode()
            deadline = time.monotonic() + READY_WAIT_SECONDS
            while True:
                try:
                    with open(file, 'rb') as handle:
                        if handle.read(256).startswith(prefix):
                            break
                except OSError:
                    pass
                if time.monotonic() >= deadline:
                    self.log(
                        f'the extension did not confirm the bundle for {request_id} within '
                        f'{round(READY_WAIT_SECONDS * 1000)} ms; deciding with revision {self.revision}'
                    )
                    break
                time.sleep(0.0002)
            self.ready_for = None
            bundle = self.config.bundle_file
            if bundle is not None:
                try:
                    changed = _file_state_of(bundle) != self._file_state
                except OSError:
                    changed = False
                if changed:
                    self.reload()

    def end_invocation(self, timeout: float) -> None:
        """A Lambda invocation ends: its records go to the spool before the sandbox can be frozen."""
        self.ready_for = None
        self.invocation_id = None
        queue = self.queue
        if queue.queued or (queue.hits.pending and time.monotonic() - queue.hits.taken_at >= END_HITS_GAP):
            # With the invocation's hit counts: a frozen sandbox runs no heartbeat, and a sandbox is
            # shut down without its runtime being asked to write anything.
            queue.flush(timeout=timeout, hits=True)

    def _add_exempt(self, endpoint: Endpoint) -> None:
        self._exempt.add((endpoint.host, endpoint.port))
        if normalize_ip(endpoint.host) is None:
            self._exempt_names.add(endpoint.host)

    # ---- bundle -------------------------------------------------------------------------------------

    def reload(self, envelope_text: str | bytes | None = None) -> bool:
        """Verify and adopt the bundle file (or the given envelope). A refused bundle keeps the last good
        one (or the fail mode) and says why in one log line."""
        with self._lock:
            source = self.config.bundle_file if envelope_text is None else 'the given envelope'

            def refuse(reason: str, message: str) -> bool:
                self.last_reload_error = f'{reason}: {message}'
                keeping = (
                    f'keeping revision {self.revision}'
                    if self.revision >= 0
                    else f'fail mode {self.config.fail_mode} governs'
                )
                self.log(f'refused bundle from {source}: {reason}: {message}; {keeping}')
                return False

            text = envelope_text
            if text is None:
                if self.config.bundle_file is None:
                    return refuse('unconfigured', 'BULKHEAD_BUNDLE_FILE is not set')
                try:
                    with open(self.config.bundle_file, 'rb') as file:
                        self._file_state = _file_state(file.fileno())
                        text = file.read()
                except OSError as error:
                    return refuse('unreadable', error.strerror or type(error).__name__)
            if self._trusted is None:
                try:
                    self._trusted = load_trusted_keys(self.config.trusted_keys)
                except ValueError as error:
                    self._trusted = []
                    self.log(f'configuration: BULKHEAD_TRUSTED_KEYS: {error}')
            if not self._trusted:
                return refuse('unknown-key', 'no trusted keys (BULKHEAD_TRUSTED_KEYS)')
            result = verify_bundle(
                text,
                trusted_keys=self._trusted,
                min_revision=self.revision if self.revision >= 0 else None,
            )
            if isinstance(result, VerifyFailure):
                return refuse(result.reason, result.message)
            payload = result.payload
            problem = _scope_problem(payload['scope'], self.config.workload)
            if problem is not None:
                return refuse('wrong-scope', problem)
            if payload['revision'] == self.revision:
                return True
            try:
                decider = create_decider(payload, exec_path=sys.executable)
            except (ValueError, TypeError, KeyError) as error:
                # Signed but not buildable (a pattern this kernel cannot read): refused like a bad payload.
                return refuse('malformed', str(error))
            previous = self.revision
            self.decider = decider
            self.revision = payload['revision']
            # After the decider: an allow by the old one counted a moment late is lost, never moved to
            # the new revision.
            self._hits = self.queue.hits.open(self.revision)
            self.expires_at = payload['expiresAt']
            self.last_reload_error = None
            was = f', was {previous}' if previous >= 0 else ''
            self.log(f'enforcing bundle revision {self.revision} ({decider.mode}{was})')
            return True

    def _start_watch(self) -> None:
        thread = threading.Thread(target=self._watch, name='bulkhead-bundle-watch', daemon=True)
        thread.start()
        self.watch_thread_ident = thread.ident

    def _watch(self) -> None:
        file = self.config.bundle_file
        if file is None:
            return
        event = threading.Event()
        while not event.wait(WATCH_INTERVAL):
            try:
                state = _file_state_of(file)
            except OSError:
                continue
            if state != self._file_state:
                try:
                    self.reload()
                except Exception as error:  # the watch must outlive any one bad file
                    self._file_state = state
                    self.log(
                        f'bundle reload failed ({type(error).__name__}); keeping revision {self.revision}'
                    )

    # ---- names and addresses ---------------------------------------------------------------------

    def bind_names(self, host: object, addresses: list[str]) -> None:
        """Remember that `host` resolved to these addresses (answers of a query this process made)."""
        if isinstance(host, bytes):
            host = host.decode('ascii', 'replace')
        if not isinstance(host, str):
            return
        name = self._bound_names.get(host)
        if name is None:
            kind = classify_host(host)
            name = kind[1] if kind is not None and kind[0] == 'host' else ''
            if len(self._bound_names) >= 4096:
                self._bound_names.clear()
            self._bound_names[host] = name
        if not name:
            return
        table = self._names_by_ip
        for raw in addresses:
            ip = self.ip_literal(raw)
            if ip is None:
                continue
            names = table.get(ip)
            if names is None:
                if len(table) >= 50_000:
                    table.clear()
                table[ip] = [name]
            elif name not in names:
                if len(names) >= 32:
                    names.pop(0)
                names.append(name)

    def names_of(self, ip: str) -> list[str] | None:
        return self._names_by_ip.get(ip)

    def is_exempt(self, host: str, port: int) -> bool:
        return (host, port) in self._exempt

    # ---- decisions ---------------------------------------------------------------------------------

    def host_key(self, host: str) -> str:
        """`config.host_key`, cached (every request asks about the same few names)."""
        cache = self._host_keys
        hit = cache.get(host)
        if hit is None:
            hit = host_key(host)
            if len(cache) >= 4096:
                cache.clear()
            cache[host] = hit
        return hit

    def ip_literal(self, text: str) -> str | None:
        """The normal form of an IP literal in any spelling (`0x7f.1`, `::ffff:127.0.0.1`), or None for a
        name. Cached: every connect and every DNS answer asks, usually about the same few addresses."""
        cache = self._ip_cache
        hit = cache.get(text)
        if hit is not None:
            return hit or None
        kind = classify_host(text)
        value = kind[1] if kind is not None and kind[0] == 'ip' else ''
        if len(cache) >= 4096:
            cache.clear()
        cache[text] = value
        return value or None

    def decide_connect(self, address: str, port: int, protocol: str, sni: str | None = None) -> Decision:
        """A new connection (TCP or UDP) to an IP literal: decided by the names this process resolved to
        that address (a name the caller merely claims does not count), else by the address alone."""
        ip = self.ip_literal(address) or address
        # Connecting to the unspecified address reaches this host's loopback: decide it as such.
        if ip == '0.0.0.0':
            ip = '127.0.0.1'
        elif ip == '::':
            ip = '::1'
        if (ip, port) in self._exempt:
            return EXEMPT
        names = self._names_by_ip.get(ip)
        decider = self.decider
        decision: Decision | None = None
        via_name = False
        if names:
            for name in names:
                if (name, port) in self._exempt:
                    return EXEMPT
            for name in names:
                d = decider.decide(name, ip, port, protocol)
                if decision is None or d.decision == 'allow':
                    decision = d
                if d.decision == 'allow':
                    via_name = True
                    break
        if decision is None or decision.decision != 'allow':
            by_address = decider.decide(None, ip, port, protocol)
            if decision is None or by_address.decision == 'allow':
                decision = by_address
                via_name = False
        if decision.decision == 'allow' and via_name and _is_sensitive_address(ip):
            decision = decider.decide(None, ip, port, protocol)
        if decision.decision == 'allow':
            if sni:
                by_sni = decider.decide(sni.lower(), ip, port, protocol)
                if by_sni.decision != 'allow':
                    return by_sni
            hits = self._hits
            try:
                next(hits[decision.rule])
            except KeyError:
                self.queue.hits.first(hits, decision.rule)
        return decision

    def decide_host(self, host: str, port: int, protocol: str) -> Decision:
        """A connection to a name the C library resolves itself (`sock.connect(('name', 443))`)."""
        key = self.host_key(host)
        if (key, port) in self._exempt:
            return EXEMPT
        decision = self.decider.decide(key, None, port, protocol)
        if decision.decision == 'allow':
            hits = self._hits
            try:
                next(hits[decision.rule])
            except KeyError:
                self.queue.hits.first(hits, decision.rule)
        return decision

    def decide_request(
        self, host: str, port: int, protocol: str, method: str, path: str, peer: str | None
    ) -> Decision:
        """An HTTP request before a byte of it is written: decided by the names it carries; where the
        names fall to the default and the policy has CIDR allows, by the address its connection goes to."""
        key = self.host_key(host)
        if (key, port) in self._exempt:
            return EXEMPT
        decider = self.decider
        decision = decider.decide(key, None, port, protocol, None, method, path)
        if (
            decision.decision != 'allow'
            and decision.rule == 'default-deny'
            and decider.allows_addresses
            and peer is not None
        ):
            by_address = decider.decide(None, peer, port, protocol, None, method, path)
            if by_address.decision == 'allow':
                decision = by_address
        if decision.decision == 'allow':
            hits = self._hits
            try:
                next(hits[decision.rule])
            except KeyError:
                self.queue.hits.first(hits, decision.rule)
        return decision

    def decide_name(self, host: str) -> Decision:
        key = self.host_key(host)
        if key in self._exempt_names:
            return EXEMPT
        decision = self.decider.decide_name(key)
        if decision.decision == 'allow':
            hits = self._hits
            try:
                next(hits[decision.rule])
            except KeyError:
                self.queue.hits.first(hits, decision.rule)
        return decision

    def count(self, decision: Decision) -> None:
        """Count an allow decision the hooks made with the decider itself (exec, addons, Unix sockets).
        The decide_* methods above count their own with these lines inlined: on the per-connection path a
        method call would cost more than the count itself."""
        if decision.decision == 'allow' and decision is not EXEMPT:
            hits = self._hits
            try:
                next(hits[decision.rule])
            except KeyError:
                self.queue.hits.first(hits, decision.rule)

    # ---- records -------------------------------------------------------------------------------

    def report(
        self, kind: Kind, decision: Decision, destination: dict[str, Any], *, severity: str | None = None
    ) -> None:
        """Queue a deny (or would-deny) record with the application frame that caused it."""
        record: dict[str, Any] = {
            'kind': kind,
            'destination': destination,
            'decision': decision.decision,
            'mode': decision.mode,
            'rule': decision.rule,
            'revision': self.decider.revision if decision is not TAMPERED else self.revision,
        }
        if severity is not None or decision.rule.startswith(('fail-', 'tamper')):
            record['severity'] = severity or 'high'
        origin = capture_origin(3)
        if origin is not None:
            record['origin'] = origin
        invocation = current_invocation.get() or self.invocation_id
        if invocation is not None:
            record['invocationId'] = invocation
        self.queue.add(record)
        if self._spool_sync:
            # Lambda: the sandbox may be frozen the moment the handler returns, with the delivery thread
            # not yet run. The first record of a burst goes to the spool now, in this thread (a local
            # append); repeats within the window are aggregated into a second record by the thread.
            now = time.monotonic()
            if now - self._spool_synced_at >= SPOOL_SYNC_WINDOW:
                self._spool_synced_at = now
                self.queue.flush(timeout=1.0)

    def status(self) -> dict[str, Any]:
        return {
            'revision': self.revision,
            'mode': self.decider.mode,
            'failMode': self.config.fail_mode,
            'failing': self.revision < 0,
            'bundleFile': self.config.bundle_file,
            'expiresAt': self.expires_at,
            'workload': dict(self.config.workload),
            'queued': self.queue.queued,
            'delivered': self.queue.delivered,
            'dropped': self.queue.dropped,
            'lastReloadError': self.last_reload_error,
            'lastDeliveryError': self.queue.last_error,
        }

    def after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        self.queue.after_fork_in_child()
        self._hits = self.queue.hits.counts
        if self.config.bundle_file is not None:
            self._start_watch()


def _file_state(fd: int) -> tuple[int, int, int]:
    st = os.fstat(fd)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _file_state_of(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


# Attributes only an attestation tells (policy/attestation.ts ATTESTED_ONLY_ATTRIBUTES): the control
# API scoped the bundle by them, the workload cannot know them of itself.
_ATTESTED_ONLY = frozenset({'attested', 'role', 'serviceAccount', 'principal', 'tenant'})


def _scope_problem(scope: dict[str, Any], identity: dict[str, str]) -> str | None:
    """As the Node shim: a selector on what the workload cannot know of itself (the AWS account
    inside Lambda, what an attestation vouched for) is not held against it: the control API checked
    it when it compiled the scope."""
    unknowable = _ATTESTED_ONLY | {'account'} if identity.get('cloud') == 'aws' else _ATTESTED_ONLY
    if not any(k in unknowable and k not in identity for g in scope['groups'] for k in g['match']):
        return scope_mismatch(scope, identity)
    lenient = {
        **scope,
        'groups': [
            {**g, 'match': {k: v for k, v in g['match'].items() if k not in unknowable or k in identity}}
            for g in scope['groups']
        ],
    }
    return scope_mismatch(lenient, identity)
