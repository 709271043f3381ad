"""Child interpreters must not escape. A Python child is governed only if it loads this shim: it must not
be started with -I, -S or -E (which skip PYTHONPATH or site), and its environment must carry the shim's
folder on PYTHONPATH and the same BULKHEAD_* configuration. A Popen environment given as a dict is
completed in place (as the Node shim completes a Node child's environment); anything else that would
start an ungoverned interpreter is denied."""

from __future__ import annotations

import os
import re

from ..kernel._typing import TYPE_CHECKING
from .audit import as_text

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping, Sequence
    from typing import Any

SHIM_PATH = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PYTHON_NAME = re.compile(r'^python(\d+(\.\d+)*)?[a-z]?(\.exe)?$', re.IGNORECASE)
#: Variables that widen what a process may do (configuration, exemptions): a child gets ours.
_CONTROLLED_PREFIXES = ('BULKHEAD_',)
_CONTROLLED = ('AWS_LAMBDA_RUNTIME_API', 'LAMBDA_RUNTIME_DIR')
# Options that take a value (attached or as the next argument).
_WITH_VALUE = frozenset('WX')


def is_python(executable: str, own: str) -> bool:
    if _PYTHON_NAME.match(os.path.basename(executable)):
        return True
    try:
        return os.path.realpath(executable) == own
    except (OSError, ValueError):
        return False


def isolating_flag(argv: Sequence[Any]) -> str | None:
    """The first of -I, -S, -E on an interpreter command line (before the script, -c or -m), or None."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if isinstance(arg, bytes):
            arg = arg.decode('utf-8', 'replace')
        if not isinstance(arg, str) or arg == '-' or not arg.startswith('-') or arg == '--':
            return None
        if arg.startswith('--'):
            i += 1
            continue
        letters = arg[1:]
        for j, letter in enumerate(letters):
            if letter in 'ISE':
                return f'-{letter}'
            if letter in 'cm':
                return None
            if letter in _WITH_VALUE:
                if j == len(letters) - 1:
                    i += 1  # the value is the next argument
                break
        i += 1
    return None


def controlled(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(_CONTROLLED_PREFIXES) or k in _CONTROLLED}


def env_problem(env: Mapping[Any, Any], ours: Mapping[str, str]) -> str | None:
    """Why an interpreter started with `env` would not enforce our policy, or None."""
    texts = {as_text(k): as_text(v) for k, v in env.items()}
    path = texts.get('PYTHONPATH') or ''
    if SHIM_PATH not in path.split(os.pathsep):
        return 'PYTHONPATH does not carry the Bulkhead shim'
    for name, value in ours.items():
        if texts.get(name) != value:
            return f'{name} differs from this process'
    for given in texts:
        controlled_name = given is not None and (
            given.startswith(_CONTROLLED_PREFIXES) or given in _CONTROLLED
        )
        if controlled_name and given not in ours:
            return f'{given} is set for the child only'
    return None


def complete_env(env: MutableMapping[Any, Any], ours: Mapping[str, str]) -> None:
    """Give a child's environment dict our PYTHONPATH entry and configuration (keys of the dict's kind)."""
    as_bytes = any(isinstance(k, bytes) for k in env)

    def key(name: str) -> Any:
        return name.encode() if as_bytes else name

    def value(text: str) -> Any:
        return text.encode() if as_bytes else text

    for name in list(env):
        text = as_text(name)
        if text is not None and (text.startswith(_CONTROLLED_PREFIXES) or text in _CONTROLLED):
            del env[name]
    for name, text in ours.items():
        env[key(name)] = value(text)
    current = as_text(env.get(key('PYTHONPATH'))) or ''
    entries = [e for e in current.split(os.pathsep) if e and e != SHIM_PATH]
    env[key('PYTHONPATH')] = value(os.pathsep.join([SHIM_PATH, *entries]))
