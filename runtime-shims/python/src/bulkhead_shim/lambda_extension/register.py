"""Register, and the Extensions API's other hot call (`next`), over a plain `_socket`: Register is the
first thing the extension does, because Lambda starts the runtime only once every extension has
registered, and `next`'s answer is what the extension reads at every thaw. `http.client` alone costs
~16 ms to import (it pulls in `email` and `ssl`) and ~0.2 ms to parse an answer; even `socket` costs
~9 ms to import (`selectors`, `enum`). This uses the built-in `_socket` and reads what the Extensions
API sends: a status line, headers with Content-Length, a small JSON body."""

from __future__ import annotations

import _socket

MAX_ANSWER_BYTES = 1024 * 1024
EVENTS_BODY = b'{"events":["INVOKE","SHUTDOWN"]}'


class RegisterError(Exception):
    pass


class RawConnection:
    """One HTTP/1.1 connection to the Runtime API (loopback), kept alive across requests."""

    def __init__(self, runtime_api: str, timeout: float | None) -> None:
        host, _, port_text = runtime_api.rpartition(':')
        if not host or not port_text.isdigit():
            raise RegisterError('AWS_LAMBDA_RUNTIME_API is not host:port')
        self.host_header = runtime_api
        self._address = (host.strip('[]'), int(port_text))
        self._family = _socket.AF_INET6 if ':' in self._address[0] else _socket.AF_INET
        self._timeout = timeout
        self._sock: _socket.socket | None = None
        self._buffer = b''

    def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Sends a whole request, returns (status, lower-case headers, body). Raises OSError."""
        if self._sock is None:
            sock = _socket.socket(self._family, _socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            try:
                sock.connect(self._address)
            except OSError:
                sock.close()
                raise
            self._sock = sock
            self._buffer = b''
        try:
            self._sock.sendall(request)
            return self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> tuple[int, dict[str, str], bytes]:
        assert self._sock is not None
        while (end := self._buffer.find(b'\r\n\r\n')) == -1:
            self._fill()
        head = self._buffer[:end].decode('latin-1').split('\r\n')
        self._buffer = self._buffer[end + 4 :]
        parts = head[0].split(' ', 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise OSError(f'not an HTTP answer: {head[0][:100]!r}')
        headers: dict[str, str] = {}
        for line in head[1:]:
            key, _, value = line.partition(':')
            headers[key.strip().lower()] = value.strip()
        length_text = headers.get('content-length', '')
        if length_text.isdigit():
            length = int(length_text)
            if length > MAX_ANSWER_BYTES:
                raise OSError(f'answer of {length} bytes is over {MAX_ANSWER_BYTES}')
            while len(self._buffer) < length:
                self._fill()
            body, self._buffer = self._buffer[:length], self._buffer[length:]
        else:  # no length: the body runs to the end of the connection
            while True:
                try:
                    self._fill()
                except ConnectionError:
                    break
            body, self._buffer = self._buffer, b''
            self.close()
        if headers.get('connection', '').lower() == 'close':
            self.close()
        return int(parts[1]), headers, body

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError('the Runtime API closed the connection')
        self._buffer += chunk
        if len(self._buffer) > MAX_ANSWER_BYTES + 65536:
            raise OSError('answer too large')

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b''


def register(runtime_api: str, name: str, timeout: float = 10.0) -> tuple[str, bytes]:
    """POST /2020-01-01/extension/register. Returns (extension id, answer body). Raises RegisterError."""
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in name):
        raise RegisterError('extension name must be printable ASCII without spaces')
    connection = RawConnection(runtime_api, timeout)
    request = (
        f'POST /2020-01-01/extension/register HTTP/1.1\r\nHost: {runtime_api}\r\n'
        f'Lambda-Extension-Name: {name}\r\nLambda-Extension-Accept-Feature: accountId\r\n'
        f'Content-Type: application/json\r\nContent-Length: {len(EVENTS_BODY)}\r\nConnection: close\r\n\r\n'
    ).encode('ascii') + EVENTS_BODY
    try:
        status, headers, body = connection.exchange(request)
    except OSError as error:
        raise RegisterError(f'register: {type(error).__name__}: {error}') from None
    finally:
        connection.close()
    if status != 200:
        raise RegisterError(f'register: {status} {body[:200].decode("utf-8", "replace")}')
    identifier = headers.get('lambda-extension-identifier', '')
    if not identifier:
        raise RegisterError('register: no Lambda-Extension-Identifier in the answer')
    return identifier, body
