// The extension's parts on their own: spool forwarding against a real HTTP server, the
// configuration rules, the watcher of the shim's done file, and the emulator's telemetry validation.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseSubscription } from '../../emulator/telemetry.js';
import { ConfigError, loadExtensionConfig } from '../../extensions/config.js';
import { DoneWatcher } from '../../extensions/done-watcher.js';
import { ReportForwarder } from '../../extensions/report-forwarder.js';
import { DONE_FILE, readCursor, spoolPath } from '../../extensions/state-files.js';
import { generateKeyPair } from '../../policy/keys.js';
import type { DenyRecord } from '../../policy/types.js';
import { LineFile } from '../../runtime-shims/node/aws/extension-sync.js';
import { expectTakenFromWholeLine, lineIds, stateFileContents } from '../aws/helpers.js';

const temps: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ext-parts-'));
  temps.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

function record(n: number): DenyRecord {
  return {
    id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    time: '2026-11-28T00:00:00.000Z',
    count: 1,
    workload: { cloud: 'aws', name: 'fn' },
    kind: 'connect',
    destination: { host: `h${n}.test`, port: 443 },
    decision: 'deny',
    mode: 'enforce',
    rule: 'default-deny',
    revision: 1,
  };
}

/** A stand-in for POST /v1/reports that stores by id (idempotent) and can be told to fail. */
class ReportSink {
  server!: Server;
  url = '';
  stored = new Map<string, DenyRecord>();
  received: DenyRecord[] = [];
  hits: unknown[] = [];
  status = 202;
  authorizations: string[] = [];

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => {
        text += d;
      });
      req.on('end', () => {
        this.authorizations.push(req.headers.authorization ?? '');
        if (this.status !== 202) {
          res.writeHead(this.status).end('{}');
          return;
        }
        const { records, hits } = JSON.parse(text) as { records: DenyRecord[]; hits?: unknown[] };
        if (hits) this.hits.push(...hits);
        let duplicate = 0;
        for (const r of records) {
          this.received.push(r);
          if (this.stored.has(r.id)) duplicate++;
          else this.stored.set(r.id, r);
        }
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ stored: records.length - duplicate, duplicate, rejected: 0 }));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('report forwarder', () => {
  const sink = new ReportSink();
  beforeAll(() => sink.start());
  afterAll(() => sink.stop());
  afterEach(() => {
    sink.stored.clear();
    sink.received = [];
    sink.hits = [];
    sink.status = 202;
  });

  function forwarder(stateDir: string, batchSize?: number): ReportForwarder {
    return new ReportForwarder({
      stateDir,
      controlUrl: sink.url,
      token: 'workload-token',
      log: () => {},
      ...(batchSize ? { batchSize } : {}),
    });
  }

  it('numbers records per sandbox from 1, leaves a partial line, skips garbage', async () => {
    const dir = tempDir();
    const spool = spoolPath(dir);
    appendFileSync(spool, `${JSON.stringify(record(1))}\nnot json\n${JSON.stringify(record(2))}\n{"id":`);
    const f = forwarder(dir);
    const result = await f.forward(Date.now() + 5_000);
    expect(result).toMatchObject({ sent: 2, malformed: 1, pending: false });
    expect(sink.received.map((r) => [r.id, r.seq, r.sandboxId])).toEqual([
      [record(1).id, 1, f.sandboxId],
      [record(2).id, 2, f.sandboxId],
    ]);
    expect(sink.authorizations.at(-1)).toBe('Bearer workload-token');
    // The writer finishes the line later: it goes out next time, numbered on.
    appendFileSync(spool, `${JSON.stringify(record(3)).slice(6)}\n`);
    await f.forward(Date.now() + 5_000);
    expect(sink.received.at(-1)).toMatchObject({ id: record(3).id, seq: 3 });
    expect(readCursor(dir)).toMatchObject({ offset: statSync(spool).size, nextSeq: 4 });
  });

  it("sends the spool's rule hit counts in hits, neither numbered nor malformed (contract §3)", async () => {
    const dir = tempDir();
    const count = {
      workload: { name: 'fn' },
      revision: 3,
      since: 't0',
      until: 't1',
      rules: { 'p/allow[0]': 5 },
    };
    appendFileSync(
      spoolPath(dir),
      `${JSON.stringify(record(1))}\n${JSON.stringify({ hits: count })}\n${JSON.stringify(record(2))}\n`,
    );
    const f = forwarder(dir);
    const result = await f.forward(Date.now() + 5_000);
    expect(result).toMatchObject({ sent: 2, malformed: 0, pending: false });
    expect(sink.received.map((r) => r.seq)).toEqual([1, 2]);
    expect(sink.hits).toEqual([count]);
    // Hit counts alone make a batch too.
    appendFileSync(spoolPath(dir), `${JSON.stringify({ hits: { ...count, revision: 4 } })}\n`);
    await f.forward(Date.now() + 5_000);
    expect(sink.hits.map((h) => (h as { revision: number }).revision)).toEqual([3, 4]);
    expect(readCursor(dir)).toMatchObject({ offset: statSync(spoolPath(dir)).size, nextSeq: 3 });
  });

  it('keeps records when the control API fails and resends them with the same ids and seqs', async () => {
    const dir = tempDir();
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(1))}\n${JSON.stringify(record(2))}\n`);
    sink.status = 503;
    const first = forwarder(dir);
    const failed = await first.forward(Date.now() + 5_000);
    expect(failed).toMatchObject({ sent: 0, pending: true });
    sink.status = 202;
    // A new process (cold start after a reset) resumes from the persisted cursor.
    const second = forwarder(dir);
    expect(second.sandboxId).toBe(first.sandboxId);
    await second.forward(Date.now() + 5_000);
    expect(sink.received.map((r) => r.seq)).toEqual([1, 2]);
    expect(await second.forward(Date.now() + 5_000)).toMatchObject({ sent: 0, pending: false });
  });

  it('drops a batch the control API calls invalid instead of blocking the spool', async () => {
    const dir = tempDir();
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(1))}\n`);
    sink.status = 400;
    const f = forwarder(dir);
    await f.forward(Date.now() + 5_000);
    sink.status = 202;
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(2))}\n`);
    await f.forward(Date.now() + 5_000);
    expect(sink.received.map((r) => r.id)).toEqual([record(2).id]);
  });

  it('hasPending: false with no spool, true once a line is appended, false once forwarded', async () => {
    const dir = tempDir();
    const f = forwarder(dir);
    expect(f.hasPending()).toBe(false);
    writeFileSync(spoolPath(dir), '');
    expect(f.hasPending()).toBe(false);
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(1))}\n`);
    expect(f.hasPending()).toBe(true);
    // Not acknowledged: still pending.
    sink.status = 503;
    await f.forward(Date.now() + 5_000);
    expect(f.hasPending()).toBe(true);
    sink.status = 202;
    await f.forward(Date.now() + 5_000);
    expect(f.hasPending()).toBe(false);
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(2))}\n`);
    expect(f.hasPending()).toBe(true);
    await f.forward(Date.now() + 5_000);
    expect(f.hasPending()).toBe(false);
    expect(sink.received.map((r) => r.seq)).toEqual([1, 2]);
  });

  it('delivers every record exactly once in order however the writes are split (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 7 }),
        async (count, cuts, batchSize) => {
          sink.stored.clear();
          sink.received = [];
          const dir = tempDir();
          const text = Array.from({ length: count }, (_, i) => `${JSON.stringify(record(i + 1))}\n`).join('');
          const f = forwarder(dir, batchSize);
          let written = 0;
          for (const cut of cuts) {
            const end = Math.min(text.length, written + cut);
            appendFileSync(spoolPath(dir), text.slice(written, end));
            written = end;
            await f.forward(Date.now() + 5_000);
          }
          appendFileSync(spoolPath(dir), text.slice(written));
          await f.forward(Date.now() + 5_000);
          expect(sink.received.map((r) => r.id)).toEqual(
            Array.from({ length: count }, (_, i) => record(i + 1).id),
          );
          expect(sink.received.map((r) => r.seq)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('extension configuration', () => {
  it('takes the environment over the layer config and reads the baked fallback bundle', () => {
    const dir = tempDir();
    const keys = generateKeyPair();
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        controlUrl: 'http://baked.example:8080',
        trustedKeys: [keys.publicKeyPem],
        failMode: 'observe',
        fallbackBundle: 'fallback.json',
      }),
    );
    writeFileSync(join(dir, 'fallback.json'), '{"payloadType":"x"}');
    const baked = loadExtensionConfig({}, dir);
    expect(baked).toMatchObject({
      controlUrl: 'http://baked.example:8080',
      failMode: 'observe',
      fallbackEnvelope: '{"payloadType":"x"}',
      stateDir: '/tmp/bulkhead',
      fetchTimeoutMs: 2_000,
      waitForRuntimeDone: true,
    });
    // No local endpoint (port) and no refresh interval any more: the ready and done files replaced them.
    expect(Object.keys(baked)).not.toContain('port');
    expect(Object.keys(baked)).not.toContain('refreshIntervalMs');
    expect(baked.trustedKeys.map((k) => k.keyId)).toEqual([keys.keyId]);
    const overridden = loadExtensionConfig(
      {
        BULKHEAD_CONTROL_URL: 'https://env.example',
        BULKHEAD_FAIL_MODE: 'closed',
        BULKHEAD_STATE_DIR: dir,
        BULKHEAD_WAIT_RUNTIME_DONE: '0',
      },
      dir,
    );
    expect(overridden).toMatchObject({
      controlUrl: 'https://env.example',
      failMode: 'closed',
      stateDir: dir,
      waitForRuntimeDone: false,
    });
  });

  it('takes BULKHEAD_TOKEN_SECRET when no BULKHEAD_TOKEN is set, and refuses an ARN that is not a secret', () => {
    const dir = tempDir();
    const arn = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:bulkhead/token-AbC123';
    expect(loadExtensionConfig({ BULKHEAD_TOKEN_SECRET: arn }, dir)).toMatchObject({
      token: undefined,
      tokenSecret: arn,
    });
    // A plain token wins: the secret is not read.
    expect(loadExtensionConfig({ BULKHEAD_TOKEN: 'bhk_x', BULKHEAD_TOKEN_SECRET: arn }, dir)).toMatchObject({
      token: 'bhk_x',
      tokenSecret: undefined,
    });
    expect(() => loadExtensionConfig({ BULKHEAD_TOKEN_SECRET: 'arn:aws:s3:::bucket/token' }, dir)).toThrow(
      /^BULKHEAD_TOKEN_SECRET: .*Secrets Manager secret or an SSM parameter/,
    );
  });

  it('refuses bad values with messages that carry no secret', () => {
    const dir = tempDir();
    expect(() => loadExtensionConfig({ BULKHEAD_FAIL_MODE: 'open' }, dir)).toThrow(ConfigError);
    expect(() => loadExtensionConfig({ BULKHEAD_CONTROL_URL: 'ftp://x' }, dir)).toThrow(/http/);
    expect(() => loadExtensionConfig({ BULKHEAD_CONTROL_URL: 'http://user:pw@x' }, dir)).toThrow(
      /credentials/,
    );
    expect(() => loadExtensionConfig({ BULKHEAD_TOKEN: 'a\nb' }, dir)).toThrow(/one line/);
    expect(() => loadExtensionConfig({ BULKHEAD_FETCH_TIMEOUT_MS: '99999999' }, dir)).toThrow(/between/);
    try {
      loadExtensionConfig(
        { BULKHEAD_TRUSTED_KEYS: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC1zZWNyZXQ=' },
        dir,
      );
    } catch (error) {
      expect((error as Error).message).not.toContain('c2VjcmV0');
    }
    writeFileSync(join(dir, 'config.json'), '[1,2]');
    expect(() => loadExtensionConfig({}, dir)).toThrow(/JSON object/);
  });
});

describe('done watcher (the shim says done through a file)', () => {
  /** In place, one write, as the shim writes it. */
  function say(file: string, text: string): void {
    writeFileSync(file, text, { mode: 0o600 });
  }
  function watcher(): { file: string; done: DoneWatcher } {
    const file = join(tempDir(), DONE_FILE);
    const done = new DoneWatcher(file);
    done.start();
    watchers.push(done);
    return { file, done };
  }
  const watchers: DoneWatcher[] = [];
  afterEach(() => {
    for (const done of watchers.splice(0)) done.close();
  });

  it('attached() is false until the shim announces itself, then stays true', () => {
    const { file, done } = watcher();
    expect(done.attached()).toBe(false);
    expect(done.attached()).toBe(false);
    say(file, '- 0\n');
    expect(done.attached()).toBe(true);
    rmSync(file);
    expect(done.attached()).toBe(true);
  });

  it('wait resolves the queued count as soon as the line for its request is written', async () => {
    const { file, done } = watcher();
    say(file, '- 0\n');
    const start = performance.now();
    setTimeout(() => say(file, 'req-1 3\n'), 20);
    expect(await done.wait('req-1', Date.now() + 10_000)).toBe(3);
    // inotify wakes it at once (well under its 50 ms backup poll); a noisy machine gets slack.
    expect(performance.now() - start).toBeLessThan(1000);
    // Already there: at once, and 0 is a count like any other.
    say(file, 'req-2 0\n');
    expect(await done.wait('req-2', Date.now() + 10_000)).toBe(0);
  });

  it("reads the shim's records (fixed size, rewritten in place on a kept descriptor)", async () => {
    const { file, done } = watcher();
    const shim = new LineFile(file, 0o600);
    try {
      expect(shim.open()).toBe(true);
      expect(done.attached()).toBe(true);
      shim.write('-', 0);
      expect(await done.wait('-', Date.now() - 1)).toBe(0);
      shim.write('x'.repeat(200), 12);
      expect(await done.wait('x'.repeat(200), Date.now() - 1)).toBe(12);
      // A shorter record over a longer one: no tail of the old one is left to misread.
      setTimeout(() => shim.write('req-1', 3), 20);
      expect(await done.wait('req-1', Date.now() + 10_000)).toBe(3);
      expect(await done.wait('x'.repeat(200), Date.now() - 1)).toBeUndefined();
    } finally {
      shim.close();
    }
  });

  it('ignores a line for another request and returns undefined at the deadline', async () => {
    const { file, done } = watcher();
    say(file, 'req-0 5\n');
    const start = performance.now();
    setTimeout(() => say(file, 'req-10 7\n'), 10);
    expect(await done.wait('req-1', Date.now() + 120)).toBeUndefined();
    const waited = performance.now() - start;
    expect(waited).toBeGreaterThanOrEqual(100);
    expect(waited).toBeLessThan(1000);
    // A deadline already past: one look, no wait.
    expect(await done.wait('req-1', Date.now() - 1)).toBeUndefined();
    expect(await done.wait('req-10', Date.now() - 1)).toBe(7);
  });

  it('returns at once when the backstop (runtimeDone) settles first', async () => {
    const { file, done } = watcher();
    say(file, '- 0\n');
    let settle!: () => void;
    const backstop = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const start = performance.now();
    setTimeout(settle, 20);
    expect(await done.wait('req-1', Date.now() + 10_000, backstop)).toBeUndefined();
    expect(performance.now() - start).toBeLessThan(1000);
    // The line already there wins over a settled backstop.
    say(file, 'req-2 4\n');
    expect(await done.wait('req-2', Date.now() + 10_000, Promise.resolve())).toBe(4);
  });

  it('without a watch (never started) it still finds the line by polling', async () => {
    const file = join(tempDir(), DONE_FILE);
    const done = new DoneWatcher(file);
    setTimeout(() => say(file, 'req-1 2\n'), 20);
    expect(await done.wait('req-1', Date.now() + 10_000)).toBe(2);
    expect(await done.wait('req-9', Date.now() + 30)).toBeUndefined();
  });

  it('never throws on any file content, never takes a line of another request nor half a line (property)', async () => {
    const { file, done } = watcher();
    await fc.assert(
      fc.asyncProperty(stateFileContents(15), lineIds, async (written, asked) => {
        writeFileSync(file, written);
        const queued = await done.wait(asked, Date.now() - 1);
        if (queued !== undefined)
          expectTakenFromWholeLine(Buffer.from(written).toString('utf8'), asked, queued, 15);
      }),
      { numRuns: 1000 },
    );
    // And the well-formed line of the request asked is always taken.
    await fc.assert(
      fc.asyncProperty(
        fc.uuid(),
        fc.uuid(),
        fc.integer({ min: 0, max: 999_999_999 }),
        async (mine, other, n) => {
          const whole = `${mine} ${n}\n`;
          say(file, whole);
          expect(await done.wait(mine, Date.now() - 1)).toBe(n);
          if (other !== mine) expect(await done.wait(other, Date.now() - 1)).toBeUndefined();
          // Written in place: a read that catches the line half written takes nothing.
          for (let end = 0; end < whole.length; end++) {
            say(file, whole.slice(0, end));
            expect(await done.wait(mine, Date.now() - 1)).toBeUndefined();
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('emulator telemetry subscription validation', () => {
  it('never throws on arbitrary input (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const result = parseSubscription('x', value);
        expect(typeof result.ok).toBe('boolean');
      }),
      { numRuns: 500 },
    );
  });

  it('maps sandbox.localdomain to loopback and checks the documented limits', () => {
    const ok = parseSubscription('x', {
      schemaVersion: '2022-12-13',
      types: ['platform'],
      buffering: { maxItems: 1000, maxBytes: 262144, timeoutMs: 25 },
      destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:4243/path' },
    });
    expect(ok.ok && ok.subscription.url.href).toBe('http://127.0.0.1:4243/path');
    for (const buffering of [
      { maxItems: 999 },
      { maxBytes: 100 },
      { timeoutMs: 24 },
      { timeoutMs: 30_001 },
    ]) {
      const bad = parseSubscription('x', {
        schemaVersion: '2022-12-13',
        types: ['platform'],
        buffering,
        destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:4243/' },
      });
      expect(bad.ok).toBe(false);
    }
    expect(
      parseSubscription('x', {
        schemaVersion: '2022-12-13',
        types: ['platform'],
        destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:9001/' },
      }).ok,
    ).toBe(false);
  });
});

it('reads back what it wrote (cursor file is JSON)', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'spool.cursor.json'), 'garbage');
  expect(readCursor(dir)).toBeUndefined();
  expect(readFileSync(join(dir, 'spool.cursor.json'), 'utf8')).toBe('garbage');
});
