"""`bulkhead_shim.azure` on the Azure Functions Python v2 programming model, with the real
`azure-functions` library from PyPI, a real control API (`bulkhead control serve`) and real sockets on
loopback.

Stand-in: the Functions host (.NET) and its Python worker's gRPC channel cannot run here.
`azure-local/worker_standin.py` does, in a child process, what the worker does with the app
(indexing the `FunctionApp` through `get_functions()`, `inspect.signature`, `typing.get_type_hints`,
`inspect.getfile` and `inspect.iscoroutinefunction` of each user function; per invocation a Context,
the trigger argument decoded by the library's `httpTrigger` converter, sync functions on a thread pool
and async ones awaited on one event loop, the result encoded by the `http` converter before the
response is sent), and stands for the host with an HTTP front end on 127.0.0.1. The app, the library,
the shim and everything the function does are real. The shim is installed late, by the app's import
of `bulkhead_shim.azure` (the package alone on the path, as a requirements.txt install puts it; no
PYTHONPATH preload), after the worker's own modules (`socket`, `http.client`, `asyncio`) are loaded.
"""

from __future__ import annotations

import base64
import contextvars
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bulkhead_shim.client.in_process import InProcessController, report_default, wrap_invocation
from harness import SRC, Control, hello_server, policy_yaml

HERE = Path(__file__).resolve().parent
APP = HERE / 'fixtures' / 'azure_app'
STANDIN = HERE.parent / 'azure-local' / 'worker_standin.py'
SITE = HERE / 'fixtures' / 'site-packages'
TARGET_IP = '127.0.0.9'


class Azure:
    """A control API with the policy applied, the allowed target on 127.0.0.9, and the app under the
    worker stand-in."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix='bulkhead-azure-'))
        self.control = Control(self.folder)
        self.revision = self.control.apply(policy_yaml(allow=[f'{{ to: {{ cidr: {TARGET_IP}/32 }} }}']))
        self.target = hello_server(TARGET_IP)
        self.target_url = f'http://{TARGET_IP}:{self.target.server_address[1]}/'
        keys = self.folder / 'control.pub'
        keys.write_text(self.control.public_key_pem())
        # The package alone (a symlink, as pip would put a copy): no sitecustomize on the path.
        packages = self.folder / 'packages'
        packages.mkdir()
        (packages / 'bulkhead_shim').symlink_to(SRC / 'bulkhead_shim')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(('BULKHEAD_', 'PYTHON'))}
        self.env.update(
            PYTHONPATH=os.pathsep.join([str(packages), str(SITE)]),
            PYTHONDONTWRITEBYTECODE='1',
            BULKHEAD_CONTROL_URL=self.control.url,
            BULKHEAD_TOKEN=self.control.workload_token,
            BULKHEAD_TRUSTED_KEYS=str(keys),
            BULKHEAD_TAGS='app=demo',
            WEBSITE_SITE_NAME='py-azure-app',
            REGION_NAME='westeurope',
            WEBSITE_OWNER_NAME='0000-sub+py-westeuropewebspace',
        )
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, str(STANDIN), '--app', str(APP)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ready = json.loads(read_line(self.process, 30))
        self.start_seconds = time.monotonic() - started
        self.url = f'http://127.0.0.1:{self.ready["port"]}/api'

    def get(self, path: str, timeout: float = 20) -> tuple[int, str, dict[str, str]]:
        try:
            with urllib.request.urlopen(f'{self.url}/{path}', timeout=timeout) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), dict(error.headers)

    def close(self) -> str:
        self.process.terminate()
        try:
            _, stderr = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        self.target.shutdown()
        self.control.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        return stderr


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if line.startswith('{'):
                return line
            if not line and process.poll() is not None:
                break
    process.kill()
    _, stderr = process.communicate()
    raise AssertionError(f'the stand-in did not get ready:\n{stderr}')


@pytest.fixture(scope='module')
def azure() -> Iterator[Azure]:
    running = Azure()
    yield running
    stderr = running.close()
    # The token never reaches a log line.
    assert running.env['BULKHEAD_TOKEN'] not in stderr


def test_governed_functions_are_indexed_as_the_originals(azure: Azure) -> None:
    functions = {f['name']: f for f in azure.ready['functions']}
    assert set(functions) == {'egress', 'egress_async', 'whoami', 'noop'}
    for described in functions.values():
        # The folder the worker gives `context.function_directory` is the app's, not the shim's.
        assert described['directory'] == str(APP)
        # Every governed function receives `context`, declared or not.
        assert described['requiresContext'] is True
    assert functions['egress_async']['isAsync'] is True
    assert functions['egress']['isAsync'] is False


def test_the_first_bundle_is_enforced_from_the_start(azure: Azure) -> None:
    status, body, _ = azure.get('whoami')
    assert status == 200
    who = json.loads(body)
    assert who['functionName'] == 'whoami' and who['functionDirectory'] == str(APP)
    state = who['status']
    assert state['revision'] == azure.revision and state['controlled'] is True
    assert state['longPolling'] is True
    assert 0 < state['firstFetchMs'] < 3000
    print(
        f'\nazure: first bundle fetched in {state["firstFetchMs"]} ms; ready in {azure.start_seconds:.2f} s'
    )


def test_allowed_works_and_a_denial_is_recorded_before_the_response(azure: Azure) -> None:
    status, body, _ = azure.get(f'egress?url={azure.target_url}')
    assert (status, body) == (200, 'fetched: hello')

    status, body, headers = azure.get('egress?to=tracker')
    denies = azure.control.denies()  # at once: the record must already be there
    assert status == 403
    assert f'Bulkhead denied connect to 127.0.0.7:9 (rule default-deny, revision {azure.revision})' in body
    invocation = f'egress/{headers["x-invocation-id"]}'
    (record,) = [d for d in denies if d.get('invocationId') == invocation]
    assert record['kind'] == 'connect' and record['destination']['ip'] == '127.0.0.7'
    assert record['origin']['package'] == 'analytics-lite@2.4.1'
    assert record['workload']['cloud'] == 'azure' and record['workload']['name'] == 'py-azure-app'
    assert record['workload']['tag.app'] == 'demo'
    assert record['revision'] == azure.revision
    assert record['seq'] >= 1 and record['sandboxId']


def test_concurrent_invocations_tag_their_own_records(azure: Azure) -> None:
    paths = ['egress?to=tracker&hold=0.4'] * 3 + ['egress_async?to=tracker&hold=0.4'] * 3
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        answers = list(pool.map(azure.get, paths))
    elapsed = time.monotonic() - started
    assert elapsed < 0.4 * len(paths) / 2, 'the invocations did not overlap'
    expected = set()
    for path, (status, _, headers) in zip(paths, answers, strict=True):
        assert status == 403
        name = path.split('?')[0]
        expected.add(f'{name}/{headers["x-invocation-id"]}')
        if name == 'egress_async':
            assert headers['x-seen-invocation'] == headers['x-invocation-id']
    tagged = {d['invocationId'] for d in azure.control.denies() if d.get('invocationId') in expected}
    assert tagged == expected


def test_a_new_revision_governs_the_next_invocation(azure: Azure) -> None:
    status, _, _ = azure.get(f'egress?url={azure.target_url}')
    assert status == 200
    applied = time.monotonic()
    revision = azure.control.apply(policy_yaml(allow=['{ to: { cidr: 127.0.0.10/32 } }']))
    took = None
    while time.monotonic() - applied < 5:
        status, body, _ = azure.get(f'egress?url={azure.target_url}')
        if status == 403:
            took = time.monotonic() - applied
            assert f'revision {revision}' in body
            break
        time.sleep(0.02)
    assert took is not None and took < 1.5, took
    print(f'\nazure: revision {revision} governed an invocation {took * 1000:.0f} ms after it was applied')


def test_added_latency_per_invocation_without_a_deny() -> None:
    folder = Path(tempfile.mkdtemp(prefix='bulkhead-azure-bench-'))
    control = Control(folder)
    try:
        control.apply(policy_yaml(allow=['{ to: { cidr: 127.0.0.9/32 } }']))
        keys = folder / 'control.pub'
        keys.write_text(control.public_key_pem())
        packages = folder / 'packages'
        packages.mkdir()
        (packages / 'bulkhead_shim').symlink_to(SRC / 'bulkhead_shim')
        env: dict[str, Any] = {
            k: v for k, v in os.environ.items() if not k.startswith(('BULKHEAD_', 'PYTHON'))
        }
        env.update(
            PYTHONPATH=os.pathsep.join([str(packages), str(SITE)]),
            BULKHEAD_CONTROL_URL=control.url,
            BULKHEAD_TOKEN=control.workload_token,
            BULKHEAD_TRUSTED_KEYS=str(keys),
            BULKHEAD_TAGS='app=demo',
            WEBSITE_SITE_NAME='py-azure-app',
        )
        done = subprocess.run(
            [sys.executable, str(STANDIN), '--app', str(APP), '--bench', '5000'],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
        assert lines, done.stderr
        timing = json.loads(lines[-1])
        added = timing['governedMicros'] - timing['plainMicros']
        print(f'\nazure: {added:.1f} µs added per invocation without a deny ({timing})')
        assert added < 200, timing
    finally:
        control.close()
        shutil.rmtree(folder, ignore_errors=True)


# ---- the in-process controller both wrappers share, driven directly ------------------------------
# With a recording shim binding (installing the real shim would govern pytest itself) and a real
# control API.


class RecordingShim:
    def __init__(self) -> None:
        self.revisions: list[int] = []
        self.current: contextvars.ContextVar[str | None] = contextvars.ContextVar('tag', default=None)
        self.installed = False

    def install(self) -> None:
        self.installed = True

    def reload(self, envelope_text: str) -> bool:
        payload = json.loads(base64.b64decode(json.loads(envelope_text)['payload']))
        self.revisions.append(int(payload['revision']))
        return True

    def pending(self) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def enter_invocation(self, tag: str | None) -> contextvars.Token[str | None]:
        return self.current.set(tag)

    def leave_invocation(self, token: contextvars.Token[str | None]) -> None:
        self.current.reset(token)

    def revision(self) -> int | None:
        return self.revisions[-1] if self.revisions else None


@pytest.fixture
def control() -> Iterator[tuple[Control, dict[str, str]]]:
    folder = Path(tempfile.mkdtemp(prefix='bulkhead-controller-'))
    running = Control(folder)
    keys = folder / 'control.pub'
    keys.write_text(running.public_key_pem())
    env = {
        'BULKHEAD_CONTROL_URL': running.url,
        'BULKHEAD_TOKEN': running.workload_token,
        'BULKHEAD_TRUSTED_KEYS': str(keys),
        'BULKHEAD_WORKLOAD': 'cloud=other,name=py-test,tag.app=demo',
    }
    yield running, env
    running.close()
    shutil.rmtree(folder, ignore_errors=True)


def make_controller(
    env: dict[str, str], **options: Any
) -> tuple[InProcessController, RecordingShim, list[str]]:
    shim = RecordingShim()
    lines: list[str] = []
    controller = InProcessController(env=env, shim=shim, log=lines.append, **options)
    return controller, shim, lines


def test_the_controller_refreshes_a_stale_bundle_before_an_invocation(
    control: tuple[Control, dict[str, str]],
) -> None:
    api, env = control
    first = api.apply(policy_yaml(allow=['{ to: { cidr: 127.0.0.9/32 } }']))
    controller, shim, _ = make_controller(env, long_poll=False, max_staleness=0)
    controller.start()
    assert shim.installed and shim.revisions == [first]
    second = api.apply(policy_yaml(allow=['{ to: { cidr: 127.0.0.10/32 } }']))
    controller.before_invocation()
    controller.after_invocation()
    assert shim.revisions == [first, second]
    assert controller.status()['longPolling'] is False
    # The report sink defaults to the control API only when BULKHEAD_REPORT names none.
    assert report_default(env) == f'{api.url}/v1/reports'
    assert report_default({**env, 'BULKHEAD_REPORT': '/tmp/spool'}) is None


def test_the_long_poll_runs_while_invoked_and_stops_when_idle(
    control: tuple[Control, dict[str, str]],
) -> None:
    api, env = control
    api.apply(policy_yaml(allow=['{ to: { cidr: 127.0.0.9/32 } }']))
    controller, shim, _ = make_controller(env, idle_long_poll=0.3)
    controller.before_invocation()
    client = controller.client()
    assert client is not None and client.long_polling
    controller.after_invocation()
    time.sleep(0.2)
    assert client.long_polling  # not yet idle long enough
    time.sleep(0.5)
    assert not client.long_polling
    controller.before_invocation()
    assert client.long_polling
    revision = api.apply(policy_yaml(allow=['{ to: { cidr: 127.0.0.10/32 } }']))
    deadline = time.monotonic() + 5
    while shim.revisions[-1] != revision and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shim.revisions[-1] == revision
    controller.after_invocation()
    controller.shutdown()
    assert not client.long_polling


def test_the_controller_never_raises_and_never_logs_the_token() -> None:
    with socket_closed() as port:
        env = {
            'BULKHEAD_CONTROL_URL': f'http://127.0.0.1:{port}',
            'BULKHEAD_TOKEN': 'bh_secret-token-value',
            'BULKHEAD_TRUSTED_KEYS': 'MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=',
            'BULKHEAD_WORKLOAD': 'cloud=other,name=py-test',
        }
        controller, shim, lines = make_controller(env, idle_long_poll=0.1)
        controller.before_invocation()
        controller.after_invocation()
        assert shim.revisions == [] and controller.status()['revision'] is None
        assert controller.status()['lastOutcome'] == 'error'
        assert any('bundle refresh failed (network)' in line for line in lines), lines
        controller.shutdown()
    unconfigured, _, lines = make_controller({'BULKHEAD_CONTROL_URL': env['BULKHEAD_CONTROL_URL']})
    unconfigured.before_invocation()
    unconfigured.after_invocation()
    assert unconfigured.client() is None
    assert any('BULKHEAD_TOKEN is not' in line for line in lines), lines
    assert not any('secret-token-value' in line for line in lines)


def test_invocation_tags_are_per_context_and_generators_are_refused() -> None:
    controller, shim, _ = make_controller({}, long_poll=False)
    seen: list[str | None] = []

    def handler(value: str) -> str:
        seen.append(shim.current.get())
        return value

    governed = wrap_invocation(handler, controller, lambda args, kwargs: (f'tag-{args[0]}', args, kwargs))
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(governed, ['a', 'b', 'c', 'd'])) == ['a', 'b', 'c', 'd']
    assert sorted(t or '' for t in seen) == ['tag-a', 'tag-b', 'tag-c', 'tag-d']
    assert shim.current.get() is None

    def stream() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match='generator function'):
        wrap_invocation(stream, controller, lambda args, kwargs: (None, args, kwargs))


class socket_closed:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port: int = probe.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        pass
