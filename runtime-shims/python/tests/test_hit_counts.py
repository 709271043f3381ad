"""Rule hit counts (docs/contracts.md §3): allow decisions counted per rule id under the revision that
made them, handed over with the records (HTTP `hits` array, spool `{"hits": …}` lines), by a heartbeat
while there are no records, at exit and at the end of a Lambda invocation; the Python extension forwards
the spool's hit-count lines in the `hits` array of its batches, neither numbered nor malformed."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bulkhead_shim.core import END_HITS_GAP, Shim
from bulkhead_shim.lambda_extension.forwarder import Forwarder
from bulkhead_shim.lambda_extension.state import SPOOL_FILE
from bulkhead_shim.records import DeliveryError, HttpSink, RecordQueue, SpoolSink
from harness import Fixture
from test_records_queue import WORKLOAD, FakeSink, _input

# Two rules of the test policy (`py`): their ids are `py/allow[0]` and `py/allow[1]`.
TWO_RULES = ['{ to: { cidr: 127.0.0.1/32 } }', '{ to: { cidr: 127.0.0.2/32 } }']
A, B = 'py/allow[0]', 'py/allow[1]'

# Connects without a name lookup (a raw connect: no getaddrinfo, so no `ip-literal` DNS decision):
# three to the first rule, two to the second, one denied (a record). Port 9: refused after the decision.
CONNECTS = """
import socket, sys
def attempt(ip):
    s = socket.socket()
    try:
        s.connect((ip, 9))
    except OSError:
        pass
    finally:
        s.close()
for ip in ['127.0.0.1', '127.0.0.1', '127.0.0.2', '127.0.0.1', '127.0.0.2', '127.0.0.7']:
    attempt(ip)
"""


def _summed(hit_counts: list[dict[str, Any]]) -> dict[int, dict[str, int]]:
    """Rule counts per revision over every hit count handed over."""
    total: dict[int, dict[str, int]] = {}
    for count in hit_counts:
        rules = total.setdefault(count['revision'], {})
        for rule, n in count['rules'].items():
            rules[rule] = rules.get(rule, 0) + n
    return total


def _well_formed(count: dict[str, Any]) -> None:
    assert set(count) == {'workload', 'revision', 'since', 'until', 'rules'}
    assert count['workload']['name'] == 'py-test'
    assert count['since'] <= count['until']
    assert count['since'].endswith('Z') and len(count['since']) == len('2026-01-01T00:00:00.000Z')
    assert all(isinstance(n, int) and n >= 1 for n in count['rules'].values())


class Reports:
    """A stand-in for `POST /v1/reports` on loopback: keeps every body, answers `status`."""

    def __init__(self, status: int = 202) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get('content-length') or 0))
                outer.bodies.append(json.loads(body))
                outer.arrived.set()
                answer = json.dumps({'stored': 0, 'duplicate': 0, 'rejected': 0}).encode()
                self.send_response(outer.status)
                self.send_header('content-length', str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def reports() -> Iterator[Reports]:
    made = Reports()
    yield made
    made.close()


def _hit(queue: RecordQueue, counts: dict[str, itertools.count[int]], rule: str) -> None:
    """What the core does at an allow decision."""
    try:
        next(counts[rule])
    except KeyError:
        queue.hits.first(counts, rule)


def _shim(fixture: Fixture, **env: str) -> Shim:
    lines: list[str] = []
    return Shim(lines.append, fixture.env(**env))


# ---- counting (the core) -----------------------------------------------------------------------------


def test_allow_decisions_are_counted_per_rule_and_revision(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { host: a.test } }', '{ to: { host: b.test, port: 443 } }'])
    shim = _shim(fixture)
    assert shim.revision == 1
    for _ in range(3):
        assert shim.decide_host('a.test', 443, 'tcp').rule == A
    for _ in range(2):
        assert shim.decide_host('B.test', 443, 'tcp').rule == B
    assert shim.decide_host('b.test', 80, 'tcp').decision == 'deny'  # a deny is a record, not a hit
    assert shim.decide_request('a.test', 443, 'https', 'GET', '/', None).rule == A
    assert shim.decide_name('b.test').rule == B
    (count,) = shim.queue.hits.take()
    _well_formed(count)
    assert count['revision'] == 1
    assert count['rules'] == {A: 4, B: 3}
    # Handed over once: the next hand-over has only what came after.
    assert shim.queue.hits.take() == []
    shim.decide_host('a.test', 80, 'tcp')
    (later,) = shim.queue.hits.take()
    assert later['rules'] == {A: 1}
    assert later['since'] >= count['until']


def test_a_new_revision_closes_the_counts_of_the_old_one(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { host: a.test } }', '{ to: { host: b.test } }'])
    shim = _shim(fixture)
    for host in ('a.test', 'a.test', 'b.test'):
        shim.decide_host(host, 443, 'tcp')
    fixture.write(revision=2, allow=['{ to: { host: b.test } }', '{ to: { host: a.test } }'])
    assert shim.reload() and shim.revision == 2
    for host in ('a.test', 'b.test', 'b.test', 'b.test'):
        shim.decide_host(host, 443, 'tcp')
    old, new = shim.queue.hits.take()
    assert (old['revision'], old['rules']) == (1, {A: 2, B: 1})
    assert (new['revision'], new['rules']) == (2, {A: 3, B: 1})
    assert old['until'] <= new['since']


def test_exempt_endpoints_and_the_fail_mode_count_nothing(fixture: Fixture) -> None:
    # No bundle: the fail mode governs (its `ip-literal` allows belong to no revision).
    shim = Shim(lambda line: None, fixture.env(BULKHEAD_FAIL_MODE='observe'))
    assert shim.revision == -1
    assert shim.decide_name('127.0.0.1').decision == 'allow'
    assert shim.queue.hits.take() == []
    fixture.write(allow=['{ to: { host: a.test } }'])
    shim = _shim(fixture, BULKHEAD_CONTROL_URL='http://control.test:8080')
    assert shim.decide_host('control.test', 8080, 'tcp').rule == 'exempt'
    assert shim.queue.hits.take() == []


# ---- hand-over -------------------------------------------------------------------------------------


def test_a_governed_process_writes_its_hit_counts_to_the_spool(fixture: Fixture) -> None:
    fixture.write(allow=TWO_RULES)
    done = subprocess.run([sys.executable, '-c', CONNECTS], env=fixture.env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (record,) = fixture.records()
    assert record['destination']['ip'] == '127.0.0.7'
    hits = fixture.hits()
    assert hits, fixture.lines()
    for count in hits:
        _well_formed(count)
    assert _summed(hits) == {1: {A: 3, B: 2}}
    # The spool lines are the contract's: `{"hits": HitCount}`, no id, no seq.
    for line in fixture.lines():
        if 'hits' in line:
            assert set(line) == {'hits'}


def test_the_http_batch_carries_the_hits_array(fixture: Fixture, reports: Reports) -> None:
    fixture.write(allow=TWO_RULES)
    env = fixture.env(BULKHEAD_REPORT=f'{reports.url}/v1/reports')
    done = subprocess.run([sys.executable, '-c', CONNECTS], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    records = [r for body in reports.bodies for r in body['records']]
    assert [r['destination']['ip'] for r in records] == ['127.0.0.7']
    hits = [h for body in reports.bodies for h in body.get('hits', [])]
    for count in hits:
        _well_formed(count)
    assert _summed(hits) == {1: {A: 3, B: 2}}
    assert all(body.get('hits') != [] for body in reports.bodies)  # omitted, never empty


def test_the_heartbeat_hands_counts_over_without_records(fixture: Fixture) -> None:
    fixture.write(allow=TWO_RULES)
    script = CONNECTS.replace("'127.0.0.7'", "'127.0.0.2'") + (
        # Past two heartbeats, then gone without exit handlers: only the heartbeat wrote.
        'import time, os\ntime.sleep(0.8)\nos._exit(0)\n'
    )
    env = fixture.env(BULKHEAD_HITS_INTERVAL_MS='200')
    done = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert fixture.records() == []
    assert _summed(fixture.hits()) == {1: {A: 3, B: 3}}


def test_the_end_of_a_lambda_invocation_spools_its_hit_counts(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { host: a.test } }'])
    shim = _shim(fixture)
    shim.begin_invocation('request-1')
    shim.decide_host('a.test', 443, 'tcp')
    shim.decide_host('a.test', 443, 'tcp')
    shim.end_invocation(0.5)
    assert _summed(fixture.hits()) == {1: {A: 2}}
    # Nothing new: the next invocation's end writes nothing.
    shim.end_invocation(0.5)
    assert len(fixture.hits()) == 1
    # A busy sandbox: within END_HITS_GAP of the last hand-over, the counts wait for a later end.
    shim.decide_host('a.test', 443, 'tcp')
    shim.end_invocation(0.5)
    assert len(fixture.hits()) == 1
    shim.queue.hits.taken_at -= END_HITS_GAP
    shim.decide_host('a.test', 443, 'tcp')
    shim.end_invocation(0.5)
    assert len(fixture.hits()) == 2 and _summed(fixture.hits()) == {1: {A: 4}}


def test_hits_are_omitted_when_there_are_none_and_sent_alone_otherwise(reports: Reports) -> None:
    queue = RecordQueue(HttpSink(f'{reports.url}/v1/reports', 'token'), lambda: WORKLOAD, print, delay=60)
    queue.add(_input())
    assert queue.flush(timeout=5) == 0
    assert 'hits' not in reports.bodies[-1] and len(reports.bodies[-1]['records']) == 1
    counts = queue.hits.open(4)
    for _ in range(3):
        _hit(queue, counts, 'r')
    assert queue.flush(timeout=5) == 0  # a records flush with no records: nothing sent
    assert len(reports.bodies) == 1
    assert queue.flush(timeout=5, hits=True) == 0
    body = reports.bodies[-1]
    assert body['records'] == []
    (count,) = body['hits']
    assert (count['revision'], count['rules'], count['workload']) == (4, {'r': 3}, WORKLOAD)


def test_the_queue_heartbeat_ticks_while_there_are_counts() -> None:
    sink = FakeSink()
    queue = RecordQueue(sink, lambda: WORKLOAD, lambda line: None, hits_interval=0.1)
    counts = queue.hits.open(7)
    for _ in range(5):
        _hit(queue, counts, 'x')
    deadline = time.monotonic() + 5
    while not sink.hits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.batches == [[]]
    first = sink.hits[0]
    assert first is not None and first[0]['rules'] == {'x': 5}
    time.sleep(0.35)  # heartbeats with nothing to hand over send nothing
    assert len(sink.hits) == 1
    _hit(queue, counts, 'x')  # an increment gives no signal: the heartbeat keeps ticking
    deadline = time.monotonic() + 5
    while len(sink.hits) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    second = sink.hits[1]
    assert second is not None and second[0]['rules'] == {'x': 1}
    assert second[0]['since'] == first[0]['until']


def test_hits_go_with_the_records_and_back_when_the_batch_is_kept() -> None:
    sink = FakeSink(DeliveryError('unreachable', False))
    queue = RecordQueue(sink, lambda: WORKLOAD, lambda line: None, delay=60)
    counts = queue.hits.open(1)
    queue.hits.first(counts, 'r')
    queue.add(_input())
    assert queue.flush(timeout=1) == 1
    _hit(queue, counts, 'r')
    sink.fail = None
    assert queue.flush(timeout=1) == 0
    assert len(sink.batches) == 1 and len(sink.batches[0]) == 1
    (hits,) = sink.hits
    assert hits is not None and _summed(hits) == {1: {'r': 2}}


def test_a_refusal_costs_the_hit_counts_never_the_records() -> None:
    class RefusesHits(FakeSink):
        def deliver(
            self, records: list[dict[str, Any]], timeout: float, hits: list[dict[str, Any]] | None = None
        ) -> None:
            if hits:
                raise DeliveryError('answered 400', True)
            super().deliver(records, timeout, hits)

    lines: list[str] = []
    sink = RefusesHits()
    queue = RecordQueue(sink, lambda: WORKLOAD, lines.append, delay=60)
    counts = queue.hits.open(1)
    queue.hits.first(counts, 'r')
    queue.add(_input())
    assert queue.flush(timeout=1) == 0
    assert len(sink.batches) == 1 and sink.hits == [None]
    assert queue.dropped == 0 and queue.delivered == 1
    assert any('hit counts dropped' in line for line in lines)


def test_the_spool_sink_writes_hits_lines_after_the_records(tmp_path: Path) -> None:
    path = tmp_path / 'spool.ndjson'
    queue = RecordQueue(SpoolSink(str(path)), lambda: WORKLOAD, lambda line: None, delay=60)
    counts = queue.hits.open(2)
    queue.hits.first(counts, 'r')
    queue.add(_input())
    assert queue.flush() == 0
    record, hits = [json.loads(line) for line in path.read_text().splitlines()]
    assert 'id' in record and 'hits' not in record
    assert set(hits) == {'hits'} and hits['hits']['rules'] == {'r': 1}


def test_a_child_after_fork_starts_its_own_counts(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { host: a.test } }'])
    shim = _shim(fixture, BULKHEAD_REPORT='')  # no sink: no delivery thread to pretend away
    shim.decide_host('a.test', 443, 'tcp')
    shim.after_fork_in_child()
    shim.decide_host('a.test', 443, 'tcp')
    (count,) = shim.queue.hits.take()
    assert count['rules'] == {A: 1}


def test_the_hits_interval_is_configurable_and_checked() -> None:
    from bulkhead_shim.config import read_config

    assert read_config({}).hits_interval == 60.0
    assert read_config({'BULKHEAD_HITS_INTERVAL_MS': '250'}).hits_interval == 0.25
    bad = read_config({'BULKHEAD_HITS_INTERVAL_MS': '5'})
    assert bad.hits_interval == 60.0 and any('BULKHEAD_HITS_INTERVAL_MS' in p for p in bad.problems)


# ---- the Lambda extension's forwarder --------------------------------------------------------------


def _record_line(n: int) -> str:
    return json.dumps({'id': f'00000000-0000-4000-8000-{n:012d}', 'kind': 'connect', 'rule': 'default-deny'})


def _hits_line(rules: dict[str, int], revision: int = 3, minute: int = 0) -> str:
    count = {
        'workload': {'cloud': 'aws', 'name': 'f'},
        'revision': revision,
        'since': f'2026-01-01T00:{minute:02d}:00.000Z',
        'until': f'2026-01-01T00:{minute + 1:02d}:00.000Z',
        'rules': rules,
    }
    return json.dumps({'hits': count})


def test_the_forwarder_sends_spool_hits_in_the_hits_array(tmp_path: Path, reports: Reports) -> None:
    spool = tmp_path / SPOOL_FILE
    lines = [
        _record_line(1),
        _hits_line({'a': 2}),
        'not json',
        _record_line(2),
        _hits_line({'a': 1, 'b': 1}, minute=1),
        _hits_line({'a': 5}, revision=4, minute=2),
    ]
    spool.write_text('\n'.join(lines) + '\n' + _hits_line({'c': 9})[:20])  # a partial last line
    forwarder = Forwarder(str(tmp_path), reports.url, 'token', lambda line: None)
    result = forwarder.forward(time.monotonic() + 5)
    (body,) = reports.bodies
    assert [r['seq'] for r in body['records']] == [1, 2]
    # One workload and revision: one hit count, its rules summed, its window the union.
    assert [(h['revision'], h['rules'], h['since'], h['until']) for h in body['hits']] == [
        (3, {'a': 3, 'b': 1}, '2026-01-01T00:00:00.000Z', '2026-01-01T00:02:00.000Z'),
        (4, {'a': 5}, '2026-01-01T00:02:00.000Z', '2026-01-01T00:03:00.000Z'),
    ]
    assert all('seq' not in h and 'sandboxId' not in h for h in body['hits'])
    assert (result.sent, result.hits, result.malformed) == (2, 2, 1)
    size = len(('\n'.join(lines) + '\n').encode())
    assert forwarder.cursor.offset == size and forwarder.cursor.next_seq == 3
    # The rest of the partial line arrives: a batch of hit counts alone, numbering untouched.
    with open(spool, 'a') as handle:
        handle.write(_hits_line({'c': 9})[20:] + '\n')
    result = forwarder.forward(time.monotonic() + 5)
    assert reports.bodies[-1] == {'records': [], 'hits': [json.loads(_hits_line({'c': 9}))['hits']]}
    assert (result.sent, result.hits, result.malformed) == (0, 1, 0)
    assert forwarder.cursor.offset == os.path.getsize(spool) and forwarder.cursor.next_seq == 3
    assert forwarder.backlog() == 0


def test_the_forwarder_sends_the_records_alone_when_the_hits_are_refused(tmp_path: Path) -> None:
    reports = Reports(status=400)
    try:
        (tmp_path / SPOOL_FILE).write_text(_record_line(1) + '\n' + _hits_line({'a': 1}) + '\n')
        logged: list[str] = []
        forwarder = Forwarder(str(tmp_path), reports.url, 'token', logged.append)
        forwarder.forward(time.monotonic() + 5)
        first, second = reports.bodies
        assert 'hits' in first and 'hits' not in second and len(second['records']) == 1
        assert any('hit counts dropped' in line for line in logged)
        assert forwarder.backlog() == 0
    finally:
        reports.close()


def test_concurrent_threads_lose_no_count(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { host: a.test } }'])
    shim = _shim(fixture, BULKHEAD_REPORT='')
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:

        def decide() -> None:
            for _ in range(20_000):
                shim.decide_host('a.test', 443, 'tcp')

        threads = [threading.Thread(target=decide) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(0.005)
    (count,) = shim.queue.hits.take()
    assert count['rules'] == {A: 160_000}


def test_counts_made_before_there_was_a_sink_go_out_once_one_is_named() -> None:
    # The Azure and GCP wrappers name the control API after the shim was built (use_sink).
    queue = RecordQueue(None, lambda: WORKLOAD, lambda line: None, hits_interval=0.1)
    counts = queue.hits.open(5)
    for _ in range(2):
        _hit(queue, counts, 'r')
    sink = FakeSink()
    queue.use_sink(sink, number_records=True)
    assert sink.arrived.wait(5)
    (hits,) = sink.hits
    assert hits is not None and _summed(hits) == {5: {'r': 2}}


def test_a_hand_over_keeps_within_the_control_api_bounds() -> None:
    queue = RecordQueue(None, lambda: WORKLOAD, lambda line: None)
    counts = queue.hits.open(1)
    for n in range(25_000):
        _hit(queue, counts, f'p/allow[{n}]')
    for revision in range(2, 120):  # 119 closed windows, of one rule each
        _hit(queue, queue.hits.open(revision), 'p/allow[0]')
    taken = queue.hits.take()
    # The newest 50 closed windows (the 25,000 rules' is older, dropped) and the open revision's.
    assert [t['revision'] for t in taken] == list(range(69, 120))
    assert queue.hits.take() == []
    counts = queue.hits.open(200)
    for n in range(25_000):
        _hit(queue, counts, f'p/allow[{n}]')
    split = queue.hits.take()
    assert [len(t['rules']) for t in split] == [10_000, 10_000, 5_000]
    assert {t['revision'] for t in split} == {200}


def test_hit_counts_alone_wait_for_the_word_records_take_them_along(tmp_path: Path, reports: Reports) -> None:
    spool = tmp_path / SPOOL_FILE
    spool.write_text(_hits_line({'a': 1}) + '\n' + _hits_line({'a': 2}) + '\n')
    forwarder = Forwarder(str(tmp_path), reports.url, 'token', lambda line: None)
    # At INVOKE (hits_alone false): nothing sent, the cursor stays, and the spool is not read again.
    result = forwarder.forward(time.monotonic() + 5, hits_alone=False)
    assert reports.bodies == [] and forwarder.cursor.offset == 0 and not result.pending
    assert forwarder.forward(time.monotonic() + 5, hits_alone=False).hits == 0
    # A record after them: it takes them along.
    with open(spool, 'a') as handle:
        handle.write(_record_line(1) + '\n')
    result = forwarder.forward(time.monotonic() + 5, hits_alone=False)
    (body,) = reports.bodies
    assert [h['rules'] for h in body['hits']] == [{'a': 3}] and [r['seq'] for r in body['records']] == [1]
    assert forwarder.backlog() == 0
    # Alone again, sent when the caller says so (the spool watch once a minute, SHUTDOWN).
    with open(spool, 'a') as handle:
        handle.write(_hits_line({'b': 1}) + '\n')
    forwarder.forward(time.monotonic() + 5, hits_alone=False)
    assert len(reports.bodies) == 1
    result = forwarder.forward(time.monotonic() + 5)
    assert reports.bodies[-1] == {'records': [], 'hits': [json.loads(_hits_line({'b': 1}))['hits']]}
    assert forwarder.backlog() == 0 and forwarder.cursor.next_seq == 2
