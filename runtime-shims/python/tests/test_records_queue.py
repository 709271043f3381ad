"""The record queue: bounded, aggregating, never raising, retrying what did not arrive, counting losses."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from bulkhead_shim.records import DeliveryError, RecordQueue, SpoolSink

WORKLOAD = {'cloud': 'other', 'name': 'q'}


def _input(port: int = 9, **extra: Any) -> dict[str, Any]:
    record = {
        'kind': 'connect',
        'destination': {'ip': '127.0.0.7', 'port': port, 'protocol': 'tcp'},
        'decision': 'deny',
        'mode': 'enforce',
        'rule': 'default-deny',
        'revision': 1,
    }
    record.update(extra)
    return record


class FakeSink:
    description = 'fake'

    def __init__(self, fail: DeliveryError | None = None) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.hits: list[list[dict[str, Any]] | None] = []
        self.fail = fail
        self.arrived = threading.Event()

    def deliver(
        self, records: list[dict[str, Any]], timeout: float, hits: list[dict[str, Any]] | None = None
    ) -> None:
        if self.fail is not None:
            raise self.fail
        self.batches.append([dict(r) for r in records])
        self.hits.append(hits)
        self.arrived.set()


def test_repeats_are_aggregated_and_delivered_in_the_background() -> None:
    sink = FakeSink()
    queue = RecordQueue(sink, lambda: WORKLOAD, lambda line: None, delay=0.01, number_records=True)
    for _ in range(5):
        queue.add(_input())
    queue.add(_input(port=10))
    assert sink.arrived.wait(5)
    time.sleep(0.05)
    records = [r for batch in sink.batches for r in batch]
    assert sorted((r['destination']['port'], r['count']) for r in records) == [(9, 5), (10, 1)]
    assert {r['seq'] for r in records} == {1, 2}
    assert len({r['sandboxId'] for r in records}) == 1
    assert all(r['workload'] == WORKLOAD for r in records)
    assert queue.delivered == 2 and queue.queued == 0


class SlowSink(FakeSink):
    """Holds each delivery long enough for a second flush to start meanwhile."""

    def deliver(
        self, records: list[dict[str, Any]], timeout: float, hits: list[dict[str, Any]] | None = None
    ) -> None:
        time.sleep(0.05)
        super().deliver(records, timeout, hits)


def test_concurrent_flushes_deliver_each_record_once() -> None:
    # The delivery thread and an explicit (or exit) flush at the same moment: one of them waits.
    sink = SlowSink()
    queue = RecordQueue(sink, lambda: WORKLOAD, lambda line: None, delay=60.0)
    for port in range(1, 6):
        queue.add(_input(port=port))
    flushers = [threading.Thread(target=queue.flush) for _ in range(4)]
    for flusher in flushers:
        flusher.start()
    for flusher in flushers:
        flusher.join(5)
    ports = [r['destination']['port'] for batch in sink.batches for r in batch]
    assert sorted(ports) == [1, 2, 3, 4, 5]
    assert queue.delivered == 5 and queue.queued == 0


def test_a_flood_is_bounded_and_counted_never_silent() -> None:
    lines: list[str] = []
    queue = RecordQueue(
        FakeSink(DeliveryError('down', False)), lambda: WORKLOAD, lines.append, max_pending=10
    )
    for port in range(1, 26):
        queue.add(_input(port=port))
    assert queue.queued == 10
    assert queue.dropped == 15
    queue.drain_at_exit(0.2)
    assert queue.dropped == 25
    assert any('undelivered' in line and 'dropped' in line for line in lines)


def test_a_refused_batch_is_dropped_and_counted_an_unreachable_one_kept() -> None:
    lines: list[str] = []
    refused = RecordQueue(FakeSink(DeliveryError('answered 400', True)), lambda: WORKLOAD, lines.append)
    refused.add(_input())
    assert refused.flush(timeout=1) == 0
    assert refused.dropped == 1
    down = RecordQueue(FakeSink(DeliveryError('unreachable', False)), lambda: WORKLOAD, lines.append)
    down.add(_input())
    assert down.flush(timeout=1) == 1
    assert down.dropped == 0 and down.queued == 1


def test_add_never_raises() -> None:
    queue = RecordQueue(None, lambda: WORKLOAD, lambda line: None)
    queue.add({'destination': None})
    assert queue.dropped == 1


def test_the_spool_is_ndjson_appended_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / 'spool.ndjson'
    queue = RecordQueue(SpoolSink(str(path)), lambda: WORKLOAD, lambda line: None)
    queue.add(_input())
    queue.add(_input(port=10))
    assert queue.flush() == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert [json.loads(line)['destination']['port'] for line in lines] == [9, 10]
