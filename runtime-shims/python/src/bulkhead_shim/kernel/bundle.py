"""Signed bundles: verification of a DSSE envelope (https://github.com/secure-systems-lab/dsse)
over the canonical JSON payload, Ed25519 through `cryptography` (port of the verifier half of
policy/bundle.ts and of policy/compiled.ts's structural check).

`verify_bundle` never raises: every problem is a `VerifyFailure` with the TypeScript kernel's
reason (`bad-signature unknown-key unsigned expired rollback wrong-scope malformed`), in the same
order of checks. JavaScript semantics are kept where Python's differ:

- JSON: `NaN`/`Infinity` literals are refused (JSON.parse has none), numbers too long for `int()`
  read as floats as JavaScript reads every number; `1.0` is an integer and `true` is not.
- Bytes are decoded as strict UTF-8 with one leading BOM dropped (TextDecoder's default).
- Times: the ECMAScript date-time string format that `Date.parse` reads (`2026-01-01T00:00:00.000Z`,
  date-only forms as UTC, `+hh:mm` offsets, `24:00`, days past the month's end rolling over as
  V8 does). V8 also accepts legacy forms (`Thu, 01 Jan 2026 00:00:00 GMT`, `2026-1-1`); those are
  refused here (`malformed`): the control API signs only `toISOString()` times.
- JSON nested deeper than Python's recursion limit is `malformed` here; V8 reads it. Only a
  signed payload could carry it.

`cryptography` is imported on the first verification (start-up time of every interpreter counts).
"""

from __future__ import annotations

import math
import re

from .identity import selector_matches

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .keys import TrustedKey

BUNDLE_PAYLOAD_TYPE = 'application/vnd.bulkhead.bundle+json'
BUNDLE_SCHEMA_VERSION = 1
COMPILED_FORMAT = 1
# Larger envelopes are refused before parsing (a 10k-rule bundle is ~2 MB).
MAX_ENVELOPE_BYTES = 32 * 1024 * 1024

VERIFY_FAILURE_REASONS = frozenset(
    ('bad-signature', 'unknown-key', 'unsigned', 'expired', 'rollback', 'wrong-scope', 'malformed')
)

_MAX_SAFE_INTEGER = 2**53 - 1
_PROTOCOLS = frozenset(('tcp', 'udp', 'http', 'https', 'dns'))
_MISSING: Any = object()


class VerifyOk:
    """A bundle that verified: its payload (`policy`, `revision`, `scope`, ...) and the signing key."""

    __slots__ = ('key_id', 'payload')
    payload: dict[str, Any]
    key_id: str
    ok = True

    def __init__(self, payload: dict[str, Any], key_id: str) -> None:
        object.__setattr__(self, 'payload', payload)
        object.__setattr__(self, 'key_id', key_id)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError('VerifyOk is immutable')

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyOk) and self.payload == other.payload and self.key_id == other.key_id

    __hash__ = None  # type: ignore[assignment]  # holds a dict

    def __repr__(self) -> str:
        return f'VerifyOk(revision={self.payload.get("revision")!r}, key_id={self.key_id!r})'


class VerifyFailure:
    """Why a bundle was refused: `reason` (one of VERIFY_FAILURE_REASONS) and a message."""

    __slots__ = ('message', 'reason')
    reason: str
    message: str
    ok = False

    def __init__(self, reason: str, message: str) -> None:
        object.__setattr__(self, 'reason', reason)
        object.__setattr__(self, 'message', message)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError('VerifyFailure is immutable')

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyFailure) and (self.reason, self.message) == (
            other.reason,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.reason, self.message))

    def __repr__(self) -> str:
        return f'VerifyFailure({self.reason!r}, {self.message!r})'


def pre_auth_encoding(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    type_bytes = payload_type.encode('utf-8')
    return b'DSSEv1 %d %s %d ' % (len(type_bytes), type_bytes, len(payload)) + payload


# ---------------------------------------------------------------------------------------------
# JSON with JavaScript's reading of it


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not JSON')


def _parse_int(text: str) -> int | float:
    # int() refuses more than 4300 digits (CVE-2020-10735 guard); JavaScript reads any number
    # as a double, so a long one becomes a float (inf when out of range), as it would there.
    return int(text) if len(text) <= 4000 else float(text)


def _json_loads(text: str) -> Any:
    import json  # bundles are read after start-up

    return json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int)


def _is_integer(value: object) -> bool:
    # Number.isInteger: a JSON number with no fraction (`1.0` is one), never a boolean.
    if type(value) is int:
        return True
    return type(value) is float and value.is_integer()


def _is_safe_integer(value: object) -> bool:
    return _is_integer(value) and abs(value) <= _MAX_SAFE_INTEGER  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def _json_equal(a: object, b: object) -> bool:
    """canonicalJson(a) === canonicalJson(b) for parsed JSON: equal numbers by double value,
    booleans never numbers. Raises ValueError where canonicalJson throws (non-finite number)."""
    if _is_number(a) or _is_number(b):
        if not (_is_number(a) and _is_number(b)):
            return False
        fa = _as_double(a)
        fb = _as_double(b)
        return fa == fb
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None or type(a) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return False


def _as_double(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f'canonicalJson: non-finite number {value}')
    return number


def _stringify(value: object) -> str:
    # JSON.stringify-like text for messages (`undefined` for a missing value).
    if value is _MISSING:
        return 'undefined'
    import json

    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# ---------------------------------------------------------------------------------------------
# Date.parse for the ECMAScript date-time string format

_ISO_TIME = re.compile(
    r'(?P<year>[+-][0-9]{6}|[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2}))?)?'
    r'(?:[Tt ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?)?)?'
    r'(?P<offset>[Zz]|[+-][0-9]{2}:?[0-9]{2})?'
)
_MAX_TIME_MS = 8_640_000_000_000_000


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm); a day past
    # the month's end simply runs on, as V8's does.
    y = year - (1 if month <= 2 else 0)
    era = y // 400  # floor division: years before 0 too
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 + (day - 1)


def parse_time(text: str) -> int | None:
    """`Date.parse(text)` in milliseconds for the ECMAScript date-time string format, None for
    NaN (and for the legacy forms V8 also reads: see the module comment)."""
    m = _ISO_TIME.fullmatch(text)
    if m is None:
        return None
    year_text = m.group('year')
    if year_text == '-000000':
        return None
    year = int(year_text)
    month = int(m.group('month') or '1')
    day = int(m.group('day') or '1')
    hour = int(m.group('hour') or '0')
    minute = int(m.group('minute') or '0')
    second = int(m.group('second') or '0')
    fraction = m.group('fraction')
    millis = int((fraction + '00')[:3]) if fraction else 0
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 24 and minute <= 59 and second <= 59):
        return None
    if hour == 24 and (minute or second or millis):
        return None
    days = _days_from_civil(year, month, day)
    local = days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis
    offset = m.group('offset')
    if offset is None and m.group('hour') is not None:
        # A date-time without an offset is local time (date-only forms are UTC).
        shift = _local_offset_ms(local)
        if shift is None:
            return None
        value = local - shift
    elif offset is None or offset in 'Zz':
        value = local
    else:
        digits = offset[1:].replace(':', '')
        off_hours = int(digits[:2])
        off_minutes = int(digits[2:])
        if off_hours > 23 or off_minutes > 59:
            return None
        shift = (off_hours * 60 + off_minutes) * 60_000
        value = local - shift if offset[0] == '+' else local + shift
    if abs(value) > _MAX_TIME_MS:
        return None
    return value


def _local_offset_ms(local_ms: int) -> int | None:
    import time

    try:
        seconds = local_ms // 1000
        guess = time.localtime(seconds)
        utc_guess = time.localtime(seconds - guess.tm_gmtoff)
        return utc_guess.tm_gmtoff * 1000
    except (OverflowError, OSError, ValueError):
        return None


def _is_iso_time(value: object) -> bool:
    return isinstance(value, str) and _utf16_length(value) <= 40 and parse_time(value) is not None


def _utf16_length(text: str) -> int:
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


# ---------------------------------------------------------------------------------------------
# Structural check of a compiled policy (policy/compiled.ts checkCompiledPolicy)


def _is_string_array(value: object, maximum: int = 1_000_000) -> bool:
    return isinstance(value, list) and len(value) <= maximum and all(isinstance(v, str) for v in value)


def _is_mode(value: object) -> bool:
    return value in ('enforce', 'observe') and isinstance(value, str)


def _is_selector(value: object) -> bool:
    return isinstance(value, dict) and all(_is_string_array(v) for v in value.values())


def _member(value: object, key: str) -> Any:
    # Property read on a parsed JSON value: a member of an object, nothing on anything else.
    return value.get(key, _MISSING) if isinstance(value, dict) else _MISSING


def check_compiled_policy(value: object) -> str | None:
    """Describe the first structural problem of a compiled policy, or None when it is well formed."""
    if not isinstance(value, (dict, list)):
        return 'policy: not an object'
    fmt = _member(value, 'format')
    if not (_is_number(fmt) and fmt == COMPILED_FORMAT):
        return f'policy.format: expected {COMPILED_FORMAT}'
    if not _is_mode(_member(value, 'mode')):
        return 'policy.mode: expected enforce or observe'
    if _member(value, 'fallback') not in ('deny', 'allow') or not isinstance(_member(value, 'fallback'), str):
        return 'policy.fallback: expected deny or allow'
    scope = _member(value, 'scope')
    if not isinstance(scope, dict) or not isinstance(scope.get('id'), str):
        return 'policy.scope: malformed'
    groups = scope.get('groups')
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get('name'), str) and _is_selector(g.get('match', _MISSING))
        for g in groups
    ):
        return 'policy.scope.groups: malformed'
    excludes = scope.get('excludes')
    if not isinstance(excludes, list) or not all(_is_selector(e) for e in excludes):
        return 'policy.scope.excludes: malformed'
    if not isinstance(_member(value, 'policies'), list):
        return 'policy.policies: expected an array'
    rules = _member(value, 'rules')
    if not isinstance(rules, list):
        return 'policy.rules: expected an array'
    for i, rule in enumerate(rules):
        problem = _check_rule(rule)
        if problem is not None:
            return f'policy.rules[{i}]: {problem}'
    exec_ = _member(value, 'exec')
    if (
        not isinstance(exec_, dict)
        or type(exec_.get('allowNode')) is not bool
        or not _check_glob_rules(exec_.get('allow', _MISSING))
    ):
        return 'policy.exec: malformed'
    addons = _member(value, 'addons')
    if not isinstance(addons, dict) or not _check_glob_rules(addons.get('allow', _MISSING)):
        return 'policy.addons: malformed'
    unix = _member(value, 'unix')
    if unix is not _MISSING:
        if not isinstance(unix, dict):
            return 'policy.unix: expected an object'
        unix_rules = unix.get('rules')
        if not isinstance(unix_rules, list):
            return 'policy.unix.rules: expected an array'
        for i, rule in enumerate(unix_rules):
            problem = _check_unix_rule(rule)
            if problem is not None:
                return f'policy.unix.rules[{i}]: {problem}'
    return None


def _check_unix_rule(value: object) -> str | None:
    if not isinstance(value, (dict, list)):
        return 'not an object'
    if not isinstance(_member(value, 'id'), str):
        return 'id: expected a string'
    action = _member(value, 'action')
    if not isinstance(action, str) or action not in ('allow', 'deny'):
        return 'action: expected allow or deny'
    if not _is_mode(_member(value, 'mode')):
        return 'mode: expected enforce or observe'
    glob = _member(value, 'glob')
    if not isinstance(glob, str) or glob == '':
        return 'glob: expected a non-empty string'
    problem = _check_unix_pattern(glob)
    return f'glob: {problem}' if problem is not None else None


def _check_unix_pattern(pattern: str) -> str | None:
    # policy/unix.ts checkUnixPattern: absolute and normal paths (`**` whole segments only), or `@`
    # and a non-empty abstract name. Verification only; matching is unix.py's.
    from .path import check_glob_stars
    from .unix import normalize_unix_path

    if '\0' in pattern:
        return 'must not contain a NUL byte (write an abstract socket name as "@name")'
    if pattern.startswith('@'):
        return 'the abstract socket name after "@" must not be empty' if pattern == '@' else None
    if not pattern.startswith('/'):
        return (
            'expected an absolute socket path ("/var/run/app.sock") or an abstract socket name ("@name"), '
            f'got {_stringify(pattern)}'
        )
    if '..' in pattern.split('/'):
        return f'".." segments are not allowed: write the path they lead to, got {_stringify(pattern)}'
    stars = check_glob_stars(pattern)
    if stars is not None:
        return stars
    if pattern == '/':
        return '"/" is a directory, not a socket ("/**" is every path)'
    normal = normalize_unix_path(pattern)
    if normal != pattern:
        return (
            'path is not normal ("//", "." segments or a trailing "/"): '
            f'{_stringify(pattern)} reads as {_stringify(normal)}'
        )
    return None


def _check_glob_rules(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(r, dict) and isinstance(r.get('id'), str) and isinstance(r.get('glob'), str) for r in value
    )


def _check_rule(value: object) -> str | None:
    if not isinstance(value, (dict, list)):
        return 'not an object'
    if not isinstance(_member(value, 'id'), str):
        return 'id: expected a string'
    action = _member(value, 'action')
    if not isinstance(action, str) or action not in ('allow', 'deny'):
        return 'action: expected allow or deny'
    if not _is_mode(_member(value, 'mode')):
        return 'mode: expected enforce or observe'
    for key in ('hosts', 'cidrs', 'methods', 'paths'):
        member = _member(value, key)
        if member is not _MISSING and not _is_string_array(member):
            return f'{key}: expected strings'
    protocols = _member(value, 'protocols')
    if protocols is not _MISSING and not (
        _is_string_array(protocols) and all(p in _PROTOCOLS for p in protocols)
    ):
        return 'protocols: unknown protocol'
    ports = _member(value, 'ports')
    if ports is not _MISSING and not (isinstance(ports, list) and all(_is_port_range(r) for r in ports)):
        return 'ports: expected [from, to] ranges within 0-65535'
    return None


def _is_port_range(value: object) -> bool:
    if not isinstance(value, list) or len(value) != 2:
        return False
    low, high = value
    return _is_integer(low) and _is_integer(high) and 0 <= low <= high <= 65535


# ---------------------------------------------------------------------------------------------
# Verification


def _decode_base64_strict(text: str) -> bytes | None:
    """Base64 decode that refuses anything but the one canonical spelling of the bytes
    (re-encode and compare, as the TS kernel does)."""
    import base64
    import binascii

    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode('ascii') == text else None


def _fail(reason: str, message: str) -> VerifyFailure:
    return VerifyFailure(reason, message)


def verify_bundle(
    data: str | bytes | bytearray | memoryview | Mapping[str, Any],
    *,
    trusted_keys: Sequence[TrustedKey],
    min_revision: int | None = None,
    workload: Mapping[str, str] | None = None,
    now: float | None = None,
) -> VerifyOk | VerifyFailure:
    """Verify an envelope (JSON text, bytes, or an already parsed envelope) against trusted keys.
    Never raises. Order: malformed envelope -> unsigned -> unknown-key / bad-signature ->
    malformed payload -> expired -> rollback -> wrong-scope. `now`: epoch seconds (default: the
    clock); `min_revision`: the revision held (older is rollback, equal is accepted); `workload`:
    when given (even empty), the bundle's scope must be satisfied by this identity."""
    try:
        return _verify(data, trusted_keys, min_revision, workload, now)
    except Exception as error:
        return _fail('malformed', f'bundle could not be read: {error}')


def _verify(
    data: object,
    trusted_keys: Sequence[TrustedKey],
    min_revision: int | None,
    workload: Mapping[str, str] | None,
    now: float | None,
) -> VerifyOk | VerifyFailure:
    envelope: object = data
    if not isinstance(data, (str, bytes, bytearray, memoryview, dict)) and hasattr(data, 'keys'):
        envelope = dict(data)  # type: ignore[call-overload]  # a Mapping: read it as an object
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        if isinstance(data, str):
            too_large = len(data) > MAX_ENVELOPE_BYTES or (
                2 * len(data) > MAX_ENVELOPE_BYTES and _utf16_length(data) > MAX_ENVELOPE_BYTES
            )
        else:
            too_large = len(bytes(data) if isinstance(data, memoryview) else data) > MAX_ENVELOPE_BYTES
        if too_large:
            return _fail('malformed', f'envelope larger than {MAX_ENVELOPE_BYTES} bytes')
        # TextDecoder('utf-8', {fatal: true}): strict, one leading BOM dropped. A decoding error
        # escapes to verify_bundle's `bundle could not be read`, as the TypeError does in TS.
        text = data if isinstance(data, str) else bytes(data).decode('utf-8-sig')
        try:
            envelope = _json_loads(text)
        except Exception:
            return _fail('malformed', 'envelope is not JSON')
    if not isinstance(envelope, dict):
        return _fail('malformed', 'envelope is not a JSON object')
    extra = [k for k in envelope if k not in ('payloadType', 'payload', 'signatures')]
    if extra:
        return _fail('malformed', f'envelope has unknown fields: {", ".join(str(k) for k in extra)}')
    payload_type = envelope.get('payloadType', _MISSING)
    if payload_type != BUNDLE_PAYLOAD_TYPE or not isinstance(payload_type, str):
        return _fail(
            'malformed', f'payloadType must be {BUNDLE_PAYLOAD_TYPE}, got {_stringify(payload_type)[:80]}'
        )
    payload = envelope.get('payload', _MISSING)
    if not isinstance(payload, str):
        return _fail('malformed', 'payload must be a base64 string')
    body = _decode_base64_strict(payload)
    if body is None:
        return _fail('malformed', 'payload is not canonical base64')
    signatures = envelope.get('signatures', _MISSING)
    if signatures is _MISSING or (isinstance(signatures, list) and len(signatures) == 0):
        return _fail('unsigned', 'envelope carries no signature; unsigned bundles are never accepted')
    if not isinstance(signatures, list) or len(signatures) > 16:
        return _fail('malformed', 'signatures must be a list (≤ 16)')
    if len(trusted_keys) == 0:
        return _fail('unknown-key', 'no trusted keys configured')

    pae = pre_auth_encoding(BUNDLE_PAYLOAD_TYPE, body)
    verified_key_id: str | None = None
    known_key_seen = False
    for signature in signatures:
        if not isinstance(signature, (dict, list)):
            return _fail('malformed', 'signature entry is not an object')
        keyid = _member(signature, 'keyid')
        sig = _member(signature, 'sig')
        if isinstance(signature, list) or any(k not in ('keyid', 'sig') for k in signature):
            return _fail('malformed', 'signature entry must be {keyid, sig} strings')
        if not isinstance(keyid, str) or not isinstance(sig, str):
            return _fail('malformed', 'signature entry must be {keyid, sig} strings')
        sig_bytes = _decode_base64_strict(sig)
        if sig_bytes is None:
            return _fail('malformed', 'signature is not canonical base64')
        candidates = [k for k in trusted_keys if k.key_id == keyid]
        if not candidates:
            continue
        known_key_seen = True
        for candidate in candidates:
            if len(sig_bytes) == 64 and _ed25519_verifies(candidate, sig_bytes, pae):
                verified_key_id = candidate.key_id
                break
        if verified_key_id is not None:
            break
    if verified_key_id is None:
        if not known_key_seen:
            ids = [
                s['keyid'][:64] for s in signatures if isinstance(s, dict) and isinstance(s.get('keyid'), str)
            ]
            return _fail('unknown-key', f'signed by {", ".join(ids) or "no key id"}, none of them trusted')
        return _fail('bad-signature', 'signature does not verify against the trusted key it names')

    try:
        parsed = _json_loads(body.decode('utf-8-sig'))
    except Exception:
        return _fail('malformed', 'signed payload is not JSON')
    problem = _check_payload(parsed)
    if problem is not None:
        return _fail('malformed', problem)
    bundle: dict[str, Any] = parsed
    key_id = bundle.get('keyId', _MISSING)
    if key_id is not _MISSING and key_id != verified_key_id:
        return _fail('malformed', 'payload keyId differs from the key that signed it')

    now_ms = _now_ms(now)
    expires_ms = parse_time(bundle['expiresAt'])
    revision = bundle['revision']
    if expires_ms is None or now_ms >= expires_ms:
        return _fail('expired', f'bundle revision {_number(revision)} expired at {bundle["expiresAt"]}')
    if min_revision is not None and revision < min_revision:
        return _fail(
            'rollback', f'bundle revision {_number(revision)} is older than the held revision {min_revision}'
        )
    if workload is not None:
        scope_problem = scope_mismatch(bundle['scope'], workload)
        if scope_problem is not None:
            return _fail('wrong-scope', scope_problem)
    return VerifyOk(bundle, verified_key_id)


def _now_ms(now: float | None) -> float:
    if now is None:
        import time

        return time.time() * 1000
    return now * 1000


def _number(value: object) -> str:
    # How a template literal prints a JSON number: `1`, not `1.0`.
    if type(value) is float and value.is_integer():
        return str(int(value))
    return str(value)


def _ed25519_verifies(key: TrustedKey, signature: bytes, message: bytes) -> bool:
    try:
        key.key.verify(signature, message)
    except Exception:
        # InvalidSignature, or a key object that cannot verify: not a valid signature either way.
        return False
    return True


def _check_payload(value: object) -> str | None:
    if not isinstance(value, dict):
        return 'payload is not an object'
    version = value.get('schemaVersion', _MISSING)
    if not (_is_number(version) and version == BUNDLE_SCHEMA_VERSION):
        return (
            f'payload schemaVersion {_stringify(version)} is not supported (expected {BUNDLE_SCHEMA_VERSION})'
        )
    revision = value.get('revision', _MISSING)
    if not _is_safe_integer(revision) or revision < 0:
        return 'payload revision is not a non-negative integer'
    if not _is_iso_time(value.get('issuedAt')) or not _is_iso_time(value.get('expiresAt')):
        return 'payload issuedAt/expiresAt are not times'
    key_id = value.get('keyId', _MISSING)
    if key_id is not _MISSING and not isinstance(key_id, str):
        return 'payload keyId is not a string'
    policy_problem = check_compiled_policy(value.get('policy', _MISSING))
    if policy_problem is not None:
        return policy_problem
    scope = value.get('scope', _MISSING)
    if scope is _MISSING:
        # canonicalJson(undefined) throws in TS: the bundle could not be read.
        raise ValueError('canonicalJson: cannot encode undefined')
    if not _json_equal(scope, value['policy']['scope']):
        return 'payload scope differs from the compiled policy scope'
    return None


def scope_mismatch(scope: Mapping[str, Any], identity: Mapping[str, str]) -> str | None:
    """Why `identity` does not hold a bundle of `scope`, or None when it does."""
    for group in scope['groups']:
        if not selector_matches(group['match'], identity):
            return (
                f'bundle scope {scope["id"]} is for SmartGroup {group["name"]}, '
                'which does not select this workload'
            )
    for selector in scope['excludes']:
        if selector_matches(selector, identity):
            return f'bundle scope {scope["id"]} was compiled without a SmartGroup that selects this workload'
    return None
