import { describe, expect, it } from 'vitest';
import { formatPath, formatPolicyError } from '../../policy/errors.js';

describe('error formatting', () => {
  it('writes field paths the way an author reads them', () => {
    expect(formatPath(['spec', 'allow', 2, 'to', 'port'])).toBe('spec.allow[2].to.port');
    expect(formatPath(['metadata', 'annotations', 'bulkhead.dev/owner'])).toBe(
      'metadata.annotations["bulkhead.dev/owner"]',
    );
    expect(formatPath([])).toBe('');
    expect(formatPath([0, 'kind'])).toBe('[0].kind');
  });

  it('file:line:column path: message, with the guardrail named', () => {
    expect(
      formatPolicyError({
        file: 'p.yaml',
        line: 14,
        column: 9,
        path: 'spec.allow[2].to.port',
        message: 'expected 1-65535, got 70000',
      }),
    ).toBe('p.yaml:14:9 spec.allow[2].to.port: expected 1-65535, got 70000');
    expect(
      formatPolicyError({
        file: 'p.yaml',
        line: 1,
        column: 1,
        path: '',
        message: 'bad',
        guardrail: 'allow-all',
      }),
    ).toBe('p.yaml:1:1 bad [guardrail allow-all]');
  });
});
