"""Trusted Ed25519 public keys and key ids (port of the verifier half of policy/keys.ts).

`cryptography` parses the keys; it is imported inside the functions that need it, because the shim
loads at every interpreter start-up. The common forms (an Ed25519 key as SPKI PEM or DER) are read
without `cryptography.hazmat.primitives.serialization`, whose import alone costs ~15 ms at start-up:
RFC 8410 fixes that SubjectPublicKeyInfo as a 12-byte header and the 32-byte key, which
`Ed25519PublicKey.from_public_bytes` takes. Everything else (other key types, other PEM layouts)
goes through `load_pem_public_key` / `load_der_public_key`, so results and errors stay the library's.
No key material is ever put in a message: errors name the entry (a file path, or "inline key"),
never its content.
"""

from __future__ import annotations

import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_PRIVATE_PEM = re.compile(r'-----BEGIN [A-Z ]*PRIVATE KEY-----')
_BASE64_TEXT = re.compile(r'[A-Za-z0-9+/_-]+={0,2}')
# An entry this shape is a key, not a path (unless a file of that name exists).
_BASE64_ENTRY = re.compile(r'[A-Za-z0-9+/_-]{40,}={0,2}')


class TrustedKey:
    """A public key a verifier trusts, with its key id. Immutable."""

    __slots__ = ('key', 'key_id')
    key_id: str
    key: Ed25519PublicKey

    def __init__(self, key_id: str, key: Ed25519PublicKey) -> None:
        object.__setattr__(self, 'key_id', key_id)
        object.__setattr__(self, 'key', key)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError('TrustedKey is immutable')

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrustedKey) and self.key_id == other.key_id

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f'TrustedKey(key_id={self.key_id!r})'


# RFC 8410 SubjectPublicKeyInfo of an Ed25519 key: SEQUENCE { SEQUENCE { OID 1.3.101.112 },
# BIT STRING (32 bytes) }, followed by the key itself.
_ED25519_SPKI_HEADER = bytes.fromhex('302a300506032b6570032100')
_PEM_BEGIN = '-----BEGIN PUBLIC KEY-----'
_PEM_END = '-----END PUBLIC KEY-----'


def key_id_of(public_key: Ed25519PublicKey | str | bytes) -> str:
    """Key id: hex SHA-256 of the SPKI DER of the public key, first 32 hex digits (128 bits).
    Takes a key object or its PEM text."""
    key = public_key
    if isinstance(key, (str, bytes)):
        key = _ed25519_from_pem(key.decode('utf-8') if isinstance(key, bytes) else key)
    return _sha256_hex(_ED25519_SPKI_HEADER + key.public_bytes_raw())[:32]


def _sha256_hex(data: bytes) -> str:
    """SHA-256 from CPython's own implementation module when it has one: `hashlib` loads OpenSSL's
    binding (~3 ms), paid at every process's first decision. Same digest either way."""
    for module in ('_sha2', '_sha256', 'hashlib'):  # 3.12+, 3.10-3.11, anything else
        try:
            sha256 = __import__(module).sha256
            break
        except (ImportError, AttributeError):
            continue
    return str(sha256(data).hexdigest())


def _ed25519_from_spki(der: bytes) -> Ed25519PublicKey | None:
    """The key of an Ed25519 SPKI DER in its one valid encoding, else None (ask the library)."""
    if len(der) != 44 or not der.startswith(_ED25519_SPKI_HEADER):
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(der[12:])


def _spki_of_pem(text: str) -> bytes | None:
    """The DER of a plain `PUBLIC KEY` PEM block (armour, base64 lines, armour), else None."""
    import base64
    import binascii

    lines = text.strip().splitlines()
    if len(lines) < 3 or lines[0].strip() != _PEM_BEGIN or lines[-1].strip() != _PEM_END:
        return None
    try:
        return base64.b64decode(''.join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return None


def _ed25519_from_pem(pem: str) -> Ed25519PublicKey:
    der = _spki_of_pem(pem)
    fast = _ed25519_from_spki(der) if der is not None else None
    if fast is not None:
        return fast
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(pem.encode('utf-8'))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f'expected an Ed25519 key, got {_kind_of(key)}')
    return key


def _kind_of(key: object) -> str:
    # What Node calls asymmetricKeyType, near enough for a message.
    name = type(key).__name__.lower()
    for kind in ('rsa', 'ec', 'ed448', 'x25519', 'x448', 'dsa', 'dh'):
        if name.startswith(kind) or name.startswith('_' + kind):
            return kind
    return 'unknown'


def _public_key_from(text: str, origin: str) -> Ed25519PublicKey:
    import base64  # lazy: see the module comment

    trimmed = text.strip()
    if _PRIVATE_PEM.search(trimmed) is not None:
        raise ValueError(f'{origin}: is a private key; trust the public key (bulkhead.pub) instead')
    key: object
    try:
        if trimmed.startswith('-----BEGIN'):
            der = _spki_of_pem(trimmed)
            key = _ed25519_from_spki(der) if der is not None else None
            if key is None:
                key = _library_key(trimmed.encode('utf-8'), pem=True)
        else:
            if _BASE64_TEXT.fullmatch(trimmed) is None:
                raise ValueError('not PEM or base64')
            # Node's base64 decoder takes both alphabets and missing padding; so does this.
            standard = trimmed.rstrip('=').replace('-', '+').replace('_', '/')
            if len(standard) % 4 == 1:
                # A lone trailing character holds no whole byte: Node drops it.
                standard = standard[:-1]
            data = base64.b64decode(standard + '=' * (-len(standard) % 4))
            if data.startswith(b'-----BEGIN'):
                der = _spki_of_pem(data.decode('utf-8', 'replace'))
                key = _ed25519_from_spki(der) if der is not None else None
                if key is None:
                    key = _library_key(data, pem=True)
            else:
                key = _ed25519_from_spki(data) or _library_key(data, pem=False)
    except Exception as error:
        # The library's message describes the structure, never the bytes.
        raise ValueError(f'{origin}: not a public key ({_reason(error)})') from None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f'{origin}: expected an Ed25519 key, got {_kind_of(key)}')
    return key


def _library_key(data: bytes, *, pem: bool) -> object:
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    return load_pem_public_key(data) if pem else load_der_public_key(data)


def _reason(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def load_trusted_keys(specs: Sequence[str] | str) -> list[TrustedKey]:
    """Trusted public keys from specs: a file path, inline PEM, or base64 (of the PEM or of the
    SPKI DER). A spec may hold several comma-separated entries (the `BULKHEAD_TRUSTED_KEYS` form).
    Raises ValueError naming the bad entry (never its content)."""
    specs_list = [specs] if isinstance(specs, str) else list(specs)
    keys: list[TrustedKey] = []
    seen: set[str] = set()
    for spec in specs_list:
        entries = [spec] if spec.strip().startswith('-----BEGIN') else spec.split(',')
        for raw in entries:
            entry = raw.strip()
            if entry == '':
                continue
            if entry.startswith('-----BEGIN'):
                key = _public_key_from(entry, 'inline key')
            elif _BASE64_ENTRY.fullmatch(entry) is None or os.path.exists(entry):
                try:
                    # Node reads the file as UTF-8 with replacement characters; so does this.
                    with open(entry, encoding='utf-8', errors='replace') as file:
                        text = file.read()
                except OSError as error:
                    code = _errno_name(error)
                    raise ValueError(f'trusted key {entry}: cannot read ({code})') from None
                key = _public_key_from(text, f'trusted key {entry}')
            else:
                key = _public_key_from(entry, 'inline key')
            key_id = key_id_of(key)
            if key_id in seen:
                continue
            seen.add(key_id)
            keys.append(TrustedKey(key_id, key))
    return keys


def _errno_name(error: OSError) -> str:
    import errno  # error path only

    if error.errno is not None and error.errno in errno.errorcode:
        return errno.errorcode[error.errno]
    return 'error'
