// GET /v1/workloads: the inventory, a page at a time in key order, and propagation per SmartGroup.
// A page costs an index range of `limit` rows whatever the size of the inventory; the summary is
// counted per scope by the store and kept for a second (control/propagation-summary.ts).
import type { FastifyInstance } from 'fastify';
import { IDENTITY_BOUNDS } from '../../policy/identity.js';
import type { ControlContext } from '../context.js';
import { PropagationSummaries } from '../propagation-summary.js';
import type { WorkloadQuery } from '../store/types.js';

interface WorkloadsQuery {
  limit?: number;
  cursor?: string;
  group?: string;
  name?: string;
  behind?: boolean;
}

export const WORKLOAD_PAGE_DEFAULT = 100;
export const WORKLOAD_PAGE_MAX = 1000;

/** Cursors are opaque to clients: `k` + the last key of the page, base64url. */
export function encodeWorkloadCursor(key: string): string {
  return `k${Buffer.from(key, 'utf8').toString('base64url')}`;
}

export function decodeWorkloadCursor(cursor: string): string | undefined {
  if (!/^k[A-Za-z0-9_-]+$/.test(cursor)) return undefined;
  const key = Buffer.from(cursor.slice(1), 'base64url').toString('utf8');
  return key !== '' && encodeWorkloadCursor(key) === cursor ? key : undefined;
}

// A key is the canonical identity text: a cursor holds one of at most parseIdentity's 8192 characters.
const CURSOR_MAX_LENGTH = 1 + Math.ceil((8192 * 3 * 4) / 3);

const groupSummary = {
  type: 'array',
  description: 'propagation per SmartGroup over the whole inventory (first page only)',
  items: {
    type: 'object',
    properties: {
      name: { type: 'string' },
      workloads: { type: 'integer' },
      current: { type: 'integer' },
      behind: { type: 'integer' },
    },
  },
} as const;

export function registerWorkloadRoutes(app: FastifyInstance, context: ControlContext): void {
  const { store, state } = context;
  const summaries = new PropagationSummaries(store);

  app.get<{ Querystring: WorkloadsQuery }>(
    '/v1/workloads',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Workload inventory (paginated) and propagation per SmartGroup',
        description:
          'Workloads in key order (the canonical identity text), `limit` at a time; `nextCursor` is present ' +
          'when there are more: pass it as `cursor` with the same filters. The first page (no cursor) also ' +
          'carries `groups`, the propagation per SmartGroup, counted at most once a second; `limit=0` answers ' +
          'only that. A workload counts in the SmartGroups of the bundle it holds.',
        querystring: {
          type: 'object',
          properties: {
            limit: {
              type: 'integer',
              minimum: 0,
              maximum: WORKLOAD_PAGE_MAX,
              default: WORKLOAD_PAGE_DEFAULT,
            },
            cursor: { type: 'string', maxLength: CURSOR_MAX_LENGTH },
            group: { type: 'string', maxLength: 256, description: 'only workloads in this SmartGroup' },
            name: {
              type: 'string',
              maxLength: IDENTITY_BOUNDS.valueLength,
              description: 'only workloads of this name, or a glob of it (charge-*)',
            },
            behind: {
              type: 'boolean',
              description: 'true: only workloads holding an older revision; false: only current ones',
            },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              revision: { type: 'integer' },
              workloads: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    key: { type: 'string' },
                    identity: { type: 'object', additionalProperties: { type: 'string' } },
                    groups: { type: 'array', items: { type: 'string' } },
                    firstSeen: { type: 'string' },
                    lastSeen: { type: 'string' },
                    revision: { type: 'integer' },
                    current: { type: 'boolean' },
                    missingRecords: { type: 'integer' },
                    seqAnomalies: { type: 'integer' },
                    sandboxes: { type: 'integer' },
                  },
                },
              },
              nextCursor: { type: 'string', description: 'the next page (absent on the last one)' },
              groups: groupSummary,
              groupsCountedAt: { type: 'string', description: 'when `groups` was counted' },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const { limit = WORKLOAD_PAGE_DEFAULT, cursor, group, name, behind } = request.query;
      let after: string | undefined;
      if (cursor !== undefined) {
        after = decodeWorkloadCursor(cursor);
        if (after === undefined)
          return reply
            .code(400)
            .send({ error: 'bad-request', message: 'cursor: not a cursor this API issued' });
      }
      if (name !== undefined && name.trim() === '')
        return reply
          .code(400)
          .send({ error: 'bad-request', message: 'name: expected a name or a glob such as charge-*' });
      await context.flushSightings();
      const revision = state.revision;
      const summary = cursor === undefined ? summaries.get(revision) : undefined;
      const query: WorkloadQuery = {
        after,
        // One more than asked: whether there is a next page, without a count.
        limit: limit + 1,
        name,
        group,
        revision: behind === undefined ? undefined : behind ? { below: revision } : { atLeast: revision },
      };
      const rows = limit === 0 ? [] : await store.listWorkloads(query);
      const more = rows.length > limit;
      if (more) rows.length = limit;
      const workloads = rows.map((row) => ({
        key: row.key,
        identity: row.identity,
        groups: row.groups ?? [],
        firstSeen: row.firstSeen,
        lastSeen: row.lastSeen,
        revision: row.revision,
        current: row.revision >= revision,
        missingRecords: row.missingRecords,
        seqAnomalies: row.seqAnomalies,
        sandboxes: row.sandboxes,
      }));
      const last = rows[rows.length - 1];
      const counted = summary && (await summary);
      return {
        revision,
        workloads,
        ...(more && last ? { nextCursor: encodeWorkloadCursor(last.key) } : {}),
        ...(counted ? { groups: counted.groups, groupsCountedAt: counted.countedAt } : {}),
      };
    },
  );
}
