// GET /v1/denies (forensic query, paginated, NDJSON export).
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { formatIdentity, parseIdentity } from '../../policy/index.js';
import type { ControlContext } from '../context.js';
import { DENY_KINDS, DENY_SEVERITIES } from '../reports.js';
import type { DenyFilter } from '../store/types.js';

interface DenyQuery {
  workload?: string;
  invocation?: string;
  package?: string;
  kind?: string;
  severity?: string;
  group?: string;
  destination?: string;
  rule?: string;
  decision?: 'allow' | 'deny';
  since?: string;
  until?: string;
  cursor?: string;
  limit?: number;
  order?: 'asc' | 'desc';
  format?: 'json' | 'ndjson';
}

const NDJSON_PAGE = 1000;

/** Cursors are opaque to clients: `c` + base36 storage position. */
export function encodeCursor(position: number): string {
  return `c${position.toString(36)}`;
}

export function decodeCursor(cursor: string): number | undefined {
  if (!/^c[0-9a-z]{1,12}$/.test(cursor)) return undefined;
  const position = Number.parseInt(cursor.slice(1), 36);
  return Number.isSafeInteger(position) ? position : undefined;
}

export class BadQuery extends Error {}

/** Checked here rather than by the schema's enum, so that a typo is told which values exist. */
function oneOfParam(value: string | undefined, name: string, allowed: readonly string[]): string | undefined {
  if (value === undefined || allowed.includes(value)) return value;
  throw new BadQuery(`${name}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
}

/**
 * `workload` is either an identity text (`cloud=aws,name=charge-card`, matched whole, in any key
 * order) or, without any `=`, the identity's name or a glob of it (`charge-*`).
 */
function workloadParam(value: string | undefined): Pick<DenyFilter, 'workload' | 'workloadName'> {
  if (value === undefined) return {};
  if (!value.includes('=')) {
    if (value.trim() === '')
      throw new BadQuery('workload: expected a name, a glob such as charge-*, or k=v,…');
    return { workloadName: value };
  }
  try {
    // Store keys are the canonical (sorted) form.
    return { workload: formatIdentity(parseIdentity(value)) };
  } catch (error) {
    throw new BadQuery(`workload: ${(error as Error).message}`);
  }
}

export function timeParam(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = /^\d{1,16}$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new BadQuery(`${name}: expected an ISO-8601 time or epoch milliseconds`);
  return ms;
}

export function registerQueryRoutes(app: FastifyInstance, context: ControlContext): void {
  const { store } = context;

  app.get<{ Querystring: DenyQuery }>(
    '/v1/denies',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Query stored deny records',
        description:
          'Filters combine with AND. Pages come newest first (order=desc) with nextCursor for the next page; ' +
          'order=asc with a cursor follows new records. Accept: application/x-ndjson or format=ndjson streams ' +
          'every matching record, one JSON object per line.',
        querystring: {
          type: 'object',
          properties: {
            workload: {
              type: 'string',
              maxLength: 8192,
              description:
                'workload identity k=v,… (exact, any key order), or without `=` its name or a glob of it (charge-*)',
            },
            invocation: { type: 'string', maxLength: 256, description: 'invocation id (exact)' },
            package: {
              type: 'string',
              maxLength: 512,
              description: 'origin package name@version or name (any version); * and ? globs',
            },
            kind: { type: 'string', maxLength: 32, description: DENY_KINDS.join('|') },
            severity: { type: 'string', maxLength: 32, description: DENY_SEVERITIES.join('|') },
            group: { type: 'string', maxLength: 256, description: 'SmartGroup the workload was in' },
            destination: {
              type: 'string',
              maxLength: 1024,
              description: 'host or IP; *.example.com for sub-domains',
            },
            rule: { type: 'string', maxLength: 512 },
            decision: { type: 'string', enum: ['allow', 'deny'] },
            since: { type: 'string', maxLength: 40, description: 'ISO-8601 time or epoch ms (inclusive)' },
            until: { type: 'string', maxLength: 40, description: 'ISO-8601 time or epoch ms (exclusive)' },
            cursor: { type: 'string', maxLength: 20 },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            order: { type: 'string', enum: ['asc', 'desc'], default: 'desc' },
            format: { type: 'string', enum: ['json', 'ndjson'] },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              records: { type: 'array', items: { type: 'object', additionalProperties: true } },
              nextCursor: { type: ['string', 'null'], description: 'next page in the same order' },
              followCursor: {
                type: 'string',
                description: 'pass with order=asc to get records stored later',
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const query = request.query;
      const order = query.order ?? 'desc';
      let filter: DenyFilter;
      try {
        let position: number | undefined;
        if (query.cursor !== undefined) {
          position = decodeCursor(query.cursor);
          if (position === undefined) throw new BadQuery('cursor: not a cursor this API issued');
        }
        if (query.package !== undefined && query.package.trim() === '')
          throw new BadQuery('package: expected a package name, name@version or a glob');
        filter = {
          ...workloadParam(query.workload),
          invocation: query.invocation,
          package: query.package,
          kind: oneOfParam(query.kind, 'kind', DENY_KINDS),
          severity: oneOfParam(query.severity, 'severity', DENY_SEVERITIES),
          group: query.group,
          destination: query.destination,
          rule: query.rule,
          decision: query.decision,
          sinceMs: timeParam(query.since, 'since'),
          untilMs: timeParam(query.until, 'until'),
          after: order === 'asc' ? position : undefined,
          before: order === 'desc' ? position : undefined,
          order,
          limit: query.limit ?? 100,
        };
      } catch (error) {
        if (error instanceof BadQuery)
          return reply.code(400).send({ error: 'bad-request', message: error.message });
        throw error;
      }

      const wantsNdjson =
        query.format === 'ndjson' ||
        (query.format === undefined && (request.headers.accept ?? '').includes('application/x-ndjson'));
      if (wantsNdjson) {
        const pageFilter: DenyFilter = { ...filter, limit: NDJSON_PAGE };
        async function* lines() {
          for (;;) {
            const page = await store.queryDenies(pageFilter);
            if (page.length === 0) return;
            yield `${page.map((row) => row.record).join('\n')}\n`;
            const last = page[page.length - 1]?.position;
            if (page.length < NDJSON_PAGE || last === undefined) return;
            if (order === 'asc') pageFilter.after = last;
            else pageFilter.before = last;
          }
        }
        return reply.code(200).type('application/x-ndjson').send(Readable.from(lines()));
      }

      const rows = await store.queryDenies(filter);
      const first = rows[0];
      const last = rows[rows.length - 1];
      let nextCursor: string | null;
      let followCursor: string;
      if (order === 'asc') {
        // Always handed back, so a follower can ask again for what arrives later.
        nextCursor = last ? encodeCursor(last.position) : (query.cursor ?? encodeCursor(0));
        followCursor = nextCursor;
      } else {
        nextCursor = last && rows.length === filter.limit ? encodeCursor(last.position) : null;
        followCursor = first ? encodeCursor(first.position) : (query.cursor ?? encodeCursor(0));
      }
      const body = `{"records":[${rows.map((row) => row.record).join(',')}],"nextCursor":${JSON.stringify(nextCursor)},"followCursor":${JSON.stringify(followCursor)}}`;
      return reply.code(200).type('application/json').send(body);
    },
  );
}
