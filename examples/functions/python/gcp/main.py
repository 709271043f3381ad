"""Google Cloud functions (the Python functions framework): `bulkhead_shim.gcp` imported first,
`@bulkhead.http` under `@functions_framework.http`; the wrapper keeps the handler's name and delivers
the deny records before the response is sent."""

from __future__ import annotations

from typing import Any

from bulkhead_shim import gcp as bulkhead  # first: enforcement and the first bundle

# isort: split
import functions_framework
from checkout import Attempt, checkout


@functions_framework.http
@bulkhead.http
def charge(request: Any) -> dict[str, str | list[Attempt] | None]:
    execution = request.headers.get('Function-Execution-Id')
    return {'cloud': 'gcp', 'invocationId': execution, 'results': checkout()}
