"""Configuration of the Python extension, read as the Node extension reads it (extensions/config.ts):
environment variables win over the layer's baked `config.json`; trusted keys never come over the bundle
channel. Raises ConfigError with a message safe to log (never a key or the token)."""

from __future__ import annotations

import json
import os

from ..client.bundle_client import parse_control_url
from ..kernel._typing import TYPE_CHECKING
from ..kernel.keys import load_trusted_keys

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..kernel.keys import TrustedKey

DEFAULT_FETCH_TIMEOUT_MS = 2_000
MAX_FETCH_TIMEOUT_MS = 8_000


class ConfigError(Exception):
    pass


class ExtensionConfig:
    __slots__ = (
        'attest',
        'control_url',
        'extension_name',
        'fail_mode',
        'fallback_envelope',
        'fetch_timeout',
        'state_dir',
        'token',
        'token_secret',
        'trusted_keys',
        'workload_text',
    )

    def __init__(
        self,
        *,
        control_url: str | None,
        token: str | None,
        trusted_keys: list[TrustedKey],
        fail_mode: str,
        fallback_envelope: str | None,
        fetch_timeout: float,
        state_dir: str,
        extension_name: str,
        workload_text: str | None,
        token_secret: str | None = None,
        attest: str | None = None,
    ) -> None:
        self.control_url = control_url
        self.token = token  # secret: never logged
        #: BULKHEAD_TOKEN_SECRET (checked ARN) when BULKHEAD_TOKEN is not set: the token is read from it.
        self.token_secret = token_secret
        #: BULKHEAD_ATTEST: aws, gcp, azure or None.
        self.attest = attest
        self.trusted_keys = trusted_keys
        self.fail_mode = fail_mode
        self.fallback_envelope = fallback_envelope
        self.fetch_timeout = fetch_timeout
        self.state_dir = state_dir
        self.extension_name = extension_name
        self.workload_text = workload_text


def _layer_config(file: str) -> dict[str, object]:
    try:
        with open(file, encoding='utf-8') as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f'{file}: cannot read ({type(error).__name__})') from None
    try:
        parsed = json.loads(text)
    except ValueError:
        raise ConfigError(f'{file}: not valid JSON') from None
    if not isinstance(parsed, dict):
        raise ConfigError(f'{file}: must hold a JSON object')
    return parsed


def _integer(value: object, name: str, fallback: int, maximum: int) -> int:
    if value is None or value == '':
        return fallback
    try:
        number = int(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number < 0 or number > maximum or (isinstance(value, str) and not value.isdigit()):
        raise ConfigError(f'{name} must be an integer between 0 and {maximum}')
    return number


def load_config(env: Mapping[str, str], layer_dir: str) -> ExtensionConfig:
    """`layer_dir`: the folder of the layer's `config.json` (`/opt/bulkhead` on Lambda)."""
    layer = _layer_config(os.path.join(layer_dir, 'config.json'))

    fail_mode = env.get('BULKHEAD_FAIL_MODE') or layer.get('failMode') or 'closed'
    if fail_mode not in ('closed', 'observe'):
        raise ConfigError(f'BULKHEAD_FAIL_MODE must be closed or observe, got {json.dumps(str(fail_mode))}')

    specs: list[str] = []
    if env.get('BULKHEAD_TRUSTED_KEYS'):
        specs.append(env['BULKHEAD_TRUSTED_KEYS'])
    elif isinstance(layer.get('trustedKeys'), list):
        specs += [key for key in layer['trustedKeys'] if isinstance(key, str)]  # type: ignore[attr-defined]
    trusted: list[TrustedKey] = []
    if specs:
        try:
            trusted = load_trusted_keys(specs)
        except ValueError as error:
            raise ConfigError(f'trusted keys: {error}') from None

    fallback: str | None = None
    fallback_name = layer.get('fallbackBundle')
    if isinstance(fallback_name, str) and fallback_name:
        file = fallback_name if os.path.isabs(fallback_name) else os.path.join(layer_dir, fallback_name)
        try:
            with open(file, encoding='utf-8') as handle:
                fallback = handle.read()
        except OSError as error:
            raise ConfigError(f'fallback bundle {file}: cannot read ({type(error).__name__})') from None

    control_url = env.get('BULKHEAD_CONTROL_URL') or layer.get('controlUrl') or None
    if control_url is not None:
        try:
            parse_control_url(str(control_url))
        except ValueError as error:
            raise ConfigError(f'BULKHEAD_CONTROL_URL: {error}') from None
    token = env.get('BULKHEAD_TOKEN') or None
    if token is not None and ('\r' in token or '\n' in token):
        raise ConfigError('BULKHEAD_TOKEN must be one line')
    token_secret: str | None = None
    if token is None and env.get('BULKHEAD_TOKEN_SECRET'):
        from ..aws.secret_token import TokenSecretError, parse_token_secret_arn

        try:
            token_secret = parse_token_secret_arn(env['BULKHEAD_TOKEN_SECRET']).arn
        except TokenSecretError as error:
            raise ConfigError(f'BULKHEAD_TOKEN_SECRET: {error}') from None
    attest: str | None = None
    if env.get('BULKHEAD_ATTEST'):
        from ..client.attest import attest_kind

        try:
            attest = attest_kind(env)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    fetch_ms = _integer(
        env.get('BULKHEAD_FETCH_TIMEOUT_MS', layer.get('fetchTimeoutMs')),
        'BULKHEAD_FETCH_TIMEOUT_MS',
        DEFAULT_FETCH_TIMEOUT_MS,
        MAX_FETCH_TIMEOUT_MS,
    )
    workload = env.get('BULKHEAD_WORKLOAD') or layer.get('workload') or None
    return ExtensionConfig(
        control_url=None if control_url is None else str(control_url),
        token=token,
        trusted_keys=trusted,
        fail_mode=str(fail_mode),
        fallback_envelope=fallback,
        fetch_timeout=max(1, fetch_ms) / 1000,
        state_dir=env.get('BULKHEAD_STATE_DIR') or '/tmp/bulkhead',
        extension_name=env.get('BULKHEAD_EXTENSION_NAME') or 'bulkhead',
        workload_text=None if workload is None else str(workload),
        token_secret=token_secret,
        attest=attest,
    )
