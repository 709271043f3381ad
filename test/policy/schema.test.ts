import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { policyJsonSchema } from '../../policy/documents.js';
import { checkGuardrails } from '../../policy/guardrails.js';
import { parsePolicy } from '../../policy/parse.js';

const root = join(import.meta.dirname, '../..');
const schemaFile = join(root, 'policy/schema/bulkhead-policy.schema.json');

describe('JSON Schema', () => {
  it('the checked-in file is what the language definition emits (regenerate: bulkhead policy schema)', () => {
    expect(JSON.parse(readFileSync(schemaFile, 'utf8'))).toEqual(policyJsonSchema());
  });

  const ajv = new Ajv.default({ allErrors: true, strict: false });
  const validate = ajv.compile(policyJsonSchema());

  it.each(['payments.yaml', 'platform-baseline.yaml'])(
    'examples/policy/%s validates against it and checks clean',
    (name) => {
      const text = readFileSync(join(root, 'examples/policy', name), 'utf8');
      const docs = parseAllDocuments(text);
      expect(Array.isArray(docs) && docs.length).toBe(3);
      for (const doc of Array.isArray(docs) ? docs : [])
        expect(validate(doc.toJS()), JSON.stringify(validate.errors)).toBe(true);
      const parsed = parsePolicy([{ file: name, text }]);
      expect(parsed.ok && checkGuardrails(parsed.set)).toEqual([]);
    },
  );

  it('refuses unknown fields, like the parser', () => {
    const doc = {
      apiVersion: 'bulkhead.dev/v1',
      kind: 'SmartGroup',
      metadata: { name: 'g' },
      spec: { match: {}, extra: 1 },
    };
    expect(validate(doc)).toBe(false);
    expect(parsePolicy([{ file: 'g.json', text: JSON.stringify(doc) }]).ok).toBe(false);
  });

  it('whatever the parser accepts, the schema accepts (the schema is never stricter than the language)', () => {
    const value = fc.oneof(
      fc.constantFrom(
        'api.example.com',
        '*.example.com',
        443,
        '8000-8100',
        'tcp',
        'POST',
        '/v1/**',
        '10.0.0.0/8',
        's3',
        'b',
        '/var/run/app.sock',
        '/run/**',
        '@app-*',
        'run/x.sock',
      ),
      fc.array(fc.constantFrom('api.example.com', 443, 'GET', '/x', 'tcp'), { minLength: 1, maxLength: 2 }),
    );
    const to = fc.dictionary(
      fc.constantFrom(
        'host',
        'url',
        'port',
        'protocol',
        'methods',
        'paths',
        'cidr',
        'aws',
        'buckets',
        'regions',
        'unix',
      ),
      value,
      { minKeys: 1, maxKeys: 3 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.record({ to }), { maxLength: 3 }),
        fc.constantFrom('enforce', 'observe'),
        (allow, mode) => {
          const docs = [
            {
              apiVersion: 'bulkhead.dev/v1',
              kind: 'SmartGroup',
              metadata: { name: 'g' },
              spec: { match: {} },
            },
            {
              apiVersion: 'bulkhead.dev/v1',
              kind: 'EgressPolicy',
              metadata: { name: 'p' },
              spec: { appliesTo: ['g'], mode, owner: 'o', allow },
            },
          ];
          if (parsePolicy([{ file: 'p.json', text: JSON.stringify(docs) }]).ok)
            for (const doc of docs) expect(validate(doc), JSON.stringify(validate.errors)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
