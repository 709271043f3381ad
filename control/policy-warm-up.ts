// The policy thread's warm-up: the first apply after a start would otherwise run a cold YAML parser.
// Parsing a 44-rule set takes ~20–35 ms for the first few sets a process parses and ~2 ms once V8
// has compiled the parser, which takes a few dozen sets (test/bench/control-scale.bench.ts: the
// check of the first apply after a start). So the thread parses, checks, compiles and signs a
// built-in sample that many times at start, one pass per turn of its event loop: a real request
// waits behind one pass at most. Nothing of a pass is kept.
//
// Cost model: ~0.2 s of the policy thread's CPU once per start (the first passes are the slow
// ones), none on the main thread; a server started with `warmUpPasses: 0` skips it.
import type { KeyObject } from 'node:crypto';
import {
  blastRadius,
  canonicalJson,
  checkGuardrails,
  compilePolicy,
  diffPolicies,
  type PolicySet,
  parseIdentity,
  parsePolicy,
  serializeEnvelope,
  signBundle,
} from '../policy/index.js';

/** Passes at start: about where the time of a pass stops falling (~30 ms for the first, ~4 ms from the 14th on). */
export const WARM_UP_PASSES = 16;

const TEAMS = ['payments', 'ledger', 'search', 'notify'];

/** A set in the shapes real ones use: block and flow maps, quoted wildcards, ports, L7 rules, CIDRs, denies, a guardrail. */
function sample(pass: number): string {
  const docs = TEAMS.map(
    (team, k) => `# ${team}: what it may reach
apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata:
  name: ${team}-prod
  description: ${team} functions in production
spec:
  match:
    cloud: aws
    tags: { app: ${team}, env: prod }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: ${team}-egress }
spec:
  appliesTo: [${team}-prod]
  mode: ${k % 2 === 0 ? 'enforce' : 'observe'}
  owner: ${team}-team@example.com
  allow:
    - to:
        { host: api.${team}.example.com, port: 443, methods: [GET, POST], paths: ["/v1/items/**"] }
    - to: { host: "*.${team}.internal", port: "8000-8100" }
    - to: { host: change-${pass}.${team}.example.com, port: 443 }
    - to: { cidr: 10.${k}.0.0/16, port: 5432, protocol: tcp }
    - to: { url: "https://github.com/${team}/**" }
  deny:
    - to: { host: "*.pastebin.com" }
    - to: { cidr: 169.254.169.254/32 }
`,
  );
  docs.push(`apiVersion: bulkhead.dev/v1
kind: Guardrail
metadata:
  name: org-baseline
spec:
  forbidDestinations:
    - host: "*.ngrok.io"
      reason: tunnels out of the organisation
`);
  return docs.join('---\n');
}

const IDENTITY = parseIdentity('cloud=aws,name=warm-up,tag.app=payments,tag.env=prod');

/** One pass: what an apply's check and install do with a set. `previous` is the last pass's set (diffed against). */
export function warmUpPass(pass: number, previous: PolicySet | undefined, key: KeyObject): PolicySet {
  const parsed = parsePolicy([{ file: 'warm-up.yaml', text: sample(pass) }]);
  if (!parsed.ok) throw new Error(`warm-up sample refused: ${parsed.errors[0]?.message ?? 'unknown'}`);
  const { set } = parsed;
  checkGuardrails(set, { previous });
  if (previous) diffPolicies(previous, set);
  blastRadius(set);
  const compiled = compilePolicy(set, IDENTITY);
  canonicalJson(compiled);
  const now = Date.now();
  serializeEnvelope(
    signBundle(
      { policy: compiled, revision: pass, issuedAt: new Date(now), expiresAt: new Date(now + 60_000) },
      key,
    ),
  );
  return set;
}
