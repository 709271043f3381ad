"""Egress containment for an Azure Functions app on the Python v2 programming model.

    import azure.functions as func
    from bulkhead_shim import azure as bulkhead      # first: enforcement and the first bundle

    app = func.FunctionApp()

    @app.route(route='charge')
    @bulkhead.governed
    def charge(req: func.HttpRequest) -> func.HttpResponse: ...

Importing this module installs enforcement in the worker process (the audit hook and the L7 wrappers,
put on `socket`, `ssl` and `http.client` even when they are imported already) and fetches the first
bundle from BULKHEAD_CONTROL_URL (bounded by 3 s), so the modules the app imports after it are governed
by that bundle. Enforcement is process-wide from then on: it governs every function of the app,
decorated or not. `@bulkhead.governed` adds, per invocation: a bundle refresh when it may be stale and
the long-poll that keeps it fresh, the tag `<function name>/<invocation id>` on the invocation's deny
records, and their delivery to the control API before the function returns, so before the worker sends
its response to the host.

Why a decorator, and not an app-level worker extension (`func.AppExtensionBase` with
`pre_invocation_app_level` / `post_invocation_app_level`, as `azurefunctions-extensions-*` and
OpenTelemetry once did): the worker calls extensions only where PYTHON_ENABLE_WORKER_EXTENSIONS allows
(on by default on Python 3.9 alone; an app setting on 3.10 to 3.12), and the Python 3.13+ worker
(`azure-functions-runtime`) has no extensions at all; its post-invocation hook is skipped when the
function raises (no `finally` in the worker's wrapper), which is exactly when a denied connection's
error propagates; and for `async def` functions the hooks run synchronously on the worker's event loop,
where a delivery would stall every other invocation. The decorator works on every worker version, for
every trigger, on `FunctionApp` and `Blueprint` alike, delivers in a `finally`, and waits on a thread
for coroutine functions.

The decorator goes directly on the function, under `@app.route` / `@app.*_trigger` (those build the
function's registration from what they decorate). The worker passes `context` (an
`azure.functions.Context`) to functions that declare it; the governed function declares it whether the
original does or not, and passes it on only when the original wants it. It keeps the original's name,
parameters, annotations and folder (`context.function_directory`), so the worker indexes it as the
original.
"""

from __future__ import annotations

import os

from .client.in_process import configure, get_controller, is_governed, status, wrap_invocation
from .kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    F = TypeVar('F', bound=Callable[..., Any])

__all__ = ['configure', 'governed', 'invocation_tag', 'status']


def invocation_tag(context: object) -> str | None:
    """`<function name>/<invocation id>` of an `azure.functions.Context` (the id Application Insights
    shows, and the function inside the app the workload identity names)."""
    invocation_id = getattr(context, 'invocation_id', None)
    if not isinstance(invocation_id, str) or not invocation_id:
        return None
    name = getattr(context, 'function_name', None)
    return f'{name}/{invocation_id}' if isinstance(name, str) and name else invocation_id


def governed(function: F) -> F:
    """Govern one Azure Functions function (sync or `async def`), applied under `@app.route` /
    `@app.*_trigger`. Idempotent."""
    import inspect

    if is_governed(function):
        return function
    if type(function).__name__ == 'FunctionBuilder' or not callable(function):
        raise TypeError('bulkhead.governed goes directly on the function, under @app.route / @app.*_trigger')
    signature = inspect.signature(function)
    wants_context = 'context' in signature.parameters

    def prepare(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str | None, tuple[Any, ...], dict[str, Any]]:
        context = kwargs.get('context') if wants_context else kwargs.pop('context', None)
        return invocation_tag(context), args, kwargs

    wrapper: Any = wrap_invocation(function, get_controller(), prepare)
    if not wants_context:
        # The worker passes `context` to a function whose signature names it (and the wrapper's
        # signature is what it reads: `inspect.signature` stops at `__signature__`).
        parameters = list(signature.parameters.values())
        at = len(parameters)
        if parameters and parameters[-1].kind is inspect.Parameter.VAR_KEYWORD:
            at -= 1
        parameters.insert(at, inspect.Parameter('context', inspect.Parameter.KEYWORD_ONLY))
        wrapper.__signature__ = signature.replace(parameters=parameters)
    code = getattr(function, '__code__', None)
    if code is not None:
        # The worker takes the function's folder from `inspect.getfile` (the code's file name), for
        # `context.function_directory`: the wrapper's names the original's folder, and no source line.
        folder = os.path.dirname(code.co_filename)
        wrapper.__code__ = wrapper.__code__.replace(co_filename=os.path.join(folder, '<bulkhead governed>'))
    result: F = wrapper
    return result


# Installed and started on import: what the app's module imports after this line is governed by the
# first bundle (or the fail mode, when none could be fetched).
get_controller()
