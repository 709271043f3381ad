"""`_posixsubprocess.fork_exec`, the primitive under subprocess on POSIX, raises no audit event of its own:
called directly it would start a process unseen. It is wrapped so that a direct call is decided as the
exec it is; the audit hook refuses a second copy of the module (which would carry the original)."""

from __future__ import annotations

from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def install(module: Any, check: Callable[[Any, Any, Any], None]) -> Callable[..., Any]:
    original = module.fork_exec

    def fork_exec(*args: Any, **kwargs: Any) -> Any:
        # (args, executable_list, close_fds, pass_fds, cwd, env, …) on CPython 3.10-3.13.
        check(
            args[0] if args else None,
            args[1] if len(args) > 1 else None,
            args[5] if len(args) > 5 else None,
        )
        return original(*args, **kwargs)

    fork_exec.__name__ = original.__name__
    fork_exec.__doc__ = original.__doc__
    module.fork_exec = fork_exec
    return fork_exec
