"""Deny records: aggregated, queued without blocking, bounded, delivered by a daemon thread to a sink
(the spool file the Lambda extension reads, or the control API). The record shape is the Node shim's
(`DenyRecord`, docs/contracts.md). Nothing here raises into application code: every failure becomes a
count or a log line, and what cannot be delivered at exit is counted, never silently dropped.

Rule hit counts (docs/contracts.md §3) travel with the records: allow decisions per rule id, counted by
the core (`HitCounts.counts`), handed over with every delivery of records, by a heartbeat while there
are counts and no records, and at exit. They are statistics: not numbered, and a refused batch loses
them."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time

from .kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

# Built at the first governed operation: http.client, urllib.parse, uuid and datetime are imported only
# where they are needed (an HTTP sink), so a process with a spool file pays nothing for them.

if TYPE_CHECKING:
    Record = dict[str, Any]
    Log = Callable[[str], None]


def iso_now() -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as JavaScript's toISOString writes it."""
    now = time.time()
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now)) + f'.{int(now * 1000) % 1000:03d}Z'


def uuid4() -> str:
    """A random (version 4) UUID from os.urandom, without importing uuid (it pulls in platform)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f'{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}'


class DeliveryError(Exception):
    """A sink's refusal. `permanent`: retrying the same batch cannot succeed (the receiver judged it)."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


if TYPE_CHECKING:

    class Sink(Protocol):
        description: str

        def deliver(self, records: list[Record], timeout: float, hits: list[Record] | None = None) -> None:
            """`hits` (HitCount objects) only when there are any: sinks written before hit counts keep
            working."""


class SpoolSink:
    """Contract §3: NDJSON, one write per line on an O_APPEND descriptor, file mode 0600."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f'spool {path}'
        self._fd: int | None = None

    def deliver(self, records: list[Record], timeout: float, hits: list[Record] | None = None) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        lines: list[Record] = records
        if hits:
            # A hit count is a line `{"hits": HitCount}` (no `id`): after the records it came with.
            lines = [*records, *({'hits': h} for h in hits)]
        for record in lines:
            line = (json.dumps(record, separators=(',', ':'), ensure_ascii=False) + '\n').encode()
            if os.write(self._fd, line) != len(line):
                raise DeliveryError(f'short write to {self.path}', False)

    def after_fork(self) -> None:
        # The descriptor is shared with the parent after fork; appends stay whole lines either way.
        pass


def _permanent(status: int) -> bool:
    """4xx other than auth, timeout and throttling: the receiver read the batch and refused it.
    401/403 are a configuration error an operator fixes, so those batches are kept and retried."""
    return 400 <= status < 500 and status not in (401, 403, 408, 429)


class HttpSink:
    """Batched `POST {records}` to the control API (or the extension), bearer token when configured.

    `token_source`, when set, gives the token at each delivery instead (an attested session's, see
    client/attest.py), and `on_unauthorized` hears of a 401 answer (the batch is kept and retried)."""

    def __init__(self, url: str, token: str | None) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self._https = parts.scheme == 'https'
        self._host = parts.hostname or ''
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
        self._token = token
        self.description = f'POST {parts.scheme}://{parts.netloc}{parts.path}'
        self.token_source: Callable[[], str | None] | None = None
        self.on_unauthorized: Callable[[], None] | None = None

    def same_origin(self, url: str) -> bool:
        """Whether `url` has this sink's scheme, host and port."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == 'https' else 80)
        except ValueError:
            return False
        mine = (self._https, self._host, self._port)
        return (parts.scheme == 'https', parts.hostname or '', port) == mine

    def deliver(self, records: list[Record], timeout: float, hits: list[Record] | None = None) -> None:
        import http.client

        batch: dict[str, Any] = {'records': records}
        if hits:
            batch['hits'] = hits
        body = json.dumps(batch, separators=(',', ':'), ensure_ascii=False).encode()
        headers = {'content-type': 'application/json', 'content-length': str(len(body))}
        token = self._token
        source = self.token_source
        if source is not None:
            try:  # noqa: SIM105  (contextlib costs start-up time)
                token = source() or token
            except Exception:
                pass  # the configured token, then
        if token:
            headers['authorization'] = f'Bearer {token}'
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.request('POST', self._path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except OSError as error:
            raise DeliveryError(f'{self.description} failed: {type(error).__name__}', False) from None
        finally:
            connection.close()
        if status == 401 and self.on_unauthorized is not None:
            try:  # noqa: SIM105  (contextlib costs start-up time)
                self.on_unauthorized()
            except Exception:
                pass  # the batch is retried either way
        if not 200 <= status <= 299:
            raise DeliveryError(f'{self.description} answered {status}', _permanent(status))


#: Closed windows (of revisions no longer governing, or of batches that did not arrive) kept for the next
#: hand-over; beyond this the oldest are dropped (a batch carries at most 100 hit counts).
MAX_HIT_COUNTS = 50
#: The control API's bounds: at most 100 hit counts in a batch, of at most 10,000 rules each.
MAX_BATCH_HIT_COUNTS = 100
MAX_RULES_PER_HIT_COUNT = 10_000


def _value(counter: itertools.count[int]) -> int:
    """What a hit counter counted: N of its repr `count(N)` (made `count(1)` at the first hit, advanced by
    `next` at each one after; a count cannot be read otherwise without advancing it)."""
    return int(repr(counter)[6:-1])


class HitCounts:
    """Allow decisions per rule id under the revision that made them (docs/contracts.md §3).

    The hot path is the core's: `next(counts[rule])` on the open revision's dict of `itertools.count`
    objects, a `KeyError` (the first allow by that rule under the revision) going to `first`. No lock and
    no read-modify-write in Python: `next` on a count is one C call, atomic under the GIL, so concurrent
    threads lose no increment; and it is cheaper than `counts[rule] += 1` (one dict operation, not two).
    The dict only grows; a hand-over copies it (one C call) and hands over what each count gained since
    the hand-over before, so a count is never taken twice nor lost to a hand-over.

    A new revision (`open`) closes the old one's window; it is handed over under the old revision with
    the next delivery. `since` is the window's first counted decision (the first of a revision) or the
    last hand-over; `until` the hand-over."""

    def __init__(self, workload: Callable[[], dict[str, str]]) -> None:
        self._workload = workload
        self._lock = threading.Lock()
        #: The open revision's counts: what the core increments (replaced, never cleared).
        self.counts: dict[str, itertools.count[int]] = {}
        self.revision = -1
        self._handed: dict[str, int] = {}
        self._since: str | None = None
        self._closed: list[Record] = []
        #: Called (outside the lock) at the first allow of a revision: the queue starts its heartbeat.
        self.on_first: Callable[[], None] = lambda: None
        #: time.monotonic() of the last hand-over (0: none yet).
        self.taken_at = 0.0

    def first(self, counts: dict[str, itertools.count[int]], rule: str) -> None:
        """The first allow by `rule` under the revision whose dict `counts` is."""
        started = False
        with self._lock:
            counter = counts.get(rule)
            if counter is None:
                counts[rule] = itertools.count(1)  # `count(1)`: this hit; each `next` adds one
            else:
                next(counter)  # another thread's first came first
            if counts is self.counts and self._since is None:
                self._since = iso_now()
                started = self.revision >= 0
        if started:
            self.on_first()

    def open(self, revision: int) -> dict[str, itertools.count[int]]:
        """`revision` governs from now on: the counts of the one before are closed (handed over with the
        next delivery, under that revision). Returns the dict the core counts into."""
        with self._lock:
            if revision == self.revision:
                return self.counts
            closed = self._delta_locked(iso_now())
            if closed is not None:
                self._closed.append(closed)
                del self._closed[:-MAX_HIT_COUNTS]
            self.counts = {}
            self._handed = {}
            self._since = None
            self.revision = revision
            return self.counts

    @property
    def pending(self) -> bool:
        """Whether there are counts not yet handed over."""
        if self._closed:
            return True
        handed = self._handed
        return len(self.counts) != len(handed) or any(
            _value(c) != handed.get(rule, 0) for rule, c in self.counts.copy().items()
        )

    def take(self) -> list[Record]:
        """The hit counts to hand over now (closed windows first), each rule counted once; within the
        control API's bounds (a window of more rules is split, more windows wait for the next batch)."""
        with self._lock:
            self.taken_at = time.monotonic()
            windows = self._closed
            current = self._delta_locked(iso_now())
            if current is not None:
                windows.append(current)
            taken: list[Record] = []
            for window in windows:
                rules = window['rules']
                if len(rules) <= MAX_RULES_PER_HIT_COUNT:
                    taken.append(window)
                    continue
                items = list(rules.items())
                for start in range(0, len(items), MAX_RULES_PER_HIT_COUNT):
                    taken.append({**window, 'rules': dict(items[start : start + MAX_RULES_PER_HIT_COUNT])})
            self._closed = taken[MAX_BATCH_HIT_COUNTS:]
            return taken[:MAX_BATCH_HIT_COUNTS]

    def restore(self, taken: list[Record]) -> None:
        """A batch that did not arrive and will be sent again: its counts go with the next one."""
        with self._lock:
            self._closed = (taken + self._closed)[-MAX_HIT_COUNTS:]

    def _delta_locked(self, now: str) -> Record | None:
        snapshot = {rule: _value(c) for rule, c in self.counts.copy().items()}
        handed = self._handed
        rules = {rule: n - handed.get(rule, 0) for rule, n in snapshot.items() if n > handed.get(rule, 0)}
        self._handed = snapshot
        since = self._since
        if since is not None:
            self._since = now
        if not rules or self.revision < 0:
            # Nothing new, or decisions of the fail mode (no revision made them): nothing to hand over.
            return None
        return {
            'workload': dict(self._workload()),
            'revision': self.revision,
            'since': since or now,
            'until': now,
            'rules': rules,
        }

    def after_fork_in_child(self) -> None:
        """The parent hands over what was counted before the fork; the child starts from nothing."""
        self._lock = threading.Lock()
        self.counts = {}
        self._handed = {}
        self._since = None
        self._closed = []


class _Pending:
    __slots__ = ('key', 'record')

    def __init__(self, record: Record, key: tuple[object, ...]) -> None:
        self.record = record
        self.key = key


class RecordQueue:
    """O(1) `add` that never blocks the caller on I/O; a daemon thread delivers in batches."""

    def __init__(
        self,
        sink: Sink | None,
        workload: Callable[[], dict[str, str]],
        log: Log,
        *,
        max_pending: int = 1000,
        max_batch: int = 200,
        delay: float = 0.2,
        max_retry_delay: float = 60.0,
        number_records: bool = False,
        hits_interval: float = 60.0,
    ) -> None:
        self.sink = sink
        self._workload = workload
        self._log = log
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._delay = delay
        self._max_retry_delay = max_retry_delay
        self._number = number_records
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        #: One flush at a time: a batch stays in `_pending` until delivered, so two flushes (the delivery
        #: thread and an explicit or exit flush) would otherwise send the same records twice.
        self._flushing = threading.Lock()
        self._pending: list[_Pending] = []
        self._by_key: dict[tuple[object, ...], _Pending] = {}
        self._seq = 0
        self._sandbox_id: str | None = None
        self.dropped = 0
        self.delivered = 0
        self.last_error: str | None = None
        self._retry_delay = 0.0
        self._thread: threading.Thread | None = None
        self._due = 0.0
        #: Ident of the delivery thread: the audit hook leaves the shim's own traffic alone.
        self.thread_ident: int | None = None
        #: Rule hit counts, handed over with the records; the heartbeat every `hits_interval` seconds
        #: hands them over alone while there are any (started at the first allow, then kept ticking).
        self.hits = HitCounts(workload)
        self.hits.on_first = self._start_heartbeat
        self._hits_interval = hits_interval
        self._hits_due = 0.0

    @property
    def queued(self) -> int:
        return len(self._pending)

    def use_sink(self, sink: Sink, *, number_records: bool) -> None:
        """Deliver to this sink from now on (a queue built without one: the in-process wrappers name the
        control API after the shim was built); what is already queued goes there too."""
        with self._lock:
            self.sink = sink
            self._number = number_records
            if self._pending:
                self._schedule(self._delay)
            if self.hits.pending and self._hits_due == 0.0:
                # Counted before there was a sink: the heartbeat starts now.
                self._hits_due = time.monotonic() + self._hits_interval
                self._ensure_thread()

    def add(self, record_input: Record) -> None:
        """Queue a record (kind, destination, decision, mode, rule, revision, origin …). Never raises."""
        try:
            d = record_input.get('destination', {})
            key = (
                record_input.get('kind'),
                record_input.get('decision'),
                record_input.get('mode'),
                record_input.get('rule'),
                record_input.get('revision'),
                d.get('host'),
                d.get('ip'),
                d.get('port'),
                d.get('protocol'),
                d.get('sni'),
                d.get('method'),
                d.get('path'),
                d.get('command'),
                d.get('socket'),
                record_input.get('invocationId'),
            )
            now = iso_now()
            with self._lock:
                existing = self._by_key.get(key)
                if existing is not None:
                    existing.record['count'] += 1
                    existing.record['lastTime'] = now
                    return
                seq = 0
                if self._number:
                    self._seq += 1
                    seq = self._seq
                if len(self._pending) >= self._max_pending:
                    self.dropped += 1
                    return
                record: Record = {
                    'id': uuid4(),
                    'time': now,
                    'count': 1,
                    'workload': dict(self._workload()),
                }
                record.update(record_input)
                if seq:
                    if self._sandbox_id is None:
                        self._sandbox_id = uuid4()
                    record['sandboxId'] = self._sandbox_id
                    record['seq'] = seq
                pending = _Pending(record, key)
                self._pending.append(pending)
                self._by_key[key] = pending
                if self.sink is not None:
                    self._schedule(self._delay)
        except Exception:
            self.dropped += 1

    def _schedule(self, delay: float) -> None:
        """Under the lock: make sure the delivery thread runs within `delay` seconds."""
        due = time.monotonic() + delay
        if self._due == 0.0 or due < self._due:
            self._due = due
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        """Under the lock: the delivery thread runs (started at first need) and sees what changed."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name='bulkhead-records', daemon=True)
            self._thread.start()
        else:
            self._wake.notify()

    def _start_heartbeat(self) -> None:
        """The first allow of a revision was counted: hand the counts over within `hits_interval`."""
        with self._lock:
            if self.sink is not None and self._hits_due == 0.0:
                self._hits_due = time.monotonic() + self._hits_interval
                self._ensure_thread()

    def _run(self) -> None:
        self.thread_ident = threading.get_ident()
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    due = [t for t in (self._due, self._hits_due) if t != 0.0]
                    if due and now >= min(due):
                        break
                    self._wake.wait(max(0.0, min(due) - now) if due else None)
                records_due = self._due != 0.0 and now >= self._due
                if records_due:
                    self._due = 0.0
                heartbeat = self._hits_due != 0.0 and now >= self._hits_due
                if heartbeat:
                    # Kept ticking: an increment of a rule already counted gives no other signal.
                    self._hits_due = now + self._hits_interval
            if records_due or (heartbeat and self.hits.pending):
                self.flush(timeout=10.0, hits=heartbeat)

    def flush(self, timeout: float = 10.0, hits: bool = False) -> int:
        """Deliver what is pending now, in batches, until the sink refuses or `timeout` passes; the rule
        hit counts go with the records, and with `hits` (heartbeat, exit, end of a Lambda invocation)
        in a batch of their own when there are no records. Returns the number of records still pending.
        Safe from any thread (the sink is called outside the lock)."""
        sink = self.sink
        if sink is None:
            return len(self._pending)
        deadline = time.monotonic() + timeout
        if not self._flushing.acquire(timeout=max(0.0, timeout)):
            return len(self._pending)
        try:
            return self._flush_until(sink, deadline, hits)
        finally:
            self._flushing.release()

    def _flush_until(self, sink: Sink, deadline: float, hits_alone: bool) -> int:
        """`flush` holding the flush lock."""
        with_hits = True
        while True:
            with self._lock:
                batch = self._pending[: self._max_batch]
                # Records in flight are not aggregated into any more: a repeat starts a new record.
                for p in batch:
                    if self._by_key.get(p.key) is p:
                        del self._by_key[p.key]
            if not batch and not (hits_alone and self.hits.pending):
                return 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._requeue(batch)
                return len(self._pending)
            # Every delivery hands the counts over; at most once alone (no records) per flush.
            hits_alone = False
            hits = self.hits.take() if with_hits else []
            try:
                if hits:
                    sink.deliver([p.record for p in batch], min(remaining, 5.0), hits)
                else:
                    sink.deliver([p.record for p in batch], min(remaining, 5.0))
            except Exception as error:
                self.last_error = str(error)
                permanent = isinstance(error, DeliveryError) and error.permanent
                if hits and permanent:
                    # A receiver that refuses the hit counts must not cost the records: they are sent
                    # again alone (the counts are statistics, the records are not).
                    self._log(
                        f'report delivery to {sink.description} refused ({self.last_error}); '
                        f'{len(hits)} hit counts dropped'
                    )
                    with_hits = False
                    if batch:
                        self._requeue(batch)
                    continue
                if hits:
                    self.hits.restore(hits)
                if not batch:
                    self._log(
                        f'report delivery to {sink.description} failed ({self.last_error}); '
                        'hit counts kept for the next hand-over'
                    )
                    return 0
                with self._lock:
                    if permanent:
                        self._remove(batch)
                        self.dropped += len(batch)
                        self._log(
                            f'report delivery to {sink.description} refused ({self.last_error}); '
                            f'{len(batch)} records dropped'
                        )
                        continue
                    self._requeue_locked(batch)
                    self._retry_delay = min(
                        self._max_retry_delay, 2.0 if self._retry_delay == 0 else self._retry_delay * 2
                    )
                    self._log(
                        f'report delivery to {sink.description} failed ({self.last_error}); '
                        f'{len(self._pending)} records kept for retry'
                    )
                    self._schedule(self._retry_delay)
                    return len(self._pending)
            with self._lock:
                self._remove(batch)
                self.delivered += len(batch)
                self._retry_delay = 0.0

    def _remove(self, batch: list[_Pending]) -> None:
        ids = {id(p) for p in batch}
        self._pending = [p for p in self._pending if id(p) not in ids]

    def _requeue(self, batch: list[_Pending]) -> None:
        with self._lock:
            self._requeue_locked(batch)

    def _requeue_locked(self, batch: list[_Pending]) -> None:
        for p in batch:
            self._by_key.setdefault(p.key, p)

    def drain_at_exit(self, timeout: float) -> None:
        """At interpreter exit: deliver within `timeout` seconds, with the last hit counts; what is left
        is counted and said."""
        if self.sink is None or not (self._pending or self.hits.pending):
            return
        left = self.flush(timeout=timeout, hits=True)
        if left:
            self.dropped += left
            self._log(
                f'exiting with {left} deny records undelivered to {self.sink.description} '
                f'({self.last_error or "timed out"}); counted as dropped'
            )

    def after_fork_in_child(self) -> None:
        """The delivery thread does not survive fork; the child keeps the queue and starts its own."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flushing = threading.Lock()
        self._thread = None
        self._due = 0.0
        self.thread_ident = None
        # A child is another sandbox for sequence numbering (the parent's numbers are the parent's).
        self._sandbox_id = None
        self._seq = 0
        self._pending = []
        self._by_key = {}
        self._hits_due = 0.0
        self.hits.after_fork_in_child()
