"""A governed program for the integration tests: runs under the shim (PYTHONPATH=src), starts the
loopback servers it is told to, tries each attempt and prints one JSON line of outcomes. Outcomes:
`ok[:detail]`, `denied:<rule>` (Bulkhead refused it) or `error:<ExceptionName>` (it failed otherwise)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from typing import Any


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f'{self.command} {self.path} host={self.headers.get("Host")}'.encode()
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(host: str, port: int, tls: dict[str, str] | None = None) -> int:
    family = socket.AF_INET6 if ':' in host else socket.AF_INET

    class Server(http.server.ThreadingHTTPServer):
        address_family = family

    server = Server((host, port), _Handler)
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls['cert'], tls['key'])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return int(server.server_address[1])


def connect_proxy(host: str, port: int) -> int:
    """A forward proxy that answers CONNECT and relays bytes (in this process, so its own upstream
    connections are governed too: the policy must allow what it reaches)."""
    listener = socket.create_server((host, port))

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def handle(client: socket.socket) -> None:
        head = b''
        while b'\r\n\r\n' not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        target = head.split(b' ')[1].decode()
        target_host, _, target_port = target.rpartition(':')
        upstream = socket.create_connection((target_host, int(target_port)), timeout=3)
        client.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=handle, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


def outcome(error: BaseException) -> str:
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, 'code', None) == 'ERR_BULKHEAD_DENIED':
            return f'denied:{seen.rule}'  # type: ignore[attr-defined]
        if 'Bulkhead denied' in str(seen):
            text = str(seen)
            return 'denied:' + text.split('(rule ', 1)[1].split(',', 1)[0] if '(rule ' in text else 'denied'
        seen = seen.__cause__ or seen.__context__
    return f'error:{type(error).__name__}'


def attempt(step: dict[str, Any], ports: dict[str, int]) -> str:
    op = step['op']
    port = ports.get(str(step.get('port')), step.get('port', 0))
    if op == 'tcp':
        with socket.create_connection((step['host'], port), timeout=3):
            return 'ok'
    if op == 'tls':
        import ssl

        context = ssl.create_default_context(cafile=step['ca'])
        with (
            socket.create_connection((step['host'], port), timeout=3) as raw,
            context.wrap_socket(raw, server_hostname=step['sni']) as tls,
        ):
            return f'ok:{tls.version()}'
    if op == 'udp':
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b'x', (step['host'], port))
            return 'ok'
    if op == 'dns':
        return 'ok:' + ','.join(sorted({str(a[4][0]) for a in socket.getaddrinfo(step['host'], 80)}))
    if op == 'http':
        url = step['url'].replace('{port}', str(port))
        lib = step.get('lib', 'urllib')
        if lib == 'urllib':
            import urllib.request

            with urllib.request.urlopen(url, timeout=3) as response:
                return 'ok:' + bytes(response.read()).decode()
        if lib == 'requests':
            import requests

            answer = requests.get(
                url,
                timeout=3,
                headers=step.get('headers'),
                verify=step.get('ca', True),
                proxies=step.get('proxies'),
            )
            return 'ok:' + str(answer.text)
        if lib == 'urllib3':
            import urllib3

            return 'ok:' + urllib3.PoolManager().request('GET', url, timeout=3).data.decode()
        raise ValueError(lib)
    if op == 's3':
        import botocore.session
        from botocore.config import Config

        session = botocore.session.get_session()
        client = session.create_client(
            's3',
            region_name='us-east-1',
            endpoint_url='http://s3.us-east-1.amazonaws.com',
            aws_access_key_id='AKIDEXAMPLE',
            aws_secret_access_key='example-secret',
            config=Config(s3={'addressing_style': step['style']}, retries={'max_attempts': 1}),
        )
        body = client.get_object(Bucket=step['bucket'], Key=step['key'])['Body'].read()
        return 'ok:' + bytes(body).decode()
    if op == 'exec':
        result = subprocess.run(step['argv'], capture_output=True, text=True, timeout=20, env=step.get('env'))
        return f'ok:{result.returncode}:{result.stdout.strip()}'
    if op == 'system':
        return f'ok:{os.system(step["command"])}'
    if op == 'unix':
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(step['path'].replace('@', '\0', 1) if step['path'].startswith('@') else step['path'])
            return 'ok'
    if op == 'import':
        __import__(step['module'])
        return 'ok'
    if op == 'ctypes':
        import ctypes

        ctypes.CDLL(step['lib'])
        return 'ok'
    raise ValueError(op)


def main() -> None:
    plan = json.loads(sys.stdin.read() or '{}')
    ports: dict[str, int] = {}
    for name, listen in plan.get('listen', {}).items():
        ports[name] = serve(listen['host'], listen.get('port', 0), listen.get('tls'))
    for name, listen in plan.get('proxies', {}).items():
        ports[name] = connect_proxy(listen['host'], listen['port'])
    listeners = []  # kept referenced: a collected socket closes
    for name, path in plan.get('unix', {}).items():
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path.replace('@', '\0', 1) if path.startswith('@') else path)
        server.listen(8)
        listeners.append(server)
        ports[name] = 0
    results = []
    for step in plan.get('attempts', []):
        try:
            results.append(attempt(step, ports))
        except BaseException as error:
            results.append(outcome(error))
    if plan.get('status'):
        from bulkhead_shim import boot

        print(json.dumps({'results': results, 'status': boot.status()}, default=str), flush=True)
    else:
        print(json.dumps({'results': results}), flush=True)


if __name__ == '__main__':
    main()
