"""Forwards the shim's spooled deny records (docs/contracts.md §3) to the control API, as the Node
extension's report-forwarder does: reads from a persisted cursor, numbers each record per sandbox
(`sandboxId`, `seq`), POSTs batches to /v1/reports and advances the cursor only on acceptance, so
delivery is at least once and the control API deduplicates by record id. A freeze in the middle of a
POST leaves the cursor where it was: the batch is sent again after the thaw.

Rule hit counts (lines `{"hits": HitCount}`, no `id`) go in the `hits` array of the batch whose lines
they are among: not numbered, not records, not malformed; their bytes are consumed like a record's. The
lines of one workload and revision in a batch are summed into one hit count (the shim writes one at the
end of an invocation, at most one a second). A backlog of hit counts alone waits for the caller's word
(`hits_alone`): the extension sends it at most once a minute and at SHUTDOWN, never on an INVOKE's
critical path; records take the hit counts before them along."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time

from ..kernel._typing import TYPE_CHECKING
from ..records import uuid4
from .state import SPOOL_FILE, Cursor, read_cursor, write_cursor

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MAX_READ_BYTES = 1024 * 1024
DEFAULT_BATCH = 200
#: Hit counts in one batch (the control API takes at most 100, of at most 10,000 rules each).
MAX_HITS = 100
MAX_RULES = 10_000


class ForwardResult:
    __slots__ = ('duplicate', 'error', 'hits', 'malformed', 'pending', 'rejected', 'sent')

    def __init__(self) -> None:
        self.sent = 0
        #: Hit counts forwarded (not records: `sent` does not count them).
        self.hits = 0
        self.duplicate = 0
        self.rejected = 0
        self.malformed = 0
        self.pending = False
        self.error: str | None = None


class Forwarder:
    def __init__(
        self,
        state_dir: str,
        control_url: str | None,
        token: str | None,
        log: Callable[[str], None],
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self._state_dir = state_dir
        self._spool = os.path.join(state_dir, SPOOL_FILE)
        self._token = token  # secret: never logged
        self._control_url = control_url
        #: With attestation: the bearer to send now (the session's, else the workload token), and who hears
        #: of a 401 (client/attest.py Attestor.bearer and .report_refused).
        self._bearer: Callable[[], str] | None = None
        self._on_unauthorized: Callable[[], None] | None = None
        self._log = log
        self._batch = batch_size
        self._lock = threading.Lock()
        self.total_sent = 0
        saved = read_cursor(state_dir)
        # The control API counts gaps from 1.
        self.cursor = saved or Cursor(uuid4(), 0, 1, 0)
        if saved is None:
            # At once: a reset re-launches the extension, and the sandbox keeps its id.
            try:
                write_cursor(state_dir, self.cursor)
            except OSError as error:
                log(f'reports: cannot write the spool cursor ({type(error).__name__})')
        #: (inode, size) of the spool when a backlog of hit counts alone was left for later: unchanged,
        #: it is not read again until the caller lets hit counts go alone.
        self._deferred: tuple[int, int] | None = None
        self._target: tuple[str, str, int, str] | None = None
        if control_url and token:
            from ..client.bundle_client import parse_control_url

            self._target = parse_control_url(control_url)

    def use_credentials(
        self,
        token: str,
        bearer: Callable[[], str] | None = None,
        on_unauthorized: Callable[[], None] | None = None,
    ) -> None:
        """What batches carry from now on: the workload token (known only now when it was read from a
        secret), or `bearer()` at each batch (an attested session's), `on_unauthorized` told of a 401."""
        self._token = token
        self._bearer = bearer
        self._on_unauthorized = on_unauthorized
        if self._control_url and token:
            from ..client.bundle_client import parse_control_url

            self._target = parse_control_url(self._control_url)

    def backlog(self) -> int:
        """Bytes in the spool not yet acknowledged (0 when the spool is missing)."""
        try:
            info = os.stat(self._spool)
        except OSError:
            return 0
        if info.st_ino != self.cursor.inode or info.st_size < self.cursor.offset:
            return info.st_size
        return info.st_size - self.cursor.offset

    def forward(self, deadline: float, hits_alone: bool = True) -> ForwardResult:
        """Forwards until the spool is drained, an error happens or `deadline` (monotonic) passes; with
        `hits_alone` false, a rest of hit counts alone (no record after them) is left for later.
        One pass at a time; a caller arriving meanwhile waits for the lock."""
        with self._lock:
            return self._forward(deadline, hits_alone)

    def _forward(self, deadline: float, hits_alone: bool) -> ForwardResult:
        result = ForwardResult()
        if not hits_alone and self._deferred is not None:
            try:
                info = os.stat(self._spool)
                if (info.st_ino, info.st_size) == self._deferred:
                    return result
            except OSError:
                return result
        while True:
            chunk = self._read_chunk()
            if chunk is None:
                return result
            records, hits, consumed, malformed, more, inode = chunk
            if not records and not hits and consumed == 0:
                return result
            if not records and hits and not more and not hits_alone:
                self._deferred = (inode, self.cursor.offset + consumed)
                return result
            self._deferred = None
            result.malformed += malformed
            if records or hits:
                if self._target is None:
                    result.pending = True
                    result.error = 'no control API configured; records stay in the spool'
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0.02:
                    result.pending = True
                    return result
                ok, permanent, message, answer = self._post(records, hits, min(remaining, 5.0))
                if not ok and permanent and hits:
                    # Refused: the hit counts must not cost the records. They are sent again alone
                    # (hit counts are statistics, a refused batch loses them).
                    self._log(f'reports: {len(hits)} hit counts dropped ({message})')
                    hits = []
                    if records:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0.02:
                            result.pending = True
                            return result
                        ok, permanent, message, answer = self._post(records, hits, min(remaining, 5.0))
                    else:
                        ok, answer = True, {}
                if not ok:
                    result.pending = True
                    result.error = message
                    if not permanent:
                        return result
                    self._log(f'reports: batch dropped ({message})')
                else:
                    result.sent += len(records)
                    result.duplicate += int(answer.get('duplicate') or 0)
                    rejected = int(answer.get('rejected') or 0)
                    result.rejected += rejected
                    if rejected:
                        self._log(f'reports: control API refused {rejected} records')
                    self.total_sent += len(records)
                    result.hits += len(hits)
            self.cursor = Cursor(
                self.cursor.sandbox_id,
                self.cursor.offset + consumed,
                self.cursor.next_seq + len(records),
                inode,
            )
            write_cursor(self._state_dir, self.cursor)
            if not more:
                return result

    def _read_chunk(
        self,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, int, bool, int] | None:
        try:
            info = os.stat(self._spool)
        except OSError:
            return None
        if info.st_ino != self.cursor.inode or info.st_size < self.cursor.offset:
            # A new or truncated spool: start at its beginning, keep numbering.
            self.cursor = Cursor(self.cursor.sandbox_id, 0, self.cursor.next_seq, info.st_ino)
        available = info.st_size - self.cursor.offset
        if available <= 0:
            return None
        with open(self._spool, 'rb') as handle:
            handle.seek(self.cursor.offset)
            data = handle.read(min(available, MAX_READ_BYTES))
        records: list[dict[str, Any]] = []
        hits: list[dict[str, Any]] = []
        merged: dict[tuple[str, object], dict[str, Any]] = {}
        consumed = 0
        malformed = 0
        start = 0
        while len(records) < self._batch:
            newline = data.find(b'\n', start)
            if newline == -1:
                break
            line = data[start:newline].strip()
            if not line:
                start = consumed = newline + 1
                continue
            record = _parse_record(line)
            if record is None:
                start = consumed = newline + 1
                malformed += 1
                continue
            if 'hits' in record and 'id' not in record:
                count: dict[str, Any] = record['hits']
                key = (json.dumps(count.get('workload'), sort_keys=True), count.get('revision'))
                into = merged.get(key)
                if into is None or not _merge(into, count):
                    if len(hits) >= MAX_HITS:
                        break  # the line stays for the next batch
                    if _summable(count):
                        count = {**count, 'rules': dict(count['rules'])}
                        merged[key] = count
                    hits.append(count)
                start = consumed = newline + 1
                continue
            start = consumed = newline + 1
            record['sandboxId'] = self.cursor.sandbox_id
            record['seq'] = self.cursor.next_seq + len(records)
            records.append(record)
        if consumed == 0 and len(data) == MAX_READ_BYTES:
            # One line longer than the read window cannot be a record: skip it.
            newline = data.find(b'\n')
            consumed = len(data) if newline == -1 else newline + 1
            malformed += 1
        more = consumed > 0 and self.cursor.offset + consumed < info.st_size
        return records, hits, consumed, malformed, more, info.st_ino

    def _post(
        self, records: list[dict[str, Any]], hits: list[dict[str, Any]], timeout: float
    ) -> tuple[bool, bool, str, dict[str, Any]]:
        assert self._target is not None
        scheme, host, port, prefix = self._target
        batch: dict[str, Any] = {'records': records}
        if hits:
            batch['hits'] = hits
        body = json.dumps(batch, separators=(',', ':'), ensure_ascii=False).encode()
        bearer = self._bearer() if self._bearer is not None else self._token
        headers = {
            'authorization': f'Bearer {bearer}',
            'content-type': 'application/json',
            'content-length': str(len(body)),
        }
        connection: http.client.HTTPConnection
        if scheme == 'https':
            connection = http.client.HTTPSConnection(host, port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request('POST', f'{prefix}v1/reports', body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(64 * 1024)
            status = response.status
        except TimeoutError:
            return False, False, f'no answer within {round(timeout * 1000)} ms', {}
        except (OSError, http.client.HTTPException) as error:
            return False, False, f'control API unreachable: {type(error).__name__}', {}
        finally:
            connection.close()
        if status in (200, 202):
            try:
                answer = json.loads(data)
            except ValueError:
                answer = {}
            return True, False, '', answer if isinstance(answer, dict) else {}
        if status == 401 and self._on_unauthorized is not None:
            try:
                self._on_unauthorized()
            except Exception as error:
                self._log(f'reports: {type(error).__name__} after a 401')
        # Auth, throttling and server errors are retried; other client errors mean the batch itself is
        # unacceptable and would block the spool forever.
        retry = status in (401, 403, 408, 429) or status >= 500
        return False, not retry, f'control API answered {status}', {}


def _summable(count: dict[str, Any]) -> bool:
    """A hit count whose fields other lines can be summed into (else it is sent as it is, for the control
    API to judge)."""
    rules = count.get('rules')
    return (
        isinstance(count.get('since'), str)
        and isinstance(count.get('until'), str)
        and isinstance(rules, dict)
        and all(type(n) is int and n >= 1 for n in rules.values())
    )


def _merge(into: dict[str, Any], count: dict[str, Any]) -> bool:
    """Add `count` (same workload and revision) to `into`: rules summed, the window their union. False,
    changing nothing, when it cannot be summed or the sum would have too many rules."""
    if not _summable(count):
        return False
    rules: dict[str, int] = into['rules']
    if len(rules) + sum(1 for rule in count['rules'] if rule not in rules) > MAX_RULES:
        return False
    for rule, n in count['rules'].items():
        rules[rule] = rules.get(rule, 0) + n
    into['since'] = min(into['since'], count['since'])
    into['until'] = max(into['until'], count['until'])
    return True


def _parse_record(line: bytes) -> dict[str, Any] | None:
    """A record (a non-empty string `id`) or a hit-count line (`{"hits": {…}}`, no `id`); else None."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    if 'id' not in value and isinstance(value.get('hits'), dict):
        return value
    if not isinstance(value.get('id'), str) or value['id'] == '':
        return None
    return value
