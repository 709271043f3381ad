"""The AWS proof of identity (policy/attestation.ts AwsProof), port of
runtime-shims/node/client/attest-aws.ts: an `sts:GetCallerIdentity` request signed with the function's own
role credentials, handed to the control API instead of to STS. The control API sends it on to its STS
endpoint, and STS's answer names the caller (the way Vault's AWS IAM auth works). The proof holds a
signature and the session token, never the secret key. Made locally (no network); standard library only."""

from __future__ import annotations

import re

from ..aws.sigv4 import AwsCredentialsError, credentials_from_env, parse_url, sign_request
from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from typing import Any, Literal, TypedDict

    class AwsProofRequest(TypedDict):
        method: Literal['POST']
        url: str
        headers: dict[str, str]
        body: str

    class AwsProof(TypedDict):
        type: Literal['aws']
        request: AwsProofRequest


#: Where a proof is addressed when AWS_ENDPOINT_URL_STS is not set (and what the control API asks by default).
DEFAULT_STS_ENDPOINT = 'https://sts.amazonaws.com'
#: The global endpoint's signing region.
GLOBAL_STS_REGION = 'us-east-1'
STS_CONTENT_TYPE = 'application/x-www-form-urlencoded; charset=utf-8'
#: Header whose signed value names the control API a proof was made for (policy/attestation.ts).
AWS_SERVER_ID_HEADER = 'x-bulkhead-server-id'
#: The body of every AWS proof.
GET_CALLER_IDENTITY_BODY = 'Action=GetCallerIdentity&Version=2011-06-15'

_REGIONAL = re.compile(r'sts(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?')
_VPCE = re.compile(r'.*\.sts\.([a-z0-9-]+)\.vpce\.amazonaws\.com(?:\.cn)?')


def sts_target(env: Mapping[str, str]) -> tuple[str, str]:
    """(URL, signing region) of the STS endpoint a proof is signed for: AWS_ENDPOINT_URL_STS (the SDKs'
    variable) else the global endpoint; us-east-1 for the global endpoint, the host's region for a regional
    one (`sts.<region>.amazonaws.com`, FIPS and VPC endpoint names too), else AWS_REGION. The URL as Node
    serialises it. Raises AwsCredentialsError."""
    text = env.get('AWS_ENDPOINT_URL_STS') or DEFAULT_STS_ENDPOINT
    scheme = re.match(r'\s*([A-Za-z][A-Za-z0-9+.-]*):', text)
    if scheme is not None and scheme.group(1).lower() not in ('http', 'https'):
        raise AwsCredentialsError('AWS_ENDPOINT_URL_STS must be an http(s) URL')
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text.strip(' '))
        with_credentials = parts.username is not None or parts.password is not None
    except ValueError:
        raise AwsCredentialsError('AWS_ENDPOINT_URL_STS is not a URL') from None
    if with_credentials or parts.query or parts.fragment:
        raise AwsCredentialsError('AWS_ENDPOINT_URL_STS must not carry credentials, a query or a fragment')
    try:
        parsed = parse_url(text)
    except ValueError:
        raise AwsCredentialsError('AWS_ENDPOINT_URL_STS is not a URL') from None
    host = parsed.hostname
    regional = _REGIONAL.fullmatch(host) or _VPCE.fullmatch(host)
    if host == 'sts.amazonaws.com':
        region = GLOBAL_STS_REGION
    elif regional is not None:
        region = regional.group(1)
    else:
        region = env.get('AWS_REGION') or env.get('AWS_DEFAULT_REGION') or GLOBAL_STS_REGION
    return parsed.href, region


def aws_proof(*, audience: str, env: Mapping[str, str], now: datetime | None = None) -> AwsProof:
    """The proof: POST GET_CALLER_IDENTITY_BODY to the STS endpoint, with host, content-type, x-amz-date,
    x-amz-security-token and AWS_SERVER_ID_HEADER (= `audience`) all signed. Raises AwsCredentialsError
    naming what is missing or malformed (never a secret)."""
    if not isinstance(audience, str) or not re.fullmatch(r'[\x21-\x7e]{1,1024}', audience):
        raise AwsCredentialsError('the audience must be 1 to 1024 printable characters without spaces')
    # Only role sessions attest, and their credentials always have a session token.
    credentials = credentials_from_env(env, require_session_token=True)
    url, region = sts_target(env)
    signed = sign_request(
        method='POST',
        url=url,
        headers={'content-type': STS_CONTENT_TYPE, AWS_SERVER_ID_HEADER: audience},
        body=GET_CALLER_IDENTITY_BODY,
        credentials=credentials,
        region=region,
        service='sts',
        date=now,
    )
    request: Any = {'method': 'POST', 'url': url, 'headers': signed.headers, 'body': GET_CALLER_IDENTITY_BODY}
    return {'type': 'aws', 'request': request}
