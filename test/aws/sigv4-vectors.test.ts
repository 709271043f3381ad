// The SigV4 conformance vectors (test/conformance/sigv4-vectors.json) are what the Node signer and
// awsProof answer today: regenerated here and compared byte for byte with the checked-in file, which
// the Python port (runtime-shims/python tests/test_sigv4.py) is tested against. `npm run conformance`
// rewrites it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildVectors, renderVectors, VECTORS_FILE } from '../conformance/sigv4.js';

describe('SigV4 conformance vectors', () => {
  it('are what the Node signer answers (run `npm run conformance` to update)', () => {
    const vectors = buildVectors();
    const text = renderVectors(vectors);
    if (process.env.UPDATE_CONFORMANCE === '1') writeFileSync(VECTORS_FILE, text);
    const current = existsSync(VECTORS_FILE) ? readFileSync(VECTORS_FILE, 'utf8') : '';
    if (current !== text) {
      const old = current === '' ? { requests: [], proofs: [] } : JSON.parse(current);
      const byName = new Map<string, string>(
        [...old.requests, ...old.proofs].map((v: { name: string; expect: unknown }) => [
          v.name,
          JSON.stringify(v.expect),
        ]),
      );
      const changed = [...vectors.requests, ...vectors.proofs]
        .filter((v) => byName.get(v.name) !== JSON.stringify(v.expect))
        .map((v) => `  ${v.name}`);
      expect.fail(
        'test/conformance/sigv4-vectors.json is out of date: run `npm run conformance` to update it ' +
          `(then check the Python signer agrees: runtime-shims/python tests/test_sigv4.py).\n${changed.slice(0, 40).join('\n')}`,
      );
    }
    expect(vectors.requests.length).toBeGreaterThanOrEqual(200);
    // Both kinds of proof vector: signed proofs and the errors' messages.
    expect(vectors.proofs.some((p) => (p.expect as { type?: string }).type === 'aws')).toBe(true);
    expect(vectors.proofs.some((p) => typeof (p.expect as { error?: string }).error === 'string')).toBe(true);
  });

  it('are reproducible: the same bytes twice', () => {
    expect(JSON.stringify(buildVectors())).toBe(JSON.stringify(buildVectors()));
  });
});
