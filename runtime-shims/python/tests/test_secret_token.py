"""The workload token from Secrets Manager or SSM (bulkhead_shim.aws.secret_token), against a fake AWS
endpoint on 127.0.0.1 (http.server) that checks what AWS checks of the request: the JSON protocol headers
(`x-amz-target`, `content-type`), the SigV4 Authorization (recomputed from the request as received, with the
credentials it knows) and the session token. The real extension against the AWS stand-in (which checks
signatures with the AWS SDK's own signer) is test/lambda/python-attest.test.ts."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bulkhead_shim.aws.secret_token import (
    TokenSecretError,
    fetch_token_from_secret,
    parse_token_secret_arn,
    token_from_secret_value,
)
from bulkhead_shim.aws.sigv4 import AwsCredentials, AwsCredentialsError, sign_request

ACCOUNT = '111122223333'
SECRET = f'arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:bulkhead/charge-card-AbC123'
JSON_SECRET = f'arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:bulkhead/json-QwE456'
DENIED = f'arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:bulkhead/other-ZzZ999'
PARAMETER = f'arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/bulkhead/charge-card/token'
TOKEN = 'bhk_0123456789abcdef_workload-token-secret-value-000000000000'
ROLE = {
    'AWS_ACCESS_KEY_ID': 'ASIACHARGECARD000001',
    'AWS_SECRET_ACCESS_KEY': 'charge/card+role/secret0000000000000000',
    'AWS_SESSION_TOKEN': 'IQoJb3JpZ2luX2VjECHARGECARD//session==',
}


class FakeAws:
    """GetSecretValue and GetParameter with the signature checked; `mode` ok, hang, huge, html."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.mode = 'ok'
        self.secrets = {SECRET: TOKEN, JSON_SECRET: json.dumps({'token': TOKEN, 'note': 'x'}), DENIED: TOKEN}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get('Content-Length', '0')))
                if fake.mode == 'hang':
                    time.sleep(3)
                    return
                if fake.mode == 'huge':
                    return self._send(200, b'{"SecretString": "' + b'x' * (300 * 1024) + b'"}')
                if fake.mode == 'html':
                    return self._send(200, b'<html>proxy login</html>')
                target = self.headers.get('x-amz-target', '')
                body = json.loads(raw)
                fake.calls.append((target, self.headers.get('content-type', ''), body))
                problem = self._check_signature(raw)
                if problem:
                    return self._json(400, {'__type': 'IncompleteSignatureException', 'message': problem})
                if target == 'secretsmanager.GetSecretValue':
                    arn = body['SecretId']
                    if arn == DENIED:
                        return self._json(
                            400,
                            {
                                '__type': 'com.amazonaws.secretsmanager#AccessDeniedException',
                                'message': f'not authorized to perform GetSecretValue on {arn}',
                            },
                        )
                    if arn not in fake.secrets:
                        return self._json(
                            400, {'__type': 'ResourceNotFoundException', 'Message': 'not found'}
                        )
                    return self._json(200, {'ARN': arn, 'SecretString': fake.secrets[arn]})
                if target == 'AmazonSSM.GetParameter':
                    assert body == {'Name': PARAMETER, 'WithDecryption': True}
                    return self._json(
                        200, {'Parameter': {'ARN': PARAMETER, 'Type': 'SecureString', 'Value': TOKEN}}
                    )
                self._json(400, {'__type': 'UnknownOperationException'})

            def _check_signature(self, raw: bytes) -> str | None:
                authorization = self.headers.get('authorization', '')
                if self.headers.get('x-amz-security-token') != ROLE['AWS_SESSION_TOKEN']:
                    return 'missing or wrong session token'
                signed_names = authorization.split('SignedHeaders=')[1].split(',')[0].split(';')
                if 'host' not in signed_names or 'x-amz-target' not in signed_names:
                    return 'host and x-amz-target must be signed'
                headers = {name: self.headers.get(name, '') for name in signed_names}
                headers.pop('x-amz-date')
                headers.pop('x-amz-security-token')
                credential = authorization.split('Credential=')[1].split(',')[0].split('/')
                when = datetime.strptime(self.headers['x-amz-date'], '%Y%m%dT%H%M%SZ')
                again = sign_request(
                    method='POST',
                    url=f'http://{self.headers["host"]}{self.path}',
                    headers=headers,
                    body=raw,
                    credentials=AwsCredentials(
                        ROLE['AWS_ACCESS_KEY_ID'], ROLE['AWS_SECRET_ACCESS_KEY'], ROLE['AWS_SESSION_TOKEN']
                    ),
                    region=credential[2],
                    service=credential[3],
                    date=when,
                )
                if again.headers['authorization'] != authorization:
                    return 'The request signature we calculated does not match the signature you provided.'
                return None

            def _json(self, status: int, value: Any) -> None:
                self._send(status, json.dumps(value).encode())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header('Content-Type', 'application/x-amz-json-1.1')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **ROLE,
            'AWS_ENDPOINT_URL_SECRETS_MANAGER': self.url,
            'AWS_ENDPOINT_URL_SSM': self.url,
            **extra,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def aws() -> Iterator[FakeAws]:
    fake = FakeAws()
    yield fake
    fake.close()


def _no_secrets(message: str) -> None:
    for value in (TOKEN, ROLE['AWS_SECRET_ACCESS_KEY'], ROLE['AWS_SESSION_TOKEN']):
        assert value not in message


def test_reads_the_token_from_a_secret_a_json_secret_and_a_parameter(aws: FakeAws) -> None:
    for arn in (SECRET, JSON_SECRET, PARAMETER):
        assert fetch_token_from_secret(arn, env=aws.env(), timeout=2) == TOKEN
    assert [(target, kind) for target, kind, _ in aws.calls] == [
        ('secretsmanager.GetSecretValue', 'application/x-amz-json-1.1'),
        ('secretsmanager.GetSecretValue', 'application/x-amz-json-1.1'),
        ('AmazonSSM.GetParameter', 'application/x-amz-json-1.1'),
    ]
    assert aws.calls[0][2] == {'SecretId': SECRET}


def test_says_what_aws_refused_naming_the_arn_never_the_value(aws: FakeAws) -> None:
    with pytest.raises(TokenSecretError) as denied:
        fetch_token_from_secret(DENIED, env=aws.env(), timeout=2)
    assert str(denied.value) == (
        f'Secrets Manager refused {DENIED} (400 AccessDeniedException): '
        f'not authorized to perform GetSecretValue on {DENIED}'
    )
    missing = SECRET.replace('AbC123', 'NoSuch')
    with pytest.raises(TokenSecretError, match=r'\(400 ResourceNotFoundException\): not found$'):
        fetch_token_from_secret(missing, env=aws.env(), timeout=2)
    # A wrong secret key: the fake recomputes the signature and refuses it.
    with pytest.raises(TokenSecretError, match='IncompleteSignatureException') as bad:
        fetch_token_from_secret(SECRET, env=aws.env(AWS_SECRET_ACCESS_KEY='another/secret'), timeout=2)
    _no_secrets(str(bad.value))
    aws.secrets[SECRET] = 'two words'
    with pytest.raises(TokenSecretError) as malformed:
        fetch_token_from_secret(SECRET, env=aws.env(), timeout=2)
    assert str(malformed.value) == (
        f'{SECRET}: the secret value is not a token (one word of at most 4096 printable characters)'
    )
    aws.secrets[SECRET] = '{"token": 1}'
    with pytest.raises(TokenSecretError, match='JSON without a string "token" field'):
        fetch_token_from_secret(SECRET, env=aws.env(), timeout=2)


def test_is_bounded_in_time_and_size_and_names_an_unreachable_endpoint(aws: FakeAws) -> None:
    aws.mode = 'hang'
    began = time.monotonic()
    with pytest.raises(
        TokenSecretError, match=r'^Secrets Manager \(127\.0\.0\.1:\d+\) did not answer within 300 ms$'
    ):
        fetch_token_from_secret(SECRET, env=aws.env(), timeout=0.3)
    assert time.monotonic() - began < 1.5
    aws.mode = 'huge'
    with pytest.raises(TokenSecretError, match='answered more than 262144 bytes'):
        fetch_token_from_secret(SECRET, env=aws.env(), timeout=2)
    aws.mode = 'html'
    with pytest.raises(TokenSecretError, match='with something that is not JSON'):
        fetch_token_from_secret(SECRET, env=aws.env(), timeout=2)
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        TokenSecretError, match=r'^SSM \(127\.0\.0\.1:\d+\) could not be reached \(ECONNREFUSED\)$'
    ):
        fetch_token_from_secret(
            PARAMETER, env=aws.env(AWS_ENDPOINT_URL_SSM=f'http://127.0.0.1:{port}'), timeout=2
        )


def test_needs_credentials_and_a_plain_endpoint() -> None:
    with pytest.raises(AwsCredentialsError, match='AWS_SECRET_ACCESS_KEY is not set'):
        fetch_token_from_secret(SECRET, env={'AWS_ACCESS_KEY_ID': 'ASIA1'}, timeout=1)
    with pytest.raises(TokenSecretError, match=r'^AWS_ENDPOINT_URL_SSM must be a plain http\(s\) URL$'):
        fetch_token_from_secret(PARAMETER, env={**ROLE, 'AWS_ENDPOINT_URL_SSM': 'ftp://x'}, timeout=1)


@pytest.mark.parametrize(
    ('arn', 'message'),
    [
        ('', 'the token secret ARN is empty'),
        ('arn:aws:secretsmanager:eu-west-1:1:secret:x y', 'contains white space'),
        ('bhk_notanarn', 'is not an ARN'),
        ('arn:aws-moon:ssm:eu-west-1:111122223333:parameter/x', "'aws-moon' is not an AWS partition"),
        ('arn:aws:s3:eu-west-1:111122223333:bucket/x', 'not s3'),
        ('arn:aws:ssm::111122223333:parameter/x', 'has no region'),
        ('arn:aws:ssm:Europe:111122223333:parameter/x', "'Europe' is not an AWS region"),
        ('arn:aws:ssm:eu-west-1:1111:parameter/x', 'the account must be 12 digits'),
        ('arn:aws:secretsmanager:eu-west-1:111122223333:parameter/x', 'names a secret'),
        ('arn:aws:ssm:eu-west-1:111122223333:secret:x', 'names a parameter'),
        ('arn:aws:ssm:eu-west-1:111122223333:parameter/a//b', 'a parameter name is segments'),
        ('arn:aws:secretsmanager:eu-west-1:111122223333:secret:a*b', 'a secret name is 1 to 512'),
    ],
)
def test_checks_the_arn_and_says_what_is_wrong(arn: str, message: str) -> None:
    with pytest.raises(TokenSecretError, match=message.replace('(', r'\(').replace('*', r'\*')):
        parse_token_secret_arn(arn)


def test_parses_a_good_arn_and_a_secret_value() -> None:
    parsed = parse_token_secret_arn(PARAMETER)
    assert (parsed.service, parsed.partition, parsed.region, parsed.account, parsed.name) == (
        'ssm',
        'aws',
        'eu-west-1',
        ACCOUNT,
        'bulkhead/charge-card/token',
    )
    assert parse_token_secret_arn(SECRET.replace(':aws:', ':aws-cn:')).partition == 'aws-cn'
    assert token_from_secret_value(f'  {TOKEN}\n') == TOKEN
    assert token_from_secret_value(json.dumps({'token': f' {TOKEN} ', 'other': 1})) == TOKEN
    with pytest.raises(TokenSecretError, match=r'starts with \{ but is not JSON'):
        token_from_secret_value('{token')
    with pytest.raises(TokenSecretError, match='no string value'):
        token_from_secret_value(None)
