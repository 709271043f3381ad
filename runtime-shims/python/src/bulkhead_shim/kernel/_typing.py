"""Generic classes without importing `typing` at run time.

The shim loads at every interpreter start-up and `typing` alone costs several milliseconds there,
so kernel modules import typing names only for the type checker (`from __future__ import
annotations` keeps annotations unevaluated). Generic classes still need a subscriptable base at
run time: these stand-ins give one, and the type checker sees the real `typing` names.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Generic, TypeVar
else:

    class Generic:
        """Run-time stand-in for typing.Generic: `Generic[T]` is the class itself."""

        __slots__ = ()

        def __class_getitem__(cls, _item):
            return cls

    def TypeVar(name, *_constraints, **_options):
        return name


__all__ = ['TYPE_CHECKING', 'Generic', 'TypeVar']
