"""The loopback HTTP/1.1 server the benchmark's clients talk to: a separate, un-shimmed process, so its
cost falls outside the measured client and is the same for both variants. It answers every request with
the same small response, keeps connections alive unless the request says `Connection: close` (then it
answers with `Connection: close` and closes), and accepts connections that send nothing (the connect
loop). asyncio protocol, no parsing beyond finding the end of the headers: a GET has no body.

A second listener, for the connect loop, only accepts and closes, in a tight loop of its own thread: it
must drain its accept queue faster than the client fills it, or the kernel drops SYNs and a connect waits
a second for the retransmission (asyncio's accept path is too slow for that).

Prints `HTTP_PORT CONNECT_PORT` on the first line of stdout, then serves until stdin closes."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading

_BODY = b'ok'
_KEEP = b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s' % (len(_BODY), _BODY)
_CLOSE = (
    b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s'
    % (len(_BODY), _BODY)
)


class _Http(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._pending = b''

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        buffer = self._pending + data
        while True:
            end = buffer.find(b'\r\n\r\n')
            if end < 0:
                break
            head = buffer[:end].lower()
            buffer = buffer[end + 4 :]
            if b'\r\nconnection: close' in head:
                transport.write(_CLOSE)
                transport.close()
                self._pending = b''
                return
            transport.write(_KEEP)
        self._pending = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


def _accept_forever(listener: socket.socket) -> None:
    accept = listener.accept
    while True:
        try:
            connection, _ = accept()
        except OSError:
            return
        connection.close()


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, '127.0.0.1', 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(('127.0.0.1', 0))
    listener.listen(4096)
    threading.Thread(target=_accept_forever, args=(listener,), daemon=True).start()
    sys.stdout.write(f'{port} {listener.getsockname()[1]}\n')
    sys.stdout.flush()
    # Serve until the parent closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main() -> None:
    asyncio.run(_serve())


if __name__ == '__main__':
    main()
