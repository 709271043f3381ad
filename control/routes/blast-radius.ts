// GET /v1/blast-radius: the applied revision's blast-radius score per SmartGroup and per workload
// (docs/blast-radius.md). Scored on the policy thread, which holds the parsed set; workloads that
// share SmartGroups share one evaluation there.
import type { FastifyInstance } from 'fastify';
import { formatIdentity, parseIdentity } from '../../policy/index.js';
import type { ControlContext } from '../context.js';

/** Inventory workloads scored per request; beyond it the answer says `truncated`. */
export const MAX_BLAST_RADIUS_WORKLOADS = 10_000;
const MAX_QUERIED_WORKLOADS = 100;

const reach = {
  type: 'object',
  properties: {
    hosts: { type: 'integer' },
    wildcardDomains: { type: 'integer' },
    addresses: { type: 'number' },
    ports: { anyOf: [{ type: 'integer' }, { type: 'string', enum: ['any'] }] },
    cloudResources: { type: 'integer' },
    unixSockets: { type: 'integer' },
    sensitive: { type: 'integer' },
  },
};

const radius = {
  score: { type: 'integer' },
  unbounded: { type: 'boolean' },
  mode: { type: 'string', enum: ['enforce', 'observe', 'allow'] },
  reason: { type: 'string' },
  reach,
};

export function registerBlastRadiusRoutes(app: FastifyInstance, context: ControlContext): void {
  const { store, state } = context;

  app.get<{ Querystring: { workload?: string[] } }>(
    '/v1/blast-radius',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Blast-radius score per SmartGroup and per workload of the applied revision',
        description:
          'What each SmartGroup and each workload could reach if compromised, as one monotone score ' +
          '(docs/blast-radius.md). Workloads: the inventory (at most ' +
          `${MAX_BLAST_RADIUS_WORKLOADS}; "truncated" says when there were more), or the identities given ` +
          'as workload=k=v,… (repeatable).',
        querystring: {
          type: 'object',
          properties: {
            workload: {
              type: 'array',
              maxItems: MAX_QUERIED_WORKLOADS,
              items: { type: 'string', maxLength: 8192 },
              description: 'workload identities k=v,… to score instead of the inventory',
            },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              revision: { type: 'integer', description: '0: no policy applied yet' },
              truncated: { type: 'boolean' },
              groups: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    group: { type: 'string' },
                    policies: { type: 'array', items: { type: 'string' } },
                    ...radius,
                  },
                },
              },
              workloads: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    workload: { type: 'string' },
                    identity: { type: 'object', additionalProperties: { type: 'string' } },
                    groups: { type: 'array', items: { type: 'string' } },
                    ...radius,
                  },
                },
              },
            },
          },
          400: {
            type: 'object',
            properties: { error: { type: 'string' }, message: { type: 'string' } },
          },
        },
      },
    },
    async (request, reply) => {
      let keys: string[];
      let truncated = false;
      if (request.query.workload !== undefined && request.query.workload.length > 0) {
        try {
          keys = request.query.workload.map((text) => formatIdentity(parseIdentity(text)));
        } catch (error) {
          return reply
            .code(400)
            .send({ error: 'bad-request', message: `workload: ${(error as Error).message}` });
        }
      } else {
        await context.flushSightings();
        keys = await store.listWorkloadKeys();
        if (keys.length > MAX_BLAST_RADIUS_WORKLOADS) {
          keys = keys.slice(0, MAX_BLAST_RADIUS_WORKLOADS);
          truncated = true;
        }
      }
      const answer = await state.worker.ask({ op: 'blast-radius', keys });
      // The report arrives as JSON text from the policy thread: spliced in, not parsed again.
      return reply
        .code(200)
        .type('application/json; charset=utf-8')
        .send(
          `{"revision":${answer.revision ?? 0},"truncated":${truncated},${(answer.blastRadiusJson ?? '{"groups":[],"workloads":[]}').slice(1)}`,
        );
    },
  );
}
