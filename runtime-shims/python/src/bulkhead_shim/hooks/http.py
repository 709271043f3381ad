"""L7 facts for `http.client` (and so urllib, urllib3, requests, botocore, which all send through it):
the request is decided with its host, method and path in `endheaders`, after the request line and
headers are composed and before a byte is written. The connection's own TCP connect is decided by the
audit hook. Through a proxy, what is decided is the target, never the proxy: the CONNECT (`_tunnel`) before
it is written, the TLS server name and the request inside the tunnel by the target's name and port (the
proxy's own address allows nothing on the target's behalf)."""

from __future__ import annotations

import weakref

from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

from ..errors import EgressDenied

#: Sockets that carry a CONNECT tunnel → (target host, target port), for the TLS check.
TUNNELS: weakref.WeakKeyDictionary[Any, tuple[str, int]] = weakref.WeakKeyDictionary()


def request_facts(conn: Any) -> tuple[str, int, str, str, str]:
    """(host, port, protocol, method, path) of the request composed on `conn`."""
    buffer = getattr(conn, '_buffer', None) or [b'']
    line = buffer[0].decode('latin-1') if isinstance(buffer[0], bytes) else str(buffer[0])
    parts = line.split(' ')
    method = parts[0].upper() if parts else ''
    target = parts[1] if len(parts) > 1 else '/'
    protocol = 'https' if getattr(conn, 'default_port', 80) == 443 else 'http'
    host = getattr(conn, '_tunnel_host', None)
    port = getattr(conn, '_tunnel_port', None)
    if host:
        protocol = 'https'
    else:
        host = conn.host
        port = conn.port
        for raw in buffer[1:]:
            header = raw.decode('latin-1') if isinstance(raw, bytes) else str(raw)
            name, _, value = header.partition(':')
            if name.strip().lower() == 'host':
                host = _host_of(value.strip())
                break
    if '://' in target:
        # Absolute form (a forward proxy): the target names the destination.
        from urllib.parse import urlsplit

        url = urlsplit(target)
        if url.hostname:
            host = url.hostname
            port = url.port or (443 if url.scheme == 'https' else 80)
            protocol = 'https' if url.scheme == 'https' else 'http'
        target = url.path or '/'
    return str(host), int(port or (443 if protocol == 'https' else 80)), protocol, method, target


def _host_of(value: str) -> str:
    if value.startswith('['):
        return value[1 : value.find(']')] if ']' in value else value
    return value.rsplit(':', 1)[0] if value.count(':') == 1 else value


def install(http_client: Any, get_shim: Callable[[], Any]) -> Callable[..., Any]:
    cls = http_client.HTTPConnection
    original = cls.endheaders

    def endheaders(self: Any, message_body: Any = None, *, encode_chunked: bool = False) -> Any:
        shim = get_shim()
        host, port, protocol, method, path = request_facts(self)
        tunneled = bool(getattr(self, '_tunnel_host', None))
        peer = None if tunneled else _peer(self)
        decision = shim.decide_request(host, port, protocol, method, path, peer)
        if (
            decision.rule == 'default-deny'
            and shim.decider.allows_addresses
            and self.sock is None
            and not tunneled
            and getattr(self, 'auto_open', 1)
        ):
            # The names fall to the default but a CIDR rule may hold the address: connect now (send()
            # would, a moment later) and decide with the address the connection goes to.
            self.connect()
            decision = shim.decide_request(host, port, protocol, method, path, _peer(self))
        if decision.decision != 'allow':
            destination = {'host': host.lower(), 'port': port, 'protocol': protocol, 'method': method}
            destination['path'] = path.split('?', 1)[0]
            shim.report('http', decision, destination)
            if decision.blocked:
                # Nothing composed for this request may go out with a later one on this connection.
                if hasattr(self, '_buffer'):
                    self._buffer.clear()
                raise EgressDenied(
                    f'{method} request',
                    f'{protocol}://{host}:{port}{path.split("?", 1)[0]}',
                    decision.rule,
                    shim.decider.revision,
                )
        return original(self, message_body, encode_chunked=encode_chunked)

    endheaders.__wrapped__ = original  # type: ignore[attr-defined]
    endheaders.__qualname__ = original.__qualname__
    endheaders.__doc__ = original.__doc__
    cls.endheaders = endheaders
    return endheaders


def install_tunnel(http_client: Any, get_shim: Callable[[], Any]) -> Callable[..., Any]:
    """A tunnel's `CONNECT host:port` is decided by that target before it is written to the proxy. It is
    caught in `send`, which every `_tunnel` implementation writes it through (urllib3 carries its own
    backport of `_tunnel`), so no copy of the tunnel code can go around it."""
    cls = http_client.HTTPConnection
    original = cls.send

    def send(self: Any, data: Any) -> Any:
        if (
            getattr(self, '_tunnel_host', None)
            and isinstance(data, (bytes, bytearray))
            and data[:8] == b'CONNECT '
        ):
            shim = get_shim()
            host, port = str(self._tunnel_host), int(self._tunnel_port or 443)
            decision = shim.decide_host(host, port, 'tcp')
            if decision.decision != 'allow':
                shim.report('connect', decision, {'host': host.lower(), 'port': port, 'protocol': 'tcp'})
                if decision.blocked:
                    raise EgressDenied('CONNECT', f'{host}:{port}', decision.rule, shim.decider.revision)
            if self.sock is not None:
                TUNNELS[self.sock] = (host, port)
        return original(self, data)

    send.__wrapped__ = original  # type: ignore[attr-defined]
    send.__qualname__ = original.__qualname__
    send.__doc__ = original.__doc__
    cls.send = send
    return send


def _peer(conn: Any) -> str | None:
    sock = getattr(conn, 'sock', None)
    if sock is None:
        return None
    try:
        peer = sock.getpeername()
    except (OSError, AttributeError):
        return None
    return peer[0] if isinstance(peer, tuple) and peer and isinstance(peer[0], str) else None
