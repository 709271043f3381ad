"""`bulkhead_shim.gcp` on the real Python functions framework (`functions-framework --target …
--source …`, its gunicorn server on a loopback port, the function's file executed in gunicorn's master
and served by a forked worker), a real control API (`bulkhead control serve`) and real sockets on
loopback. The shim is loaded as the PYTHONPATH preload (`sitecustomize`): installed at interpreter
start-up, before the framework imports Flask, so its core exists before the wrapper names the control
API as the report sink. Nothing is a stand-in but the platform's front end (Cloud Run's proxy, which
would add `Function-Execution-Id`; the tests send it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import SRC, Control, hello_server, policy_yaml

HERE = Path(__file__).resolve().parent
APP = HERE / 'fixtures' / 'gcp_app'
SITE = HERE / 'fixtures' / 'site-packages'
TARGET_IP = '127.0.0.9'
# The framework's gunicorn server imports ctypes (request timeouts); without it, it falls back to Flask's
# development server. A policy for a functions-framework app allows it.
CTYPES = ['  addons: { allow: ["_ctypes*"] }']
FRAMEWORK = Path(sys.executable).parent / 'functions-framework'
IDENTITY = {
    'K_SERVICE': 'egress-svc',
    'K_REVISION': 'egress-svc-00007-abc',
    'GOOGLE_CLOUD_PROJECT': 'demo-project',
    'FUNCTION_REGION': 'europe-west1',
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port: int = probe.getsockname()[1]
        return port


class Function:
    """One `functions-framework` server for one target."""

    def __init__(self, folder: Path, control: Control, target: str, keys: Path) -> None:
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}/'
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(('BULKHEAD_', 'PYTHON', 'K_'))}
        self.env.update(
            IDENTITY,
            FUNCTION_TARGET=target,
            PYTHONPATH=os.pathsep.join([str(SRC), str(SITE)]),
            PYTHONDONTWRITEBYTECODE='1',
            BULKHEAD_CONTROL_URL=control.url,
            BULKHEAD_TOKEN=control.workload_token,
            BULKHEAD_TRUSTED_KEYS=str(keys),
            BULKHEAD_TAGS='app=demo',
        )
        self.log = (folder / f'{target}.log').open('w+')
        started = time.monotonic()
        self.process = subprocess.Popen(
            [
                *(str(FRAMEWORK), '--target', target, '--source', str(APP / 'main.py')),
                *('--host', '127.0.0.1', '--port', str(self.port)),
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f'functions-framework did not start:\n{self.output()}') from None
                time.sleep(0.05)
        self.start_seconds = time.monotonic() - started

    def request(
        self, query: str = '', *, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        request = urllib.request.Request(f'{self.url}{query}', data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        text = self.output()
        self.log.close()
        return text


class Gcp:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix='bulkhead-gcp-'))
        self.control = Control(self.folder)
        self.revision = self.control.apply(
            policy_yaml(allow=[f'{{ to: {{ cidr: {TARGET_IP}/32 }} }}'], extra=CTYPES)
        )
        self.target = hello_server(TARGET_IP)
        self.target_url = f'http://{TARGET_IP}:{self.target.server_address[1]}/'
        self.keys = self.folder / 'control.pub'
        self.keys.write_text(self.control.public_key_pem())
        self.functions: list[Function] = []

    def start(self, target: str) -> Function:
        function = Function(self.folder, self.control, target, self.keys)
        self.functions.append(function)
        return function

    def close(self) -> None:
        try:
            for function in self.functions:
                output = function.close()
                assert self.control.workload_token not in output
        finally:
            self.target.shutdown()
            self.control.close()
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope='module')
def gcp() -> Iterator[Gcp]:
    running = Gcp()
    yield running
    running.close()


@pytest.fixture(scope='module')
def egress(gcp: Gcp) -> Function:
    return gcp.start('egress')


def test_the_forked_worker_enforces_the_first_bundle(gcp: Gcp, egress: Function) -> None:
    status, body = egress.request('?to=status')
    assert status == 200, egress.output()
    answer = json.loads(body)
    # Served by gunicorn's worker, forked from the master that imported the function.
    assert answer['pid'] != egress.process.pid
    state = answer['status']
    assert state['revision'] == gcp.revision and state['controlled'] is True
    assert 0 < state['firstFetchMs'] < 3000
    print(f'\ngcp: first bundle in {state["firstFetchMs"]} ms; serving after {egress.start_seconds:.2f} s')


def test_allowed_works_and_a_denial_is_recorded_before_the_response(gcp: Gcp, egress: Function) -> None:
    assert egress.request(f'?url={gcp.target_url}') == (200, 'fetched: hello')

    status, body = egress.request('?to=tracker', headers={'Function-Execution-Id': 'exec-4711'})
    denies = gcp.control.denies()  # at once: Cloud Run would throttle the CPU after the response
    assert status == 403
    assert f'Bulkhead denied connect to 127.0.0.7:9 (rule default-deny, revision {gcp.revision})' in body
    (record,) = [d for d in denies if d.get('invocationId') == 'exec-4711']
    assert record['kind'] == 'connect' and record['destination']['ip'] == '127.0.0.7'
    assert record['origin']['package'] == 'analytics-lite@2.4.1'
    workload = record['workload']
    assert workload['cloud'] == 'gcp' and workload['name'] == 'egress-svc'
    assert workload['revision'] == 'egress-svc-00007-abc' and workload['function'] == 'egress'
    assert workload['account'] == 'demo-project' and workload['region'] == 'europe-west1'
    assert record['seq'] >= 1 and record['sandboxId']


def test_a_new_revision_governs_the_next_request(gcp: Gcp, egress: Function) -> None:
    assert egress.request(f'?url={gcp.target_url}')[0] == 200
    applied = time.monotonic()
    revision = gcp.control.apply(policy_yaml(allow=['{ to: { cidr: 127.0.0.10/32 } }'], extra=CTYPES))
    took = None
    while time.monotonic() - applied < 5:
        status, body = egress.request(f'?url={gcp.target_url}')
        if status == 403:
            took = time.monotonic() - applied
            assert f'revision {revision}' in body
            break
        time.sleep(0.02)
    assert took is not None and took < 1.5, (took, egress.output())
    print(f'\ngcp: revision {revision} governed a request {took * 1000:.0f} ms after it was applied')


def test_a_cloud_event_is_tagged_with_its_id_and_its_denial_delivered_first(gcp: Gcp) -> None:
    on_event = gcp.start('on_event')
    headers = {
        'ce-id': 'evt-42',
        'ce-source': '//pubsub.googleapis.com/projects/demo-project/topics/t',
        'ce-type': 'google.cloud.pubsub.topic.v1.messagePublished',
        'ce-specversion': '1.0',
        'content-type': 'application/json',
    }
    status, _ = on_event.request('', data=b'{"message": {}}', headers=headers)
    denies = gcp.control.denies()
    assert status == 200, on_event.output()
    (record,) = [d for d in denies if d.get('invocationId') == 'evt-42']
    assert record['origin']['package'] == 'analytics-lite@2.4.1'
    assert record['workload']['function'] == 'on_event'
