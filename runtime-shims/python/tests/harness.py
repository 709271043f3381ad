"""Fixtures for the integration tests: real signed bundles built by the real CLI (`bulkhead bundle
build`, the kernel that compiles for every shim), and real CPython children that load the shim the way
a user does (PYTHONPATH first), optionally inside a private network + mount namespace with its own
/etc/hosts so that names resolve to loopback addresses."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / 'src'
ROOT = HERE.parents[2]
CLI = ROOT / 'dist' / 'cli.mjs'
PROBE = HERE / 'probe.py'
WORKLOAD = 'cloud=other,name=py-test,tag.app=demo'
NODE = shutil.which('node') or 'node'


def policy_yaml(
    allow: list[str] | None = None,
    deny: list[str] | None = None,
    mode: str = 'enforce',
    extra: list[str] | None = None,
) -> str:
    lines = [
        'apiVersion: bulkhead.dev/v1',
        'kind: SmartGroup',
        'metadata: { name: demo }',
        'spec:',
        '  match: { tags: { app: demo } }',
        '---',
        'apiVersion: bulkhead.dev/v1',
        'kind: EgressPolicy',
        'metadata: { name: py }',
        'spec:',
        '  appliesTo: [demo]',
        f'  mode: {mode}',
        '  owner: team@example.com',
    ]
    if allow:
        lines += ['  allow:', *[f'    - {rule}' for rule in allow]]
    if deny:
        lines += ['  deny:', *[f'    - {rule}' for rule in deny]]
    lines += extra or []
    return '\n'.join(lines) + '\n'


def cli(*args: str) -> str:
    result = subprocess.run([NODE, str(CLI), *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f'bulkhead {" ".join(args)} failed: {result.stderr}{result.stdout}')
    return result.stdout


class Fixture:
    """A key pair, a bundle file the shim reads, and the environment that points the shim at them."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix='bulkhead-py-'))
        cli('keys', 'generate', '--out', str(self.dir / 'keys'))
        self.public_key = self.dir / 'keys' / 'bulkhead.pub'
        self.private_key = self.dir / 'keys' / 'bulkhead.key'
        self.bundle_file = self.dir / 'bundle.json'
        self.spool = self.dir / 'spool.ndjson'

    def write(self, revision: int = 1, expires: str | None = None, **policy: Any) -> str:
        """Sign a revision of the policy for the test workload and put it in place atomically."""
        source = self.dir / f'policy-{revision}.yaml'
        source.write_text(policy_yaml(**policy))
        out = self.dir / f'bundle-{revision}.json'
        args = ['bundle', 'build', str(source), '--key', str(self.private_key), '--workload', WORKLOAD]
        args += ['--revision', str(revision), '--out', str(out)]
        if expires:
            args += ['--expires', expires]
        cli(*args)
        staged = self.dir / 'bundle.json.tmp'
        shutil.copyfile(out, staged)
        os.replace(staged, self.bundle_file)
        return out.read_text()

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(('BULKHEAD_', 'PYTHON')) and k not in ('AWS_LAMBDA_RUNTIME_API',)
        }
        env.update(
            PYTHONPATH=str(SRC),
            BULKHEAD_BUNDLE_FILE=str(self.bundle_file),
            BULKHEAD_TRUSTED_KEYS=str(self.public_key),
            BULKHEAD_WORKLOAD=WORKLOAD,
            BULKHEAD_REPORT=str(self.spool),
        )
        env.update(extra)
        return env

    def lines(self) -> list[dict[str, Any]]:
        if not self.spool.exists():
            return []
        return [json.loads(line) for line in self.spool.read_text().splitlines() if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        """The deny records in the spool (not its hit-count lines)."""
        return [line for line in self.lines() if 'hits' not in line or 'id' in line]

    def hits(self) -> list[dict[str, Any]]:
        """The spool's hit counts (`{"hits": HitCount}` lines)."""
        return [line['hits'] for line in self.lines() if 'hits' in line and 'id' not in line]

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Run:
    def __init__(self, code: int, results: list[str], stderr: str, status: dict[str, Any] | None) -> None:
        self.code = code
        self.results = results
        self.stderr = stderr
        self.status = status


def probe(
    env: dict[str, str],
    attempts: list[dict[str, Any]],
    *,
    listen: dict[str, dict[str, Any]] | None = None,
    unix: dict[str, str] | None = None,
    proxies: dict[str, dict[str, Any]] | None = None,
    hosts: str | None = None,
    status: bool = False,
    python: str = sys.executable,
    timeout: float = 60,
) -> Run:
    """Run the probe under the shim; with `hosts`, inside a private namespace whose /etc/hosts is it."""
    plan = json.dumps(
        {
            'attempts': attempts,
            'listen': listen or {},
            'unix': unix or {},
            'proxies': proxies or {},
            'status': status,
        }
    )
    command = [python, str(PROBE)]
    if hosts is not None:
        folder = Path(tempfile.mkdtemp(prefix='bulkhead-ns-'))
        hosts_file = folder / 'hosts'
        hosts_file.write_text(f'127.0.0.1 localhost\n::1 localhost\n{hosts}\n')
        script = '\n'.join(
            [
                'set -e',
                'ip link set lo up',
                f'mount --bind {shlex.quote(str(hosts_file))} /etc/hosts',
                'exec ' + ' '.join(shlex.quote(part) for part in command),
            ]
        )
        command = ['unshare', '--net', '--mount', 'sh', '-c', script]
    done = subprocess.run(command, input=plan, capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
    if not lines:
        raise AssertionError(f'probe printed nothing (exit {done.returncode}):\n{done.stderr}\n{done.stdout}')
    parsed = json.loads(lines[-1])
    return Run(done.returncode, parsed['results'], done.stderr, parsed.get('status'))


def namespaces_available() -> bool:
    if shutil.which('unshare') is None or shutil.which('ip') is None:
        return False
    check = subprocess.run(['unshare', '--net', '--mount', 'true'], capture_output=True)
    return check.returncode == 0


class Control:
    """A real control API (`bulkhead control serve`: the Node server, SQLite) on a loopback port, with
    an admin and a workload token. Its signing key is `keys/bulkhead.pub` under `folder`."""

    def __init__(self, folder: Path, tls: tuple[Path, Path] | None = None, ca: Path | None = None) -> None:
        """`tls`: (certificate, key) PEM files to serve HTTPS with; `ca`: what `admin` trusts for it."""
        self.folder = folder
        self.ca = ca
        tls_args = ('--tls-cert', str(tls[0]), '--tls-key', str(tls[1])) if tls else ()
        self.process = subprocess.Popen(
            [
                *(NODE, str(CLI), 'control', 'serve', '--db', str(folder / 'control.db')),
                *('--port', '0', '--host', '127.0.0.1', '--key', str(folder / 'signing.pem'), *tls_args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=folder,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        self.url = ''
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            match = re.search(r'(https?)://127\.0\.0\.1:(\d+)', line)
            if match:
                self.url = f'{match.group(1)}://127.0.0.1:{match.group(2)}'
                break
        if not self.url:
            self.process.kill()
            raise AssertionError('control serve did not start')
        self.workload_token = self.token('workload')
        self.admin_token = self.token('admin')

    def token(self, scope: str) -> str:
        done = subprocess.run(
            [
                NODE,
                str(CLI),
                'token',
                'create',
                '--scope',
                scope,
                '--json',
                '--db',
                str(self.folder / 'control.db'),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return str(json.loads(done.stdout)['token'])

    def public_key_pem(self) -> str:
        return str(self.admin('GET', '/v1/keys')['keys'][0]['publicKey'])

    def admin(self, method: str, path: str, body: str | None = None, content_type: str = '') -> Any:
        headers = {'authorization': f'Bearer {self.admin_token}'}
        if content_type:
            headers['content-type'] = content_type
        request = urllib.request.Request(
            f'{self.url}{path}', method=method, headers=headers, data=None if body is None else body.encode()
        )
        context = None
        if self.ca is not None:
            import ssl

            context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return json.loads(response.read())

    def apply(self, yaml_text: str) -> int:
        """PUT /v1/policy; the new revision."""
        return int(self.admin('PUT', '/v1/policy', yaml_text, 'application/yaml')['revision'])

    def denies(self) -> list[dict[str, Any]]:
        answer = self.admin('GET', '/v1/denies?limit=100')
        return list(answer.get('denies') or answer.get('records') or [])

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header('content-length', '5')
        self.end_headers()
        self.wfile.write(b'hello')

    def log_message(self, *args: object) -> None:
        pass


def hello_server(address: str) -> ThreadingHTTPServer:
    """A destination on `address` (any port) that answers every GET with `hello`; `shutdown()` stops it."""
    server = ThreadingHTTPServer((address, 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
