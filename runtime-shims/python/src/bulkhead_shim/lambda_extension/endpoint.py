"""The extension's endpoint for the runtime (docs/contracts.md §6), on 127.0.0.1 only:
`GET /v1/invocations/{requestId}/ready` answers `{revision, bundleFile}` once this extension has seen
that INVOKE (held up to 2 s, then answered with what is held: the runtime must never stall on it);
`GET /healthz` answers at once."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_WAIT_SECONDS = 2.0
MAX_REMEMBERED = 64
MAX_WAITERS = 256
_READY = re.compile(r'/v1/invocations/([^/]{1,200})/ready')


class LocalEndpoint:
    def __init__(self, state: Callable[[], dict[str, object]], max_wait: float = MAX_WAIT_SECONDS) -> None:
        self._state = state
        self._max_wait = max_wait
        self._done: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first
        self._condition = threading.Condition()
        self._waiting = 0
        self._server: ThreadingHTTPServer | None = None

    def listen(self, port: int) -> str:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_GET(self) -> None:
                if self.path == '/healthz':
                    return self._answer(200, endpoint._state())
                match = _READY.fullmatch(self.path)
                if match is None:
                    return self._answer(404, {'error': 'not found'})
                try:
                    request_id = unquote(match.group(1), errors='strict')
                except UnicodeDecodeError:
                    return self._answer(400, {'error': 'bad request id'})
                endpoint._wait_for(request_id)
                return self._answer(200, endpoint._state())

            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header('content-type', 'application/json')
                self.send_header('content-length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(('127.0.0.1', port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name='bulkhead-endpoint', daemon=True).start()
        return f'http://127.0.0.1:{server.server_address[1]}'

    def mark_ready(self, request_id: str) -> None:
        with self._condition:
            self._done[request_id] = None
            while len(self._done) > MAX_REMEMBERED:
                del self._done[next(iter(self._done))]
            self._condition.notify_all()

    def _wait_for(self, request_id: str) -> None:
        with self._condition:
            if request_id in self._done or self._waiting >= MAX_WAITERS:
                return
            self._waiting += 1
            try:
                self._condition.wait_for(lambda: request_id in self._done, self._max_wait)
            finally:
                self._waiting -= 1

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
