"""The Python clients against a control API that serves HTTPS itself (`control serve --tls-cert/--tls-key`)
with a private CA. They use Python's default SSL context, so the CA is trusted when `SSL_CERT_FILE` names a
bundle holding it (it replaces the system's bundle: give one with both); without it the certificate is
refused and the failure says so."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead_shim.client.bundle_client import BundleClient, FetchError, Updated
from bulkhead_shim.kernel.keys import load_trusted_keys
from bulkhead_shim.records import DeliveryError, HttpSink
from harness import Control, Fixture, policy_yaml

WORKLOAD = {'cloud': 'other', 'name': 'py-test', 'tag.app': 'demo'}

pytestmark = pytest.mark.skipif(shutil.which('openssl') is None, reason='needs openssl to make a test CA')


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(['openssl', *args], cwd=folder, check=True, capture_output=True)


def _private_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for 127.0.0.1: (ca, cert, key). With the key
    usages Python 3.13's strict verification (VERIFY_X509_STRICT) insists on."""
    ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes')
    ca_extensions = ('basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign')
    _openssl(
        folder, 'req', '-x509', *ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
        '-subj', '/CN=test CA', *(part for extension in ca_extensions for part in ('-addext', extension)),
    )  # fmt: skip
    _openssl(folder, 'req', *ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
    (folder / 'server.ext').write_text(
        'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n'
        'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n'
        'subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n'
    )
    _openssl(
        folder, 'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
        '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem',
    )  # fmt: skip
    (folder / 'server.key').chmod(0o600)
    return folder / 'ca.pem', folder / 'server.pem', folder / 'server.key'


@pytest.fixture
def tls_control(fixture: Fixture) -> Iterator[Control]:
    ca, cert, key = _private_ca(fixture.dir)
    running = Control(fixture.dir, tls=(cert, key), ca=ca)
    yield running
    running.close()


def test_bundle_client_trusts_the_ca_ssl_cert_file_names(
    tls_control: Control, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = tls_control
    assert control.url.startswith('https://127.0.0.1:')
    revision = control.apply(policy_yaml(allow=['{ to: { host: api.example.com } }']))
    client = BundleClient(
        control_url=control.url,
        token=control.workload_token,
        workload=WORKLOAD,
        trusted_keys=load_trusted_keys(control.public_key_pem()),
        timeout=5.0,
    )
    monkeypatch.delenv('SSL_CERT_FILE', raising=False)
    monkeypatch.delenv('SSL_CERT_DIR', raising=False)
    refused = client.fetch_once()
    assert isinstance(refused, FetchError) and refused.cause == 'network'
    assert 'CERTIFICATE_VERIFY_FAILED' in refused.message, refused.message
    assert control.workload_token not in refused.message

    assert control.ca is not None
    monkeypatch.setenv('SSL_CERT_FILE', str(control.ca))
    fetched = client.fetch_once()
    assert isinstance(fetched, Updated) and fetched.revision == revision


def test_deny_records_reach_it_with_the_same_trust(
    tls_control: Control, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = HttpSink(f'{tls_control.url}/v1/reports', tls_control.workload_token)
    monkeypatch.delenv('SSL_CERT_FILE', raising=False)
    monkeypatch.delenv('SSL_CERT_DIR', raising=False)
    with pytest.raises(DeliveryError, match='SSLCertVerificationError'):
        sink.deliver([], timeout=5.0)
    assert tls_control.ca is not None
    monkeypatch.setenv('SSL_CERT_FILE', str(tls_control.ca))
    sink.deliver([], timeout=5.0)
