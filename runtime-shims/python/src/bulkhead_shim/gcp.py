"""Egress containment for Google Cloud Run functions (and Cloud Functions) on the Python functions
framework.

    import functions_framework
    from bulkhead_shim import gcp as bulkhead        # first: enforcement and the first bundle

    @functions_framework.http
    @bulkhead.http
    def charge(request): ...

    @functions_framework.cloud_event
    @bulkhead.cloud_event
    def on_event(cloud_event): ...

Importing this module installs enforcement in the process (or finds it installed by the PYTHONPATH
preload) and fetches the first bundle from BULKHEAD_CONTROL_URL (bounded by 3 s), so the modules the
function's file imports after it are governed by that bundle. The framework executes that file once in
gunicorn's master and forks the worker that serves requests: the worker keeps the bundle and starts its
own long-poll at its first request.

The wrappers run the handler tagged with the execution id (the `Function-Execution-Id` header, which
the framework sets when the platform did not) or the CloudEvent's `id`, and deliver the deny records to
the control API BEFORE the handler returns: Cloud Run throttles the CPU once the response is sent, so
nothing may be left for later. A streamed response (a generator) is produced after the handler returns;
what it does is governed, and its records are delivered by the delivery thread, not before the response.
An `async def` handler is wrapped as a coroutine function, its network waits on a thread.

Identity comes from the platform: K_SERVICE (name), K_REVISION, FUNCTION_TARGET, GOOGLE_CLOUD_PROJECT
(account; the metadata server is not asked, so set it where the platform does not) and FUNCTION_REGION,
plus BULKHEAD_TAGS.
"""

from __future__ import annotations

from .client.in_process import configure, get_controller, is_governed, status, wrap_invocation
from .kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    F = TypeVar('F', bound=Callable[..., Any])

__all__ = ['cloud_event', 'configure', 'http', 'status']

EXECUTION_ID_HEADER = 'Function-Execution-Id'


def _execution_id(request: object) -> str | None:
    headers = getattr(request, 'headers', None)
    value = headers.get(EXECUTION_ID_HEADER) if headers is not None else None
    return value if isinstance(value, str) and value else None


def _event_id(event: object) -> str | None:
    try:
        value = event['id']  # type: ignore[index]  # cloudevents' CloudEvent
    except Exception:
        value = getattr(event, 'id', None)
    return value if isinstance(value, str) and value else None


def _check(function: object, name: str) -> None:
    if not callable(function):
        raise TypeError(f'bulkhead.{name}: decorate the handler function, under @functions_framework.{name}')


def http(function: F) -> F:
    """Govern an HTTP function `def handler(request)` (a Flask request), sync or `async def`."""
    if is_governed(function):
        return function
    _check(function, 'http')

    def prepare(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str | None, tuple[Any, ...], dict[str, Any]]:
        request = args[0] if args else kwargs.get('request')
        return _execution_id(request), args, kwargs

    return wrap_invocation(function, get_controller(), prepare)


def cloud_event(function: F) -> F:
    """Govern a CloudEvent function `def handler(cloud_event)`, sync or `async def`."""
    if is_governed(function):
        return function
    _check(function, 'cloud_event')

    def prepare(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str | None, tuple[Any, ...], dict[str, Any]]:
        event = args[0] if args else kwargs.get('cloud_event')
        return _event_id(event), args, kwargs

    return wrap_invocation(function, get_controller(), prepare)


# Installed and started on import: what the function's file imports after this line is governed by the
# first bundle (or the fail mode, when none could be fetched).
get_controller()
