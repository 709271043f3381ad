"""The shim's configuration, read once from the environment (docs/contracts.md §2, the same variables
as the Node shim), and the endpoints that are exempt from policy by construction: the Lambda Runtime
API, the extension's local endpoint, the report sink and the control API. Nothing else is exempt."""

from __future__ import annotations

import os
import re

from .identity import detect_identity
from .kernel._typing import TYPE_CHECKING
from .kernel.cidr import normalize_ip
from .kernel.identity import parse_identity

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Literal

    FailMode = Literal['closed', 'observe']

# Plain classes, not dataclasses: `dataclasses` costs ~7 ms to import (inspect, ast, dis), paid by every
# process at its first governed operation.


#: Longer than the extension's default fetch bound (2 s), so a slow control API still answers first.
DEFAULT_EXTENSION_WAIT = 3.0
MAX_EXTENSION_WAIT_MS = 10_000
#: Rule hit counts (docs/contracts.md §3): handed over every minute while there are any, and with every
#: delivery of records. BULKHEAD_HITS_INTERVAL_MS changes the minute (tests; 100 ms to 1 hour).
DEFAULT_HITS_INTERVAL = 60.0
MIN_HITS_INTERVAL_MS = 100
MAX_HITS_INTERVAL_MS = 3_600_000


class Endpoint:
    """Lower-case host name or normalised IP literal, and a port."""

    __slots__ = ('host', 'port')

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port


class Report:
    __slots__ = ('kind', 'target')

    def __init__(self, kind: Literal['spool', 'http'], target: str) -> None:
        self.kind = kind
        self.target = target


class ShimConfig:
    __slots__ = (
        'bundle_file',
        'exempt',
        'extension_status',
        'extension_wait',
        'fail_mode',
        'hits_interval',
        'problems',
        'ready_file',
        'report',
        'token',
        'trusted_keys',
        'workload',
    )

    def __init__(
        self,
        *,
        bundle_file: str | None,
        trusted_keys: list[str],
        workload: dict[str, str],
        report: Report | None,
        token: str | None,
        fail_mode: FailMode,
        exempt: list[Endpoint],
        problems: list[str],
        extension_status: str | None = None,
        extension_wait: float = 0.0,
        ready_file: str | None = None,
        hits_interval: float = DEFAULT_HITS_INTERVAL,
    ) -> None:
        self.bundle_file = bundle_file
        self.trusted_keys = trusted_keys
        self.workload = workload
        self.report = report
        self.token = token
        self.fail_mode = fail_mode
        self.exempt = exempt
        #: Configuration problems, one line each, logged at install (never fatal: the fail mode governs).
        self.problems = problems
        #: Lambda: the file the extension writes once its first bundle answer is in (the exec wrapper
        #: names it), and how long the first decision waits for it.
        self.extension_status = extension_status
        self.extension_wait = extension_wait
        #: Lambda: `<request id> <revision>`, written by the extension at each INVOKE once the bundle on
        #: disk is the newest; an invocation's first decision waits for its own request id.
        self.ready_file = ready_file
        #: Seconds between hand-overs of rule hit counts while no records are delivered (the heartbeat).
        self.hits_interval = hits_interval


def host_key(host: str) -> str:
    """The form exempt hosts are compared in: IP literals normalised, names lower-case, no trailing dot."""
    bare = host[1:-1] if host.startswith('[') and host.endswith(']') else host
    ip = normalize_ip(bare)
    return ip if ip is not None else bare.lower().rstrip('.')


def _endpoint_of_url(text: str, problems: list[str], variable: str) -> Endpoint | None:
    from urllib.parse import urlsplit

    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:
        problems.append(f'{variable} is not a URL')
        return None
    if url.scheme not in ('http', 'https') or not url.hostname:
        problems.append(f'{variable} must be an http(s) URL')
        return None
    return Endpoint(host_key(url.hostname), port or (443 if url.scheme == 'https' else 80))


_HOST_PORT = re.compile(r'^\[?([^\]]*?)\]?:(\d{1,5})$')


def _endpoint_of_host_port(text: str, problems: list[str], variable: str) -> Endpoint | None:
    match = _HOST_PORT.match(text.strip())
    port = int(match.group(2)) if match else 0
    if not match or not match.group(1) or not 0 < port < 65536:
        problems.append(f'{variable} is not host:port')
        return None
    return Endpoint(host_key(match.group(1)), port)


def read_config(env: Mapping[str, str] | None = None) -> ShimConfig:
    source = os.environ if env is None else env
    problems: list[str] = []
    exempt: list[Endpoint] = []

    def add(endpoint: Endpoint | None) -> None:
        if endpoint is not None:
            exempt.append(endpoint)

    if source.get('AWS_LAMBDA_RUNTIME_API'):
        add(_endpoint_of_host_port(source['AWS_LAMBDA_RUNTIME_API'], problems, 'AWS_LAMBDA_RUNTIME_API'))
    if source.get('BULKHEAD_CONTROL_URL'):
        add(_endpoint_of_url(source['BULKHEAD_CONTROL_URL'], problems, 'BULKHEAD_CONTROL_URL'))

    report: Report | None = None
    report_text = source.get('BULKHEAD_REPORT', '').strip()
    if report_text:
        if re.match(r'^https?://', report_text, re.IGNORECASE):
            endpoint = _endpoint_of_url(report_text, problems, 'BULKHEAD_REPORT')
            if endpoint is not None:
                add(endpoint)
                report = Report('http', report_text)
        else:
            report = Report('spool', report_text)

    fail_mode: FailMode = 'closed'
    fail_text = source.get('BULKHEAD_FAIL_MODE', '').strip().lower()
    if fail_text in ('observe', 'open'):
        fail_mode = 'observe'
    elif fail_text and fail_text != 'closed':
        problems.append(f'BULKHEAD_FAIL_MODE {fail_text!r} is not closed|observe; using closed')

    trusted = [s.strip() for s in source.get('BULKHEAD_TRUSTED_KEYS', '').split(',') if s.strip()]
    workload_text = source.get('BULKHEAD_WORKLOAD')
    if workload_text:
        try:
            parse_identity(workload_text)
        except ValueError as error:
            problems.append(f'BULKHEAD_WORKLOAD: {error}')
    wait_text = source.get('BULKHEAD_EXTENSION_WAIT_MS', '').strip()
    extension_wait = DEFAULT_EXTENSION_WAIT
    if wait_text:
        if wait_text.isdigit() and int(wait_text) <= MAX_EXTENSION_WAIT_MS:
            extension_wait = int(wait_text) / 1000
        else:
            problems.append(
                f'BULKHEAD_EXTENSION_WAIT_MS {wait_text!r} is not 0..{MAX_EXTENSION_WAIT_MS}; using 3000'
            )
    hits_text = source.get('BULKHEAD_HITS_INTERVAL_MS', '').strip()
    hits_interval = DEFAULT_HITS_INTERVAL
    if hits_text:
        if hits_text.isdigit() and MIN_HITS_INTERVAL_MS <= int(hits_text) <= MAX_HITS_INTERVAL_MS:
            hits_interval = int(hits_text) / 1000
        else:
            problems.append(
                f'BULKHEAD_HITS_INTERVAL_MS {hits_text!r} is not '
                f'{MIN_HITS_INTERVAL_MS}..{MAX_HITS_INTERVAL_MS}; using 60000'
            )
    return ShimConfig(
        hits_interval=hits_interval,
        extension_status=source.get('BULKHEAD_EXTENSION_STATUS', '').strip() or None,
        extension_wait=extension_wait,
        ready_file=source.get('BULKHEAD_READY_FILE', '').strip() or None,
        bundle_file=source.get('BULKHEAD_BUNDLE_FILE', '').strip() or None,
        trusted_keys=trusted,
        workload=detect_identity(source),
        report=report,
        token=source.get('BULKHEAD_TOKEN') or None,
        fail_mode=fail_mode,
        exempt=exempt,
        problems=problems,
    )
