"""Loads Bulkhead's egress shim into this interpreter at start-up. CPython imports `sitecustomize` from
sys.path after site-packages are set up; `bulkhead shim path --python` prints this folder, to be put
first on PYTHONPATH. If the shim cannot load, the interpreter must not run ungoverned without a word:
a minimal audit hook then refuses every connection, DNS query, process start and native library
load, and one line says so (fail closed). A sitecustomize this one shadows still runs afterwards."""

import sys


def _fail_closed(error: BaseException) -> None:
    reason = f'{type(error).__name__}: {error}'
    sys.stderr.write(f'bulkhead: shim failed to load ({reason}); failing closed\n')
    blocked = {
        'socket.connect',
        'socket.sendto',
        'socket.sendmsg',
        'socket.getaddrinfo',
        'socket.gethostbyname',
        'socket.gethostbyname_ex',
        'subprocess.Popen',
        'os.exec',
        'os.posix_spawn',
        'os.spawn',
        'os.system',
        'ctypes.dlopen',
    }

    def refuse(event, args):  # type: ignore[no-untyped-def]
        if event in blocked:
            raise PermissionError(13, f'Bulkhead denied {event} (rule fail-closed: the shim failed to load)')

    sys.addaudithook(refuse)


def _chain() -> None:
    """Run the sitecustomize this file shadows (a distribution's or a virtualenv's), if any."""
    import importlib.machinery  # light: the import system's own modules (importlib.util costs ~4 ms)
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or '.') != here]
    spec = importlib.machinery.PathFinder.find_spec('sitecustomize', rest)
    if spec is None or spec.loader is None:
        return
    module = type(sys)(spec.name)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    spec.loader.exec_module(module)


try:
    from bulkhead_shim import boot as _bulkhead_boot

    _bulkhead_boot.install()
except BaseException as _error:
    _fail_closed(_error)

try:
    _chain()
except Exception as _error:
    sys.stderr.write(f'bulkhead: the shadowed sitecustomize failed: {type(_error).__name__}: {_error}\n')
