"""Trusted keys: every spec form of BULKHEAD_TRUSTED_KEYS, key ids, and errors that never show a key."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bulkhead_shim.kernel.keys import TrustedKey, key_id_of, load_trusted_keys

TABLE = json.loads(
    (Path(__file__).parent / '../../../test/conformance/table.json').read_text(encoding='utf-8')
)
MAIN_PEM: str = TABLE['trustedKeys'][0]
OTHER_PEM: str = TABLE['trustedKeys'][1]


def _main_key_id() -> str:
    # What the TypeScript kernel's keyIdOf gives for trustedKeys[0] (a verified row says so).
    for row in TABLE['rows']:
        if row['op'] == 'verify' and row['expect'].get('ok') and row['input'].get('trustedKeys') is None:
            key_id: str = row['expect']['keyId']
            return key_id
    raise AssertionError('no verified row')


def _der(pem: str) -> bytes:
    key = serialization.load_pem_public_key(pem.encode())
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_key_id_is_the_typescript_kernels() -> None:
    (key,) = load_trusted_keys(MAIN_PEM)
    assert key.key_id == _main_key_id()
    assert key_id_of(MAIN_PEM) == key.key_id
    assert key_id_of(key.key) == key.key_id
    assert len(key.key_id) == 32


def test_every_spec_form(tmp_path: Path) -> None:
    file = tmp_path / 'bulkhead.pub'
    file.write_text(MAIN_PEM)
    der = _der(OTHER_PEM)
    forms = [
        str(file),
        MAIN_PEM,
        base64.b64encode(MAIN_PEM.encode()).decode(),
        base64.b64encode(der).decode(),
        base64.urlsafe_b64encode(der).decode().rstrip('='),
    ]
    ids = {k.key_id for form in forms for k in load_trusted_keys(form)}
    assert ids == {key_id_of(MAIN_PEM), key_id_of(OTHER_PEM)}
    # Comma-separated, duplicates folded, blanks skipped, a list of specs.
    both = load_trusted_keys([f' {base64.b64encode(der).decode()} , ,{file}', MAIN_PEM])
    assert [k.key_id for k in both] == [key_id_of(OTHER_PEM), key_id_of(MAIN_PEM)]
    assert all(isinstance(k, TrustedKey) for k in both)


def test_errors_name_the_entry_never_the_key(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ValueError, match='is a private key') as caught:
        load_trusted_keys(private_pem)
    assert private_pem.splitlines()[1] not in str(caught.value)

    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match='expected an Ed25519 key, got ec'):
        load_trusted_keys(ec_pem)

    missing = tmp_path / 'missing.pub'
    with pytest.raises(ValueError, match=r'trusted key .*missing\.pub: cannot read \(ENOENT\)'):
        load_trusted_keys(str(missing))

    garbage = 'A' * 60
    with pytest.raises(ValueError, match='inline key: not a public key') as caught:
        load_trusted_keys(garbage)
    assert garbage not in str(caught.value)

    with pytest.raises(ValueError, match='inline key: not a public key'):
        load_trusted_keys('-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----')

    with pytest.raises(ValueError, match=r'cannot read \(EISDIR\)'):
        load_trusted_keys(str(tmp_path))


def test_trusted_key_is_immutable() -> None:
    (key,) = load_trusted_keys(MAIN_PEM)
    with pytest.raises(AttributeError):
        key.key_id = 'x'
    assert 'PUBLIC' not in repr(key)


def test_fast_spki_reading_equals_the_library() -> None:
    for _ in range(20):
        public = Ed25519PrivateKey.generate().public_key()
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        expected = hashlib.sha256(der).hexdigest()[:32]
        for spec in (pem.decode(), pem.decode().replace('\n', '\r\n'), base64.b64encode(der).decode()):
            (key,) = load_trusted_keys(spec)
            assert key.key_id == expected
            assert key.key.public_bytes_raw() == public.public_bytes_raw()


def test_loading_a_key_skips_the_serialization_module() -> None:
    code = (
        'import sys; sys.path.insert(0, sys.argv[1]); '
        'from bulkhead_shim.kernel.keys import load_trusted_keys; load_trusted_keys(sys.argv[2]); '
        "print('cryptography.hazmat.primitives.serialization' in sys.modules)"
    )
    src = str(Path(__file__).parent.parent / 'src')
    out = subprocess.run(
        [sys.executable, '-I', '-c', code, src, MAIN_PEM], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == 'False'
