// GET /v1/rules: every allow, exec and addon rule of the applied revision with the allow decisions
// the shims counted for it (rule hit counts, contract §3) since a day — `bulkhead policy unused`.
import type { FastifyInstance } from 'fastify';
import type { ControlContext } from '../context.js';
import type { PolicySource } from '../store/types.js';
import { BadQuery, timeParam } from './query.js';

const DEFAULT_WINDOW_MS = 30 * 86_400_000;

export function registerRuleRoutes(app: FastifyInstance, context: ControlContext): void {
  const { store, state } = context;
  app.get<{ Querystring: { since?: string } }>(
    '/v1/rules',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Rules of the applied revision and how often each allowed',
        description:
          'Hits are the allow decisions the shims counted per rule (reported with their records or a heartbeat), ' +
          'summed over whole UTC days from `since` (default: 30 days ago). A rule is known by what it says, so ' +
          'hits counted under an older revision go to the rule that says the same thing now, wherever it moved. ' +
          'Rules with 0 hits were used by nothing that reported.',
        querystring: {
          type: 'object',
          properties: {
            since: {
              type: 'string',
              maxLength: 40,
              description: 'ISO-8601 time or epoch ms (default 30 days ago)',
            },
          },
        },
      },
    },
    async (request, reply) => {
      let sinceMs: number;
      try {
        sinceMs = timeParam(request.query.since, 'since') ?? Date.now() - DEFAULT_WINDOW_MS;
      } catch (error) {
        if (error instanceof BadQuery)
          return reply.code(400).send({ error: 'bad-request', message: error.message });
        throw error;
      }
      const current = state.current;
      if (!current)
        return reply.code(409).send({ error: 'no-policy', message: 'no policy has been applied yet' });
      const sinceDay = new Date(sinceMs).toISOString().slice(0, 10);
      const totals = await store.hitTotals(sinceDay);
      const older: { revision: number; sources: PolicySource[] }[] = [];
      for (const revision of new Set(totals.map((t) => t.revision))) {
        if (revision === current.revision) continue;
        const row = await store.getRevision(revision);
        if (row) older.push({ revision, sources: row.sources });
      }
      const answer = await state.worker.ask({
        op: 'rule-usage',
        revision: current.revision,
        sources: current.sources,
        totals,
        older,
      });
      return { revision: current.revision, since: sinceDay, rules: answer.usage ?? [] };
    },
  );
}
