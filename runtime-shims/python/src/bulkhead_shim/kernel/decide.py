"""The decision engine (port of policy/decide.ts). Runs inside every governed interpreter, on
every connection, DNS query, subprocess and extension-module load, so: standard library only,
index structures built once per revision, and a cost model that does not grow with the policy.

Cost model:
- hit: `Decider.decide` is one dict lookup keyed by the request tuple `(host, ip, port,
  protocol, method, path)`, plus two type checks; it allocates only that key tuple. Answers are
  shared immutable `Decision` objects. The cache holds `max_cache_entries` answers per revision and
  is cleared, not evicted piecemeal, when full (a hostile request stream costs misses, never memory).
- miss: names are normalised (`classify_host`) and looked up in a reversed-label trie (cost grows
  with the number of labels of the name), addresses in a binary prefix trie (at most 32 / 128
  steps), whatever the number of rules; only the candidate rules found there, plus the rules that
  name neither a host nor an address, are matched against port, protocol, method and path.
- A request whose SNI differs from its host (domain fronting looks like this), or whose port is
  not an int, is decided uncached rather than widening every key.
- `decide_name`, `decide_exec` and `decide_addon` keep their own one-key caches.

Semantics are the TypeScript kernel's, rule ids and all (docs/contracts.md §1); the conformance
table (test/conformance/table.json) is the proof. One deliberate difference: a protocol that is
not one of tcp/udp/http/https/dns is unreadable here whatever its name, where the TS kernel's
object lookup reads `toString` or `constructor` as a protocol.
"""

from __future__ import annotations

import sys

from .cidr import CidrTrie, cidr_contains, parse_cidr, parse_ip
from .host import HostTrie, classify_host, normalize_host, parse_host_pattern
from .path import compile_glob, normalize_path
from .unix import UnixMatcher, compile_unix_pattern, normalize_unix_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .cidr import Cidr
    from .path import GlobMatcher

__all__ = [
    'Decider',
    'Decision',
    'classify_host',
    'create_decider',
    'normalize_host',
    'normalize_path',
]

_PROTOCOL_BIT = {'tcp': 1, 'udp': 2, 'http': 4, 'https': 8, 'dns': 16}
_TCP = 1
_L7_BITS = 4 | 8
_EXEC_CACHE_ENTRIES = 10_000


class Decision:
    """The answer. Instances are shared and immutable (one per rule and revision): never mutate
    one. `blocked` is what a hook acts on: true only for a deny in enforce mode. `rule` names the
    deciding rule: `<policy>/allow[2]`, `<policy>/deny[0]`, `<policy>/exec[i]`,
    `<policy>/addons[i]`, `exec:node`, `ip-literal`, `default-deny`, `default-allow`."""

    __slots__ = ('blocked', 'decision', 'mode', 'rule')
    decision: str
    mode: str
    blocked: bool
    rule: str

    def __init__(self, decision: str, mode: str, blocked: bool, rule: str) -> None:
        object.__setattr__(self, 'decision', decision)
        object.__setattr__(self, 'mode', mode)
        object.__setattr__(self, 'blocked', blocked)
        object.__setattr__(self, 'rule', rule)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError('Decision is immutable (instances are shared)')

    def __delattr__(self, name: str) -> None:
        raise AttributeError('Decision is immutable (instances are shared)')

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and (
            self.decision == other.decision
            and self.mode == other.mode
            and self.blocked == other.blocked
            and self.rule == other.rule
        )

    def __hash__(self) -> int:
        return hash((self.decision, self.mode, self.blocked, self.rule))

    def __repr__(self) -> str:
        return (
            f'Decision(decision={self.decision!r}, mode={self.mode!r}, blocked={self.blocked!r}, '
            f'rule={self.rule!r})'
        )

    def as_dict(self) -> dict[str, object]:
        """The TS `Decision` object's members."""
        return {'decision': self.decision, 'mode': self.mode, 'blocked': self.blocked, 'rule': self.rule}


def _allow(mode: str, rule: str) -> Decision:
    return Decision('allow', mode, False, rule)


def _deny(mode: str, rule: str) -> Decision:
    return Decision('deny', mode, mode == 'enforce', rule)


class _Matcher:
    """One compiled rule, ready to match facts. An absent constraint (None) matches anything."""

    __slots__ = (
        'cidrs',
        'decision',
        'deny',
        'enforce',
        'id',
        'methods',
        'name_only',
        'paths',
        'ports',
        'protocol_mask',
    )

    def __init__(self, rule: Mapping[str, Any]) -> None:
        rule_id: str = rule['id']
        mode: str = rule['mode']
        self.id = rule_id
        self.deny: bool = rule['action'] == 'deny'
        self.enforce: bool = not self.deny or mode == 'enforce'
        protocols: list[str] | None = rule.get('protocols')
        mask = 0
        for protocol in protocols or ():
            mask |= _PROTOCOL_BIT.get(protocol, 0)
        # `tcp` implies http and https (they run over it).
        if mask & _TCP:
            mask |= _L7_BITS
        self.protocol_mask = mask
        hosts: list[str] | None = rule.get('hosts')
        cidr_texts: list[str] | None = rule.get('cidrs')
        cidrs: tuple[Cidr, ...] | None = None
        if cidr_texts is not None:
            try:
                cidrs = tuple(parse_cidr(text) for text in cidr_texts)
            except ValueError as error:
                raise ValueError(f'rule {rule_id}: {error}') from None
        self.decision = _deny(mode, rule_id) if self.deny else Decision('allow', mode, False, rule_id)
        # A rule with hosts holds its CIDRs as a constraint; one with CIDRs only is indexed by them.
        self.cidrs = cidrs if hosts is not None else None
        ports: list[list[int | float]] | None = rule.get('ports')
        self.ports: tuple[tuple[int, int], ...] | None = (
            tuple((int(low), int(high)) for low, high in ports) if ports is not None else None
        )
        methods: list[str] | None = rule.get('methods')
        self.methods: frozenset[str] | None = (
            frozenset(m.upper() for m in methods) if methods is not None else None
        )
        paths: list[str] | None = rule.get('paths')
        self.paths: tuple[GlobMatcher, ...] | None = (
            tuple(compile_glob(p) for p in paths) if paths is not None else None
        )
        # Constrains nothing but the name: a deny of this kind also refuses the DNS query.
        self.name_only: bool = (
            cidr_texts is None
            and ports is None
            and methods is None
            and paths is None
            and (protocols is None or 'dns' in protocols)
        )


def _matches(  # hot path: plain arguments, no facts object allocated
    m: _Matcher, port: int, protocol_bit: int, method: str | None, path: str | None, ip: bytes | None
) -> bool:
    """Do the facts match `m`? Allow rules are optimistic: a fact the hook does not know yet counts
    as a match, because the hook that learns it (the HTTP layer, after connect) asks again; deny
    rules need every fact they constrain to be known."""
    optimistic = not m.deny
    if m.ports is not None:
        if port == 0:
            if not optimistic:
                return False
        else:
            for low, high in m.ports:
                if low <= port <= high:
                    break
            else:
                return False
    if m.protocol_mask and not m.protocol_mask & protocol_bit:
        l7_pending = protocol_bit == _TCP and m.protocol_mask & _L7_BITS
        if not (optimistic and l7_pending):
            return False
    if m.methods is not None:
        if method is None:
            if not optimistic:
                return False
        elif method not in m.methods:
            return False
    if m.paths is not None:
        if path is None:
            if not optimistic:
                return False
        elif not any(glob(path) for glob in m.paths):
            return False
    if m.cidrs is not None:
        if ip is None:
            if not optimistic:
                return False
        elif not any(cidr_contains(c, ip) for c in m.cidrs):
            return False
    return True


def _first_allow(  # as _matches
    candidates: Sequence[_Matcher],
    port: int,
    bit: int,
    method: str | None,
    path: str | None,
    ip: bytes | None,
) -> Decision | None:
    for m in candidates:
        if not m.deny and _matches(m, port, bit, method, path, ip):
            return m.decision
    return None


def _allowed_by_all(  # as _matches
    lists: Sequence[Sequence[_Matcher]],
    port: int,
    bit: int,
    method: str | None,
    path: str | None,
    ip: bytes | None,
) -> Decision | None:
    """The first allow of the first list, when every list has an allow (None for no lists)."""
    first: Decision | None = None
    for candidates in lists:
        found = _first_allow(candidates, port, bit, method, path, ip)
        if found is None:
            return None
        if first is None:
            first = found
    return first


class _GlobRule:
    __slots__ = ('by_path', 'decision', 'match')

    def __init__(self, decision: Decision, glob: str) -> None:
        self.decision = decision
        self.by_path = '/' in glob
        self.match = compile_glob(glob)


def _match_glob_rules(rules: Sequence[_GlobRule], file: str) -> Decision | None:
    # A pattern with a `/` is matched against the path as given; a bare name against the base
    # name, so `git` allows /usr/bin/git (and any other file named git: prefer full paths).
    slash = max(file.rfind('/'), file.rfind('\\'))
    base = file[slash + 1 :]
    for rule in rules:
        if rule.match(file if rule.by_path else base):
            return rule.decision
    return None


def _port_of(port: object) -> int:
    # Number.isInteger and 0-65535, else -1. A float with no fraction is the integer it equals
    # (JavaScript has no other kind); a bool is not a port.
    if type(port) is int:
        value = port
    elif type(port) is float and port.is_integer():
        value = int(port)
    else:
        return -1
    return value if 0 <= value <= 65535 else -1


class Decider:
    """The decision engine for one bundle revision (build it with `create_decider`). Every method
    is synchronous, cheap, and never raises for any argument."""

    __slots__ = (
        '_addon_cache',
        '_addon_globs',
        '_cache',
        '_cidr_index',
        '_exec_cache',
        '_exec_globs',
        '_fallback',
        '_host_index',
        '_literal',
        '_max_cache_entries',
        '_name_cache',
        '_node',
        '_unanchored',
        '_unix_cache',
        '_unix_rules',
        '_unreadable',
        'allows_addresses',
        'exec_path',
        'mode',
        'revision',
    )

    def __init__(
        self, policy: Mapping[str, Any], *, revision: int, exec_path: str | None, max_cache_entries: int
    ) -> None:
        self.revision = revision
        #: The mode a deny of this workload is reported under when no rule overrides it.
        self.mode: str = policy['mode']
        #: Does any allow rule name addresses (CIDRs)? Only then can a request its names do not
        #: allow still be allowed, by the address its connection goes to.
        self.allows_addresses = False
        self._max_cache_entries = max_cache_entries
        mode = self.mode
        self._fallback = (
            _allow(mode, 'default-allow') if policy['fallback'] == 'allow' else _deny(mode, 'default-deny')
        )
        # Unreadable destinations are denied, whatever the fallback.
        self._unreadable = (
            self._fallback if self._fallback.decision == 'deny' else _deny(mode, 'default-deny')
        )
        self._node = _allow(mode, 'exec:node')
        self._literal = _allow(mode, 'ip-literal')
        self._host_index: HostTrie[_Matcher] = HostTrie()
        self._cidr_index: CidrTrie[_Matcher] = CidrTrie()
        # Rules that name neither a host nor an address (`{port: 25}`): checked for every request.
        self._unanchored: list[_Matcher] = []
        for rule in policy['rules']:
            matcher = _Matcher(rule)
            hosts: list[str] | None = rule.get('hosts')
            cidrs: list[str] | None = rule.get('cidrs')
            if hosts:
                for text in hosts:
                    try:
                        pattern = parse_host_pattern(text, allow_inner_wildcard=True)
                    except ValueError as error:
                        raise ValueError(f'rule {matcher.id}: {error}') from None
                    self._host_index.insert(pattern, matcher)
            elif cidrs:
                for text in cidrs:
                    # Parsed (and refused) in _Matcher already.
                    self._cidr_index.insert(parse_cidr(text), matcher)
                if not matcher.deny:
                    self.allows_addresses = True
            else:
                self._unanchored.append(matcher)
        self._exec_globs = [_GlobRule(_allow(mode, r['id']), r['glob']) for r in policy['exec']['allow']]
        self._addon_globs = [_GlobRule(_allow(mode, r['id']), r['glob']) for r in policy['addons']['allow']]
        #: The interpreter `exec.allowNode` allows (None when the policy sets allowNode: false).
        self.exec_path: str | None = exec_path if policy['exec']['allowNode'] else None
        self._cache: dict[tuple[object, ...], Decision] = {}
        self._name_cache: dict[object, Decision] = {}
        self._exec_cache: dict[object, Decision] = {}
        self._addon_cache: dict[object, Decision] = {}
        #: Unix-socket rules (the compiled `unix` section, absent in bundles without socket rules):
        #: (deny, enforce, decision, matcher), in policy order.
        self._unix_rules: list[tuple[bool, bool, Decision, UnixMatcher]] = []
        for unix_rule in (policy.get('unix') or {}).get('rules', []):
            deny = unix_rule['action'] == 'deny'
            rule_mode = unix_rule['mode']
            decision = (
                Decision('deny', rule_mode, rule_mode == 'enforce', unix_rule['id'])
                if deny
                else _allow(rule_mode, unix_rule['id'])
            )
            matcher_fn = compile_unix_pattern(unix_rule['glob'])
            self._unix_rules.append((deny, not deny or rule_mode == 'enforce', decision, matcher_fn))
        self._unix_cache: dict[object, Decision] = {}

    def decide(  # the shim's API: the request facts, positional for speed
        self,
        host: str | None,
        ip: str | None,
        port: int,
        protocol: str,
        sni: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> Decision:
        """Decide a connection or request. Facts left None (path, method, ip) and port 0 are
        unknown: an allow rule is not held to them, a deny rule matches only what it can see."""
        if (sni is not None and sni != (host if host is not None else '')) or type(port) is not int:
            return self.decide_uncached(host, ip, port, protocol, sni, method, path)
        key = (host, ip, port, protocol, method, path)
        try:
            hit = self._cache.get(key)
        except TypeError:
            # An unhashable argument (not a str): decided, and refused, without the cache.
            return self.decide_uncached(host, ip, port, protocol, sni, method, path)
        if hit is not None:
            return hit
        decision = self.decide_uncached(host, ip, port, protocol, sni, method, path)
        cache = self._cache
        if len(cache) >= self._max_cache_entries:
            cache.clear()
        cache[key] = decision
        return decision

    def decide_uncached(  # same arguments as decide
        self,
        host: str | None,
        ip: str | None,
        port: int,
        protocol: str,
        sni: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> Decision:
        """The full evaluation (the cache-miss path). Exposed for benchmarks and explain."""
        names: list[str] = []
        ips: list[bytes] = []
        if not _collect(host, names, ips) or not _collect(sni, names, ips):
            return self._unreadable
        if ip is not None and ip != '':
            address = parse_ip(ip) if isinstance(ip, str) else None
            if address is None:
                return self._unreadable
            ips.append(address)
        port_value = _port_of(port)
        bit = _PROTOCOL_BIT.get(protocol, 0) if isinstance(protocol, str) else 0
        # A destination we cannot read (bad name, address, port or protocol) is never allowed.
        if port_value == -1 or bit == 0 or (not names and not ips):
            return self._unreadable
        if method is not None and not isinstance(method, str):
            return self._unreadable
        if path is not None and not isinstance(path, str):
            return self._unreadable
        facts_method = method.upper() if method else None
        facts_path = normalize_path(path) if path else None
        last_ip = ips[-1] if ips else None
        name_candidates = [self._host_index.lookup(name) for name in names]
        ip_candidates = [self._cidr_index.lookup(address) for address in ips]

        # Deny first: an enforcing deny anywhere decides; an observing one is remembered.
        observed: Decision | None = None
        for candidates in (*name_candidates, *ip_candidates, self._unanchored):
            for m in candidates:
                if not m.deny or not _matches(m, port_value, bit, facts_method, facts_path, last_ip):
                    continue
                if m.enforce:
                    return m.decision
                if observed is None:
                    observed = m.decision
        # Allowed through the names (every name the request carries, host and a differing SNI),
        # through the addresses, or by a rule that names neither.
        allowed = _allowed_by_all(name_candidates, port_value, bit, facts_method, facts_path, last_ip)
        if allowed is None:
            allowed = _allowed_by_all(ip_candidates, port_value, bit, facts_method, facts_path, last_ip)
        if allowed is None:
            allowed = _first_allow(self._unanchored, port_value, bit, facts_method, facts_path, last_ip)
        if allowed is not None:
            return observed if observed is not None else allowed
        return self._fallback

    def decide_name(self, host: str) -> Decision:
        """DNS: may this name be resolved at all (could any allow rule ever match it)? An IP
        literal needs no query: `ip-literal` (allow); the connection is decided by address."""
        try:
            hit = self._name_cache.get(host)
        except TypeError:
            return self._unreadable
        if hit is not None:
            return hit
        decision = self._decide_name_uncached(host)
        if len(self._name_cache) >= self._max_cache_entries:
            self._name_cache.clear()
        self._name_cache[host] = decision
        return decision

    def _decide_name_uncached(self, text: str) -> Decision:
        kind = classify_host(text) if isinstance(text, str) else None
        if kind is None:
            return self._unreadable
        if kind[0] == 'ip':
            return self._literal
        candidates = self._host_index.lookup(kind[1])
        observed: Decision | None = None
        for m in (*candidates, *self._unanchored):
            if not m.deny or not m.name_only:
                continue
            if m.enforce:
                return m.decision
            if observed is None:
                observed = m.decision
        allowed: Decision | None = None
        for m in candidates:
            if not m.deny:
                allowed = m.decision
                break
        if allowed is None:
            for m in self._unanchored:
                if not m.deny:
                    allowed = m.decision
                    break
        if allowed is not None:
            return observed if observed is not None else allowed
        return self._fallback

    def decide_exec(self, file: str) -> Decision:
        """Subprocess: may this executable (path or base name as given) be started? `exec.allowNode`
        allows exactly `exec_path`: in the Python shim, the runtime's own interpreter, which the
        shim keeps governed."""
        try:
            hit = self._exec_cache.get(file)
        except TypeError:
            return self._fallback
        if hit is not None:
            return hit
        decision = self._fallback
        if isinstance(file, str) and file != '':
            if self.exec_path is not None and file == self.exec_path:
                decision = self._node
            else:
                decision = _match_glob_rules(self._exec_globs, file) or self._fallback
        if len(self._exec_cache) >= _EXEC_CACHE_ENTRIES:
            self._exec_cache.clear()
        self._exec_cache[file] = decision
        return decision

    def decide_addon(self, path: str) -> Decision:
        """Extension module / shared library: may this file be loaded?"""
        try:
            hit = self._addon_cache.get(path)
        except TypeError:
            return self._fallback
        if hit is not None:
            return hit
        decision = self._fallback
        if isinstance(path, str) and path != '':
            decision = _match_glob_rules(self._addon_globs, path) or self._fallback
        if len(self._addon_cache) >= _EXEC_CACHE_ENTRIES:
            self._addon_cache.clear()
        self._addon_cache[path] = decision
        return decision

    def decide_unix(self, path: str) -> Decision:
        """Unix-domain socket: an absolute path (relative ones resolved by the shim) or `@name` for a
        Linux abstract name. Deny rules first (an enforcing one decides, an observing one wins over an
        allow as a record), then the first allow, else the fallback: denied by default under enforce."""
        if not isinstance(path, str):
            return self._unreadable
        hit = self._unix_cache.get(path)
        if hit is not None:
            return hit
        decision = self._decide_unix_uncached(path)
        # Longer than any path the system accepts (PATH_MAX): answered, not kept.
        if len(path) > 4096:
            return decision
        if len(self._unix_cache) >= _EXEC_CACHE_ENTRIES:
            self._unix_cache.clear()
        self._unix_cache[path] = decision
        return decision

    def _decide_unix_uncached(self, text: str) -> Decision:
        address = normalize_unix_path(text)
        if address is None:
            return self._unreadable
        observed: Decision | None = None
        for deny, enforce, decision, matches in self._unix_rules:
            if deny and matches(address):
                if enforce:
                    return decision
                if observed is None:
                    observed = decision
        for deny, _enforce, decision, matches in self._unix_rules:
            if not deny and matches(address):
                return observed or decision
        return self._fallback


def _collect(text: object, names: list[str], ips: list[bytes]) -> bool:
    """Add a host or SNI text to the names or addresses; False when it is unreadable."""
    if text is None or text == '':
        return True
    if not isinstance(text, str):
        return False
    kind = classify_host(text)
    if kind is None:
        return False
    if kind[0] == 'ip':
        address = parse_ip(kind[1])
        if address is not None:
            ips.append(address)
    elif kind[1] not in names:
        names.append(kind[1])
    return True


def create_decider(
    source: Mapping[str, Any],
    *,
    revision: int | None = None,
    exec_path: str | None = None,
    max_cache_entries: int = 100_000,
) -> Decider:
    """Build the decision engine for a verified bundle payload (it carries `policy` and
    `revision`) or a compiled policy. Index structures are built here, once per revision.
    `exec_path`: the interpreter `exec.allowNode` allows (default `sys.executable`). Raises
    ValueError (TS: TypeError, same message) on a host pattern or CIDR the kernel cannot read."""
    if 'policy' in source and 'revision' in source:
        policy: Mapping[str, Any] = source['policy']
        chosen = revision if revision is not None else source['revision']
    else:
        policy = source
        chosen = revision if revision is not None else 0
    return Decider(
        policy,
        revision=int(chosen),
        exec_path=exec_path if exec_path is not None else (sys.executable or None),
        max_cache_entries=max_cache_entries,
    )
