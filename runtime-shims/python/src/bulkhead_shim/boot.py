"""Start-up: what sitecustomize runs. Adds the audit hook and arranges for the L7 wrappers to be put on
`socket`, `ssl` and `http.client` when those modules are imported (importing them here would cost every
interpreter start-up several milliseconds). Everything else — configuration, bundle, keys, decision
engine, record queue — is built at the first governed operation.

Start-up budget: this module and the hook module are all that load at start-up."""

from __future__ import annotations

import _thread
import os
import sys

from .hooks import audit
from .kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

# Start-up budget: only built-in modules here (no threading, typing or importlib.abc: importlib.abc alone
# costs ~20 ms, as it pulls in importlib.resources and pathlib).
_lock = _thread.allocate_lock()
_shim: Any = None
#: A Lambda request that began before the core was built (it is built at the first governed operation).
_pending_invocation: str | None = None
_installed = False
_governor: audit.Governor | None = None
#: Wrappers the audit hook checks are still in place before each network operation.
_wrappers: dict[str, tuple[Any, str, Any]] = {}


def log(line: str) -> None:
    try:
        sys.stderr.write(f'bulkhead: {line}\n')
        sys.stderr.flush()
    except Exception:
        pass


def get_shim() -> Any:
    """The process's core, built on first use (thread-safe). On Lambda, the first call of an invocation
    also waits for the extension's word that the bundle on disk is the newest (Shim.await_ready)."""
    global _shim, _pending_invocation
    shim = _shim
    if shim is None:
        with _lock:
            if _shim is None:
                # Building the core reads the bundle and imports the verifier (native code): its own
                # work, which the hook must not judge (nor wait on this lock for).
                audit.enter()
                try:
                    from .core import Shim

                    built = Shim(log)
                    if _pending_invocation is not None:
                        built.begin_invocation(_pending_invocation)
                        _pending_invocation = None
                    _shim = built
                finally:
                    audit.leave()
            shim = _shim
    if shim.ready_for is not None:  # Lambda: this invocation's first decision
        audit.enter()
        try:
            shim.await_ready()
        finally:
            audit.leave()
    return shim


def begin_invocation(request_id: str | None) -> None:
    """Lambda (lambda_handler.py): an invocation starts. The core is not built for it: an invocation
    that governs nothing pays nothing."""
    global _pending_invocation
    shim = _shim
    if shim is None:
        _pending_invocation = request_id
    else:
        shim.begin_invocation(request_id)


def end_invocation(timeout: float) -> None:
    """Lambda: an invocation ends; its deny records reach the spool before the sandbox can freeze."""
    global _pending_invocation
    _pending_invocation = None
    shim = _shim
    if shim is not None:
        shim.end_invocation(timeout)


def _is_internal() -> bool:
    if audit.in_handler():
        return True
    shim = _shim
    if shim is None:
        return False
    ident = _thread.get_ident()
    return ident == shim.queue.thread_ident or ident == getattr(shim, 'watch_thread_ident', None)


def _integrity() -> str | None:
    for name, (owner, attribute, wrapper) in _wrappers.items():
        if getattr(owner, attribute, None) is not wrapper:
            return f'{name} was replaced'
    return None


def _native_exempt_dirs() -> tuple[str, ...]:
    """The standard library's own extension modules (lib-dynload), the shim's folder and, on Lambda, the
    runtime's own folder (LAMBDA_RUNTIME_DIR: the runtime interface client's native module is the
    platform's, as the Node shim exempts aws-lambda-ric's)."""
    dirs = {os.path.join(os.path.dirname(os.path.abspath(__file__)), '')}
    runtime_dir = os.environ.get('LAMBDA_RUNTIME_DIR')
    if runtime_dir and os.path.isabs(runtime_dir):
        dirs.add(os.path.join(os.path.realpath(runtime_dir), ''))
    for entry in sys.path:
        if entry.endswith('lib-dynload'):
            dirs.add(os.path.join(entry, ''))
    return tuple(sorted(dirs))


def _patch_socket(module: ModuleType) -> None:
    import _socket

    from .hooks import dns

    for wrapper in dns.install(module, _socket, get_shim):
        _wrappers[f'_socket.{wrapper.__name__}'] = (_socket, wrapper.__name__, wrapper)


def _patch_ssl(module: ModuleType) -> None:
    from .hooks import tls

    for wrapper in tls.install(module, get_shim):
        _wrappers[f'ssl.SSLContext.{wrapper.__name__}'] = (module.SSLContext, wrapper.__name__, wrapper)


def _patch_http_client(module: ModuleType) -> None:
    from .hooks import http

    wrapper = http.install(module, get_shim)
    _wrappers['http.client.HTTPConnection.endheaders'] = (module.HTTPConnection, 'endheaders', wrapper)
    tunnel = http.install_tunnel(module, get_shim)
    _wrappers['http.client.HTTPConnection.send'] = (module.HTTPConnection, 'send', tunnel)


def _patch_posixsubprocess(module: ModuleType) -> None:
    from .hooks import process

    assert _governor is not None
    wrapper = process.install(module, _governor.check_fork_exec)
    _wrappers['_posixsubprocess.fork_exec'] = (module, 'fork_exec', wrapper)


_PATCHES: dict[str, Callable[[ModuleType], None]] = {
    '_posixsubprocess': _patch_posixsubprocess,
    'socket': _patch_socket,
    'ssl': _patch_ssl,
    'http.client': _patch_http_client,
}


class _PatchingLoader:
    """The import protocol is duck-typed: a loader needs create_module and exec_module."""

    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)


class _PatchingFinder:
    """Finds nothing itself: hands `socket`, `ssl` and `http.client` to the other finders and wraps the
    loader so the module is patched the moment it has executed, before anyone can use it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        patch = _PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, 'find_spec', None)
            spec: ModuleSpec | None = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, patch)  # type: ignore[assignment]
                return spec
        return None


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    # The Lambda layer's vendored verifier (`cryptography` for this architecture): last on sys.path, so
    # a function that ships its own copy keeps it.
    deps = os.environ.get('BULKHEAD_PYTHON_DEPS')
    if deps and deps not in sys.path:
        sys.path.append(deps)
    global _governor
    governor = audit.Governor(get_shim, _native_exempt_dirs())
    governor.integrity = _integrity
    _governor = governor
    sys.addaudithook(audit.make_hook(governor, _is_internal))
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchingFinder())
    os.register_at_fork(after_in_child=_after_fork)


def _after_fork() -> None:
    global _lock
    _lock = _thread.allocate_lock()
    if _shim is not None:
        _shim.after_fork_in_child()


def status() -> dict[str, Any]:
    """The shim's state (revision, mode, fail mode, queue counts) for wrappers and tests."""
    return dict(get_shim().status())
