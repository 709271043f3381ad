// GET /v1/suggestions: the allow rules that would let through what a SmartGroup was recorded
// attempting (policy/suggest.ts), written as policy YAML, alone and (with `mode`) merged into the
// applied set. The records are read here, page by page; the suggestion is made in the policy thread.
import type { FastifyInstance } from 'fastify';
import type { Mode } from '../../policy/types.js';
import type { ControlContext } from '../context.js';
import { readRecordTexts } from '../store/read-records.js';
import { BadQuery, timeParam } from './query.js';

interface SuggestionQuery {
  group: string;
  since?: string;
  until?: string;
  mode?: Mode;
  merge?: boolean;
  owner?: string;
}

/** Records read at most for one suggestion; beyond, the answer says it was truncated. */
export const MAX_SUGGESTION_RECORDS = 100_000;
const DEFAULT_WINDOW_MS = 7 * 86_400_000;

export function registerSuggestionRoutes(app: FastifyInstance, context: ControlContext): void {
  const { store, state } = context;
  app.get<{ Querystring: SuggestionQuery }>(
    '/v1/suggestions',
    {
      config: { access: 'admin' },
      schema: {
        summary: "Suggest allow rules from a SmartGroup's recorded traffic",
        description:
          'Reads the deny and would-deny records of the group (default: the last 7 days) and answers the allow ' +
          'rules that let exactly that traffic through, as policy YAML (`policy`), with warnings for what the ' +
          'guardrails forbid. With `mode`, `set.text` is the whole applied set with the group’s rules replaced ' +
          '(or, with merge=true, merged) in that mode, ready to check and apply.',
        querystring: {
          type: 'object',
          required: ['group'],
          properties: {
            group: { type: 'string', minLength: 1, maxLength: 256 },
            since: {
              type: 'string',
              maxLength: 40,
              description: 'ISO-8601 time or epoch ms (default: 7 days ago)',
            },
            until: { type: 'string', maxLength: 40, description: 'ISO-8601 time or epoch ms (exclusive)' },
            mode: { type: 'string', enum: ['enforce', 'observe'] },
            merge: { type: 'boolean', default: false },
            owner: { type: 'string', minLength: 1, maxLength: 256 },
          },
        },
      },
    },
    async (request, reply) => {
      const query = request.query;
      let sinceMs: number;
      let untilMs: number | undefined;
      try {
        sinceMs = timeParam(query.since, 'since') ?? Date.now() - DEFAULT_WINDOW_MS;
        untilMs = timeParam(query.until, 'until');
      } catch (error) {
        if (error instanceof BadQuery)
          return reply.code(400).send({ error: 'bad-request', message: error.message });
        throw error;
      }
      const current = state.current;
      if (!current)
        return reply.code(409).send({ error: 'no-policy', message: 'no policy has been applied yet' });

      const { records, truncated } = await readRecordTexts(
        store,
        { group: query.group, decision: 'deny', sinceMs, untilMs, order: 'asc' },
        MAX_SUGGESTION_RECORDS,
      );
      const window = `${new Date(sinceMs).toISOString()} → ${untilMs === undefined ? 'now' : new Date(untilMs).toISOString()}`;
      const answer = await state.worker.request({
        op: 'suggest',
        revision: current.revision,
        sources: current.sources,
        group: query.group,
        records,
        mode: query.mode,
        merge: query.merge,
        owner: query.owner,
        window,
      });
      if (!answer.ok) {
        if (answer.error === 'not-found')
          return reply.code(404).send({ error: 'not-found', message: answer.message });
        throw new Error('message' in answer ? answer.message : answer.error);
      }
      const suggested = answer.suggested;
      if (!suggested) throw new Error('the policy thread answered without a suggestion');
      return {
        revision: current.revision,
        window,
        truncated,
        ...suggested.suggestion,
        policy: suggested.policy,
        ...(suggested.set ? { set: suggested.set } : {}),
      };
    },
  );
}
