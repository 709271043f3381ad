"""TLS server name (SNI): decided when a client socket is wrapped, before the ClientHello is written.
The name must be allowed together with the address the socket is connected to (domain fronting through
an allowed address with a forbidden SNI is refused)."""

from __future__ import annotations

from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

from ..errors import EgressDenied


def install(ssl_module: Any, get_shim: Callable[[], Any]) -> list[Callable[..., Any]]:
    context = ssl_module.SSLContext
    original_socket = context.wrap_socket
    original_bio = context.wrap_bio

    def check(server_hostname: Any, server_side: bool, sock: Any) -> None:
        if server_side or not server_hostname:
            return
        name = (
            server_hostname.decode('ascii', 'replace')
            if isinstance(server_hostname, bytes)
            else str(server_hostname)
        )
        peer = None
        if sock is not None:
            try:
                address = sock.getpeername()
                if isinstance(address, tuple):
                    peer = address
            except (OSError, AttributeError):
                peer = None
        if peer is None:
            return  # not connected yet: the connect decides (with the names this process resolved)
        shim = get_shim()
        from .http import TUNNELS

        tunnel = TUNNELS.get(sock)
        if tunnel is not None:
            # Through a proxy: the name is the target's, decided with the target's port, not the proxy's.
            decision = shim.decide_host(tunnel[0], tunnel[1], 'tcp')
            if decision.decision == 'allow' and name.lower() != tunnel[0].lower():
                decision = shim.decide_host(name, tunnel[1], 'tcp')
            destination = {'host': tunnel[0].lower(), 'port': tunnel[1], 'protocol': 'tcp'}
            peer = (tunnel[0], tunnel[1])
        else:
            decision = shim.decide_connect(peer[0], peer[1], 'tcp', sni=name)
            destination = {'ip': peer[0], 'port': peer[1], 'protocol': 'tcp'}
        if decision.decision != 'allow':
            destination['sni'] = name.lower()
            shim.report('connect', decision, destination)
            if decision.blocked:
                raise EgressDenied(
                    'TLS handshake', f'{name} at {peer[0]}:{peer[1]}', decision.rule, shim.decider.revision
                )

    def wrap_socket(self: Any, sock: Any, server_side: bool = False, *args: Any, **kwargs: Any) -> Any:
        check(kwargs.get('server_hostname', args[2] if len(args) > 2 else None), server_side, sock)
        return original_socket(self, sock, server_side, *args, **kwargs)

    def wrap_bio(
        self: Any, incoming: Any, outgoing: Any, server_side: bool = False, *args: Any, **kwargs: Any
    ) -> Any:
        # A memory BIO has no socket: the transport's connect was decided; the name is checked by name.
        name = kwargs.get('server_hostname', args[0] if args else None)
        if name and not server_side:
            shim = get_shim()
            decision = shim.decide_name(str(name))
            if decision.decision != 'allow':
                shim.report('connect', decision, {'sni': str(name).lower(), 'protocol': 'tcp'})
                if decision.blocked:
                    raise EgressDenied('TLS handshake', str(name), decision.rule, shim.decider.revision)
        return original_bio(self, incoming, outgoing, server_side, *args, **kwargs)

    context.wrap_socket = wrap_socket
    context.wrap_bio = wrap_bio
    return [wrap_socket, wrap_bio]
