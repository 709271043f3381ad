"""Client of the Lambda Extensions API (2020-01-01) after Register (register.py). `next` is a long-poll
without a timeout, as the platform requires: the connection stays open across freezes."""

from __future__ import annotations

import json

from ..kernel._typing import TYPE_CHECKING
from .register import RawConnection

if TYPE_CHECKING:
    from typing import Any


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
    def __init__(self, runtime_api: str, extension_id: str) -> None:
        """After Register (register.py), with the id it returned. Raises RegisterError on a bad address."""
        self._runtime_api = runtime_api
        self.extension_id = extension_id
        # Kept alive across freezes: the answer is parsed in tens of microseconds at a thaw.
        self._next_connection = RawConnection(runtime_api, None)
        self._next_request = (
            f'GET /2020-01-01/extension/event/next HTTP/1.1\r\nHost: {runtime_api}\r\n'
            f'Lambda-Extension-Identifier: {extension_id}\r\n\r\n'
        ).encode('latin-1')

    def next(self) -> Event:
        try:
            status, _headers, body = self._next_connection.exchange(self._next_request)
        except OSError as error:
            raise ExtensionsApiError(f'event/next: {type(error).__name__}: {error}', None) from None
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
            'Lambda-Extension-Identifier': self.extension_id,
            'Lambda-Extension-Function-Error-Type': error_type,
            'Content-Type': 'application/json',
        }
        body = json.dumps({'errorMessage': message, 'errorType': error_type, 'stackTrace': []})
        status, _headers, answer = self._call('POST', path, headers, body)
        if status != 202:
            raise self._failure(path, status, answer)

    def _failure(self, what: str, status: int, body: bytes) -> ExtensionsApiError:
        answer = _object(body)
        error_type = answer.get('errorType') or 'unknown'
        message = answer.get('errorMessage') or body[:200].decode('utf-8', 'replace')
        return ExtensionsApiError(f'{what}: {status} {error_type}: {message}', status)

    def _call(
        self, method: str, path: str, headers: dict[str, str], body: str
    ) -> tuple[int, dict[str, str], bytes]:
        """A one-off request (init/exit errors) on its own connection."""
        data = body.encode()
        lines = [
            f'{method} {path} HTTP/1.1',
            f'Host: {self._runtime_api}',
            f'Content-Length: {len(data)}',
        ]
        lines += [f'{key}: {value}' for key, value in headers.items()] + ['Connection: close', '', '']
        connection = RawConnection(self._runtime_api, 10.0)
        try:
            return connection.exchange('\r\n'.join(lines).encode('latin-1') + data)
        except OSError as error:
            raise ExtensionsApiError(f'{method} {path}: {type(error).__name__}', None) from None
        finally:
            connection.close()


def _object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
