"""Workload identity from the platform's own environment, as runtime-shims/identity.ts detects it for
Node: platform facts (AWS, Azure, GCP) override BULKHEAD_WORKLOAD, which fills in what the platform does
not tell; tags come from BULKHEAD_TAGS. Never raises (a malformed BULKHEAD_WORKLOAD is reported by the
configuration check)."""

from __future__ import annotations

import sys

from .kernel._typing import TYPE_CHECKING
from .kernel.identity import parse_identity

if TYPE_CHECKING:
    from collections.abc import Mapping


def _runtime() -> str:
    return f'python{sys.version_info[0]}.{sys.version_info[1]}'


def _set_if(into: dict[str, str], key: str, value: str | None) -> None:
    if value:
        into[key] = value


def detect_identity(env: Mapping[str, str]) -> dict[str, str]:
    identity: dict[str, str] = {}
    text = env.get('BULKHEAD_WORKLOAD')
    if text:
        try:  # noqa: SIM105  (contextlib costs start-up time)
            identity.update(parse_identity(text))
        except ValueError:
            pass  # reported by the configuration check
    platform: dict[str, str] = {}
    if env.get('AWS_LAMBDA_FUNCTION_NAME'):
        platform['cloud'] = 'aws'
        _set_if(platform, 'region', env.get('AWS_REGION') or env.get('AWS_DEFAULT_REGION'))
        platform['name'] = env['AWS_LAMBDA_FUNCTION_NAME']
        execution = env.get('AWS_EXECUTION_ENV', '')
        platform['runtime'] = (
            execution[len('AWS_Lambda_') :] if execution.startswith('AWS_Lambda_') else _runtime()
        )
        _set_if(platform, 'version', env.get('AWS_LAMBDA_FUNCTION_VERSION'))
    elif env.get('WEBSITE_SITE_NAME'):
        platform['cloud'] = 'azure'
        _set_if(platform, 'region', env.get('REGION_NAME'))
        platform['name'] = env['WEBSITE_SITE_NAME']
        platform['runtime'] = _runtime()
        owner = env.get('WEBSITE_OWNER_NAME')
        if owner:
            _set_if(platform, 'account', owner.split('+')[0])
    elif env.get('K_SERVICE') or env.get('FUNCTION_TARGET'):
        platform['cloud'] = 'gcp'
        _set_if(
            platform,
            'account',
            env.get('GOOGLE_CLOUD_PROJECT') or env.get('GCLOUD_PROJECT') or env.get('GCP_PROJECT'),
        )
        _set_if(platform, 'region', env.get('FUNCTION_REGION') or env.get('GOOGLE_CLOUD_REGION'))
        _set_if(platform, 'name', env.get('K_SERVICE') or env.get('FUNCTION_TARGET'))
        _set_if(platform, 'revision', env.get('K_REVISION'))
        _set_if(platform, 'function', env.get('FUNCTION_TARGET'))
        platform['runtime'] = _runtime()
    identity.update(platform)
    identity.setdefault('cloud', 'other')
    tags = env.get('BULKHEAD_TAGS')
    if tags:
        try:
            for key, value in parse_identity(tags).items():
                identity[f'tag.{key}'] = value
        except ValueError:
            pass
    return identity
