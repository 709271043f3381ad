"""What the Python shim costs, each figure measured with and without it side by side in one run.

    python runtime-shims/python/bench/run.py [--quick] [--out FILE]

Run it with the interpreter to measure (a virtualenv with `cryptography`, `requests` and `urllib3`);
`npm run bench -- python` runs it with `.venv/py3.11`. Needs `node` and a built `dist/cli.mjs`: the bundle
is a real one, signed by `bulkhead keys generate` / `bundle build`, as the shim's tests make it.

Every measured client is a fresh child interpreter: with the shim (PYTHONPATH = the shim's src folder,
a valid bundle, enforce) or without it (the same environment minus PYTHONPATH). The variants alternate
(ABBA) within each round, so machine noise falls on both alike; figures are medians over the rounds, and
ratios are with/without. The HTTP server is a separate, un-shimmed process (server.py).

1. start-up: `python -c pass`, and a start that makes one governed operation (a TCP connect to the
   loopback listener by name: the shim reads its configuration, reads and verifies the bundle and
   builds its decision engine there, not at start-up). Wall time, the child's CPU time and peak RSS
   (wait4). Then `-X importtime`: the modules the shim adds, at start-up and at the first operation.
2. per connection: the decision path in-process (ns per call, cache hits), and a TCP connect+close
   loop on loopback (µs per connection).
3. requests / urllib3 against the loopback server: keep-alive (one Session / PoolManager) and a new
   connection per request (`Connection: close`), µs per request and requests/s.

Results: a table on stdout and JSON (default bench-results/python-shim.json at the repository root).
BENCH_RUNS (start-ups per variant, default 40) and BENCH_ROUNDS (client rounds, default 7) override."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / 'src'
ROOT = HERE.parents[2]
CLI = ROOT / 'dist' / 'cli.mjs'
WORKLOAD_ID = 'cloud=other,name=py-bench,tag.app=bench'
PATH_GLOB = '/bench/**'
VARIANTS = ('without', 'with')

#: Operations per client run and kind (the loop runs N/5 more first, as warm-up).
KINDS: dict[str, int] = {
    'connect': 1000,
    'connect-name': 500,
    'requests-keepalive': 1000,
    'requests-newconn': 300,
    'urllib3-keepalive': 1500,
    'urllib3-newconn': 300,
}
MICRO_N = 50_000
IMPORTTIME_RUNS = 7
STARTUP_GOAL_MS = 15.0
HTTP_GOAL_RATIO = 1.05


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float('nan')


# ---- the signed bundle ---------------------------------------------------------------------------


def _cli(*args: str) -> None:
    node = shutil.which('node') or 'node'
    done = subprocess.run([node, str(CLI), *args], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f'bulkhead {" ".join(args)} failed: {done.stderr}{done.stdout}')


def choose_host() -> tuple[str, str]:
    """`localhost` when every answer the resolver gives for it is 127.0.0.1 (the request is then decided
    by a host rule, through the shim's binding of answers to names); else 127.0.0.1 and a CIDR rule."""
    try:
        answers = {a[4][0] for a in socket.getaddrinfo('localhost', 80, type=socket.SOCK_STREAM)}
    except OSError:
        answers = set()
    if answers == {'127.0.0.1'}:
        return 'localhost', 'host'
    return '127.0.0.1', 'cidr'


@dataclass
class Fixture:
    port: int
    connect_port: int
    host: str
    rule_kind: str
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix='bulkhead-pybench-')))

    def build(self) -> None:
        _cli('keys', 'generate', '--out', str(self.dir / 'keys'))
        to = f'host: {self.host}' if self.rule_kind == 'host' else f'cidr: {self.host}/32'
        policy = '\n'.join(
            [
                'apiVersion: bulkhead.dev/v1',
                'kind: SmartGroup',
                'metadata: { name: bench }',
                'spec:',
                '  match: { tags: { app: bench } }',
                '---',
                'apiVersion: bulkhead.dev/v1',
                'kind: EgressPolicy',
                'metadata: { name: py-bench }',
                'spec:',
                '  appliesTo: [bench]',
                '  mode: enforce',
                '  owner: bench@example.com',
                '  allow:',
                f"    - {{ to: {{ {to}, port: {self.port}, paths: ['{PATH_GLOB}'] }} }}",
                f'    - {{ to: {{ {to}, port: {self.connect_port}, protocol: tcp }} }}',
                # Rules that do not match the benchmark's traffic, so the engine is not a one-rule toy.
                '    - { to: { host: api.example.com, port: 443, methods: [GET, POST], paths: [/v1/**] } }',
                "    - { to: { host: '*.internal.example.com', port: [443, 8443] } }",
                '    - { to: { cidr: 10.0.0.0/8, port: 5432 } }',
                '  deny:',
                '    - { to: { host: evil.example.com } }',
                # The clients' own native modules (charset_normalizer under requests): denied, requests
                # would run another code path with the shim than without it.
                f'  addons: {{ allow: [{", ".join(json.dumps(d + "/**") for d in _site_dirs())}] }}',
                '',
            ]
        )
        (self.dir / 'policy.yaml').write_text(policy)
        _cli(
            'bundle', 'build', str(self.dir / 'policy.yaml'),
            '--key', str(self.dir / 'keys' / 'bulkhead.key'),
            '--workload', WORKLOAD_ID, '--revision', '1',
            '--out', str(self.dir / 'bundle.json'),
        )  # fmt: skip

    def env(self, variant: str) -> dict[str, str]:
        """The child's environment: the same for both variants but for PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(('BULKHEAD_', 'PYTHON'))}
        env.pop('AWS_LAMBDA_RUNTIME_API', None)
        env.update(
            BULKHEAD_BUNDLE_FILE=str(self.dir / 'bundle.json'),
            BULKHEAD_TRUSTED_KEYS=str(self.dir / 'keys' / 'bulkhead.pub'),
            BULKHEAD_WORKLOAD=WORKLOAD_ID,
            BULKHEAD_REPORT=str(self.dir / 'spool.ndjson'),
            BULKHEAD_FAIL_MODE='closed',
        )
        if variant == 'with':
            env['PYTHONPATH'] = str(SRC)
        return env

    def first_connect(self) -> str:
        return f'import socket; socket.create_connection(({self.host!r}, {self.connect_port})).close()'

    def denies(self) -> int:
        spool = self.dir / 'spool.ndjson'
        return len(spool.read_text().splitlines()) if spool.exists() else 0

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- processes --------------------------------------------------------------------------------------


def start_server() -> tuple[subprocess.Popen[str], int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('BULKHEAD_', 'PYTHON'))}
    server = subprocess.Popen(
        [sys.executable, str(HERE / 'server.py')],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    ports = line.split()
    if len(ports) != 2 or not all(p.isdigit() for p in ports):
        server.kill()
        raise RuntimeError(f'the loopback server did not start: {line!r}')
    return server, int(ports[0]), int(ports[1])


@dataclass
class Spawned:
    wall_ms: float
    cpu_ms: float
    status: int


def spawn_timed(argv: list[str], env: dict[str, str]) -> Spawned:
    """Run a child to its end; wall time seen from here, its CPU time (user + system) from wait4."""
    start = time.perf_counter_ns()
    child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter_ns() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return Spawned(wall / 1e6, (usage.ru_utime + usage.ru_stime) * 1e3, child.returncode)


#: Appended to a start-up script to read its peak RSS: wait4's ru_maxrss cannot be used, because a child
#: started with vfork/posix_spawn is charged the parent's RSS at exec (this parent's ~18 MB).
_PEAK_RSS = "\nimport sys; sys.stdout.write(open('/proc/self/status').read())"


def peak_rss_mb(script: str, env: dict[str, str]) -> float | None:
    done = subprocess.run([sys.executable, '-c', script + _PEAK_RSS], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    match = re.search(r'^VmHWM:\s+(\d+) kB', done.stdout, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def run_workload(fx: Fixture, variant: str, kind: str, n: int) -> dict[str, Any]:
    env = fx.env(variant)
    argv = [sys.executable, str(HERE / 'workload.py'), kind, str(n), str(fx.port), str(fx.connect_port)]
    argv.append(fx.host)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f'workload {kind} failed (exit {done.returncode}):\n{done.stderr}{done.stdout}')
    result: dict[str, Any] = json.loads(lines[-1])
    shimmed = 'PYTHONPATH' in env
    if result['shim'] != shimmed:
        raise RuntimeError(f'workload {kind}: shim loaded = {result["shim"]}, expected {shimmed}')
    if shimmed and (result.get('revision', -1) < 1 or result.get('queued', 0) != 0):
        raise RuntimeError(f'workload {kind}: the shim did not allow it under the bundle: {result}')
    return result


def interleaved(rounds: int) -> Iterator[tuple[int, tuple[str, str]]]:
    """ABBA: which variant goes first alternates round by round."""
    for i in range(rounds):
        yield i, (VARIANTS if i % 2 == 0 else VARIANTS[::-1])


# ---- 1. start-up ---------------------------------------------------------------------------------


def bench_startup(fx: Fixture, runs: int) -> dict[str, Any]:
    scripts = {
        'pass': 'pass',
        'first-connect': fx.first_connect(),
    }
    samples: dict[str, dict[str, list[Spawned]]] = {s: {v: [] for v in VARIANTS} for s in scripts}
    envs = {v: fx.env(v) for v in VARIANTS}
    for _ in range(3):  # warm-up: page cache, .pyc files
        for script in scripts.values():
            for variant in VARIANTS:
                spawn_timed([sys.executable, '-c', script], envs[variant])
    for _, order in interleaved(runs):
        for name, script in scripts.items():
            for variant in order:
                run = spawn_timed([sys.executable, '-c', script], envs[variant])
                if run.status != 0:
                    raise RuntimeError(f'{name} ({variant} the shim) exited {run.status}')
                samples[name][variant].append(run)
    rss: dict[str, dict[str, list[float]]] = {s: {v: [] for v in VARIANTS} for s in scripts}
    if os.path.exists('/proc/self/status'):
        for _, order in interleaved(min(runs, 10)):
            for name, script in scripts.items():
                for variant in order:
                    peak = peak_rss_mb(script, envs[variant])
                    if peak is not None:
                        rss[name][variant].append(peak)
    out: dict[str, Any] = {}
    for name, by_variant in samples.items():
        row: dict[str, Any] = {'script': scripts[name], 'runs': runs}
        for metric in ('wall_ms', 'cpu_ms', 'rss_mb'):
            if metric == 'rss_mb':
                without, with_ = rss[name]['without'], rss[name]['with']
                if not without or not with_:
                    continue
            else:
                without = [getattr(s, metric) for s in by_variant['without']]
                with_ = [getattr(s, metric) for s in by_variant['with']]
            row[metric] = {
                'without': median(without),
                'with': median(with_),
                'added': median(with_) - median(without),
                'ratio': median(with_) / median(without),
                'without_min_max': [min(without), max(without)],
                'with_min_max': [min(with_), max(with_)],
            }
        out[name] = row
    return out


# ---- 1b. where start-up time goes ------------------------------------------------------------------

_IMPORTTIME = re.compile(r'^import time:\s+(\d+)\s*\|\s*(\d+)\s*\| ( *)(\S+)\s*$')
Imported = dict[str, tuple[int, int, str]]


def _importtime(script: str, env: dict[str, str]) -> Imported:
    """module -> (self µs, cumulative µs, the module whose import imported it) for one run."""
    done = subprocess.run([sys.executable, '-X', 'importtime', '-c', script], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    rows: list[tuple[str, int, int, int]] = []
    for line in done.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            depth = len(match.group(3)) // 2
            rows.append((match.group(4), int(match.group(1)), int(match.group(2)), depth))
    modules: Imported = {}
    for i, (module, own, cumulative, depth) in enumerate(rows):
        # A module's importer is the next line one level up (-X importtime prints children first).
        parent = next((r[0] for r in rows[i + 1 :] if r[3] < depth), '-')
        modules.setdefault(module, (own, cumulative, parent))
    return modules


def bench_importtime(fx: Fixture, runs: int) -> dict[str, Any]:
    """Modules the shim's start-up imports (present with it, absent without), and those its first
    governed operation adds on top; medians of self and cumulative µs over `runs` runs each."""
    scripts = {
        'startup': 'pass',
        'first-connect': fx.first_connect(),
    }
    seen: dict[tuple[str, str], list[Imported]] = {}
    for _, order in interleaved(runs):
        for name, script in scripts.items():
            for variant in order:
                seen.setdefault((name, variant), []).append(_importtime(script, fx.env(variant)))

    def summary(runs_: list[Imported], modules: set[str]) -> list[dict[str, Any]]:
        rows = []
        for module in modules:
            values = [r[module] for r in runs_ if module in r]
            rows.append(
                {
                    'module': module,
                    'self_us': median([v[0] for v in values]),
                    'cumulative_us': median([v[1] for v in values]),
                    'imported_by': values[0][2],
                }
            )
        return sorted(rows, key=lambda r: -r['self_us'])

    def names(key: tuple[str, str]) -> set[str]:
        return set().union(*(set(r) for r in seen[key]))

    at_start = names(('startup', 'with')) - names(('startup', 'without'))
    at_first = names(('first-connect', 'with')) - names(('first-connect', 'without')) - at_start
    startup_rows = summary(seen[('startup', 'with')], at_start)
    first_rows = summary(seen[('first-connect', 'with')], at_first)
    # The interpreter looks for sitecustomize either way (a failed lookup is listed too): its cumulative
    # time with the shim is everything the shim does at start-up, imports and install() alike.
    site = {
        variant: median(
            [float(r['sitecustomize'][1]) for r in seen[('startup', variant)] if 'sitecustomize' in r]
        )
        for variant in VARIANTS
    }
    return {
        'runs': runs,
        'startup': {
            'self_us_total': sum(r['self_us'] for r in startup_rows),
            'sitecustomize_cumulative_us': site,
            'modules': startup_rows,
        },
        'first_connect': {'self_us_total': sum(r['self_us'] for r in first_rows), 'modules': first_rows},
    }


# ---- 2 and 3. clients --------------------------------------------------------------------------------


def bench_micro(fx: Fixture, rounds: int) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {}
    for _, order in interleaved(rounds):
        for variant in order:
            result = run_workload(fx, variant, 'micro', MICRO_N)
            for key, value in result.items():
                if key.endswith('_ns'):
                    samples.setdefault(key, {v: [] for v in VARIANTS})[variant].append(float(value))
    return {
        key: {variant: median(values) for variant, values in by_variant.items() if values}
        for key, by_variant in samples.items()
    }


def bench_clients(fx: Fixture, rounds: int, kinds: dict[str, int]) -> dict[str, Any]:
    wall: dict[str, dict[str, list[float]]] = {k: {v: [] for v in VARIANTS} for k in kinds}
    cpu: dict[str, dict[str, list[float]]] = {k: {v: [] for v in VARIANTS} for k in kinds}
    p50: dict[str, dict[str, list[float]]] = {k: {v: [] for v in VARIANTS} for k in kinds}
    for i, order in interleaved(rounds):
        for kind, n in kinds.items():
            for variant in order:
                result = run_workload(fx, variant, kind, n)
                wall[kind][variant].append(result['wall_ns'])
                cpu[kind][variant].append(result['cpu_ns'])
                p50[kind][variant].append(result['p50_ns'])
        sys.stderr.write(f'  client round {i + 1}/{rounds} done\n')
    out: dict[str, Any] = {}
    for kind, n in kinds.items():
        row: dict[str, Any] = {'n': n, 'rounds': rounds}
        for metric, table in (('wall_us', wall), ('cpu_us', cpu), ('p50_wall_us', p50)):
            without = [x / 1000 for x in table[kind]['without']]
            with_ = [x / 1000 for x in table[kind]['with']]
            pairs = [w / o for w, o in zip(with_, without, strict=True)]
            row[metric] = {
                'without': median(without),
                'with': median(with_),
                'ratio': median(with_) / median(without),
                'round_ratios_min_max': [min(pairs), max(pairs)],
            }
        row['requests_per_s'] = {
            'without': 1e6 / row['wall_us']['without'],
            'with': 1e6 / row['wall_us']['with'],
        }
        out[kind] = row
    return out


# ---- report -----------------------------------------------------------------------------------------


def print_report(results: dict[str, Any]) -> None:
    meta = results['meta']
    p = print
    p(
        f'Python shim benchmark: CPython {meta["python"]} ({meta["executable"]}), {meta["cpus"]} CPUs, '
        f'load average {meta["loadavg_before"]} -> {meta["loadavg_after"]}'
    )
    p(f'policy: {meta["rule"]}')
    changed = ' + uncommitted changes to the shim' if meta['shim_src_changed'] else ''
    p(f'shim measured: commit {meta["commit"] or "?"}{changed}')
    startup = results['startup']
    p(
        f'\n1. start-up, {startup["pass"]["runs"]} interleaved runs each, median (goal: <= '
        f'{STARTUP_GOAL_MS:.0f} ms added to `python -c pass`); "+ first connect": a start that connects\n'
        '   once to the listener by name, where the shim reads its configuration, verifies the bundle and\n'
        '   builds its engine (peak RSS: VmHWM, median of up to 10 more runs)'
    )
    p(f'  {"":26} {"without":>10} {"with shim":>10} {"added":>9} {"ratio":>7}')
    labels = {'pass': 'python -c pass', 'first-connect': '+ first connect'}
    names = {'wall_ms': 'wall', 'cpu_ms': 'CPU', 'rss_mb': 'peak RSS'}
    for name, row in startup.items():
        for metric, unit in (('wall_ms', 'ms'), ('cpu_ms', 'ms'), ('rss_mb', 'MB')):
            if metric not in row:
                continue
            cell = row[metric]
            label = f'{labels[name]:16} {names[metric]:>9}'
            p(
                f'  {label:26} {cell["without"]:7.1f} {unit} {cell["with"]:7.1f} {unit} '
                f'{cell["added"]:+6.1f} {unit} {cell["ratio"]:6.2f}x'
            )
    imports = results['importtime']
    for key, title in (('startup', 'start-up'), ('first_connect', 'first governed operation')):
        block = imports[key]
        p(
            f'\n  modules the shim imports at {title} (-X importtime, median of {imports["runs"]}, '
            f'self µs; total {block["self_us_total"] / 1000:.1f} ms):'
        )
        for row in block['modules'][:18]:
            p(
                f'    {row["self_us"]:7.0f} µs self {row["cumulative_us"]:8.0f} µs cumulative  '
                f'{row["module"]} (imported by {row["imported_by"]})'
            )
        site = block.get('sitecustomize_cumulative_us')
        if site:
            p(
                f'    sitecustomize, cumulative: {site["with"]:.0f} µs with the shim '
                f'({site["without"]:.0f} µs without: the interpreter looking for one)'
            )
        shim = [r for r in block['modules'] if r['module'].startswith('bulkhead_shim')]
        p(
            "    the shim's own modules, cumulative µs: "
            + ', '.join(
                f'{r["module"]} {r["cumulative_us"]:.0f}'
                for r in sorted(shim, key=lambda r: -r['cumulative_us'])
            )
        )
        if len(block['modules']) > 18:
            rest = sum(r['self_us'] for r in block['modules'][18:])
            p(f'    {rest:7.0f} µs self in {len(block["modules"]) - 18} more modules')
    micro = results['micro']
    p(f'\n2a. decision path in-process, median over rounds of the best of 5 x {MICRO_N:,} calls (ns/call)')
    micro_labels = {
        'empty_call_ns': 'an empty lambda call (the loop itself)',
        'audit_other_event_ns': 'sys.audit of an event the hook ignores',
        'audit_socket_connect_ns': 'sys.audit("socket.connect") (the whole hook)',
        'decider_decide_hit_ns': 'decider.decide(host, ip, port, tcp), hit',
        'decide_connect_ns': 'shim.decide_connect(ip, port, tcp), hit',
        'decide_request_ns': 'shim.decide_request(GET path), hit',
        'decider_decide_miss_ns': 'decider.decide_uncached (a miss)',
        'hit_count_ns': 'rule hit count: next(counts[rule]) (in decide_*)',
        'normalize_ip_ns': 'kernel.cidr.normalize_ip(ip)',
        'classify_host_ip_ns': 'kernel.host.classify_host(ip)',
        'host_key_name_ns': 'config.host_key(name)',
        'request_facts_ns': 'hooks.http.request_facts(conn) (the L7 facts)',
    }
    p(f'  {"":48} {"without":>8}  {"with":>8}')
    for key, label in micro_labels.items():
        if key not in micro:
            continue
        cell = micro[key]
        without = f'{cell["without"]:8.0f}' if 'without' in cell else ' ' * 8
        p(f'  {label:48} {without}  {cell.get("with", float("nan")):8.0f}')
    for key in ('first_op_import_core_ns', 'first_op_build_shim_ns'):
        what = 'importing the core' if 'import' in key else 'building it (config, bundle verify, engine)'
        p(f'  first governed operation, {what}: {micro[key]["with"] / 1e6:.1f} ms')
    clients = results['clients']
    some = next(iter(clients.values()))
    p(
        f'\n2b/3. clients on loopback, {some["rounds"]} interleaved rounds, µs per operation, median over '
        "rounds: without | with the shim | ratio (lowest-highest of the rounds' ratios)"
    )
    heads = ('wall, mean per op', 34), ('wall, median op', 22), ('client CPU per op', 34), ('requests/s', 14)
    p('  ' + ' ' * 19 + ''.join(f' {head:^{width}}' for head, width in heads))
    for kind, row in clients.items():
        w, m, c, r = row['wall_us'], row['p50_wall_us'], row['cpu_us'], row['requests_per_s']
        p(
            f'  {kind:19} {_cell(w)} {m["without"]:6.1f} {m["with"]:6.1f} {m["ratio"]:5.2f}x  '
            f'{_cell(c)} {r["without"]:6.0f} {r["with"]:6.0f}'
        )
    p('\ngoals')
    for goal in results['goals']:
        p(f'  {"met" if goal["met"] else "MISSED":7} {goal["what"]}: {goal["figure"]}')


def _cell(cell: dict[str, Any]) -> str:
    lo, hi = cell['round_ratios_min_max']
    return f'{cell["without"]:7.1f} {cell["with"]:7.1f} {cell["ratio"]:5.2f}x ({lo:.2f}-{hi:.2f}x)'


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    added = results['startup']['pass']['wall_ms']['added']
    out.append(
        {
            'what': f'start-up added <= {STARTUP_GOAL_MS:.0f} ms (python -c pass, wall)',
            'figure': f'{added:+.1f} ms',
            'met': added <= STARTUP_GOAL_MS,
        }
    )
    for kind, row in results['clients'].items():
        if not kind.startswith(('requests', 'urllib3')):
            continue
        for metric in ('wall_us', 'cpu_us'):
            ratio = row[metric]['ratio']
            out.append(
                {
                    'what': f'{kind} <= {HTTP_GOAL_RATIO}x ({metric.split("_")[0]} per request)',
                    'figure': f'{ratio:.3f}x',
                    'met': ratio <= HTTP_GOAL_RATIO,
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--quick', action='store_true', help='few runs, small loops (a smoke test)')
    parser.add_argument('--out', default=str(ROOT / 'bench-results' / 'python-shim.json'))
    args = parser.parse_args(argv)
    runs = int(os.environ.get('BENCH_RUNS') or (6 if args.quick else 40))
    rounds = int(os.environ.get('BENCH_ROUNDS') or (2 if args.quick else 7))
    kinds = {k: max(20, n // 10) for k, n in KINDS.items()} if args.quick else dict(KINDS)
    if not CLI.exists():
        sys.stderr.write(f'{CLI} is missing: run `npm run build` first\n')
        return 2
    missing = [m for m in ('cryptography', 'requests', 'urllib3') if _missing(m)]
    if missing:
        sys.stderr.write(f'{sys.executable} lacks {", ".join(missing)}: use a virtualenv that has them\n')
        return 2
    host, rule_kind = choose_host()
    server, port, connect_port = start_server()
    fx = Fixture(port, connect_port, host, rule_kind)
    try:
        fx.build()
        to = f'host: {host}' if rule_kind == 'host' else f'cidr: {host}/32'
        rule = (
            f'allow {{{to}, port: {port}, paths: [{PATH_GLOB}]}} (HTTP), '
            f'{{{to}, port: {connect_port}}} (connect); '
            + (
                f"{host} resolves to 127.0.0.1 through the shim's DNS binding"
                if rule_kind == 'host'
                else 'localhost does not resolve to 127.0.0.1 alone here: by address (CIDR rule)'
            )
        )
        results: dict[str, Any] = {
            'meta': {
                'python': platform.python_version(),
                'executable': sys.executable,
                'cpus': os.cpu_count(),
                'machine': platform.machine(),
                'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                'loadavg_before': _loadavg(),
                'host': host,
                'rule_kind': rule_kind,
                'rule': rule,
                'runs': runs,
                'rounds': rounds,
                'commit': _git('rev-parse', '--short', 'HEAD'),
                'shim_src_changed': bool(_git('status', '--porcelain', '--', str(SRC))),
            }
        }
        steps: list[tuple[str, Callable[[], Any]]] = [
            ('startup', lambda: bench_startup(fx, runs)),
            ('importtime', lambda: bench_importtime(fx, IMPORTTIME_RUNS if not args.quick else 2)),
            ('micro', lambda: bench_micro(fx, rounds)),
            ('clients', lambda: bench_clients(fx, rounds, kinds)),
        ]
        for name, step in steps:
            sys.stderr.write(f'python shim bench: {name}...\n')
            results[name] = step()
        results['meta']['loadavg_after'] = _loadavg()
        results['meta']['deny_records'] = fx.denies()
        results['goals'] = goals(results)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
        fx.cleanup()
    print_report(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + '\n')
    print(f'\nwrote {out}')
    return 0


def _site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({paths['purelib'], paths['platlib']})


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def _git(*args: str) -> str:
    """Which build of the shim was measured (empty outside a git checkout)."""
    try:
        done = subprocess.run(
            ['git', *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return ''
    return done.stdout.strip() if done.returncode == 0 else ''


def _loadavg() -> str:
    try:
        return ' '.join(f'{x:.2f}' for x in os.getloadavg())
    except OSError:
        return '?'


if __name__ == '__main__':
    sys.exit(main())
