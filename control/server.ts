// The control API: a Fastify server over a ControlStore. Routes live in control/routes/;
// this file wires authentication, limits, errors, logging, OpenAPI, health and metrics.
import swagger from '@fastify/swagger';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { generateKeyPair } from '../policy/index.js';
import { createAttestor, verifiersFor } from './attest/index.js';
import type { AttestationConfig, ProofVerifier } from './attest/types.js';
import { type IssuedToken, type IssueOptions, issueToken, type TokenGrant, TokenVerifier } from './auth.js';
import { ConnectionGuard, connectionBudget, countOpenFiles, readOpenFileLimit } from './connection-guard.js';
import type { ControlContext, ControlLimits } from './context.js';
import { LongPollHub, primeTickQueue } from './long-poll.js';
import { ControlMetrics, gauge } from './metrics.js';
import { PolicyState, type SigningKey } from './policy-state.js';
import { WARM_UP_PASSES } from './policy-warm-up.js';
import { RateLimiter } from './rate-limit.js';
import { registerAttestRoutes } from './routes/attest.js';
import { registerBlastRadiusRoutes } from './routes/blast-radius.js';
import { registerBundleRoutes } from './routes/bundle.js';
import { registerPolicyRoutes } from './routes/policy.js';
import { registerQueryRoutes } from './routes/query.js';
import { registerReportRoutes } from './routes/reports.js';
import { registerRuleRoutes } from './routes/rules.js';
import { registerSuggestionRoutes } from './routes/suggestions.js';
import { registerWorkloadRoutes } from './routes/workloads.js';
import { signingKeyFromPem } from './signing-key.js';
import { isStoreUnavailable } from './store/errors.js';
import { openSqliteStore } from './store/sqlite.js';
import type { ControlStore, TokenScope, WorkloadSighting } from './store/types.js';
import { StoreWatch } from './store-watch.js';

export type { ControlContext, ControlLimits } from './context.js';

export const DEFAULT_LIMITS: ControlLimits = {
  policyBodyBytes: 2 * 1024 * 1024,
  reportBodyBytes: 8 * 1024 * 1024,
  reportRecords: 5000,
  bodyBytes: 64 * 1024,
  longPolls: 20_000,
  headersTimeoutMs: 10_000,
  maxWaitSeconds: 60,
  // A fleet usually shares one workload token, so its bucket is sized for the fleet.
  rateLimit: { admin: { perSecond: 50, burst: 200 }, workload: { perSecond: 5000, burst: 20_000 } },
  // A deployment of a few thousand functions fits the burst; an invented identity per request does not.
  newWorkloads: { perSecond: 20, burst: 2000 },
  attestations: { perSecond: 100, burst: 2000 },
  bundleTtlSeconds: 24 * 60 * 60,
};

export interface ControlServerOptions {
  store: ControlStore;
  /** Ed25519 private key (PKCS#8 PEM), or a key from `loadOrCreateSigningKey`. */
  signingKey: string | SigningKey;
  /** A pino logger, `true` for JSON logs on stdout, `false`/absent for none. */
  logger?: boolean | FastifyBaseLogger | undefined;
  limits?: Partial<ControlLimits> | undefined;
  /** The open-files limit to size connection caps from (default: this process's RLIMIT_NOFILE). */
  fdLimit?: number | undefined;
  /** Attested workload identity (POST /v1/attest); absent: attestation is off. */
  attestation?: AttestationConfig | undefined;
  /** Proof verifiers (default: those the attestation configuration names). */
  verifiers?: readonly ProofVerifier[] | undefined;
  /** Serve HTTPS with this certificate (chain) and private key, both PEM; plain HTTP when absent. */
  tls?: { cert: string; key: string } | undefined;
  /**
   * Passes of the policy thread's warm-up at start, so that the first apply does not run a cold
   * parser (control/policy-warm-up.ts; default WARM_UP_PASSES, ~0.2 s of that thread); 0: none,
   * and no priming of the tick queue either (primeTickQueue in control/long-poll.ts).
   */
  warmUpPasses?: number | undefined;
}

/** Route access: `none` (public), `any` (any valid token), or the scope it needs. Admin tokens pass everywhere. */
export type RouteAccess = 'none' | 'any' | TokenScope;

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: RouteAccess;
    /** The route acts for one workload (bundles, records): `--require-attested` refuses unattested workload tokens. */
    actsForWorkload?: boolean;
  }
  interface FastifyRequest {
    tokenId?: string;
    tokenScope?: TokenScope;
    grant?: TokenGrant;
  }
}

export const REDACTED_LOG_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'token',
  '*.token',
  'privateKeyPem',
  '*.privateKeyPem',
  'signingKey',
  '*.signingKey',
];

function loggerOption(logger: ControlServerOptions['logger']): Record<string, unknown> {
  if (logger === undefined || logger === false) return { logger: false };
  if (logger === true) {
    return {
      logger: {
        level: process.env.BULKHEAD_LOG_LEVEL ?? 'info',
        redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' },
      },
    };
  }
  return { loggerInstance: logger };
}

const SIGHTING_FLUSH_MS = 200;
/** Parked long-polls answered in the same turn a new revision is installed (~20 µs each). */
const WAKE_BEFORE_ANSWER = 256;
/** Sightings held while the store is away; beyond it the oldest wait for the workload's next fetch. */
const MAX_PENDING_SIGHTINGS = 50_000;
/** How stale a workload's stored last-seen time may get while nothing else about it changes. */
const LAST_SEEN_REFRESH_MS = 30_000;
/** Inventory keys remembered as known (beyond it, new identities all count against the token's rate). */
const MAX_KNOWN_WORKLOADS = 1_000_000;
const SESSION_PURGE_MS = 10 * 60_000;
/** Expired sessions stay listable (`token list --sessions`) this long. */
const SESSION_KEPT_AFTER_EXPIRY_MS = 24 * 60 * 60_000;

export async function createControlServer(options: ControlServerOptions): Promise<FastifyInstance> {
  const configured: ControlLimits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
  const budget = connectionBudget(options.fdLimit ?? readOpenFileLimit(), configured);
  const limits: ControlLimits = {
    ...configured,
    connections: budget.connections,
    longPolls: budget.longPolls,
  };
  const key =
    typeof options.signingKey === 'string' ? signingKeyFromPem(options.signingKey) : options.signingKey;
  const { store } = options;
  const metrics = new ControlMetrics();
  const longPolls = new LongPollHub(limits.longPolls);
  const verifier = new TokenVerifier(store);
  const rateLimiter = new RateLimiter();
  const requireAttested = options.attestation?.require === true;

  const serverTimeouts = {
    headersTimeout: limits.headersTimeoutMs,
    // Node checks header and request timeouts on this period (default 30 s: a slowloris's friend).
    connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
  };
  const app = Fastify({
    ...loggerOption(options.logger),
    bodyLimit: limits.bodyBytes,
    // Per-request lines would drown the log at fleet scale; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    http: serverTimeouts,
    // With TLS, Fastify gives this object (not `http`) to https.createServer: the timeouts go in it too.
    ...(options.tls ? { https: { ...serverTimeouts, cert: options.tls.cert, key: options.tls.key } } : {}),
    requestTimeout: 60_000,
    ajv: { customOptions: { allErrors: false, coerceTypes: 'array', removeAdditional: false } },
  });

  // Refusals are answered out of what the reserve leaves after the descriptors open now (store,
  // threads, logs: ~35) and a margin for the database pool.
  const refusalSlack = Math.max(0, budget.fdLimit - budget.connections - countOpenFiles() - 24);
  const connections = new ConnectionGuard(budget.connections, refusalSlack);
  connections.attach(app.server);

  // The warm-ups (control/policy-warm-up.ts, primeTickQueue): the first apply after a start should not be the slow one.
  const warmUpPasses = options.warmUpPasses ?? WARM_UP_PASSES;
  let revisionSeenAtMs = Date.now();
  const state = new PolicyState(
    store,
    key,
    limits.bundleTtlSeconds * 1000,
    () => {
      revisionSeenAtMs = Date.now();
      // The first WAKE_BEFORE_ANSWER parked polls are answered before anything else (an apply's own
      // answer included: up to that many per replica, a workload has its answer when the apply
      // returns); the rest right behind the apply's answer, so that it never waits on 10,000 deliveries.
      longPolls.wakeForRevision(WAKE_BEFORE_ANSWER);
    },
    (error, revision) => app.log.error({ err: error, revision }, 'could not load revision'),
    warmUpPasses,
  );
  const unsubscribe = store.onRevision((revision) => {
    void state.advance(revision);
  });
  // Start-up needs the database; when it is away the server listens anyway, answers 503
  // (/healthz included) and finishes start-up when the database arrives.
  const watch = new StoreWatch(store, state, app.log, async () => {
    await store.migrate();
    await store.rememberSigningKey({
      keyId: key.keyId,
      publicKeyPem: key.publicKeyPem,
      firstUsed: new Date().toISOString(),
    });
    await state.init();
    // Workloads already in the inventory never count against a token's rate of new ones.
    for (const known of await store.listWorkloadKeys()) rememberWorkload(known);
  });
  const knownWorkloads = new Set<string>();
  const rememberWorkload = (key: string) => {
    if (knownWorkloads.size < MAX_KNOWN_WORKLOADS) knownWorkloads.add(key);
  };
  if (warmUpPasses > 0) primeTickQueue();
  await watch.start();
  verifier.start();
  const sessionPurge = setInterval(() => {
    store
      .deleteExpiredSessions(new Date(Date.now() - SESSION_KEPT_AFTER_EXPIRY_MS).toISOString())
      .catch(() => {});
  }, SESSION_PURGE_MS);
  sessionPurge.unref();

  const sightings = new Map<string, WorkloadSighting>();
  const recorded = new Map<string, { revision: number; scope: string; atMs: number }>();
  let seenAtMs = 0;
  let seenAtText = '';
  let earlyFlush = false;
  let flushing: Promise<void> = Promise.resolve();
  const flushSightings = (): Promise<void> => {
    flushing = flushing.then(async () => {
      if (sightings.size === 0) return;
      const batch = [...sightings.values()];
      sightings.clear();
      try {
        await store.recordSightings(batch);
      } catch (error) {
        if (!isStoreUnavailable(error)) {
          app.log.error({ err: error }, 'could not record workload sightings');
          return;
        }
        watch.failed(error);
        // Kept for the next flush unless a newer sighting of the same workload replaced it.
        for (const sighting of batch) {
          if (sightings.size >= MAX_PENDING_SIGHTINGS) break;
          if (!sightings.has(sighting.key)) sightings.set(sighting.key, sighting);
        }
      }
    });
    return flushing;
  };
  const flushTimer = setInterval(() => void flushSightings(), SIGHTING_FLUSH_MS);
  flushTimer.unref();

  const context: ControlContext = {
    store,
    state,
    key,
    limits,
    metrics,
    longPolls,
    sawWorkload(key, identity, revision, scope) {
      // Only changes and a periodic last-seen refresh reach the store: a parked fleet re-polls constantly.
      const previous = recorded.get(key);
      const nowMs = Date.now();
      if (
        previous &&
        previous.revision === revision &&
        previous.scope === scope &&
        nowMs - previous.atMs < LAST_SEEN_REFRESH_MS
      ) {
        return;
      }
      rememberWorkload(key);
      if (recorded.size >= 100_000) recorded.clear();
      if (previous) {
        previous.revision = revision;
        previous.scope = scope;
        previous.atMs = nowMs;
      } else recorded.set(key, { revision, scope, atMs: nowMs });
      // A woken fleet records thousands in the same millisecond: one timestamp text for all of them.
      if (nowMs !== seenAtMs) {
        seenAtMs = nowMs;
        seenAtText = new Date(nowMs).toISOString();
      }
      sightings.set(key, {
        key,
        identity,
        seenAt: seenAtText,
        revision,
        scope,
        groups: state.groupsOfScope(scope),
      });
      // One early flush at a time: while the store is away the pending set stays large, and every
      // further sighting must not queue another attempt.
      if (sightings.size >= 10_000 && !earlyFlush) {
        earlyFlush = true;
        void flushSightings().finally(() => {
          earlyFlush = false;
        });
      }
    },
    flushSightings,
    revisionSeenAtMs: () => revisionSeenAtMs,
    verifier,
    attestation: options.attestation,
    admitsNewWorkload(grant, key) {
      if (knownWorkloads.has(key)) return { ok: true };
      const rate = rateLimiter.take(`new-workload:${grant.rootId}`, limits.newWorkloads);
      if (rate.ok) rememberWorkload(key);
      return rate;
    },
    admitsAttestation(grant) {
      return rateLimiter.take(`attest:${grant.rootId}`, limits.attestations);
    },
  };

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Bulkhead control API',
        version: '1',
        description: 'Signed policy bundles per workload, deny-record ingestion and forensic queries.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  let diskFullLoggedMs = 0;
  app.setErrorHandler((error, request, reply) => {
    const failure = error as { statusCode?: number; validation?: unknown; message?: string };
    const status = failure.statusCode ?? 500;
    if (failure.validation) {
      return reply.code(400).send({ error: 'bad-request', message: failure.message ?? 'invalid request' });
    }
    if (isStoreUnavailable(error)) {
      // Expected while the database is away or the disk is full: counted, logged once per outage.
      metrics.storeUnavailable.inc({ failure: error.failure });
      if (error.failure === 'unavailable') watch.failed(error);
      else if (Date.now() - diskFullLoggedMs > 10_000) {
        diskFullLoggedMs = Date.now();
        request.log.warn({ reason: error.message }, 'store refused a write');
      }
      reply.header('retry-after', String(error.retryAfterSeconds));
      return reply.code(error.statusCode).send({
        error: error.failure === 'disk-full' ? 'disk-full' : 'unavailable',
        message: error.message,
      });
    }
    if (status >= 500) {
      request.log.error({ err: error }, 'request failed');
      return reply.code(status === 503 ? 503 : 500).send({ error: 'internal', message: 'internal error' });
    }
    return reply.code(status).send({ error: errorCode(status), message: failure.message ?? 'bad request' });
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ error: 'not-found', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );

  app.addHook('onRequest', async (request, reply) => {
    if (connections.refuses(request.raw.socket)) {
      reply.header('retry-after', '1').header('connection', 'close');
      return reply
        .code(503)
        .send({ error: 'overloaded', message: 'this replica is at its connection limit; retry shortly' });
    }
    const access = request.routeOptions.config.access ?? 'admin';
    if (access === 'none') return;
    if (!watch.ready) {
      reply.header('retry-after', '1');
      return reply.code(503).send({
        error: 'starting',
        message: `the control API is starting: waiting for the database (${watch.health().reason ?? 'connecting'})`,
      });
    }
    const result = await verifier.verify(request.headers.authorization);
    if (!result.ok) {
      reply.header('www-authenticate', 'Bearer realm="bulkhead"');
      return reply.code(401).send({ error: 'unauthorized', message: result.error });
    }
    const { grant } = result;
    if (access !== 'any' && grant.scope !== 'admin' && grant.scope !== access) {
      return reply.code(403).send({
        error: 'forbidden',
        message: `this route needs a ${access} token; yours has scope ${grant.scope}`,
      });
    }
    if (
      requireAttested &&
      grant.scope === 'workload' &&
      grant.pinned === null &&
      request.routeOptions.config.actsForWorkload
    ) {
      return reply.code(403).send({
        error: 'attestation-required',
        message:
          'this control API requires attested workload identity: POST /v1/attest with a proof from the platform, then use the session token it answers',
      });
    }
    // Sessions count against the workload token they were issued to: a fleet shares one bucket.
    const rate = rateLimiter.take(grant.rootId, limits.rateLimit[grant.scope]);
    if (!rate.ok) {
      metrics.rateLimited.inc();
      reply.header('retry-after', String(rate.retryAfterSeconds));
      return reply.code(429).send({ error: 'rate-limited', message: 'too many requests for this token' });
    }
    request.tokenId = grant.tokenId;
    request.tokenScope = grant.scope;
    request.grant = grant;
  });

  // Ajv coerces "Infinity" and "1e400" in a query string to Infinity and then skips its range
  // checks (they only apply to finite numbers), so a coerced number is checked here once for all routes.
  app.addHook('preHandler', async (request, reply) => {
    const query = request.query as Record<string, unknown> | undefined;
    if (!query || typeof query !== 'object') return;
    for (const name in query) {
      const value = query[name];
      if (typeof value === 'number' && !Number.isFinite(value)) {
        return reply
          .code(400)
          .send({ error: 'bad-request', message: `querystring/${name} must be a finite integer` });
      }
    }
  });

  // Series keys by route and status, rendered once: every response counts itself.
  const requestSeries = new Map<string, Map<number, string>>();
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unknown';
    let byStatus = requestSeries.get(route);
    if (!byStatus) {
      byStatus = new Map();
      requestSeries.set(route, byStatus);
    }
    let series = byStatus.get(reply.statusCode);
    if (series === undefined) {
      series = metrics.requests.series({ route, status: String(reply.statusCode) });
      if (byStatus.size < 100) byStatus.set(reply.statusCode, series);
    }
    metrics.requests.add(series);
  });

  app.addHook('preClose', async () => {
    longPolls.shutdown();
  });
  app.addHook('onClose', async () => {
    clearInterval(sessionPurge);
    await verifier.stop();
    watch.stop();
    await state.close();
    clearInterval(flushTimer);
    unsubscribe();
    await flushSightings();
  });

  app.get(
    '/healthz',
    {
      config: { access: 'none' },
      schema: {
        summary: 'Readiness: 200 while bundles can be served, 503 until start-up has reached the database',
        description:
          'status is ok, or degraded while the database is unreachable: bundles are then served from the ' +
          'revision held in memory (signed, so still verifiable), revisionConfirmedSecondsAgo says how long ' +
          'ago it was last confirmed as the newest, and reports and applies are answered 503.',
        security: [],
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['ok', 'degraded'] },
              revision: { type: 'integer' },
              engine: { type: 'string' },
              store: { type: 'string', enum: ['ok', 'unreachable'] },
              revisionConfirmedSecondsAgo: { type: 'number' },
              storeDownSeconds: { type: 'number' },
              message: { type: 'string' },
            },
          },
          503: {
            type: 'object',
            properties: {
              status: { type: 'string' },
              error: { type: 'string' },
              message: { type: 'string' },
            },
          },
        },
      },
    },
    async (_request, reply) => {
      // Answered from memory: a health probe never waits on (or adds load to) the database.
      const health = watch.health();
      if (!health.ready) {
        reply.header('retry-after', '1');
        return reply.code(503).send({
          status: 'starting',
          error: 'unavailable',
          message: `waiting for the database: ${health.reason ?? 'connecting'}`,
        });
      }
      const nowMs = Date.now();
      const confirmedAgo = Math.round((nowMs - health.headConfirmedMs) / 100) / 10;
      if (health.reachable) {
        return {
          status: 'ok',
          revision: state.revision,
          engine: store.engine,
          store: 'ok',
          revisionConfirmedSecondsAgo: confirmedAgo,
        };
      }
      const downSeconds = Math.round((nowMs - (health.downSinceMs ?? nowMs)) / 100) / 10;
      return {
        status: 'degraded',
        revision: state.revision,
        engine: store.engine,
        store: 'unreachable',
        revisionConfirmedSecondsAgo: confirmedAgo,
        storeDownSeconds: downSeconds,
        message: `database unreachable for ${downSeconds} s (${health.reason ?? 'unknown'}); serving revision ${state.revision} from memory, reports and applies answer 503`,
      };
    },
  );

  app.get('/openapi.json', { config: { access: 'none' }, schema: { hide: true } }, async () => app.swagger());

  app.get(
    '/metrics',
    { config: { access: 'admin' }, schema: { summary: 'Prometheus metrics', produces: ['text/plain'] } },
    async (_request, reply) => {
      await flushSightings();
      const snapshot = await store.metrics(state.revision);
      const current = snapshot.workloadsCurrent;
      const text = [
        ...metrics.counters().map((c) => c.render()),
        gauge('bulkhead_longpolls_open', 'Bundle long-polls currently parked', [{ value: longPolls.open }]),
        gauge('bulkhead_connections_open', 'Open client connections', [{ value: connections.stats().open }]),
        gauge('bulkhead_connections_limit', 'Connections accepted before shedding or refusing', [
          { value: budget.connections },
        ]),
        gauge('bulkhead_connections_shed', 'Slow or idle connections closed to make room (since start)', [
          { value: connections.shed },
        ]),
        gauge('bulkhead_connections_refused', 'Connections refused with 503 at the limit (since start)', [
          { value: connections.refused },
        ]),
        gauge('bulkhead_policy_revision', 'Current policy revision', [{ value: state.revision }]),
        gauge('bulkhead_workloads', 'Workloads in the inventory', [{ value: snapshot.workloads }]),
        gauge('bulkhead_workloads_current', 'Workloads whose last fetched revision is the current one', [
          { value: current },
        ]),
        gauge('bulkhead_report_records_missing', 'Deny records that never arrived (sequence gaps)', [
          { value: snapshot.missingRecords },
        ]),
        gauge(
          'bulkhead_report_seq_anomalies',
          'Stored deny records whose seq jumped implausibly far (flagged, not counted as missing)',
          [{ value: snapshot.seqAnomalies }],
        ),
        gauge('bulkhead_deny_records_stored', 'Deny records in the store', [{ value: snapshot.denies }]),
        gauge('bulkhead_propagation_seconds_sum', 'Sum of revision-to-workload delivery times', [
          { value: metrics.propagationSumMs / 1000 },
        ]),
        gauge('bulkhead_propagation_seconds_count', 'Deliveries of a new revision', [
          { value: metrics.propagationCount },
        ]),
      ].join('\n');
      return reply.type('text/plain; version=0.0.4').send(`${text}\n`);
    },
  );

  app.get(
    '/v1/keys',
    {
      config: { access: 'any' },
      schema: {
        summary: 'Public signing keys, for operators to pin (workloads pin keys out of band)',
        response: {
          200: {
            type: 'object',
            properties: {
              keys: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    keyid: { type: 'string' },
                    publicKey: { type: 'string' },
                    active: { type: 'boolean' },
                    firstUsed: { type: 'string' },
                  },
                },
              },
            },
          },
        },
      },
    },
    async () => {
      const keys = await store.listSigningKeys();
      return {
        keys: keys.map((k) => ({
          keyid: k.keyId,
          publicKey: k.publicKeyPem,
          active: k.keyId === key.keyId,
          firstUsed: k.firstUsed,
        })),
      };
    },
  );

  registerBundleRoutes(app, context);
  registerAttestRoutes(
    app,
    context,
    options.attestation ? createAttestor(options.verifiers ?? verifiersFor(options.attestation)) : undefined,
  );
  registerReportRoutes(app, context);
  await app.register(async (scope) => registerPolicyRoutes(scope, context));
  registerQueryRoutes(app, context);
  registerWorkloadRoutes(app, context);
  registerSuggestionRoutes(app, context);
  registerRuleRoutes(app, context);
  registerBlastRadiusRoutes(app, context);

  return app;
}

function errorCode(status: number): string {
  switch (status) {
    case 400:
      return 'bad-request';
    case 401:
      return 'unauthorized';
    case 403:
      return 'forbidden';
    case 404:
      return 'not-found';
    case 405:
      return 'method-not-allowed';
    case 406:
      return 'not-acceptable';
    case 413:
      return 'payload-too-large';
    case 415:
      return 'unsupported-media-type';
    case 429:
      return 'rate-limited';
    default:
      return 'error';
  }
}

export interface StartControlServerOptions extends Partial<ControlServerOptions> {
  /** Port on 127.0.0.1 (default 0: an ephemeral port). */
  port?: number | undefined;
  host?: string | undefined;
}

export interface RunningControlServer {
  /** `http://127.0.0.1:<port>` (`https://` with `tls`) */
  url: string;
  port: number;
  app: FastifyInstance;
  store: ControlStore;
  key: SigningKey;
  /** Creates a token in this server's store (convenience for tests and the demo). */
  issueToken(scope: TokenScope, name?: string, options?: IssueOptions): Promise<IssuedToken>;
  /** Stops listening, answers parked long-polls, and closes the store when this call opened it. */
  close(): Promise<void>;
}

/**
 * Starts a control API in this process. Without `store`, an in-memory SQLite store is used
 * (and closed with the server); without `signingKey`, a fresh key is generated.
 */
export async function startControlServer(
  options: StartControlServerOptions = {},
): Promise<RunningControlServer> {
  const ownsStore = options.store === undefined;
  const store = options.store ?? openSqliteStore(':memory:');
  const signingKey = options.signingKey ?? generateKeyPair();
  const app = await createControlServer({ ...options, store, signingKey });
  try {
    await app.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1' });
  } catch (error) {
    await app.close();
    if (ownsStore) await store.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const host = options.host ?? '127.0.0.1';
  const key = typeof signingKey === 'string' ? signingKeyFromPem(signingKey) : signingKey;
  let closed: Promise<void> | undefined;
  return {
    url: `${options.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    app,
    store,
    key,
    issueToken: (scope, name, issueOptions) => issueToken(store, scope, name, issueOptions),
    close() {
      closed ??= (async () => {
        await app.close();
        if (ownsStore) await store.close();
      })();
      return closed;
    },
  };
}

export type { FastifyRequest };
