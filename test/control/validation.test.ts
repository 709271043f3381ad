// Parsers of outside input: deny records, cursors, policy bodies, tokens. Property tests.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TokenVerifier } from '../../control/auth.js';
import { RecordError, validateDenyRecord } from '../../control/reports.js';
import { sourcesFromBody } from '../../control/routes/policy.js';
import { decodeCursor, encodeCursor } from '../../control/routes/query.js';
import { openSqliteStore } from '../../control/store/sqlite.js';

const validRecord = fc.record({
  id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/),
  time: fc
    .date({ min: new Date(0), max: new Date(Date.UTC(2100, 0, 1)), noInvalidDate: true })
    .map((d) => d.toISOString()),
  count: fc.integer({ min: 1, max: 1_000_000 }),
  // Attribute names reserved on objects are refused (the test below).
  workload: fc.dictionary(
    fc.stringMatching(/^[a-z.]{1,20}$/).filter((name) => name !== 'constructor' && name !== 'prototype'),
    fc.string({ minLength: 1, maxLength: 40 }),
    { maxKeys: 6 },
  ),
  kind: fc.constantFrom('connect', 'http', 'dns', 'udp', 'exec', 'addon', 'worker', 'tamper', 'unix'),
  destination: fc.record(
    {
      host: fc.domain(),
      port: fc.integer({ min: 0, max: 65535 }),
      protocol: fc.constantFrom('tcp', 'udp', 'http', 'https', 'dns'),
      path: fc.webPath().filter((p) => p.length > 0),
      socket: fc.constantFrom('/var/run/docker.sock', '@dbus-1', '/tmp/app.sock'),
    },
    { requiredKeys: [] },
  ),
  decision: fc.constantFrom('allow', 'deny'),
  mode: fc.constantFrom('enforce', 'observe'),
  rule: fc.string({ minLength: 1, maxLength: 100 }),
  revision: fc.nat(),
});

describe('deny record validation', () => {
  it('refuses workload attribute names reserved on objects', () => {
    for (const name of ['constructor', 'prototype', '__proto__']) {
      const input = JSON.parse(
        `{"id":"r1","time":"2026-12-05T00:00:00Z","workload":{${JSON.stringify(name)}:"x"},"kind":"connect","destination":{},"decision":"deny","mode":"enforce","rule":"r","revision":1}`,
      );
      expect(() => validateDenyRecord(input)).toThrow(`workload: reserved attribute name "${name}"`);
    }
  });

  it('accepts well-formed records and keeps their fields', () => {
    fc.assert(
      fc.property(validRecord, (input) => {
        const { record, timeMs } = validateDenyRecord(input);
        expect(record.id).toBe(input.id);
        expect(timeMs).toBe(Date.parse(input.time));
        expect(record.workload).toEqual(input.workload);
        expect(record.destination.port).toBe(input.destination.port);
        expect(record.destination.socket).toBe(input.destination.socket);
      }),
    );
  });

  it('throws only RecordError on anything else, never a crash', () => {
    fc.assert(
      fc.property(fc.anything(), (input) => {
        try {
          validateDenyRecord(input);
        } catch (error) {
          expect(error).toBeInstanceOf(RecordError);
        }
      }),
    );
  });

  it('accepts a unix record: the socket in destination.socket', () => {
    const { record } = validateDenyRecord({
      id: 'u-1',
      time: '2026-11-28T03:00:00Z',
      workload: { name: 'a' },
      kind: 'unix',
      destination: { socket: '/var/run/docker.sock' },
      decision: 'deny',
      mode: 'enforce',
      rule: 'default-deny',
      revision: 4,
    });
    expect(record).toMatchObject({ kind: 'unix', destination: { socket: '/var/run/docker.sock' } });
    expect(() => validateDenyRecord({ ...record, destination: { socket: '' } })).toThrow(
      /^destination\.socket: /,
    );
    expect(() => validateDenyRecord({ ...record, destination: { socket: 7 } })).toThrow(
      /^destination\.socket: /,
    );
  });

  it('drops unknown fields and names the bad one', () => {
    const { record } = validateDenyRecord({
      id: 'x',
      time: '2026-11-28T03:00:00Z',
      workload: { name: 'a' },
      kind: 'connect',
      destination: { host: 'A.Example.COM', evil: 'yes' },
      decision: 'deny',
      mode: 'enforce',
      rule: 'r',
      revision: 1,
      __proto__: { polluted: true },
      extra: 'dropped',
    });
    expect(record).not.toHaveProperty('extra');
    expect(record.destination).toEqual({ host: 'a.example.com' });
    expect(() => validateDenyRecord({ ...record, seq: 3 })).toThrow(/sandboxId and seq/);
    expect(() => validateDenyRecord({ ...record, time: 'yesterday' })).toThrow(/^time: /);
  });
});

describe('cursors and policy bodies', () => {
  it('round-trips cursors and refuses forged ones', () => {
    fc.assert(
      fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), (n) => {
        expect(decodeCursor(encodeCursor(n))).toBe(n);
      }),
    );
    fc.assert(
      fc.property(fc.string(), (text) => {
        const position = decodeCursor(text);
        if (position !== undefined) expect(Number.isSafeInteger(position)).toBe(true);
      }),
    );
  });

  it('turns any body into sources or a clear refusal', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.json()),
        fc.constantFrom('application/json', 'application/yaml'),
        (body, type) => {
          try {
            const sources = sourcesFromBody(body, type, 'policy.yaml');
            for (const source of sources) expect(typeof source.text).toBe('string');
          } catch (error) {
            expect((error as Error).message).toMatch(/empty body|not JSON|sources/);
          }
        },
      ),
    );
  });
});

describe('token verification', () => {
  it('refuses every malformed or unknown token with 401', async () => {
    const store = openSqliteStore(':memory:');
    const verifier = new TokenVerifier(store);
    try {
      await fc.assert(
        fc.asyncProperty(fc.option(fc.string(), { nil: undefined }), async (header) => {
          const result = await verifier.verify(header);
          expect(result.ok).toBe(false);
        }),
      );
    } finally {
      await store.close();
    }
  });
});
