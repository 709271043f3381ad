// PUT /v1/policy, GET /v1/policy, GET /v1/revisions, POST /v1/revisions/{n}/restore.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { formatPolicyError, type PolicyError } from '../../policy/index.js';
import { type ApplyOptions, PolicyApplier } from '../apply.js';
import type { ControlContext } from '../context.js';
import type { PolicySource } from '../store/types.js';

const FILE_NAME = /^[A-Za-z0-9._/@+-]{1,200}$/;
const MAX_SOURCES = 500;
const POLICY_MEDIA_TYPES = [
  'application/json',
  'application/yaml',
  'application/x-yaml',
  'text/yaml',
  'text/plain',
];

class BadPolicyRequest extends Error {}

/** Turns the raw body into policy sources. JSON `{sources:[{file,text}]}` keeps per-file positions. */
export function sourcesFromBody(
  body: unknown,
  contentType: string | undefined,
  fileName: string,
): PolicySource[] {
  if (typeof body !== 'string' || body.trim() === '') {
    throw new BadPolicyRequest(
      'empty body: send the policy documents (application/yaml or application/json)',
    );
  }
  if ((contentType ?? '').toLowerCase().startsWith('application/json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch (error) {
      throw new BadPolicyRequest(`body is not JSON: ${(error as Error).message}`);
    }
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) && 'sources' in parsed) {
      const sources = (parsed as { sources: unknown }).sources;
      if (!Array.isArray(sources) || sources.length === 0 || sources.length > MAX_SOURCES) {
        throw new BadPolicyRequest(`sources: expected 1-${MAX_SOURCES} entries of {file, text}`);
      }
      return sources.map((source, index) => {
        const { file, text } = (source ?? {}) as { file?: unknown; text?: unknown };
        if (typeof file !== 'string' || !FILE_NAME.test(file)) {
          throw new BadPolicyRequest(
            `sources[${index}].file: expected a file name (letters, digits, . _ / @ + -)`,
          );
        }
        if (typeof text !== 'string') throw new BadPolicyRequest(`sources[${index}].text: expected a string`);
        return { file, text };
      });
    }
  }
  return [{ file: fileName, text: body }];
}

function invalid(reply: FastifyReply, error: string, errors: PolicyError[]) {
  return reply.code(400).send({
    error,
    message: errors.map((e) => formatPolicyError(e)).join('\n'),
    errors,
  });
}

const applyResponse = {
  type: 'object',
  properties: {
    revision: { type: 'integer' },
    previousRevision: { type: 'integer' },
    dryRun: { type: 'boolean' },
    unchanged: { type: 'boolean' },
    restoredFrom: { type: 'integer' },
    diff: {},
    wouldBreak: {
      type: 'object',
      description:
        'dry runs: recorded observe-mode traffic of the last `days` days that the new set would block, per SmartGroup',
      additionalProperties: true,
    },
    blastRadius: {
      type: 'object',
      description:
        "Each SmartGroup's blast radius (docs/blast-radius.md) under the current revision (before) and this set (after).",
      properties: { before: {}, after: {} },
    },
    affectedWorkloads: {
      type: 'object',
      properties: {
        count: { type: 'integer' },
        workloads: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              key: { type: 'string' },
              identity: { type: 'object', additionalProperties: { type: 'string' } },
            },
          },
        },
      },
    },
  },
};

const policyErrorResponse = {
  type: 'object',
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          file: { type: 'string' },
          line: { type: 'integer' },
          column: { type: 'integer' },
          path: { type: 'string' },
          message: { type: 'string' },
        },
      },
    },
  },
};

/** Registered inside its own plugin scope: its body parsers keep the raw text (for line numbers). */
export function registerPolicyRoutes(app: FastifyInstance, context: ControlContext): void {
  const { store, limits } = context;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    POLICY_MEDIA_TYPES,
    { parseAs: 'string', bodyLimit: limits.policyBodyBytes },
    (_request, body, done) => done(null, body),
  );

  const applier = new PolicyApplier({ ...context, log: app.log });

  async function apply(reply: FastifyReply, sources: PolicySource[], options: ApplyOptions) {
    const result = await applier.apply(sources, options);
    if (!result.ok) return invalid(reply, result.error, result.errors);
    // The diff arrives as JSON text from the policy thread: spliced in, not parsed and serialised again.
    const head = JSON.stringify(result.outcome);
    reply
      .code(200)
      .type('application/json; charset=utf-8')
      .send(`${head.slice(0, -1)},"diff":${result.diffJson},"blastRadius":${result.blastRadiusJson}}`);
    // The rest of this replica's parked long-polls, right behind the answer (before the requests
    // that arrived meanwhile are read: the first woken workloads are already polling again).
    context.longPolls.flushDeferredWake();
    return reply;
  }

  app.put<{ Body: unknown; Querystring: { dryRun?: boolean; file?: string; breakDays?: number } }>(
    '/v1/policy',
    {
      config: { access: 'admin' },
      bodyLimit: limits.policyBodyBytes,
      schema: {
        summary: 'Apply the whole policy set as the next revision',
        description:
          'Body: multi-document YAML (application/yaml, text/plain), JSON documents, or JSON ' +
          '{"sources":[{"file","text"}]} to keep per-file error positions. Validates (parser and guardrails: ' +
          '400 with file:line:column errors), diffs against the current revision, and stores revision N+1 ' +
          'atomically. dryRun=true validates and diffs without storing.',
        querystring: {
          type: 'object',
          properties: {
            dryRun: { type: 'boolean', default: false },
            breakDays: {
              type: 'integer',
              minimum: 1,
              maximum: 90,
              default: 7,
              description:
                'dry runs: observe-mode records of this many days are decided again under the new set; those it would block are listed in wouldBreak',
            },
            file: {
              type: 'string',
              pattern: FILE_NAME.source,
              description: 'file name used in error positions',
            },
          },
        },
        consumes: POLICY_MEDIA_TYPES,
        response: { 200: applyResponse, 400: policyErrorResponse },
      },
    },
    async (request, reply) => {
      let sources: PolicySource[];
      try {
        sources = sourcesFromBody(
          request.body,
          request.headers['content-type'],
          request.query.file ?? 'policy.yaml',
        );
      } catch (error) {
        if (error instanceof BadPolicyRequest) {
          return reply.code(400).send({ error: 'bad-request', message: error.message, errors: [] });
        }
        throw error;
      }
      return apply(reply, sources, {
        dryRun: request.query.dryRun === true,
        tokenId: request.tokenId,
        breakDays: request.query.breakDays,
      });
    },
  );

  app.get<{ Querystring: { revision?: number } }>(
    '/v1/policy',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'The policy sources of the current (or a given) revision',
        querystring: { type: 'object', properties: { revision: { type: 'integer', minimum: 1 } } },
        response: {
          200: {
            type: 'object',
            properties: {
              revision: { type: 'integer' },
              createdAt: { type: 'string' },
              restoredFrom: { type: ['integer', 'null'] },
              sources: {
                type: 'array',
                items: { type: 'object', properties: { file: { type: 'string' }, text: { type: 'string' } } },
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const row =
        request.query.revision === undefined
          ? await store.latestRevision()
          : await store.getRevision(request.query.revision);
      if (!row) {
        return reply.code(404).send({
          error: 'not-found',
          message: request.query.revision === undefined ? 'no policy applied yet' : 'no such revision',
        });
      }
      return {
        revision: row.revision,
        createdAt: row.createdAt,
        restoredFrom: row.restoredFrom,
        sources: row.sources,
      };
    },
  );

  app.get<{ Querystring: { limit?: number } }>(
    '/v1/revisions',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Revision history, newest first',
        querystring: {
          type: 'object',
          properties: { limit: { type: 'integer', minimum: 1, maximum: 1000 } },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              current: { type: 'integer' },
              revisions: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    revision: { type: 'integer' },
                    createdAt: { type: 'string' },
                    restoredFrom: { type: ['integer', 'null'] },
                    summary: {},
                  },
                },
              },
            },
          },
        },
      },
    },
    async (request) => {
      const revisions = await store.listRevisions(request.query.limit ?? 100);
      return { current: revisions[0]?.revision ?? 0, revisions };
    },
  );

  app.post<{ Params: { n: number } }>(
    '/v1/revisions/:n/restore',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Make an older revision current again, as a new higher revision',
        params: { type: 'object', required: ['n'], properties: { n: { type: 'integer', minimum: 1 } } },
        response: { 200: applyResponse, 400: policyErrorResponse },
      },
    },
    async (request, reply) => {
      const row = await store.getRevision(request.params.n);
      if (!row)
        return reply.code(404).send({ error: 'not-found', message: `no revision ${request.params.n}` });
      return apply(reply, row.sources, {
        dryRun: false,
        restoredFrom: row.revision,
        tokenId: request.tokenId,
      });
    },
  );
}
