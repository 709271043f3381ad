"""The workload token kept in AWS Secrets Manager or in an SSM SecureString parameter instead of in the
function's environment (port of runtime-shims/node/aws/secret-token.ts): `bulkhead attach --token-secret
ARN` sets BULKHEAD_TOKEN_SECRET, and the Lambda extension fetches the token at init with the function's own
role credentials (SigV4, sigv4.py). Standard library only. Errors name the ARN and what AWS answered,
never the secret's value or the token."""

from __future__ import annotations

import json
import re
import time

from ..kernel._typing import TYPE_CHECKING
from .sigv4 import credentials_from_env, sign_request

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from typing import Any


class TokenSecretError(Exception):
    """Why the token could not be had. The message is safe to log: no secret value, no token."""


SHAPES = 'arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME or arn:aws:ssm:REGION:ACCOUNT:parameter/NAME'
MAX_ARN_LENGTH = 2048
#: A secret value is at most 64 KiB, a parameter's 8 KiB; the JSON around either stays well under this.
MAX_ANSWER_BYTES = 256 * 1024
MAX_TOKEN_LENGTH = 4096

_PARTITION = re.compile(r'aws(?:-cn|-us-gov|-iso|-iso-[a-z])?')
_REGION = re.compile(r'[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}')
_SECRET_NAME = re.compile(r'[A-Za-z0-9/_+=.@-]{1,512}')
_PARAMETER_NAME = re.compile(r'[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*')
_TOKEN = re.compile(r'[\x21-\x7e]+')

#: service → (title, endpoint variable, X-Amz-Target)
_SERVICES = {
    'secretsmanager': (
        'Secrets Manager',
        'AWS_ENDPOINT_URL_SECRETS_MANAGER',
        'secretsmanager.GetSecretValue',
    ),
    'ssm': ('SSM', 'AWS_ENDPOINT_URL_SSM', 'AmazonSSM.GetParameter'),
}


class TokenSecretArn:
    """A checked token secret ARN. `name`: the secret's name (with AWS's 6-character suffix when the ARN
    has it), or the parameter's path after `parameter/`."""

    __slots__ = ('account', 'arn', 'name', 'partition', 'region', 'service')

    def __init__(self, arn: str, service: str, partition: str, region: str, account: str, name: str) -> None:
        self.arn = arn
        self.service = service
        self.partition = partition
        self.region = region
        self.account = account
        self.name = name


def parse_token_secret_arn(text: str) -> TokenSecretArn:
    """Parses and checks a token secret ARN; the TokenSecretError says what is wrong with it."""
    if not isinstance(text, str) or text == '':
        raise TokenSecretError(f'the token secret ARN is empty ({SHAPES})')
    if len(text) > MAX_ARN_LENGTH:
        raise TokenSecretError(f'the token secret ARN is longer than {MAX_ARN_LENGTH} characters')
    if re.search(r'\s', text):
        raise TokenSecretError('the token secret ARN contains white space')
    parts = text.split(':')
    if parts[0] != 'arn' or len(parts) < 6:
        raise TokenSecretError(f"'{text}' is not an ARN ({SHAPES})")
    partition, service, region, account = parts[1:5]
    resource = ':'.join(parts[5:])
    if not _PARTITION.fullmatch(partition):
        raise TokenSecretError(f"'{text}': '{partition}' is not an AWS partition (aws, aws-cn, aws-us-gov)")
    if service not in _SERVICES:
        raise TokenSecretError(
            f"'{text}': the token must be a Secrets Manager secret or an SSM parameter, "
            f'not {service or "an empty service"} ({SHAPES})'
        )
    if region == '':
        raise TokenSecretError(f"'{text}' has no region: the secret is read in the region it lives in")
    if not _REGION.fullmatch(region):
        raise TokenSecretError(f"'{text}': '{region}' is not an AWS region")
    if not re.fullmatch(r'[0-9]{12}', account):
        raise TokenSecretError(f"'{text}': the account must be 12 digits")
    if service == 'secretsmanager':
        if not resource.startswith('secret:'):
            raise TokenSecretError(f"'{text}': a Secrets Manager ARN names a secret (…:secret:NAME)")
        name = resource[len('secret:') :]
        if not _SECRET_NAME.fullmatch(name):
            raise TokenSecretError(f"'{text}': a secret name is 1 to 512 of A-Z a-z 0-9 / _ + = . @ -")
    else:
        if not resource.startswith('parameter/'):
            raise TokenSecretError(f"'{text}': an SSM ARN names a parameter (…:parameter/NAME)")
        name = resource[len('parameter/') :]
        if not _PARAMETER_NAME.fullmatch(name) or len(name) > 1011:
            raise TokenSecretError(
                f"'{text}': a parameter name is segments of A-Z a-z 0-9 _ . - separated by /"
            )
    return TokenSecretArn(text, service, partition, region, account, name)


def token_secret_endpoint(parsed: TokenSecretArn, env: Mapping[str, str]) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of the service endpoint: the SDKs' per-service variable, else the
    regional endpoint of the ARN's region."""
    from urllib.parse import urlsplit

    variable = _SERVICES[parsed.service][1]
    suffix = 'amazonaws.com.cn' if parsed.partition == 'aws-cn' else 'amazonaws.com'
    text = env.get(variable) or f'https://{parsed.service}.{parsed.region}.{suffix}'
    try:
        parts = urlsplit(text)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise TokenSecretError(f'{variable} is not a URL') from None
    if (
        parts.scheme not in ('http', 'https')
        or not hostname
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
    ):
        raise TokenSecretError(f'{variable} must be a plain http(s) URL')
    return parts.scheme, hostname, port or (443 if parts.scheme == 'https' else 80), parts.path or '/'


def _clean(text: object, limit: int = 300) -> str:
    """Text AWS answered, made safe for one log line."""
    if not isinstance(text, str):
        return ''
    return ''.join(c if 0x20 <= ord(c) <= 0x7E else ' ' for c in text)[:limit]


def token_from_secret_value(value: object) -> str:
    """The token in a secret's value: the value itself, or the `token` field of a JSON object."""
    if not isinstance(value, str):
        raise TokenSecretError('the secret has no string value')
    token: object = value.strip()
    assert isinstance(token, str)
    if token.startswith('{'):
        try:
            parsed = json.loads(token)
        except ValueError:
            raise TokenSecretError('the secret value starts with { but is not JSON') from None
        token = parsed.get('token') if isinstance(parsed, dict) else None
        if not isinstance(token, str):
            raise TokenSecretError('the secret value is JSON without a string "token" field')
        token = token.strip()
    assert isinstance(token, str)
    if not _TOKEN.fullmatch(token) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenSecretError(
            f'the secret value is not a token (one word of at most {MAX_TOKEN_LENGTH} printable characters)'
        )
    return token


def fetch_token_from_secret(
    arn: str, *, env: Mapping[str, str], timeout: float, now: datetime | None = None
) -> str:
    """Fetches the workload token from the secret or parameter `arn` with the function's credentials
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; AWS_ENDPOINT_URL_SECRETS_MANAGER /
    AWS_ENDPOINT_URL_SSM), the whole exchange bounded by `timeout` seconds. Raises TokenSecretError (or
    sigv4.AwsCredentialsError) saying why."""
    parsed = parse_token_secret_arn(arn)
    title, _, target = _SERVICES[parsed.service]
    scheme, host, port, path = token_secret_endpoint(parsed, env)
    credentials = credentials_from_env(env)
    request: dict[str, Any] = (
        {'SecretId': parsed.arn}
        if parsed.service == 'secretsmanager'
        else {'Name': parsed.arn, 'WithDecryption': True}
    )
    body = json.dumps(request, separators=(',', ':'))
    shown = f'[{host}]' if ':' in host else host
    netloc = shown if port == (443 if scheme == 'https' else 80) else f'{shown}:{port}'
    signed = sign_request(
        method='POST',
        url=f'{scheme}://{netloc}{path}',
        headers={'content-type': 'application/x-amz-json-1.1', 'x-amz-target': target},
        body=body,
        credentials=credentials,
        region=parsed.region,
        service=parsed.service,
        date=now,
    )
    status, answer = _post(scheme, host, port, path, signed.headers, body.encode(), timeout, title, netloc)
    try:
        value = json.loads(answer)
    except ValueError:
        value = None
    found: dict[str, Any] | None = value if isinstance(value, dict) else None
    if status != 200:
        # `__type` may carry a namespace (`com.amazonaws.secretsmanager#ResourceNotFoundException`).
        kind = _clean(found.get('__type') if found else None, 100).split('#')[-1]
        message = _clean((found.get('message') or found.get('Message')) if found else None)
        raise TokenSecretError(
            f'{title} refused {parsed.arn} ({status}{f" {kind}" if kind else ""})'
            + (f': {message}' if message else '')
        )
    if found is None:
        raise TokenSecretError(f'{title} answered {parsed.arn} with something that is not JSON')
    if parsed.service == 'secretsmanager':
        secret = found.get('SecretString')
    else:
        parameter = found.get('Parameter')
        secret = parameter.get('Value') if isinstance(parameter, dict) else None
    try:
        return token_from_secret_value(secret)
    except TokenSecretError as error:
        raise TokenSecretError(f'{parsed.arn}: {error}') from None


def _post(
    scheme: str,
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    title: str,
    shown: str,
) -> tuple[int, bytes]:
    """One POST answered within `timeout` (connect, send and the whole answer), its body capped."""
    import http.client

    from ..client.bounded_read import AnswerTooLarge, read_bounded
    from ..client.bundle_client import _error_name

    if not timeout > 0:
        raise ValueError('timeout must be a positive number of seconds')
    deadline = time.monotonic() + timeout
    connection: http.client.HTTPConnection
    if scheme == 'https':
        connection = http.client.HTTPSConnection(host, port, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            # `host` is among the signed headers: http.client must not add its own.
            connection.putrequest('POST', path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.putheader('content-length', str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            try:
                data = read_bounded(response, connection.sock, deadline, MAX_ANSWER_BYTES)
            except AnswerTooLarge:
                too_large = f'{title} ({shown}) answered more than {MAX_ANSWER_BYTES} bytes'
                raise TokenSecretError(too_large) from None
            return response.status, data
        except TimeoutError:
            raise TokenSecretError(
                f'{title} ({shown}) did not answer within {round(timeout * 1000)} ms'
            ) from None
        except http.client.IncompleteRead:
            raise TokenSecretError(f'{title} ({shown}) broke off its answer') from None
        except (OSError, http.client.HTTPException) as error:
            raise TokenSecretError(f'{title} ({shown}) could not be reached ({_error_name(error)})') from None
    finally:
        connection.close()
