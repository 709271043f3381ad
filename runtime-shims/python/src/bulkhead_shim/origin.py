"""Which application code started a denied operation: the nearest frame outside the standard library and
the shim, and the distribution (name@version, from importlib.metadata) that file belongs to. Runs on the
deny path only; the top-level-name → distribution map is built once, at the first deny."""

from __future__ import annotations

import os
import sys

from .kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

_SHIM_DIR = os.path.dirname(os.path.abspath(__file__))
_stdlib_dirs: tuple[str, ...] | None = None
_site_dirs: list[str] | None = None
_distributions: dict[str, list[str]] | None = None
_package_cache: dict[str, str | None] = {}


def _stdlib() -> tuple[str, ...]:
    global _stdlib_dirs
    if _stdlib_dirs is None:
        import sysconfig

        dirs = {sysconfig.get_path('stdlib'), sysconfig.get_path('platstdlib')}
        _stdlib_dirs = tuple(os.path.join(d, '') for d in dirs if d)
    return _stdlib_dirs


def _is_site_dir(entry: str) -> bool:
    base = os.path.basename(entry.rstrip(os.sep))
    return base in ('site-packages', 'dist-packages') or entry.startswith('/opt/python')


def _is_own_or_stdlib(file: str) -> bool:
    if file.startswith('<'):
        return True  # frozen modules, exec'd strings
    if file.startswith(_SHIM_DIR):
        return True
    if file.startswith(_stdlib()):
        # The standard library's folder also holds site-packages: that is application code.
        return not any(file.startswith(os.path.join(s, '')) for s in _sites())
    return False


def _sites() -> list[str]:
    global _site_dirs
    if _site_dirs is None:
        dirs = {os.path.abspath(p) for p in sys.path if p and _is_site_dir(p)}
        # A Lambda deployment package holds its dependencies beside the handler (`pip install -t .`): the
        # task root is searched like site-packages, and a file there is a package's only when a
        # dist-info claims its top-level name (the handler's own modules stay application code).
        task_root = os.environ.get('LAMBDA_TASK_ROOT')
        if task_root and os.path.isabs(task_root):
            dirs.add(os.path.abspath(task_root))
        _site_dirs = sorted(dirs, key=len, reverse=True)
    return _site_dirs


#: HTTP client and transport libraries: a record names the code that used them, not their own frames
#: (every request through requests would otherwise be attributed to urllib3).
TRANSPORTS = frozenset(
    {'urllib3', 'requests', 'httpx', 'httpcore', 'h11', 'h2', 'botocore', 'aiohttp', 'anyio', 'certifi'}
)


def _top_level(file: str) -> str | None:
    """The top-level import name an installed file belongs to, or None for application code."""
    path = os.path.abspath(file)
    for site in _sites():
        prefix = os.path.join(site, '')
        if path.startswith(prefix):
            top = path[len(prefix) :].split(os.sep, 1)[0]
            return top[:-3] if top.endswith('.py') else top
    return None


def _package_of(file: str) -> str | None:
    """`name@version` of the installed distribution holding `file`, or None for application code."""
    top = _top_level(file)
    if top is not None:
        if top in _package_cache:
            return _package_cache[top]
        found = _distribution_of(top)
        _package_cache[top] = found
        return found
    return None


def _distribution_of(top_level: str) -> str | None:
    global _distributions
    try:
        from importlib import metadata

        if _distributions is None:
            _distributions = dict(metadata.packages_distributions())
        names = _distributions.get(top_level)
        if not names:
            return None
        name = names[0]
        return f'{name}@{metadata.version(name)}'
    except Exception:
        return None


def capture_origin(skip: int = 1) -> dict[str, Any] | None:
    """`{package?, file, line}` of the first application frame above the caller, or None."""
    try:
        frame: FrameType | None = sys._getframe(skip)
    except ValueError:
        return None
    first: tuple[str, int] | None = None
    while frame is not None:
        file = frame.f_code.co_filename
        if not _is_own_or_stdlib(file):
            if first is None:
                first = (file, frame.f_lineno)
            if _top_level(file) not in TRANSPORTS:
                return _origin(file, frame.f_lineno)
        frame = frame.f_back
    return _origin(*first) if first is not None else None


def _origin(file: str, line: int) -> dict[str, Any]:
    origin: dict[str, Any] = {'file': file, 'line': line}
    package = _package_of(file)
    if package is not None:
        origin['package'] = package
    return origin
