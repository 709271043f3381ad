"""Names tied to addresses: the answers of this process's own queries are remembered, so a later
connect to one of those addresses is decided by the name it was resolved for (as Cilium's FQDN policy
does). The audit hook decides whether a name may be queried at all; these wrappers only learn answers.
Code that calls the resolver some other way loses the binding, never gains an allow: its connections are
decided by address alone."""

from __future__ import annotations

from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def install(socket_module: Any, c_socket: Any, get_shim: Callable[[], Any]) -> list[Callable[..., Any]]:
    original_gai = c_socket.getaddrinfo
    original_ghbn = c_socket.gethostbyname
    original_ghbn_ex = c_socket.gethostbyname_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        answers = original_gai(host, *args, **kwargs)
        if host:
            get_shim().bind_names(host, [a[4][0] for a in answers if isinstance(a[4][0], str)])
        return answers

    def gethostbyname(host: Any) -> Any:
        answer = original_ghbn(host)
        get_shim().bind_names(host, [answer])
        return answer

    def gethostbyname_ex(host: Any) -> Any:
        answer = original_ghbn_ex(host)
        get_shim().bind_names(host, list(answer[2]))
        return answer

    for wrapper, original in (
        (getaddrinfo, original_gai),
        (gethostbyname, original_ghbn),
        (gethostbyname_ex, original_ghbn_ex),
    ):
        wrapper.__name__ = original.__name__
        wrapper.__doc__ = original.__doc__
        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    c_socket.getaddrinfo = getaddrinfo
    c_socket.gethostbyname = gethostbyname
    c_socket.gethostbyname_ex = gethostbyname_ex
    # socket.py copied these two from _socket at import (`from _socket import *`).
    socket_module.gethostbyname = gethostbyname
    socket_module.gethostbyname_ex = gethostbyname_ex
    return [getaddrinfo, gethostbyname, gethostbyname_ex]
