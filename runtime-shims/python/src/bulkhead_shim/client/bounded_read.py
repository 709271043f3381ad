"""Reading an HTTP answer's body within a deadline and a size cap: what every request the shim makes to
the control API, a platform identity endpoint or an AWS service must bound (a slow or endless answer
would otherwise hold a cold start or a renewal)."""

from __future__ import annotations

import socket
import time
from http.client import HTTPResponse


class AnswerTooLarge(Exception):
    """The body grew past the cap; the caller says which endpoint in its own error."""


def read_bounded(response: HTTPResponse, sock: socket.socket | None, deadline: float, limit: int) -> bytes:
    """The whole body, read before `deadline` (time.monotonic()); raises TimeoutError past it and
    AnswerTooLarge beyond `limit` bytes. `sock` (when known) gets each read's remaining time."""
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if sock is not None:
            sock.settimeout(remaining)
        chunk = response.read1(65536)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise AnswerTooLarge
