"""The handler Lambda runs when the layer's exec wrapper redirects `_HANDLER` here (Python runtimes;
the original is in BULKHEAD_ORIGINAL_HANDLER, as the Node layer's lambda-handler.cjs does it). It gives
the shim what an audit hook cannot see: where an invocation begins and ends. At the beginning the
invocation's first decision is made to wait for the extension's INVOKE answer, so a revision applied
before the invocation governs it from its first connection; at the end its deny records are written to
the spool before the sandbox can be frozen. The function's own handler is imported here, at init, as
the runtime would import it."""

from __future__ import annotations

import importlib
import os

from . import boot
from .core import current_invocation
from .kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: Bound on writing an invocation's records to the spool (a local file) after the handler.
END_FLUSH_SECONDS = 0.5


def _load(name: str) -> Callable[..., Any]:
    """The handler `module.function` (`path/module.function`), found as the runtime finds it."""
    module_name, _, function_name = name.rpartition('.')
    if not module_name or not function_name:
        raise ValueError(f'Bad handler {name!r}: not module.function (BULKHEAD_ORIGINAL_HANDLER)')
    module = importlib.import_module(module_name.replace('/', '.'))
    try:
        function: Callable[..., Any] = getattr(module, function_name)
    except AttributeError:
        raise AttributeError(f'Handler {function_name!r} missing on module {module_name!r}') from None
    return function


_original = _load(os.environ.get('BULKHEAD_ORIGINAL_HANDLER', ''))


def handler(event: Any, context: Any) -> Any:
    request_id = getattr(context, 'aws_request_id', None)
    token = current_invocation.set(request_id)
    boot.begin_invocation(request_id)
    try:
        return _original(event, context)
    finally:
        boot.end_invocation(END_FLUSH_SECONDS)
        current_invocation.reset(token)
