// The policy language: SmartGroup, EgressPolicy and Guardrail documents (apiVersion bulkhead.dev/v1).
// This one description gives the TypeScript types, the validator the parser runs, and the JSON
// Schema in policy/schema/bulkhead-policy.schema.json (`bulkhead policy schema` prints it).
import { parseCidr } from './cidr.js';
import { parseHostPattern } from './host.js';
import { checkGlobStars, checkPathGlob } from './path.js';
import { custom, type Infer, type Issue, type JsonSchema, s } from './schema-kit.js';
import { checkUnixPattern } from './unix.js';

export const API_VERSION = 'bulkhead.dev/v1';
export const GUARDRAIL_IDS = [
  'allow-all',
  'metadata-endpoint',
  'broad-wildcard',
  'container-socket',
  'owner-required',
  'forbidden-destination',
  'enforce-required',
  'observe-first',
] as const;
export type GuardrailId = (typeof GUARDRAIL_IDS)[number];

const NAME = s
  .string({
    pattern: /^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$/,
    patternName: 'a lower-case name (a-z, 0-9, "-", "."; at most 63 characters)',
  })
  .describe('Lower-case name: a-z, 0-9, "-" and "."; unique per kind.');

const metadata = s.object({
  name: NAME,
  description: s.optional(s.string({ maxLength: 2000 })),
  labels: s.optional(s.record(s.string({ maxLength: 256 }), /^[A-Za-z0-9./_-]{1,253}$/, 'a label key')),
  annotations: s.optional(
    s.record(s.string({ maxLength: 4096 }), /^[A-Za-z0-9./_-]{1,253}$/, 'an annotation key'),
  ),
});

const hostPattern = s
  .string({
    minLength: 1,
    maxLength: 255,
    refine: (value) => {
      const parsed = parseHostPattern(value);
      return parsed.ok ? undefined : parsed.message;
    },
  })
  .describe(
    'Host name (case-insensitive, trailing dot and IDN accepted) or "*.example.com" for any name below it.',
  );

const cidr = s
  .string({
    minLength: 1,
    maxLength: 64,
    refine: (value) => {
      const parsed = parseCidr(value);
      return parsed.ok ? undefined : parsed.message;
    },
  })
  .describe('IPv4 or IPv6 prefix ("10.0.0.0/8", "2001:db8::/32") or a single address.');

const pathGlob = s
  .string({ minLength: 1, maxLength: 2048, refine: checkPathGlob })
  .describe('URL path glob: "*" within one segment, "**" across segments; "/v1/**" also matches "/v1".');

export interface PortRange {
  from: number;
  to: number;
}

export function parsePortSpec(
  value: unknown,
): { ok: true; value: PortRange } | { ok: false; message: string } {
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 1 && value <= 65535)
      return { ok: true, value: { from: value, to: value } };
    return { ok: false, message: `expected 1-65535, got ${value}` };
  }
  if (typeof value === 'string') {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value.trim());
    if (m) {
      const from = Number(m[1]);
      const to = m[2] === undefined ? from : Number(m[2]);
      if (from >= 1 && to <= 65535 && from <= to) return { ok: true, value: { from, to } };
    }
    return {
      ok: false,
      message: `expected a port 1-65535 or a range "8000-8100", got ${JSON.stringify(value)}`,
    };
  }
  return { ok: false, message: `expected a port 1-65535 or a range "8000-8100", got ${typeof value}` };
}

const portSpec = custom<PortRange>(
  {
    description: 'Port 1-65535 or an inclusive range "8000-8100".',
    anyOf: [
      { type: 'integer', minimum: 1, maximum: 65535 },
      { type: 'string', pattern: '^[0-9]{1,5}(-[0-9]{1,5})?$' },
    ],
  },
  parsePortSpec,
);

const protocol = s.enum(['tcp', 'udp', 'http', 'https', 'dns'] as const);

const urlSpec = s
  .string({
    minLength: 1,
    maxLength: 2048,
    refine: (value) => {
      const problem = parseRuleUrl(value);
      return 'message' in problem ? problem.message : undefined;
    },
  })
  .describe('"https://host[:port]/path-glob": scheme, host and path glob in one.');

export interface RuleUrl {
  scheme: 'http' | 'https';
  host: string;
  port: number;
  /** Undefined when the URL has no path: any path. */
  path: string | undefined;
}

/** `https://github.com/myproject/**` → scheme, host, port, path glob. */
export function parseRuleUrl(text: string): RuleUrl | { message: string } {
  const m = /^(https?):\/\/([^/?#]+)(\/[^?#]*)?$/i.exec(text);
  if (!m)
    return {
      message: `expected "http(s)://host[:port][/path]" without query or fragment, got ${JSON.stringify(text)}`,
    };
  const scheme = (m[1] as string).toLowerCase() as 'http' | 'https';
  const authority = m[2] as string;
  if (authority.includes('@')) return { message: 'URL must not carry credentials' };
  const portMatch = /^(.*?)(?::(\d{1,5}))?$/.exec(authority);
  const hostText = portMatch?.[1] ?? authority;
  const port = portMatch?.[2] !== undefined ? Number(portMatch[2]) : scheme === 'https' ? 443 : 80;
  if (port < 1 || port > 65535) return { message: `expected port 1-65535, got ${port}` };
  const host = parseHostPattern(hostText);
  if (!host.ok) return { message: host.message };
  const path = m[3];
  if (path !== undefined) {
    const problem = checkPathGlob(path);
    if (problem) return { message: problem };
  }
  return {
    scheme,
    host: host.pattern.text,
    port,
    path: path === undefined || path === '/**' ? undefined : path,
  };
}

// The pattern is what editors can check; checkUnixPattern the rest (NUL, `..`, normal form).
const unixPattern = s
  .string({
    minLength: 1,
    maxLength: 1024,
    pattern: /^[/@]/,
    patternName: 'an absolute socket path ("/var/run/app.sock") or an abstract socket name ("@name")',
    refine: checkUnixPattern,
  })
  .describe(
    'Unix-domain socket: an absolute, normal path glob ("/var/run/app.sock", "/run/app/*.sock", "/run/**") or a Linux abstract name after "@" ("@app-bus", "@dbus-*": "*" any run of characters).',
  );

const methodName = s.string({
  pattern: /^(?:[A-Z]{1,20}|\*)$/,
  patternName: 'an upper-case HTTP method (GET, POST, …)',
});

const awsService = s.string({
  pattern: /^[a-z0-9][a-z0-9-]{0,62}$/,
  patternName: 'an AWS service endpoint prefix (s3, lambda, dynamodb, sqs, sts, …)',
});

const awsRegion = s.string({
  pattern: /^[a-z]{2}(?:-[a-z]+)+-\d$/,
  patternName: 'an AWS region (us-east-1)',
});

const bucketName = s.string({
  pattern: /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
  patternName: 'an S3 bucket name',
});

const functionName = s.string({
  pattern: /^[A-Za-z0-9_*:-]{1,140}$/,
  patternName: 'a Lambda function name or glob ("ledger-*")',
});

const DESTINATION_KEYS = [
  'host',
  'url',
  'port',
  'protocol',
  'methods',
  'paths',
  'cidr',
  'aws',
  'buckets',
  'functions',
  'regions',
  'group',
  'unix',
] as const;

const destination = s
  .object(
    {
      host: s.optional(s.oneOrMany(hostPattern)),
      url: s.optional(s.oneOrMany(urlSpec)),
      port: s.optional(s.oneOrMany(portSpec)),
      protocol: s.optional(s.oneOrMany(protocol)),
      methods: s.optional(s.array(methodName, { minItems: 1 })),
      paths: s.optional(s.array(pathGlob, { minItems: 1 })),
      cidr: s.optional(s.oneOrMany(cidr)),
      aws: s.optional(awsService),
      buckets: s.optional(s.array(bucketName, { minItems: 1 })),
      functions: s.optional(s.array(functionName, { minItems: 1 })),
      regions: s.optional(s.array(awsRegion, { minItems: 1 })),
      group: s.optional(
        NAME.describe(
          'East-west: the Lambda functions of that SmartGroup (its name globs and regions), invoked through the Lambda API.',
        ),
      ),
      unix: s.optional(s.oneOrMany(unixPattern)),
    },
    {
      minProperties: 1,
      refine: (to) => {
        const issues: Issue[] = [];
        const has = (k: (typeof DESTINATION_KEYS)[number]) => to[k] !== undefined;
        const conflict = (key: string, message: string) => issues.push({ path: [key], message });
        // A socket is local IPC: no host, address, port or HTTP fact applies to it. Reported alone,
        // so the author does not also read the network rules' complaints about the same fields.
        const withUnix = DESTINATION_KEYS.filter((k) => k !== 'unix' && has(k));
        if (has('unix') && withUnix.length > 0)
          return [
            {
              path: ['unix'],
              message: `unix names a local socket, not a network destination: do not combine it with ${withUnix.join(', ')}`,
            },
          ];
        if (
          has('group') &&
          (has('host') ||
            has('url') ||
            has('cidr') ||
            has('aws') ||
            has('paths') ||
            has('methods') ||
            has('regions'))
        )
          conflict('group', 'group names its own endpoints: combine it with port or protocol only');
        if (has('url') && (has('host') || has('port') || has('paths') || has('aws')))
          conflict(
            'url',
            'url already names host, port and path: do not combine it with host, port, paths or aws',
          );
        if (has('aws') && (has('host') || has('cidr')))
          conflict('aws', 'aws names its own endpoints: do not combine it with host or cidr');
        if (has('buckets') && to.aws !== 's3') conflict('buckets', 'buckets needs aws: s3');
        if (has('functions') && to.aws !== 'lambda') conflict('functions', 'functions needs aws: lambda');
        if (has('regions') && !has('aws')) conflict('regions', 'regions needs aws');
        if (to.aws === 's3' && !has('buckets'))
          conflict(
            'aws',
            'aws: s3 needs buckets (a rule for all of S3 would reach every bucket in the world)',
          );
        if (to.aws === 'lambda' && !has('functions')) conflict('aws', 'aws: lambda needs functions');
        if (to.aws === 's3' && has('paths'))
          conflict('paths', 'aws: s3 sets the paths itself (bucket prefixes)');
        if (to.aws === 'lambda' && (has('paths') || has('methods')))
          conflict('aws', 'aws: lambda sets paths and methods itself (the invoke API)');
        if ((has('paths') || has('methods')) && !has('host') && !has('url') && !has('aws') && !has('cidr'))
          conflict(
            has('paths') ? 'paths' : 'methods',
            'paths and methods need a host, url, cidr or aws destination',
          );
        return issues;
      },
    },
  )
  .describe('Where traffic goes. Every field given must match; at least one field.');

const allowRule = s.object({
  to: destination,
  description: s.optional(s.string({ maxLength: 2000 })),
  sensitivity: s.optional(
    s
      .enum(['low', 'normal', 'high', 'critical'] as const)
      .describe(
        'How much harm reaching this destination could do (default normal): weighs the blast-radius score (0.5, 1, 4, 10), never the decision.',
      ),
  ),
});

const denyRule = s.object({
  to: destination,
  mode: s.optional(
    s.enum(['enforce', 'observe'] as const).describe('Override the policy mode for this deny rule.'),
  ),
  description: s.optional(s.string({ maxLength: 2000 })),
});

const fileGlob = s
  .string({
    minLength: 1,
    maxLength: 1024,
    refine: (v) => (v.includes('\0') ? 'must not contain NUL' : checkGlobStars(v)),
  })
  .describe(
    'Executable or addon: a glob on the full path ("/usr/bin/git", "/var/task/**/*.node") or a bare file name ("git").',
  );

const selector = s
  .object({
    cloud: s.optional(s.oneOrMany(s.enum(['aws', 'azure', 'gcp', 'other'] as const))),
    account: s.optional(s.oneOrMany(s.string({ minLength: 1, maxLength: 256 }))),
    region: s.optional(s.oneOrMany(s.string({ minLength: 1, maxLength: 64 }))),
    name: s.optional(
      s.oneOrMany(s.string({ minLength: 1, maxLength: 256 }).describe('Workload name or glob ("charge-*").')),
    ),
    runtime: s.optional(s.oneOrMany(s.string({ minLength: 1, maxLength: 64 }))),
    tags: s.optional(
      s
        .record(s.string({ maxLength: 256 }), /^[A-Za-z0-9.:/_+=@ -]{1,128}$/, 'a tag key')
        .describe('Tag equality (value may be a glob).'),
    ),
    hasTags: s.optional(
      s.array(s.string({ pattern: /^[A-Za-z0-9.:/_+=@ -]{1,128}$/, patternName: 'a tag key' })),
    ),
    attributes: s.optional(
      s.record(
        s.oneOrMany(s.string({ maxLength: 256 })),
        /^[A-Za-z][A-Za-z0-9._-]{0,127}$/,
        'an identity attribute key',
      ),
    ),
  })
  .describe('Every field given must match the workload identity. An empty match selects every workload.');

export const smartGroupSchema = s.object({
  apiVersion: s.enum([API_VERSION] as const),
  kind: s.enum(['SmartGroup'] as const),
  metadata,
  spec: s.object({ match: selector }),
});

export const egressPolicySchema = s.object({
  apiVersion: s.enum([API_VERSION] as const),
  kind: s.enum(['EgressPolicy'] as const),
  metadata,
  spec: s.object({
    appliesTo: s.array(NAME, { minItems: 1 }).describe('SmartGroup names this policy governs.'),
    mode: s
      .enum(['enforce', 'observe'] as const)
      .describe('enforce blocks; observe records would-deny and blocks nothing.'),
    owner: s.optional(
      s.string({ minLength: 1, maxLength: 256 }).describe('Team or person answerable for this policy.'),
    ),
    description: s.optional(s.string({ maxLength: 2000 })),
    allow: s.optional(s.array(allowRule)),
    deny: s.optional(s.array(denyRule)),
    exec: s.optional(
      s.object({
        allow: s.optional(s.array(fileGlob)),
        allowNode: s.optional(
          s
            .boolean()
            .describe('The Node binary running the function may start (default true; the shim governs it).'),
        ),
      }),
    ),
    addons: s.optional(s.object({ allow: s.array(fileGlob) })),
  }),
});

const guardrailException = s.object({
  policy: s
    .string({ minLength: 1, maxLength: 256 })
    .describe('EgressPolicy name or glob the exception covers.'),
  reason: s
    .string({ minLength: 1, maxLength: 2000 })
    .describe('Why: an exception without a reason is refused.'),
  guardrails: s.optional(s.array(s.enum(GUARDRAIL_IDS))),
  cidrs: s.optional(s.array(cidr)),
  hosts: s.optional(s.array(hostPattern)),
});

export const guardrailSchema = s.object({
  apiVersion: s.enum([API_VERSION] as const),
  kind: s.enum(['Guardrail'] as const),
  metadata,
  spec: s.object({
    unselectedWorkloads: s.optional(
      s
        .enum(['observe', 'enforce', 'allow'] as const)
        .describe(
          'What governs a workload no EgressPolicy selects (default observe: record everything, block nothing).',
        ),
    ),
    requireOwner: s.optional(s.boolean()),
    forbidAllowAll: s.optional(s.boolean()),
    forbidMetadataEndpoints: s.optional(s.boolean()),
    forbidBroadWildcards: s.optional(s.boolean()),
    forbidContainerSockets: s.optional(
      s
        .boolean()
        .describe(
          'No allow rule may reach a container runtime socket (docker.sock, containerd, CRI-O, Podman, BuildKit); default true.',
        ),
    ),
    requireEnforce: s.optional(s.boolean().describe('Every EgressPolicy must be in enforce mode.')),
    requireObserveFirst: s.optional(
      s
        .boolean()
        .describe(
          'A new EgressPolicy starts in observe mode: enforce only once a previous revision held it.',
        ),
    ),
    forbidDestinations: s.optional(
      s.array(
        s.object(
          {
            host: s.optional(hostPattern),
            cidr: s.optional(cidr),
            reason: s.optional(s.string({ maxLength: 2000 })),
          },
          { minProperties: 1 },
        ),
      ),
    ),
    exceptions: s.optional(s.array(guardrailException)),
  }),
});

export type SmartGroupDoc = Infer<typeof smartGroupSchema>;
export type EgressPolicyDoc = Infer<typeof egressPolicySchema>;
export type GuardrailDoc = Infer<typeof guardrailSchema>;
export type Destination = Infer<typeof destination>;
export type SelectorDoc = Infer<typeof selector>;
export type PolicyDocument = SmartGroupDoc | EgressPolicyDoc | GuardrailDoc;

export const documentSchemas = {
  SmartGroup: smartGroupSchema,
  EgressPolicy: egressPolicySchema,
  Guardrail: guardrailSchema,
} as const;

/** The JSON Schema of one document (any kind), for editors (yaml-language-server) and other tools. */
export function policyJsonSchema(): JsonSchema {
  const kinds = Object.entries(documentSchemas).map(([kind, schema]) => ({
    if: { properties: { kind: { const: kind } }, required: ['kind'] },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema keyword.
    then: schema.toJsonSchema(),
  }));
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://bulkhead.dev/schema/v1/bulkhead-policy.schema.json',
    title: 'Bulkhead policy document',
    description:
      'One document of a Bulkhead policy set: SmartGroup, EgressPolicy or Guardrail (apiVersion bulkhead.dev/v1).',
    type: 'object',
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      apiVersion: { const: API_VERSION },
      kind: { enum: Object.keys(documentSchemas) },
    },
    allOf: kinds,
  };
}
