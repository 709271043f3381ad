"""One measured client run, in a child interpreter started with the shim (PYTHONPATH = the shim's src
folder) or without it (the same environment minus PYTHONPATH). The parent (run.py) starts it once per
variant and round, interleaved. Prints one JSON line.

    workload.py KIND N HTTP_PORT CONNECT_PORT HOST

Kinds:
- `connect`: N TCP connect+close to the loopback listener (CONNECT_PORT), by address (`127.0.0.1`),
  after one `getaddrinfo(HOST)` so the shim has the name bound to the address (a client that resolved
  once).
- `connect-name`: N `socket.create_connection((HOST, CONNECT_PORT))` + close: resolution and connect each
  time.
- `requests-keepalive` / `urllib3-keepalive`: N GETs through one `requests.Session` / `urllib3.PoolManager`.
- `requests-newconn` / `urllib3-newconn`: N GETs with `Connection: close` (a new connection each).
- `micro`: in-process timings of the shim's decision path (shim only) and of the audit hook.

For the loops: N/5 warm-up operations first (the shim builds its core at the first governed operation),
then wall time (perf_counter_ns) and this process's CPU time (process_time_ns, all threads) per op: the
mean (what requests/s is) and the median of the operations' own wall times (what a stall does not move)."""

from __future__ import annotations

import faulthandler
import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

PATH = '/bench/item'
HANG_SECONDS = 240


def _loop(n: int, operation: Callable[[], object]) -> dict[str, float]:
    for _ in range(max(1, n // 5)):
        operation()
    clock = time.perf_counter_ns
    each = [0] * n
    start_cpu = time.process_time_ns()
    start = clock()
    for i in range(n):
        began = clock()
        operation()
        each[i] = clock() - began
    wall = clock() - start
    cpu = time.process_time_ns() - start_cpu
    each.sort()
    return {
        'wall_ns': wall / n,
        'cpu_ns': cpu / n,
        'p50_ns': float(each[n // 2]),
        'p99_ns': float(each[n * 99 // 100]),
    }


def _connect(port: int, host: str) -> Callable[[], object]:
    address = str(socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])

    def once() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.connect((address, port))
        finally:
            sock.close()

    return once


def _connect_name(port: int, host: str) -> Callable[[], object]:
    def once() -> None:
        socket.create_connection((host, port)).close()

    return once


def _requests(port: int, host: str, *, keepalive: bool) -> Callable[[], object]:
    import requests

    url = f'http://{host}:{port}{PATH}'
    session = requests.Session()
    headers = None if keepalive else {'Connection': 'close'}

    def once() -> None:
        response = session.get(url, headers=headers, timeout=10)
        if response.content != b'ok':
            raise RuntimeError(f'unexpected answer {response.status_code} {response.content!r}')

    return once


def _urllib3(port: int, host: str, *, keepalive: bool) -> Callable[[], object]:
    import urllib3

    url = f'http://{host}:{port}{PATH}'
    pool = urllib3.PoolManager()
    headers = None if keepalive else {'Connection': 'close'}

    def once() -> None:
        response = pool.request('GET', url, headers=headers, timeout=10)
        if response.data != b'ok':
            raise RuntimeError(f'unexpected answer {response.status} {response.data!r}')

    return once


def _best_ns(n: int, operation: Callable[[], object], repeats: int = 5) -> float:
    """Nanoseconds per call, best of `repeats` timed loops of n calls (the loop's own cost included)."""
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(n):
            operation()
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def _micro(n: int, port: int, http_port: int, host: str) -> dict[str, float]:
    """Decision-path timings. With the shim: what its first governed operation costs (importing the core
    and building it: configuration, bundle read and verified, decision engine), then cache-hit decisions.
    Both variants: `sys.audit` of an event the hook ignores and of a connect it decides (no socket is
    opened: the hook alone)."""
    out: dict[str, float] = {}
    shimmed = 'bulkhead_shim' in sys.modules
    if shimmed:
        start = time.perf_counter_ns()
        from bulkhead_shim import boot, core  # noqa: F401 - the import is what is timed

        out['first_op_import_core_ns'] = time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        shim: Any = boot.get_shim()
        out['first_op_build_shim_ns'] = time.perf_counter_ns() - start
    address = str(socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    target = (address, port)
    audit = sys.audit
    out['audit_other_event_ns'] = _best_ns(n, lambda: audit('bulkhead.bench.other'))
    out['audit_socket_connect_ns'] = _best_ns(n, lambda: audit('socket.connect', sock, target))
    out['empty_call_ns'] = _best_ns(n, lambda: None)
    if shimmed:
        decider = shim.decider
        decide = decider.decide
        decide_connect = shim.decide_connect
        decide_request = shim.decide_request
        out['decider_decide_hit_ns'] = _best_ns(n, lambda: decide(host, address, port, 'tcp'))
        out['decide_connect_ns'] = _best_ns(n, lambda: decide_connect(address, port, 'tcp'))
        out['decide_request_ns'] = _best_ns(
            n, lambda: decide_request(host, http_port, 'http', 'GET', PATH, address)
        )
        # Rule hit counting (contract §3): what every allow decision adds, the increment alone
        # (decide_connect above includes it; the report sets one against the other).
        from itertools import count as counter

        counts = {'p/allow[0]': counter(1)}
        out['hit_count_ns'] = _best_ns(n, lambda: next(counts['p/allow[0]']))
        uncached = decider.decide_uncached
        out['decider_decide_miss_ns'] = _best_ns(
            max(1, n // 10), lambda: uncached(host, address, http_port, 'http', None, 'GET', PATH)
        )
        out.update(_parts(n, address, host, http_port))
    sock.close()
    return out


def _parts(n: int, address: str, host: str, http_port: int) -> dict[str, float]:
    """Steps of the connect decision, for the shim's authors (internal functions: skipped if renamed)."""
    out: dict[str, float] = {}
    try:
        from bulkhead_shim.config import host_key
        from bulkhead_shim.kernel.cidr import normalize_ip
        from bulkhead_shim.kernel.host import classify_host
    except ImportError:
        return out
    out['normalize_ip_ns'] = _best_ns(n, lambda: normalize_ip(address))
    out['classify_host_ip_ns'] = _best_ns(n, lambda: classify_host(address))
    out['host_key_name_ns'] = _best_ns(n, lambda: host_key(host))
    try:
        import http.client

        from bulkhead_shim.hooks.http import request_facts
    except ImportError:
        return out
    connection = http.client.HTTPConnection(host, http_port)
    connection.putrequest('GET', PATH)  # composes the request line and Host header; sends nothing
    connection.putheader('Accept', '*/*')
    out['request_facts_ns'] = _best_ns(n, lambda: request_facts(connection))
    return out


def main() -> None:
    # A hung run says where it hangs (every thread's stack on stderr) instead of waiting out the parent.
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    kind, n_text, http_text, connect_text, host = sys.argv[1:6]
    n, http_port, port = int(n_text), int(http_text), int(connect_text)
    result: dict[str, Any] = {'kind': kind, 'n': n, 'shim': 'bulkhead_shim' in sys.modules}
    if kind == 'micro':
        result.update(_micro(n, port, http_port, host))
    else:
        makers: dict[str, Callable[[], Callable[[], object]]] = {
            'connect': lambda: _connect(port, host),
            'connect-name': lambda: _connect_name(port, host),
            'requests-keepalive': lambda: _requests(http_port, host, keepalive=True),
            'requests-newconn': lambda: _requests(http_port, host, keepalive=False),
            'urllib3-keepalive': lambda: _urllib3(http_port, host, keepalive=True),
            'urllib3-newconn': lambda: _urllib3(http_port, host, keepalive=False),
        }
        result.update(_loop(n, makers[kind]()))
    if result['shim']:
        from bulkhead_shim import boot

        status = boot.status()
        result['revision'] = status['revision']
        result['queued'] = status['queued']
    sys.stdout.write(json.dumps(result) + '\n')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
