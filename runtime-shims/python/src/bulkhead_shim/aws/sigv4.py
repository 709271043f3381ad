"""AWS Signature Version 4, header form (`Authorization: AWS4-HMAC-SHA256 …`), port of
runtime-shims/node/aws/sigv4.ts with hashlib and hmac only: the Lambda extension for Python runtimes signs
the `sts:GetCallerIdentity` proof of identity (client/attest_aws.py) and the Secrets Manager / SSM calls
that fetch the workload token (secret_token.py) with it.

The algorithm (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html):

    canonical request = METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n
                        signed headers \\n hex(sha256(body))
    string to sign    = AWS4-HMAC-SHA256 \\n X-Amz-Date \\n DATE/REGION/SERVICE/aws4_request \\n
                        hex(sha256(canonical request))
    signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, DATE), REGION), SERVICE), "aws4_request")
    signature         = hex(HMAC(signing key, string to sign))

The URL is signed as the Node signer signs it, i.e. as a WHATWG URL parser serialises it (what Node
sends): the host lower-cased without the scheme's default port, dot segments of the path resolved, and
the characters a WHATWG parser percent-encodes in the path and the query encoded the same way. The
canonical URI is that of every service but S3: empty segments dropped, each segment encoded once more.
test/conformance/sigv4-vectors.json (generated with the Node signer) holds both to the same answers.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from ..kernel._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256'

_UNRESERVED = frozenset(b'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~')
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SIGNING_NAME = re.compile(r'[a-z0-9-]{1,64}')
_HEX = frozenset('0123456789abcdefABCDEF')
# Bytes a WHATWG URL parser percent-encodes (besides C0 controls, DEL and non-ASCII, refused or
# encoded below): the path percent-encode set, and the special-query percent-encode set.
_PATH_ENCODE = frozenset(' "#<>?`{}')
_QUERY_ENCODE = frozenset(' "#<>\'')
_DOUBLE_DOT = frozenset(('..', '.%2e', '%2e.', '%2e%2e'))
_SINGLE_DOT = frozenset(('.', '%2e'))


class AwsCredentials:
    """`secret_access_key` is used only as HMAC key material, never copied into a header, an error or a
    log. Temporary credentials (a role session) carry `session_token`, sent and signed as
    `x-amz-security-token`."""

    __slots__ = ('access_key_id', 'secret_access_key', 'session_token')

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str | None = None) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token or None

    def __repr__(self) -> str:
        # Never the secret or the session token, whatever prints this.
        return (
            f'AwsCredentials({self.access_key_id!r}, <secret>, {"<session>" if self.session_token else None})'
        )


class SignedRequest:
    """`headers`: every header to send, lower-case names (the caller's, `host` unless given, `x-amz-date`,
    `x-amz-security-token` with a session token, and `authorization`); all but `authorization` are signed.
    `url`: the URL as signed (serialised as Node would)."""

    __slots__ = ('canonical_request', 'headers', 'signature', 'signed_headers', 'string_to_sign', 'url')

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        signed_headers: str,
        canonical_request: str,
        string_to_sign: str,
        signature: str,
    ) -> None:
        self.url = url
        self.headers = headers
        self.signed_headers = signed_headers
        self.canonical_request = canonical_request
        self.string_to_sign = string_to_sign
        self.signature = signature


class AwsCredentialsError(ValueError):
    """The environment holds no usable AWS credentials. Its message names variables, never values."""


def amz_date(date: datetime) -> str:
    """`YYYYMMDDTHHMMSSZ`, the form of X-Amz-Date (a naive datetime is taken as UTC)."""
    from datetime import timezone

    if date.tzinfo is not None:
        date = date.astimezone(timezone.utc)
    return f'{date.year:04d}{date.month:02d}{date.day:02d}T{date.hour:02d}{date.minute:02d}{date.second:02d}Z'


def _utf8(text: str) -> bytes:
    """UTF-8 as Node encodes a string: a lone surrogate becomes U+FFFD."""
    try:
        return text.encode('utf-8')
    except UnicodeEncodeError:
        return ''.join('\ufffd' if 0xD800 <= ord(c) <= 0xDFFF else c for c in text).encode('utf-8')


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(_utf8(data) if isinstance(data, str) else data).hexdigest()


def _hmac(key: bytes, data: str) -> bytes:
    return hmac.new(key, _utf8(data), hashlib.sha256).digest()


def derive_signing_key(secret_access_key: str, short_date: str, region: str, service: str) -> bytes:
    """The derived key of one day, region and service."""
    key = _hmac(_utf8(f'AWS4{secret_access_key}'), short_date)
    return _hmac(_hmac(_hmac(key, region), service), 'aws4_request')


def uri_encode(text: str) -> str:
    """RFC 3986 encoding as SigV4 wants it: every byte but A-Z a-z 0-9 - . _ ~ as %XX (upper case)."""
    return ''.join(chr(b) if b in _UNRESERVED else f'%{b:02X}' for b in _utf8(text))


def canonical_uri(pathname: str) -> str:
    """Canonical URI of a path as sent: normalised, each segment encoded again."""
    segments: list[str] = []
    for segment in pathname.split('/'):
        if segment in ('', '.'):
            continue
        if segment == '..':
            if segments:
                segments.pop()
        else:
            segments.append(segment)
    if not segments:
        return '/'
    trailing = '/' if pathname.endswith('/') else ''
    return '/' + '/'.join(uri_encode(segment) for segment in segments) + trailing


def _decode_component(text: str) -> str:
    """decodeURIComponent, leaving the text as it is when an escape is malformed or the bytes are not
    UTF-8 (`+` is a plus sign, not a space)."""
    if '%' not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == '%':
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not _HEX.issuperset(pair):
                return text
            out.append(int(pair, 16))
            i += 3
        else:
            out += _utf8(char)
            i += 1
    try:
        return out.decode('utf-8')
    except UnicodeDecodeError:
        return text


def canonical_query(search: str) -> str:
    """Canonical query of a query string as sent (with or without `?`): decoded, re-encoded, sorted."""
    text = search[1:] if search.startswith('?') else search
    if text == '':
        return ''
    pairs: list[tuple[str, str]] = []
    for part in text.split('&'):
        if part == '':
            continue
        name, cut, value = part.partition('=')
        pairs.append(
            (uri_encode(_decode_component(name)), uri_encode(_decode_component(value if cut else '')))
        )
    # Encoded text is ASCII: code-point order is byte order.
    pairs.sort()
    return '&'.join(f'{name}={value}' for name, value in pairs)


def canonical_header_value(value: str) -> str:
    """A header value as SigV4 signs it: runs of spaces and tabs made one space, the leading and trailing
    one dropped."""
    value = re.sub(r'[ \t]+', ' ', value)
    if value.startswith(' '):
        value = value[1:]
    if value.endswith(' '):
        value = value[:-1]
    return value


def _encode_set(text: str, encode: frozenset[str]) -> str:
    out: list[str] = []
    for char in text:
        if char in encode or ord(char) > 0x7E:
            out.append(''.join(f'%{b:02X}' for b in _utf8(char)))
        else:
            out.append(char)
    return ''.join(out)


def _resolve_dots(path: str) -> str:
    """A path's dot segments resolved as a WHATWG URL parser resolves them (`%2e` is a dot too)."""
    if not path:
        return '/'
    segments = path.split('/')[1:]
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lower = segment.lower()
        if lower in _DOUBLE_DOT:
            if out:
                out.pop()
            if last:
                out.append('')
        elif lower in _SINGLE_DOT:
            if last:
                out.append('')
        else:
            out.append(segment)
    return '/' + '/'.join(out)


class ParsedUrl:
    """An absolute http(s) URL as a WHATWG parser serialises it (ASCII hosts, no credentials)."""

    __slots__ = ('host', 'hostname', 'href', 'pathname', 'port', 'scheme', 'search')

    def __init__(self, scheme: str, hostname: str, port: int | None, pathname: str, search: str) -> None:
        self.scheme = scheme
        self.hostname = hostname
        self.port = port
        shown = f'[{hostname}]' if ':' in hostname else hostname
        self.host = shown if port is None else f'{shown}:{port}'
        self.pathname = pathname
        self.search = search
        self.href = f'{scheme}://{self.host}{pathname}{search}'


def parse_url(text: str) -> ParsedUrl:
    """Parses an absolute http(s) URL the way the Node signer sees it (`new URL(text)`): host lower-cased,
    default port dropped, dot segments resolved, the path's and the query's special characters
    percent-encoded; the fragment dropped. Raises ValueError (`sigv4: …`) for anything else: another
    scheme, credentials, a control character, a host that is not ASCII."""
    from urllib.parse import urlsplit

    text = text.strip(' ')
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise ValueError('sigv4: the URL holds a control character')
    match = re.match(r'([A-Za-z][A-Za-z0-9+.-]*):', text)
    if match is None:
        raise ValueError('sigv4: not an absolute URL')
    scheme = match.group(1).lower()
    if scheme not in ('http', 'https'):
        raise ValueError(f'sigv4: cannot sign a {scheme}: URL')
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError('sigv4: the URL has an invalid host or port') from None
    hostname = parts.hostname
    if not hostname or not hostname.isascii() or '\\' in text:
        raise ValueError('sigv4: the URL needs an ASCII host (and no backslash)')
    if parts.username is not None or parts.password is not None:
        raise ValueError('sigv4: the URL must not carry credentials')
    if port == (443 if scheme == 'https' else 80):
        port = None
    pathname = _resolve_dots(_encode_set(parts.path, _PATH_ENCODE))
    query = _encode_set(parts.query, _QUERY_ENCODE)
    return ParsedUrl(scheme, hostname.lower(), port, pathname, f'?{query}' if query else '')


def sign_request(
    *,
    method: str,
    url: str,
    credentials: AwsCredentials,
    region: str,
    service: str,
    headers: Mapping[str, str] | None = None,
    body: str | bytes = b'',
    date: datetime | None = None,
) -> SignedRequest:
    """Signs the request (Authorization header form); `date` defaults to now. Raises ValueError
    (`sigv4: …`) for a request no server could receive, never naming a secret."""
    from datetime import datetime, timezone

    parsed = parse_url(url)
    method = method.upper()
    if not re.fullmatch(r'[A-Z]+', method):
        raise ValueError('sigv4: invalid method')
    if not credentials.access_key_id or not credentials.secret_access_key:
        raise ValueError('sigv4: credentials need an access key id and a secret access key')
    for name, value in (('region', region), ('service', service)):
        if not _SIGNING_NAME.fullmatch(value):
            raise ValueError(f'sigv4: invalid {name}')

    long_date = amz_date(date if date is not None else datetime.now(timezone.utc))
    short_date = long_date[:8]
    signed: dict[str, str] = {}
    for name, value in (headers or {}).items():
        lower = name.lower()
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f'sigv4: invalid header name {name[:60]!r}')
        if lower == 'authorization':
            raise ValueError('sigv4: the request already has an authorization header')
        if lower in signed:
            raise ValueError(f'sigv4: header {lower} given twice')
        if any(char in value for char in '\r\n\0'):
            raise ValueError(f'sigv4: header {lower} holds a line break')
        signed[lower] = value
    signed.setdefault('host', parsed.host)
    signed['x-amz-date'] = long_date
    if credentials.session_token:
        signed['x-amz-security-token'] = credentials.session_token

    names = sorted(signed)
    signed_headers = ';'.join(names)
    canonical_headers = ''.join(f'{name}:{canonical_header_value(signed[name])}\n' for name in names)
    canonical_request = '\n'.join(
        [
            method,
            canonical_uri(parsed.pathname),
            canonical_query(parsed.search),
            canonical_headers,
            signed_headers,
            sha256_hex(body),
        ]
    )
    scope = f'{short_date}/{region}/{service}/aws4_request'
    string_to_sign = '\n'.join([SIGV4_ALGORITHM, long_date, scope, sha256_hex(canonical_request)])
    key = derive_signing_key(credentials.secret_access_key, short_date, region, service)
    signature = hmac.new(key, _utf8(string_to_sign), hashlib.sha256).hexdigest()
    signed['authorization'] = (
        f'{SIGV4_ALGORITHM} Credential={credentials.access_key_id}/{scope}, '
        f'SignedHeaders={signed_headers}, Signature={signature}'
    )
    return SignedRequest(parsed.href, signed, signed_headers, canonical_request, string_to_sign, signature)


def credentials_from_env(env: Mapping[str, str], *, require_session_token: bool = False) -> AwsCredentials:
    """The credentials Lambda gives a function and its extensions (its execution role's session):
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN. `require_session_token`: refuse long-term
    keys. Raises AwsCredentialsError naming what is missing or malformed, never a value."""
    missing = [
        name
        for name in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN')
        if (name != 'AWS_SESSION_TOKEN' or require_session_token) and not env.get(name)
    ]
    if missing:
        verb = 'is' if len(missing) == 1 else 'are'
        raise AwsCredentialsError(f'no AWS credentials: {", ".join(missing)} {verb} not set')
    access_key_id = env['AWS_ACCESS_KEY_ID']
    if not re.fullmatch(r'[A-Za-z0-9]{1,128}', access_key_id):
        raise AwsCredentialsError('AWS_ACCESS_KEY_ID is not an access key id (up to 128 letters and digits)')
    secret_access_key = env['AWS_SECRET_ACCESS_KEY']
    if any(char in secret_access_key for char in '\r\n\0'):
        raise AwsCredentialsError('AWS_SECRET_ACCESS_KEY must be one line')
    session_token = env.get('AWS_SESSION_TOKEN') or None
    if session_token is not None and not re.fullmatch(r'[\x21-\x7e]+', session_token):
        raise AwsCredentialsError('AWS_SESSION_TOKEN must be printable ASCII without spaces')
    return AwsCredentials(access_key_id, secret_access_key, session_token)
