"""The Python Lambda extension's raw HTTP client (register.py) and its state files: whatever the other
end sends, the client answers with a parsed response or an OSError, never another exception, and keeps
the connection usable across answers (keep-alive)."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkhead_shim.lambda_extension.register import RawConnection, RegisterError, register
from bulkhead_shim.lambda_extension.state import Cursor, read_cursor, write_atomic, write_cursor


def _serve(answers: list[bytes]) -> tuple[str, threading.Thread]:
    """A one-connection server that sends each answer after reading a request, then closes."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)

    def run() -> None:
        connection, _ = server.accept()
        with connection:
            for answer in answers:
                connection.recv(65536)
                connection.sendall(answer)
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f'127.0.0.1:{server.getsockname()[1]}', thread


def test_register_reads_the_identifier_and_account() -> None:
    body = b'{"functionName":"f","accountId":"123456789012"}'
    answer = (
        b'HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: ext-1\r\n'
        + f'Content-Length: {len(body)}\r\n\r\n'.encode()
        + body
    )
    address, thread = _serve([answer])
    identifier, received = register(address, 'bulkhead')
    thread.join(5)
    assert identifier == 'ext-1'
    assert json.loads(received)['accountId'] == '123456789012'


def test_register_refusals_are_register_errors() -> None:
    address, thread = _serve([b'HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!'])
    with pytest.raises(RegisterError, match='403'):
        register(address, 'bulkhead')
    thread.join(5)
    with pytest.raises(RegisterError, match='host:port'):
        register('no-port', 'bulkhead')
    with pytest.raises(RegisterError, match='printable'):
        register('127.0.0.1:9', 'bad name')


def test_keep_alive_across_answers_split_anywhere() -> None:
    first = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'
    second = b'HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{"eventType":"x"}'
    address, thread = _serve([first, second])
    connection = RawConnection(address, 5.0)
    assert connection.exchange(b'GET / HTTP/1.1\r\n\r\n') == (200, {'content-length': '2'}, b'{}')
    status, _, body = connection.exchange(b'GET / HTTP/1.1\r\n\r\n')
    assert (status, body) == (200, b'{"eventType":"x"}')
    connection.close()
    thread.join(5)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_any_answer_parses_or_raises_oserror(noise: bytes) -> None:
    address, thread = _serve([noise])
    connection = RawConnection(address, 2.0)
    try:
        status, headers, body = connection.exchange(b'GET / HTTP/1.1\r\n\r\n')
        assert isinstance(status, int) and isinstance(headers, dict) and isinstance(body, bytes)
    except OSError:
        pass
    finally:
        connection.close()
        thread.join(5)


def test_state_files_are_atomic_with_their_mode(tmp_path: Path) -> None:
    target = tmp_path / 'bundle.json'
    write_atomic(str(target), '{"a":1}', 0o600)
    assert target.read_text() == '{"a":1}'
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ['bundle.json']
    write_cursor(str(tmp_path), Cursor('sandbox-1', 10, 3, 42))
    cursor = read_cursor(str(tmp_path))
    assert cursor is not None and (cursor.sandbox_id, cursor.offset, cursor.next_seq, cursor.inode) == (
        'sandbox-1',
        10,
        3,
        42,
    )
    for corrupt in ('{', '[]', '{"sandboxId":"x y","offset":0,"nextSeq":1,"inode":0}', '{"sandboxId":"a"}'):
        (tmp_path / 'spool.cursor.json').write_text(corrupt)
        assert read_cursor(str(tmp_path)) is None
    assert os.stat(tmp_path / 'spool.cursor.json').st_size > 0
