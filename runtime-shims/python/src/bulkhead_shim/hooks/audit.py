"""The PEP 578 audit hook: every socket connect/sendto/sendmsg, name resolution, process start, native
module import and ctypes library load raises an audit event before it happens, and raising from the hook
stops it. Code cannot remove an audit hook once added. The hook runs for every audit event of the
interpreter (file opens, compiles, …), so its first step is one dict lookup that ignores all others."""

from __future__ import annotations

import _socket
import os
import sys

from ..errors import EgressDenied, NativeModuleDenied
from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Handler = Callable[[tuple[Any, ...]], None]

#: Standard-library extension modules that are not exempt like the rest of lib-dynload: ctypes (native
#: code and raw memory), subinterpreters (Python-level audit hooks do not reach them), CPython's test
#: modules (they poke at interpreter internals). They follow the addon rule (`addons: ["_ctypes*"]`).
GOVERNED_STDLIB = frozenset(
    {'_ctypes', '_xxsubinterpreters', '_interpreters', '_testcapi', '_testinternalcapi', '_testmultiphase'}
)

#: C library entry points that would go around the hooks when called through ctypes.
NATIVE_EGRESS_SYMBOLS = frozenset(
    {
        'connect', 'sendto', 'sendmsg', 'sendmmsg', 'socket', 'socketpair', 'getaddrinfo', 'gethostbyname',
        'gethostbyname_r', 'gethostbyname2', 'gethostbyname2_r', 'res_query', 'res_search', 'res_send',
        'res_nquery', 'res_nsearch', 'res_nsend', 'execve', 'execv', 'execvp', 'execvpe', 'execl', 'execlp',
        'execle', 'fexecve', 'execveat', 'system', 'popen', 'posix_spawn', 'posix_spawnp', 'fork', 'vfork',
        'clone', 'clone3', 'syscall', 'dlopen', 'dlmopen', 'PyRun_SimpleString', 'PySys_AddAuditHook',
    }
)  # fmt: skip


class Governor:
    """What the hook handlers need from the rest of the shim (the core is built at first use)."""

    def __init__(self, get_shim: Callable[[], Any], native_exempt: tuple[str, ...]) -> None:
        self._get_shim = get_shim
        self._native_exempt = native_exempt
        self._own = os.path.realpath(sys.executable)
        self.integrity: Callable[[], str | None] = lambda: None
        #: Native modules the shim wraps functions of (boot fills it in).
        self._guarded: frozenset[str] = frozenset({'_posixsubprocess'})

    # -- helpers -----------------------------------------------------------------------------------

    def _act(self, kind: str, operation: str, shown: str, decision: Any, destination: dict[str, Any]) -> None:
        shim = self._get_shim()
        if decision.decision == 'allow':
            return
        shim.report(kind, decision, destination)
        if decision.blocked:
            raise EgressDenied(operation, shown, decision.rule, shim.decider.revision)

    def _tampered(self, what: str) -> None:
        """A wrapper the shim relies on was replaced: refuse network use and report it (repeats aggregate)."""
        shim = self._get_shim()
        from ..core import TAMPERED

        shim.report('tamper', TAMPERED, {'command': what}, severity='high')
        raise EgressDenied('network use', what, 'tamper', shim.revision)

    # -- sockets -----------------------------------------------------------------------------------

    def on_connect(self, args: tuple[Any, ...]) -> None:
        sock, address = args[0], args[1]
        self._socket_to(sock, address, 'connect')

    def on_sendto(self, args: tuple[Any, ...]) -> None:
        sock, address = args[0], args[1]
        if address is not None:
            self._socket_to(sock, address, 'sendto')

    def _socket_to(self, sock: Any, address: Any, operation: str) -> None:
        problem = self.integrity()
        if problem is not None:
            self._tampered(problem)
        family = _raw_family(sock)
        shim = self._get_shim()
        if family in (_AF_INET, _AF_INET6) and isinstance(address, tuple) and len(address) >= 2:
            host, port = address[0], address[1]
            if isinstance(host, bytes):
                host = host.decode('ascii', 'replace')
            if not isinstance(host, str) or not isinstance(port, int):
                return  # the socket call itself rejects it
            protocol = 'udp' if _raw_type(sock) & 0xF == _SOCK_DGRAM else 'tcp'
            ip = shim.ip_literal(host)
            if ip is not None:
                decision = shim.decide_connect(ip, port, protocol)
                if decision.decision == 'allow':
                    return  # the common case: no record, nothing built
                destination = {'ip': ip, 'port': port, 'protocol': protocol}
                names = shim.names_of(ip)
                if names:
                    destination['host'] = names[-1]
            else:
                decision = shim.decide_host(host, port, protocol)
                destination = {'host': host.lower(), 'port': port, 'protocol': protocol}
            self._act(
                'udp' if protocol == 'udp' else 'connect', operation, f'{host}:{port}', decision, destination
            )
        elif family == _AF_UNIX:
            from ..kernel.unix import normalize_unix_path

            given = unix_path(address)
            path = normalize_unix_path(given) or given
            decision = shim.decider.decide_unix(path)
            if decision.decision == 'allow' and path.startswith('/'):
                # A link the program made under an allowed folder must not reach another socket:
                # the resolved path is asked too, and either refusal blocks.
                resolved = os.path.realpath(path)
                if resolved != path:
                    by_target = shim.decider.decide_unix(resolved)
                    if by_target.decision != 'allow':
                        decision, path = by_target, resolved
            shim.count(decision)
            self._act('unix', operation, path, decision, {'socket': path})
        else:
            # Netlink, packet and other families: not egress the kernel can name; decided as an
            # unreadable destination (denied under enforce, recorded under observe).
            decision = shim.decider.decide(None, None, 0, 'tcp')
            shim.count(decision)
            self._act('connect', operation, f'family {family}', decision, {'protocol': 'tcp'})

    # -- names ---------------------------------------------------------------------------------------

    def on_getaddrinfo(self, args: tuple[Any, ...]) -> None:
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode('ascii', 'replace')
        if not isinstance(host, str) or host == '':
            return  # None: the local host's own addresses
        shim = self._get_shim()
        decision = shim.decide_name(host)
        if decision.decision != 'allow':
            shim.report('dns', decision, {'host': host.lower(), 'protocol': 'dns'})
            if decision.blocked:
                raise EgressDenied('DNS query', host, decision.rule, shim.decider.revision)

    # -- processes -------------------------------------------------------------------------------------

    def _exec(self, executable: Any, argv: Any, env: Any, *, completable: bool) -> None:
        from . import children

        file = as_text(executable)
        args = [argv] if isinstance(argv, (str, bytes)) else list(argv or [])
        if file is None and args:
            file = as_text(args[0])
        if not file:
            return
        shim = self._get_shim()
        # Any spelling of this interpreter's own binary (a venv link, `python3` on PATH, `..` in the
        # path) is the interpreter `exec.allowNode` allows, as the Node shim resolves a `node` child.
        own = self._is_own_interpreter(file, env)
        decision = shim.decider.decide_exec(sys.executable if own else file)
        if decision.decision != 'allow':
            shim.report('exec', decision, {'command': file})
            if decision.blocked:
                raise EgressDenied('exec', file, decision.rule, shim.decider.revision)
            return
        shim.count(decision)
        if not own and not children.is_python(file, self._own):
            return
        flag = children.isolating_flag(args)
        problem = f'{flag} skips the Bulkhead shim' if flag else None
        ours = children.controlled(os.environ)
        if problem is None:
            environment = os.environ if env is None else env
            problem = children.env_problem(environment, ours)
            if problem is not None and completable and isinstance(env, dict):
                children.complete_env(env, ours)
                problem = None
        if problem is not None:
            from ..kernel.decide import Decision

            refusal = Decision('deny', 'enforce', True, 'exec:ungoverned-python')
            shim.report('exec', refusal, {'command': f'{file} ({problem})'}, severity='high')
            raise EgressDenied('exec', f'{file} ({problem})', refusal.rule, shim.decider.revision)

    def _is_own_interpreter(self, file: str, env: Any) -> bool:
        if '/' in file:
            candidates = [file]
        else:
            path = None
            if isinstance(env, dict):
                path = as_text(env.get('PATH', env.get(b'PATH')))
            if path is None:
                path = os.environ.get('PATH', os.defpath)
            candidates = [os.path.join(folder, file) for folder in path.split(os.pathsep) if folder]
        for candidate in candidates:
            if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                return os.path.realpath(candidate) == self._own
        return False

    def check_fork_exec(self, args: Any, executables: Any, env_list: Any) -> None:
        """`_posixsubprocess.fork_exec` called directly (it raises no audit event of its own): decided as
        the exec it is. Called through subprocess, the decision was made at `subprocess.Popen` already
        (cached). An environment list `[b'K=V', …]` is judged as it is, never completed."""
        if in_handler():
            return
        program = None
        if executables:
            program = as_text(next(iter(executables)))
        argv = list(args) if isinstance(args, (list, tuple)) else []
        env: dict[str, str] | None = None
        if env_list is not None:
            env = {}
            for entry in env_list:
                text = as_text(entry) or ''
                key, _, value = text.partition('=')
                env[key] = value
        self._exec(program, argv, env, completable=False)

    def on_popen(self, args: tuple[Any, ...]) -> None:
        executable, argv, _cwd, env = args[0], args[1], args[2], args[3]
        self._exec(executable, argv, env, completable=True)

    def on_exec(self, args: tuple[Any, ...]) -> None:
        self._exec(args[0], args[1], args[2], completable=False)

    def on_spawn(self, args: tuple[Any, ...]) -> None:
        # os.spawn*: (mode, path, args, env)
        self._exec(args[1], args[2], args[3], completable=False)

    def on_system(self, args: tuple[Any, ...]) -> None:
        self._exec('/bin/sh', ['/bin/sh', '-c', args[0]], None, completable=False)

    # -- native code -------------------------------------------------------------------------------------

    def on_import(self, args: tuple[Any, ...]) -> None:
        # A native extension module is loaded with (name, filename, None, None, None); a plain import
        # event (filename None) is the finder starting, which is not ours to judge.
        filename = args[1]
        if not isinstance(filename, str) or args[2] is not None:
            return
        name = str(args[0])
        if name in self._guarded and name in sys.modules:
            # A second copy of a module the shim wrapped would carry the unwrapped functions.
            shim = self._get_shim()
            from ..core import TAMPERED

            shim.report('tamper', TAMPERED, {'command': filename}, severity='high')
            raise NativeModuleDenied(filename, 'tamper', shim.revision, name=name)
        if filename.startswith(self._native_exempt) and name.rpartition('.')[2] not in GOVERNED_STDLIB:
            return
        shim = self._get_shim()
        decision = shim.decider.decide_addon(filename)
        if decision.decision != 'allow':
            shim.report('addon', decision, {'command': filename})
            if decision.blocked:
                raise NativeModuleDenied(filename, decision.rule, shim.decider.revision, name=str(args[0]))
        else:
            shim.count(decision)

    def on_dlopen(self, args: tuple[Any, ...]) -> None:
        name = as_text(args[0])
        if name is None:
            return  # the process's own symbols (ctypes.pythonapi, CDLL(None)): no new code
        shim = self._get_shim()
        decision = shim.decider.decide_addon(name)
        if decision.decision != 'allow':
            shim.report('addon', decision, {'command': name})
            if decision.blocked:
                raise NativeModuleDenied(name, decision.rule, shim.decider.revision)
        else:
            shim.count(decision)

    def on_dlsym(self, args: tuple[Any, ...]) -> None:
        # Allowing ctypes (for its FFI uses) does not allow reaching the system calls the hooks govern
        # around them: resolving one through ctypes is an addon decision of its own, `ctypes:<symbol>`.
        name = as_text(args[1]) if len(args) > 1 else None
        if name is None or name not in NATIVE_EGRESS_SYMBOLS:
            return
        shim = self._get_shim()
        decision = shim.decider.decide_addon(f'ctypes:{name}')
        if decision.decision != 'allow':
            shim.report('addon', decision, {'command': f'ctypes:{name}'})
            if decision.blocked:
                raise NativeModuleDenied(f'ctypes:{name}', decision.rule, shim.decider.revision)
        else:
            shim.count(decision)

    def handlers(self) -> dict[str, Handler]:
        return {
            'socket.connect': self.on_connect,
            'socket.sendto': self.on_sendto,
            'socket.sendmsg': self.on_sendto,
            'socket.getaddrinfo': self.on_getaddrinfo,
            'socket.gethostbyname': self.on_getaddrinfo,
            'socket.gethostbyname_ex': self.on_getaddrinfo,
            'subprocess.Popen': self.on_popen,
            'os.exec': self.on_exec,
            'os.posix_spawn': self.on_exec,
            'os.spawn': self.on_spawn,
            'os.system': self.on_system,
            'import': self.on_import,
            'ctypes.dlopen': self.on_dlopen,
            'ctypes.dlsym': self.on_dlsym,
            'ctypes.dlsym/handle': self.on_dlsym,
        }


_AF_INET = int(_socket.AF_INET)
_AF_INET6 = int(_socket.AF_INET6)
_AF_UNIX = int(getattr(_socket, 'AF_UNIX', 1))
_SOCK_DGRAM = int(_socket.SOCK_DGRAM)


def _raw(name: str) -> Callable[[Any], Any]:
    """The C-level attribute of a socket: `socket.socket.family`/`type` are Python properties that build
    an enum member on every read (~0.5 µs each, on every connect)."""
    descriptor = _socket.socket.__dict__[name].__get__

    def read(sock: Any) -> Any:
        try:
            return descriptor(sock)
        except TypeError:  # not a socket object: whatever it says it is
            return getattr(sock, name, None)

    return read


_raw_family = _raw('family')
_raw_type = _raw('type')


def as_text(value: object) -> str | None:
    """A str, bytes or path-like argument as text (bytes decoded as os.fsdecode does); else None."""
    if isinstance(value, bytes):
        return value.decode('utf-8', 'surrogateescape')
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        return path.decode('utf-8', 'surrogateescape') if isinstance(path, bytes) else str(path)
    return value if isinstance(value, str) else None


def unix_path(address: object) -> str:
    """The text the kernel decides for a Unix socket address: an absolute path (relative ones resolved
    against the working directory), or `@name` for a Linux abstract name (NUL first byte), with bytes
    that are not printable ASCII written `\\xNN`."""
    raw = address.encode('utf-8', 'surrogateescape') if isinstance(address, str) else address
    if not isinstance(raw, (bytes, bytearray)):
        return ''
    if raw[:1] == b'\0':
        return '@' + ''.join(chr(b) if 0x20 <= b <= 0x7E and b != 0x5C else f'\\x{b:02x}' for b in raw[1:])
    text = bytes(raw).decode('utf-8', 'surrogateescape')
    if not text.startswith('/'):
        text = os.path.join(os.getcwd(), text)
    return text


def make_hook(governor: Governor, is_internal: Callable[[], bool]) -> Callable[[str, tuple[Any, ...]], None]:
    handlers = governor.handlers()
    get = handlers.get

    def bulkhead_audit_hook(event: str, args: tuple[Any, ...]) -> None:
        handler = get(event)
        if handler is None or is_internal():
            return
        _enter()
        try:
            handler(args)
        except (EgressDenied, NativeModuleDenied):
            raise
        except Exception as error:  # a bug in the shim: fail closed, and say so
            _report_failure(event, error)
            raise EgressDenied(event, 'this operation', 'shim-error', -1) from None
        finally:
            _leave()

    return bulkhead_audit_hook


# Re-entrancy: events raised while a handler runs (the shim reading its bundle, importing cryptography,
# building a record) are the shim's own.
import _thread  # noqa: E402

_local = _thread._local()


def enter() -> None:
    """Mark the shim's own work on this thread: audit events it raises are not judged."""
    _enter()


def leave() -> None:
    _leave()


def _enter() -> None:
    _local.depth = getattr(_local, 'depth', 0) + 1


def _leave() -> None:
    _local.depth -= 1


def in_handler() -> bool:
    return getattr(_local, 'depth', 0) > 0


_reported: set[str] = set()


def _report_failure(event: str, error: BaseException) -> None:
    if event in _reported:
        return
    _reported.add(event)
    try:  # noqa: SIM105  (contextlib.suppress would cost start-up time)
        sys.stderr.write(f'bulkhead: hook for {event} failed ({type(error).__name__}: {error}); denied\n')
    except Exception:
        pass  # stderr closed: nothing else to tell
