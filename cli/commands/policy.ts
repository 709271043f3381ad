// bulkhead policy check / explain / diff / schema.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type BlastRadiusReport,
  blastRadius,
  checkGuardrails,
  classifyHost,
  compilePolicy,
  createDecider,
  type DecisionRequest,
  diffPolicies,
  formatPolicyError,
  guardrailSettings,
  normalizeUnixPath,
  type PolicyDiff,
  type PolicyError,
  type PolicySet,
  type PolicySource,
  type Protocol,
  parseIdentity,
  parsePolicy,
  policyJsonSchema,
  scopeOf,
  type WorkloadIdentity,
} from '../../policy/index.js';
import { controlClient, describeFailure, table } from '../client.js';
import {
  type CliIO,
  type Command,
  EXIT_FAILURE,
  EXIT_OK,
  type ParsedArgs,
  requireOption,
  stringOption,
  UsageError,
} from '../command.js';

const POLICY_EXTENSIONS = /\.(?:ya?ml|json)$/i;

/** Read policy files; a directory contributes its *.yaml / *.yml / *.json files (sorted, recursive). */
export function readPolicySources(paths: readonly string[]): PolicySource[] {
  if (paths.length === 0) throw new UsageError('expected policy files or directories');
  const sources: PolicySource[] = [];
  const visit = (path: string, explicit: boolean) => {
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(path);
    } catch {
      throw new UsageError(`cannot read ${path}: no such file or directory`);
    }
    if (stat.isDirectory()) {
      for (const entry of readdirSync(path).sort())
        if (!entry.startsWith('.')) visit(join(path, entry), false);
    } else if (explicit || POLICY_EXTENSIONS.test(path)) {
      sources.push({ file: path, text: readFileSync(path, 'utf8') });
    }
  };
  for (const path of paths) visit(path, true);
  return sources;
}

function printErrors(errors: PolicyError[], io: CliIO, json: boolean | undefined): void {
  if (json) io.out(JSON.stringify({ ok: false, errors }));
  else io.err(errors.map(formatPolicyError).join('\n'));
}

/** Parse + guardrails; prints every error; undefined when there was any. */
export function loadPolicySet(
  paths: readonly string[],
  io: CliIO,
  options: { json?: boolean; previous?: PolicySet } = {},
): PolicySet | undefined {
  const parsed = parsePolicy(readPolicySources(paths));
  const errors: PolicyError[] = parsed.ok
    ? checkGuardrails(parsed.set, { previous: options.previous })
    : parsed.errors;
  if (errors.length === 0 && parsed.ok) return parsed.set;
  printErrors(errors, io, options.json);
  return undefined;
}

export function identityOption(args: ParsedArgs, name = 'workload'): WorkloadIdentity {
  const text = requireOption(args, name);
  try {
    return parseIdentity(text);
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message}`);
  }
}

const checkUsage = `Usage: bulkhead policy check FILES_OR_DIRS... [--previous FILES_OR_DIRS]... [--against URL [--token T]] [--json]

Parses every document and applies the guardrails (built-in and kind: Guardrail). Prints every error
as file:line:column field.path: message. Exit 0 when clean, 1 on any error or guardrail break (the CI gate).
requireObserveFirst needs the policy currently applied, to tell new policies from existing ones:
  --previous FILES   that policy as files (e.g. the main branch's)
  --against URL      the revision a control API has applied (GET /v1/policy; admin token from --token or
                     BULKHEAD_TOKEN). With the guardrail on and neither option, BULKHEAD_CONTROL_URL and
                     BULKHEAD_TOKEN are used when both are set; otherwise a note says it was not checked.`;

/** Where the applied policy came from, for the output. */
interface AppliedPolicy {
  set: PolicySet;
  from: string;
}

/**
 * The policy a control API has applied (its current revision), or an empty set when none is:
 * then every policy of the checked set is new. A failure to ask is an error: the check was asked for.
 */
async function appliedPolicy(args: ParsedArgs): Promise<AppliedPolicy> {
  const client = controlClient(args, 'against');
  const response = await client.request('GET', '/v1/policy');
  // Only the API's own "nothing applied" counts as an empty history, not any 404 (a wrong URL).
  if (response.status === 404 && (await response.clone().text()).includes('no policy applied yet'))
    return {
      set: { groups: [], policies: [], guardrails: [] },
      from: `${client.baseUrl} (no revision applied yet)`,
    };
  if (!response.ok) throw new Error(`--against ${client.baseUrl}: ${await describeFailure(response)}`);
  const body = (await response.json()) as { revision: number; sources: PolicySource[] };
  const parsed = parsePolicy(body.sources);
  if (!parsed.ok)
    throw new Error(
      `--against: revision ${body.revision} does not parse here: ${formatPolicyError(parsed.errors[0] as PolicyError)}`,
    );
  return { set: parsed.set, from: `revision ${body.revision} at ${client.baseUrl}` };
}

const OBSERVE_FIRST_UNCHECKED =
  'note: requireObserveFirst is on but was not checked: it needs the policy currently applied to tell ' +
  'new policies from existing ones. Pass --previous FILES (e.g. the main branch) or --against URL with an ' +
  'admin token (--token or BULKHEAD_TOKEN), or set BULKHEAD_CONTROL_URL and BULKHEAD_TOKEN.';

export const policyCheckCommand: Command = {
  path: ['policy', 'check'],
  summary: 'Validate policy files and guardrails (the CI gate)',
  usage: checkUsage,
  positionals: true,
  options: {
    json: { type: 'boolean' },
    previous: { type: 'string', multiple: true },
    against: { type: 'string' },
    token: { type: 'string' },
  },
  async run(args, io) {
    const json = args.values.json === true;
    const previousPaths = (Array.isArray(args.values.previous) ? args.values.previous : []).map(String);
    const against = stringOption(args, 'against');
    if (previousPaths.length > 0 && against !== undefined)
      throw new UsageError('give --previous or --against, not both');
    const parsed = parsePolicy(readPolicySources(args.positionals));
    if (!parsed.ok) {
      printErrors(parsed.errors, io, json);
      return EXIT_FAILURE;
    }
    const set = parsed.set;
    const observeFirst = guardrailSettings(set).requireObserveFirst;
    let previous: AppliedPolicy | undefined;
    if (previousPaths.length > 0) {
      const parsedPrevious = parsePolicy(readPolicySources(previousPaths));
      if (!parsedPrevious.ok)
        throw new UsageError(
          `--previous does not parse: ${formatPolicyError(parsedPrevious.errors[0] as PolicyError)}`,
        );
      previous = { set: parsedPrevious.set, from: previousPaths.join(' ') };
    } else if (
      against !== undefined ||
      (observeFirst &&
        process.env.BULKHEAD_CONTROL_URL &&
        (stringOption(args, 'token') ?? process.env.BULKHEAD_TOKEN))
    ) {
      try {
        previous = await appliedPolicy(args);
      } catch (error) {
        if (error instanceof UsageError) throw error;
        io.err(`bulkhead policy check: ${(error as Error).message}`);
        return EXIT_FAILURE;
      }
    } else if (observeFirst) io.err(OBSERVE_FIRST_UNCHECKED);
    const errors = checkGuardrails(set, { previous: previous?.set });
    if (errors.length > 0) {
      printErrors(errors, io, json);
      return EXIT_FAILURE;
    }
    const summary = {
      groups: set.groups.length,
      policies: set.policies.length,
      guardrails: set.guardrails.length,
    };
    const requireObserveFirst = !observeFirst ? 'off' : previous ? 'checked' : 'not checked';
    if (json) io.out(JSON.stringify({ ok: true, errors: [], ...summary, requireObserveFirst }));
    else {
      if (observeFirst && previous) io.out(`requireObserveFirst: checked against ${previous.from}`);
      io.out(
        `ok: ${summary.groups} SmartGroup(s), ${summary.policies} EgressPolicy(s), ${summary.guardrails} Guardrail(s)`,
      );
    }
    return EXIT_OK;
  },
};

const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp', 'http', 'https', 'dns'];

/** `HOST_OR_IP:PORT[/proto]`, IPv6 in brackets: `[2001:db8::1]:443/tcp`. */
export function parseDestination(text: string): DecisionRequest {
  const m = /^(\[[^\]]+\]|[^:/[\]]+):(\d{1,5})(?:\/([a-z]+))?$/.exec(text.trim());
  if (!m)
    throw new UsageError(`--dest: expected HOST_OR_IP:PORT[/tcp|/udp|/dns], got ${JSON.stringify(text)}`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new UsageError(`--dest: port must be 1-65535, got ${port}`);
  const protocol = (m[3] ?? 'tcp') as Protocol;
  if (!PROTOCOLS.includes(protocol))
    throw new UsageError(`--dest: protocol must be one of ${PROTOCOLS.join(', ')}`);
  const target = (m[1] as string).replace(/^\[|\]$/g, '');
  const kind = classifyHost(target);
  if (!kind) throw new UsageError(`--dest: not a host name or IP address: ${JSON.stringify(target)}`);
  return 'ip' in kind ? { ip: kind.ip, port, protocol } : { host: target, port, protocol };
}

function requestFromUrl(text: string, method: string | undefined): DecisionRequest {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--url: not a URL: ${JSON.stringify(text)}`);
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (scheme !== 'http' && scheme !== 'https') throw new UsageError('--url: only http and https URLs');
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  const kind = classifyHost(hostname);
  if (!kind) throw new UsageError(`--url: unusable host ${JSON.stringify(hostname)}`);
  const port = url.port ? Number(url.port) : scheme === 'https' ? 443 : 80;
  return {
    ...('ip' in kind ? { ip: kind.ip } : { host: kind.host }),
    port,
    protocol: scheme,
    method: (method ?? 'GET').toUpperCase(),
    path: url.pathname,
  };
}

const explainUsage = `Usage: bulkhead policy explain FILES_OR_DIRS... --workload k=v,... (--url URL [--method M] | --dest HOST_OR_IP:PORT[/tcp|/udp|/dns] | --unix SOCKET) [--json]

Compiles the policy for that workload and decides the request as the shim would. With --json prints one
object: {"decision":"allow"|"deny","mode":"enforce"|"observe","rule":"...","blocked":bool,"dns":{...},...}.
--unix decides a Unix-domain socket connect: an absolute path (/var/run/docker.sock) or @name for a Linux
abstract socket.
Exit 0 when the request was explained (allowed or denied), 1 when the policy does not check, 2 on usage errors.`;

/** Explain one Unix-socket connect (the shim's decideUnix). */
function explainUnix(
  text: string,
  set: PolicySet,
  identity: WorkloadIdentity,
  json: boolean,
  io: CliIO,
): number {
  const compiled = compilePolicy(set, identity);
  const decision = createDecider(compiled).decideUnix(text);
  const result = {
    decision: decision.decision,
    mode: decision.mode,
    rule: decision.rule,
    blocked: decision.blocked,
    request: { unix: normalizeUnixPath(text) ?? text },
    scope: scopeOf(set, identity),
    groups: compiled.scope.groups.map((g) => g.name),
    policies: compiled.policies.map((p) => p.name),
    workloadMode: compiled.mode,
    fallback: compiled.fallback,
  };
  if (json) io.out(JSON.stringify(result));
  else {
    io.out(
      `${decision.decision.toUpperCase()} (${decision.mode}${decision.blocked ? ', blocked' : decision.decision === 'deny' ? ', not blocked' : ''}) by ${decision.rule}: unix ${result.request.unix}`,
    );
    io.out(
      `  workload in ${result.groups.join(', ') || 'no SmartGroup'}; policies: ${compiled.policies.map((p) => `${p.name} (${p.mode})`).join(', ') || `none (unselected default: ${compiled.fallback === 'allow' ? 'allow' : compiled.mode})`}`,
    );
  }
  return EXIT_OK;
}

export const policyExplainCommand: Command = {
  path: ['policy', 'explain'],
  summary: 'Decide one request for one workload, and say which rule decided',
  usage: explainUsage,
  positionals: true,
  options: {
    workload: { type: 'string' },
    url: { type: 'string' },
    method: { type: 'string' },
    dest: { type: 'string' },
    unix: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const json = args.values.json === true;
    const identity = identityOption(args);
    const url = typeof args.values.url === 'string' ? args.values.url : undefined;
    const dest = typeof args.values.dest === 'string' ? args.values.dest : undefined;
    const unix = typeof args.values.unix === 'string' ? args.values.unix : undefined;
    if ([url, dest, unix].filter((v) => v !== undefined).length !== 1)
      throw new UsageError('give exactly one of --url, --dest or --unix');
    const method = typeof args.values.method === 'string' ? args.values.method : undefined;
    if (method !== undefined && url === undefined) throw new UsageError('--method needs --url');
    if (method !== undefined && !/^[A-Za-z]{1,20}$/.test(method))
      throw new UsageError('--method: expected an HTTP method');
    if (unix !== undefined) {
      // The shim resolves a relative path before asking; here the author must say which one.
      if (normalizeUnixPath(unix) === undefined)
        throw new UsageError(
          `--unix: expected an absolute socket path or @name, got ${JSON.stringify(unix)}`,
        );
      const set = loadPolicySet(args.positionals, io, { json });
      if (!set) return EXIT_FAILURE;
      return explainUnix(unix, set, identity, json, io);
    }
    const request = url !== undefined ? requestFromUrl(url, method) : parseDestination(dest as string);
    const set = loadPolicySet(args.positionals, io, { json });
    if (!set) return EXIT_FAILURE;
    const compiled = compilePolicy(set, identity);
    const decider = createDecider(compiled);
    const decision = decider.decide(request);
    const name = request.host ?? request.ip ?? '';
    const dns = request.host !== undefined ? decider.decideName(request.host) : undefined;
    const result = {
      decision: decision.decision,
      mode: decision.mode,
      rule: decision.rule,
      blocked: decision.blocked,
      request,
      ...(dns
        ? { dns: { decision: dns.decision, mode: dns.mode, rule: dns.rule, blocked: dns.blocked } }
        : {}),
      scope: scopeOf(set, identity),
      groups: compiled.scope.groups.map((g) => g.name),
      policies: compiled.policies.map((p) => p.name),
      workloadMode: compiled.mode,
      fallback: compiled.fallback,
    };
    if (json) io.out(JSON.stringify(result));
    else {
      const target = `${name}:${request.port}${request.path ? ` ${request.method} ${request.path}` : ` ${request.protocol}`}`;
      io.out(
        `${decision.decision.toUpperCase()} (${decision.mode}${decision.blocked ? ', blocked' : decision.decision === 'deny' ? ', not blocked' : ''}) by ${decision.rule}: ${target}`,
      );
      if (dns && dns !== decision) io.out(`  DNS ${name}: ${dns.decision} by ${dns.rule}`);
      io.out(
        `  workload in ${compiled.scope.groups.map((g) => g.name).join(', ') || 'no SmartGroup'}; policies: ${compiled.policies.map((p) => `${p.name} (${p.mode})`).join(', ') || `none (unselected default: ${compiled.fallback === 'allow' ? 'allow' : compiled.mode})`}`,
      );
    }
    return EXIT_OK;
  },
};

/**
 * A policy diff for a person: per SmartGroup (and per workload when asked), what becomes reachable
 * or unreachable. The control API's answers carry the groups only.
 */
export function formatDiff(
  diff: Omit<PolicyDiff, 'workloads'> & Partial<Pick<PolicyDiff, 'workloads'>>,
): string {
  if (!diff.changed) return 'no change in what any SmartGroup can reach';
  const lines: string[] = [];
  for (const g of diff.groups) {
    const mode =
      g.modeBefore !== g.modeAfter ? ` mode ${g.modeBefore ?? 'none'} → ${g.modeAfter ?? 'none'}` : '';
    lines.push(`SmartGroup ${g.group} (${g.status})${mode}`);
    for (const c of g.reachable)
      lines.push(`  + reachable   ${c.destination}  [${c.rule}${c.action === 'deny' ? ' removed' : ''}]`);
    for (const c of g.unreachable)
      lines.push(
        `  - unreachable ${c.destination}  [${c.rule}${c.action === 'deny' ? ' added' : ' removed'}]`,
      );
  }
  for (const w of diff.workloads ?? []) {
    const mode = w.modeBefore !== w.modeAfter ? ` mode ${w.modeBefore} → ${w.modeAfter}` : '';
    const scope = w.scopeBefore !== w.scopeAfter ? ` scope ${w.scopeBefore} → ${w.scopeAfter}` : '';
    lines.push(`workload ${w.workload}${mode}${scope}`);
    for (const c of w.reachable) lines.push(`  + reachable   ${c.destination}  [${c.rule}]`);
    for (const c of w.unreachable) lines.push(`  - unreachable ${c.destination}  [${c.rule}]`);
  }
  return lines.join('\n');
}

/** Each SmartGroup's (and workload's) blast-radius score before → after (docs/blast-radius.md). */
export function formatRadiusChange(before: BlastRadiusReport, after: BlastRadiusReport): string {
  const rows: string[][] = [];
  const score = (r: { score: number; unbounded: boolean } | undefined) =>
    r === undefined ? '-' : r.unbounded ? 'unbounded' : String(r.score);
  const arrow = (a: { score: number } | undefined, b: { score: number } | undefined) =>
    a === undefined || b === undefined || a.score === b.score
      ? ''
      : a.score < b.score
        ? '(wider)'
        : '(narrower)';
  const groups = [...new Set([...before.groups, ...after.groups].map((g) => g.group))].sort();
  for (const group of groups) {
    const a = before.groups.find((g) => g.group === group);
    const b = after.groups.find((g) => g.group === group);
    rows.push([`SmartGroup ${group}`, score(a), '→', score(b), arrow(a, b)]);
  }
  for (const w of after.workloads) {
    const a = before.workloads.find((x) => x.workload === w.workload);
    rows.push([`workload ${w.workload}`, score(a), '→', score(w), arrow(a, w)]);
  }
  // Rows whose last cell is empty would end in padding.
  return rows.length === 0
    ? 'blast radius: no SmartGroup'
    : `blast radius:\n${table(rows).replace(/ +$/gm, '')}`;
}

const DIFF_OPTIONS = { workload: { type: 'string', multiple: true }, json: { type: 'boolean' } } as const;

const diffUsage = `Usage: bulkhead policy diff OLD_FILES... -- NEW_FILES... [--workload k=v,...]... [--json]

Destinations that become reachable or unreachable per SmartGroup (and per workload for each --workload),
then each one's blast-radius score before → after (docs/blast-radius.md; --json: "blastRadius": {before, after}).
Exit 0 (changed or not), 1 when either side does not check, 2 on usage errors.`;

export const policyDiffCommand: Command = {
  path: ['policy', 'diff'],
  summary: 'What a policy change makes reachable or unreachable',
  usage: diffUsage,
  positionals: true,
  options: DIFF_OPTIONS,
  async run(args, io) {
    // Options may also follow the new files (`OLD -- NEW --json`): parse that side too.
    let tail: ReturnType<typeof parseArgs>;
    try {
      tail = parseArgs({ args: args.rest, options: DIFF_OPTIONS, allowPositionals: true, strict: true });
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const newFiles = tail.positionals;
    const json = args.values.json === true || tail.values.json === true;
    if (args.positionals.length === 0 || newFiles.length === 0)
      throw new UsageError('expected OLD_FILES... -- NEW_FILES...');
    const workloadTexts = [
      ...(Array.isArray(args.values.workload) ? args.values.workload : []),
      ...(Array.isArray(tail.values.workload) ? tail.values.workload : []),
    ];
    const workloads = workloadTexts.map((text) => {
      try {
        return parseIdentity(String(text));
      } catch (error) {
        throw new UsageError(`--workload: ${(error as Error).message}`);
      }
    });
    const before = loadPolicySet(args.positionals, io, { json });
    if (!before) return EXIT_FAILURE;
    const after = loadPolicySet(newFiles, io, { json });
    if (!after) return EXIT_FAILURE;
    const diff = diffPolicies(before, after, workloads);
    const radius = {
      before: blastRadius(before, { workloads }),
      after: blastRadius(after, { workloads }),
    };
    io.out(
      json
        ? JSON.stringify({ ...diff, blastRadius: radius })
        : `${formatDiff(diff)}\n\n${formatRadiusChange(radius.before, radius.after)}`,
    );
    return EXIT_OK;
  },
};

export const policySchemaCommand: Command = {
  path: ['policy', 'schema'],
  summary: 'Print the JSON Schema of policy documents',
  usage:
    'Usage: bulkhead policy schema\n\nPrints the JSON Schema (draft-07, what yaml-language-server reads) the policy documents follow (policy/schema/bulkhead-policy.schema.json).',
  async run(_args, io) {
    io.out(`${JSON.stringify(policyJsonSchema(), null, 2)}\n`);
    return EXIT_OK;
  },
};
