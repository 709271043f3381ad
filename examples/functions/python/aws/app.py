"""AWS Lambda (python3.12 / python3.13): no Bulkhead code at all — the layer (exec wrapper + extension +
the shim on PYTHONPATH) governs it. The deployment package holds this file, ../shared/checkout.py and the
dependencies in ../shared/site-packages side by side, as `pip install -t .` leaves them."""

from __future__ import annotations

from typing import Any

from checkout import Attempt, checkout


def handler(event: object, context: Any) -> dict[str, str | list[Attempt]]:
    return {'cloud': 'aws', 'invocationId': context.aws_request_id, 'results': checkout()}
