"""Register, with nothing but a socket: the first thing the extension does, because Lambda starts the
runtime only once every extension has registered. `http.client` alone costs ~16 ms to import (it pulls
in `email` and `ssl`) and even `socket` ~9 ms (`selectors`, `enum`); this uses the built-in `_socket`.
Everything else — configuration, keys, the bundle fetch — is imported and done after, while the runtime
initialises (the shim waits for the extension's first answer at its first decision, bounded)."""

from __future__ import annotations

import _socket

MAX_ANSWER_BYTES = 64 * 1024
EVENTS_BODY = b'{"events":["INVOKE","SHUTDOWN"]}'


class RegisterError(Exception):
    pass


def register(runtime_api: str, name: str, timeout: float = 10.0) -> tuple[str, bytes]:
    """POST /2020-01-01/extension/register. Returns (extension id, answer body). Raises RegisterError."""
    host, _, port_text = runtime_api.rpartition(':')
    if not host or not port_text.isdigit():
        raise RegisterError('AWS_LAMBDA_RUNTIME_API is not host:port')
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in name):
        raise RegisterError('extension name must be printable ASCII without spaces')
    request = (
        f'POST /2020-01-01/extension/register HTTP/1.1\r\nHost: {runtime_api}\r\n'
        f'Lambda-Extension-Name: {name}\r\nLambda-Extension-Accept-Feature: accountId\r\n'
        f'Content-Type: application/json\r\nContent-Length: {len(EVENTS_BODY)}\r\nConnection: close\r\n\r\n'
    ).encode('ascii') + EVENTS_BODY
    try:
        family = _socket.AF_INET6 if ':' in host.strip('[]') else _socket.AF_INET
        connection = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            connection.settimeout(timeout)
            connection.connect((host.strip('[]'), int(port_text)))
            connection.sendall(request)
            answer = b''
            while len(answer) <= MAX_ANSWER_BYTES:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
                head_end = answer.find(b'\r\n\r\n')
                if head_end != -1:
                    length = _content_length(answer[:head_end])
                    if length is not None and len(answer) >= head_end + 4 + length:
                        break
        finally:
            connection.close()
    except OSError as error:
        raise RegisterError(f'register: {type(error).__name__}: {error}') from None
    head, _, body = answer.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    status = lines[0].split(' ', 2)
    if len(status) < 2 or status[1] != '200':
        raise RegisterError(f'register: {lines[0][:100]!r} {body[:200].decode("utf-8", "replace")}')
    for line in lines[1:]:
        key, _, value = line.partition(':')
        if key.strip().lower() == 'lambda-extension-identifier' and value.strip():
            return value.strip(), body
    raise RegisterError('register: no Lambda-Extension-Identifier in the answer')


def _content_length(head: bytes) -> int | None:
    for line in head.split(b'\r\n')[1:]:
        key, _, value = line.partition(b':')
        if key.strip().lower() == b'content-length' and value.strip().isdigit():
            return int(value.strip())
    return None
