import { type CompileOptions, compilePolicy } from '../../policy/compile.js';
import { createDecider } from '../../policy/decide.js';
import { parseIdentity } from '../../policy/identity.js';
import { type PolicySet, parsePolicy } from '../../policy/parse.js';

/** Parse YAML that must be valid; fails the test with every error otherwise. */
export function mustParse(text: string, file = 'test.yaml'): PolicySet {
  const result = parsePolicy([{ file, text }]);
  if (!result.ok)
    throw new Error(
      result.errors.map((e) => `${e.file}:${e.line}:${e.column} ${e.path}: ${e.message}`).join('\n'),
    );
  return result.set;
}

export const GROUP = `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: app }
spec:
  match: { tags: { app: demo } }
`;

export const APP = parseIdentity('cloud=aws,name=fn,region=us-east-1,tag.app=demo');

/** A policy for the `app` group with the given allow / deny rule YAML (flow mappings, one per line). */
export function policyYaml(options: {
  allow?: string[];
  deny?: string[];
  mode?: string;
  extra?: string;
}): string {
  const lines = [
    GROUP,
    '---',
    'apiVersion: bulkhead.dev/v1',
    'kind: EgressPolicy',
    'metadata: { name: p }',
    'spec:',
    '  appliesTo: [app]',
    `  mode: ${options.mode ?? 'enforce'}`,
    '  owner: team@example.com',
  ];
  if (options.allow) lines.push('  allow:', ...options.allow.map((r) => `    - ${r}`));
  if (options.deny) lines.push('  deny:', ...options.deny.map((r) => `    - ${r}`));
  if (options.extra) lines.push(options.extra);
  return `${lines.join('\n')}\n`;
}

export function deciderFor(options: Parameters<typeof policyYaml>[0], compileOptions: CompileOptions = {}) {
  return createDecider(compilePolicy(mustParse(policyYaml(options)), APP, compileOptions), {
    execPath: '/opt/node/bin/node',
  });
}
