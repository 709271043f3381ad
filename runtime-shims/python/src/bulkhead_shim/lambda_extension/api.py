"""Client of the Lambda Extensions API (2020-01-01) after Register (register.py). `next` is a long-poll
without a timeout, as the platform requires: the connection stays open across freezes."""

from __future__ import annotations

import http.client
import json
import re

from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

MAX_ANSWER_BYTES = 1024 * 1024
_HOST_PORT = re.compile(r'([^:]+):(\d{1,5})')


class ExtensionsApiError(Exception):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class Event:
    """An INVOKE (request_id) or a SHUTDOWN (shutdown_reason); deadline in epoch milliseconds."""

    __slots__ = ('deadline_ms', 'event_type', 'request_id', 'shutdown_reason')

    def __init__(
        self, event_type: str, deadline_ms: float, request_id: str = '', shutdown_reason: str = ''
    ) -> None:
        self.event_type = event_type
        self.deadline_ms = deadline_ms
        self.request_id = request_id
        self.shutdown_reason = shutdown_reason


class ExtensionsApi:
    def __init__(self, runtime_api: str) -> None:
        match = _HOST_PORT.fullmatch(runtime_api)
        if match is None:
            raise ExtensionsApiError('AWS_LAMBDA_RUNTIME_API is not host:port', None)
        self._host = match.group(1)
        self._port = int(match.group(2))
        self._next_connection: http.client.HTTPConnection | None = None
        self.extension_id: str | None = None

    def next(self) -> Event:
        status, _headers, body = self._call(
            'GET', '/2020-01-01/extension/event/next', self._identified(), keep=True, timeout=None
        )
        if status != 200:
            raise self._failure('event/next', status, body)
        answer = _object(body)
        event_type = str(answer.get('eventType', '')).upper()
        deadline = answer.get('deadlineMs')
        deadline_ms = float(deadline) if isinstance(deadline, (int, float)) else 0.0
        if event_type == 'INVOKE':
            return Event('INVOKE', deadline_ms, request_id=str(answer.get('requestId') or ''))
        if event_type == 'SHUTDOWN':
            return Event(
                'SHUTDOWN', deadline_ms, shutdown_reason=str(answer.get('shutdownReason') or 'unknown')
            )
        raise ExtensionsApiError(f'event/next: unknown event {json.dumps(event_type)}', status)

    def init_error(self, error_type: str, message: str) -> None:
        self._report('/2020-01-01/extension/init/error', error_type, message)

    def exit_error(self, error_type: str, message: str) -> None:
        self._report('/2020-01-01/extension/exit/error', error_type, message)

    def _report(self, path: str, error_type: str, message: str) -> None:
        headers = {
            **self._identified(),
            'Lambda-Extension-Function-Error-Type': error_type,
            'Content-Type': 'application/json',
        }
        body = json.dumps({'errorMessage': message, 'errorType': error_type, 'stackTrace': []})
        status, _headers, answer = self._call('POST', path, headers, body)
        if status != 202:
            raise self._failure(path, status, answer)

    def _identified(self) -> dict[str, str]:
        if not self.extension_id:
            raise ExtensionsApiError('not registered', None)
        return {'Lambda-Extension-Identifier': self.extension_id}

    def _failure(self, what: str, status: int, body: bytes) -> ExtensionsApiError:
        answer = _object(body)
        error_type = answer.get('errorType') or 'unknown'
        message = answer.get('errorMessage') or body[:200].decode('utf-8', 'replace')
        return ExtensionsApiError(f'{what}: {status} {error_type}: {message}', status)

    def _call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: str | None = None,
        *,
        keep: bool = False,
        timeout: float | None = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        # One kept connection for `next` (it survives freezes); the rare other calls get their own.
        connection = self._next_connection if keep else None
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            if keep:
                self._next_connection = connection
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_ANSWER_BYTES + 1)
            if not keep or response.will_close:
                connection.close()
                if keep:
                    self._next_connection = None
            if len(data) > MAX_ANSWER_BYTES:
                raise ExtensionsApiError(
                    f'{path}: answer larger than {MAX_ANSWER_BYTES} bytes', response.status
                )
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            if keep:
                self._next_connection = None
            raise ExtensionsApiError(f'{method} {path}: {type(error).__name__}', None) from None


def _object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
