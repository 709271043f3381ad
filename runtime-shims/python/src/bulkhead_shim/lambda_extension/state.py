"""The extension's files in the sandbox's state dir (BULKHEAD_STATE_DIR, in /tmp), shared with the Node
extension (extensions/state-files.ts): the bundle the shim reads, the status and ready files it waits
for, the spool the shim appends to and the forwarder's cursor. Every write is atomic
(temp file + rename), so a freeze or a kill never leaves a half-written file for the shim."""

from __future__ import annotations

import contextlib
import json
import os
import re

BUNDLE_FILE = 'bundle.json'
SPOOL_FILE = 'spool.ndjson'
CURSOR_FILE = 'spool.cursor.json'
STATUS_FILE = 'extension-status.json'
#: `<request id> <revision>`: written at each INVOKE once the bundle on disk is the newest.
READY_FILE = 'invocation-ready'
_SANDBOX_ID = re.compile(r'[A-Za-z0-9-]{1,64}')


def ensure_state_dir(state_dir: str) -> None:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)


def write_atomic(file: str, content: str, mode: int = 0o600) -> None:
    """Temp file + rename. Plain descriptors (no file object): the ready file is written at every INVOKE.
    `mode` is only ever narrowed by the umask, never widened: the modes used here are 0600 and 0644."""
    temp = f'{file}.{os.getpid()}.{os.urandom(4).hex()}.tmp'
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(descriptor, content.encode())
        finally:
            os.close(descriptor)
        os.replace(temp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_text(file: str) -> str | None:
    try:
        with open(file, encoding='utf-8') as handle:
            return handle.read()
    except (OSError, ValueError):
        return None


class Cursor:
    """Where the forwarder is in the spool, and the per-sandbox numbering of forwarded records."""

    __slots__ = ('inode', 'next_seq', 'offset', 'sandbox_id')

    def __init__(self, sandbox_id: str, offset: int, next_seq: int, inode: int) -> None:
        self.sandbox_id = sandbox_id
        self.offset = offset
        self.next_seq = next_seq
        self.inode = inode


def read_cursor(state_dir: str) -> Cursor | None:
    text = read_text(os.path.join(state_dir, CURSOR_FILE))
    if text is None:
        return None
    try:
        value = json.loads(text)
        sandbox_id, offset = value['sandboxId'], value['offset']
        next_seq, inode = value['nextSeq'], value['inode']
    except (ValueError, KeyError, TypeError):
        return None  # replaced by the caller: records are re-sent and deduplicated by id
    numbers = (offset, next_seq, inode)
    if not isinstance(sandbox_id, str) or _SANDBOX_ID.fullmatch(sandbox_id) is None:
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return None
    if offset < 0 or next_seq < 1:
        return None
    return Cursor(sandbox_id, offset, next_seq, inode)


def write_cursor(state_dir: str, cursor: Cursor) -> None:
    text = json.dumps(
        {
            'sandboxId': cursor.sandbox_id,
            'offset': cursor.offset,
            'nextSeq': cursor.next_seq,
            'inode': cursor.inode,
        }
    )
    write_atomic(os.path.join(state_dir, CURSOR_FILE), text)
