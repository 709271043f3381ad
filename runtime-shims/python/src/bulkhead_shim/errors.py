"""How a denial looks to application code: an OSError (PermissionError, EACCES) that says Bulkhead
denied it, which rule and which revision, so callers that handle network or exec failures handle it
too. Imports of native modules are refused with an ImportError subclass instead, because that is what
code probing for optional native speed-ups (`try: import ujson`) expects to catch."""

from __future__ import annotations

import errno


def _message(operation: str, destination: str, rule: str, revision: int) -> str:
    return f'Bulkhead denied {operation} to {destination} (rule {rule}, revision {revision})'


class EgressDenied(PermissionError):
    """Raised into the operation the policy blocks (connect, sendto, DNS query, HTTP request, exec)."""

    code = 'ERR_BULKHEAD_DENIED'

    def __init__(self, operation: str, destination: str, rule: str, revision: int) -> None:
        super().__init__(errno.EACCES, _message(operation, destination, rule, revision))
        self.operation = operation
        self.destination = destination
        self.rule = rule
        self.revision = revision

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[type[EgressDenied], tuple[str, str, str, int]]:
        return (EgressDenied, (self.operation, self.destination, self.rule, self.revision))


class NativeModuleDenied(ImportError):
    """Raised into an import of a native extension module (or a ctypes library load) the policy blocks."""

    code = 'ERR_BULKHEAD_DENIED'

    def __init__(self, destination: str, rule: str, revision: int, name: str | None = None) -> None:
        super().__init__(_message('load', destination, rule, revision), name=name, path=destination)
        self.destination = destination
        self.rule = rule
        self.revision = revision
