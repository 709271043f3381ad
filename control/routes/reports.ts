// POST /v1/reports: batches of deny records, idempotent by record id.
import type { FastifyInstance } from 'fastify';
import { formatIdentity } from '../../policy/index.js';
import { mayActFor, outsideGroups } from '../authorize.js';
import type { ControlContext } from '../context.js';
import {
  hitRowsOf,
  MAX_HIT_COUNTS,
  oversizedAggregate,
  RecordError,
  validateDenyRecord,
} from '../reports.js';
import { MAX_SEQ_JUMP } from '../store/sandbox-progress.js';
import type { DenyRow } from '../store/types.js';

const MAX_ERRORS_LISTED = 100;

function sameAttributes(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) if (!Object.hasOwn(b, key) || a[key] !== b[key]) return false;
  return true;
}

export function registerReportRoutes(app: FastifyInstance, context: ControlContext): void {
  const { store, state, metrics, limits } = context;
  const groupsByWorkload = new Map<string, { revision: number; groups: string }>();

  async function groupsOf(key: string, identity: Record<string, string>): Promise<string> {
    const cached = groupsByWorkload.get(key);
    if (cached && cached.revision === state.revision) return cached.groups;
    const resolved = await state.resolve(identity);
    const groups = resolved && resolved.groups.length > 0 ? `,${resolved.groups.join(',')},` : '';
    if (groupsByWorkload.size >= 50_000) groupsByWorkload.clear();
    groupsByWorkload.set(key, { revision: state.revision, groups });
    return groups;
  }

  app.post<{ Body: { records: unknown[]; hits?: unknown } }>(
    '/v1/reports',
    {
      config: { access: 'workload', actsForWorkload: true },
      bodyLimit: limits.reportBodyBytes,
      schema: {
        summary: 'Store a batch of deny records',
        description:
          'Idempotent by record id: a replayed batch stores nothing twice. Each record is validated alone; ' +
          'bad ones are counted as rejected (with their index and reason) and the rest are stored. ' +
          'Records with sandboxId and seq (from 1, per sandbox) let the API count records that never arrived; ' +
          `a seq more than ${MAX_SEQ_JUMP} beyond its sandbox's highest is stored but flagged (seqAnomalies). ` +
          'An aggregate record (a flood counted per destination pattern) carries aggregate {pattern, distinct, ' +
          'sample ≤ 16 values of ≤ 512 characters}: a batch with a larger one is refused whole with 400. ' +
          'hits: rule hit counts [{workload, revision, since, until, rules: {ruleId: n}}] (statistics, added to ' +
          'the day they arrive; malformed ones refuse the batch with 400).',
        body: {
          type: 'object',
          required: ['records'],
          properties: {
            records: { type: 'array', maxItems: limits.reportRecords },
            hits: { type: 'array', maxItems: MAX_HIT_COUNTS },
          },
        },
        response: {
          202: {
            type: 'object',
            properties: {
              stored: { type: 'integer' },
              duplicate: { type: 'integer' },
              rejected: { type: 'integer' },
              seqAnomalies: {
                type: 'integer',
                description: `stored records whose seq jumped more than ${MAX_SEQ_JUMP} beyond their sandbox's (flagged, not counted as missing)`,
              },
              hits: { type: 'integer', description: 'rule hit counts added (rules × revisions)' },
              errors: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { index: { type: 'integer' }, reason: { type: 'string' } },
                },
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const rows: DenyRow[] = [];
      const errors: { index: number; reason: string }[] = [];
      let rejected = 0;
      const receivedAt = new Date().toISOString();
      const { records } = request.body;
      const { grant } = request;
      const pinned = grant?.pinned;
      // Records are judged one by one below; an aggregate summary beyond its bounds is a hostile
      // client's, so the whole batch is refused before any of it is read further.
      const oversized = oversizedAggregate(records);
      if (oversized !== undefined) return reply.code(400).send({ error: 'bad-request', message: oversized });
      const hitRows = hitRowsOf(request.body.hits, receivedAt.slice(0, 10));
      if (typeof hitRows === 'string')
        return reply.code(400).send({ error: 'bad-request', message: hitRows });
      // SmartGroups per workload (a batch mostly has one): cached per revision, else asked of the policy thread.
      const groupsByKey = new Map<string, Promise<string>>();
      let lastWorkload: Readonly<Record<string, string>> | undefined;
      let lastKey = '';
      for (let index = 0; index < records.length; index++) {
        try {
          const { record, timeMs } = validateDenyRecord(records[index]);
          // An attested session's records are its identity's, whatever they say.
          if (pinned) record.workload = pinned.identity;
          // Records of one batch mostly come from one workload: reuse its key when the attributes match.
          let workloadKey: string;
          if (lastWorkload !== undefined && sameAttributes(lastWorkload, record.workload))
            workloadKey = lastKey;
          else {
            workloadKey = formatIdentity(record.workload);
            lastWorkload = record.workload;
            lastKey = workloadKey;
            if (!groupsByKey.has(workloadKey)) {
              groupsByKey.set(
                workloadKey,
                groupsOf(workloadKey, record.workload).catch(() => ''),
              );
            }
          }
          rows.push({
            id: record.id,
            time: record.time,
            timeMs,
            workloadKey,
            workloadName: record.workload.name ?? null,
            invocationId: record.invocationId ?? null,
            originPackage: record.origin?.package ?? null,
            severity: record.severity ?? 'normal',
            groups: '',
            host: record.destination.host ?? null,
            ip: record.destination.ip ?? null,
            port: record.destination.port ?? null,
            kind: record.kind,
            decision: record.decision,
            mode: record.mode,
            rule: record.rule,
            revision: record.revision,
            sandboxId: record.sandboxId ?? null,
            seq: record.seq ?? null,
            receivedAt,
            record: JSON.stringify(record),
          });
        } catch (error) {
          if (!(error instanceof RecordError)) throw error;
          rejected++;
          if (errors.length < MAX_ERRORS_LISTED) errors.push({ index, reason: error.message });
        }
      }
      for (const row of rows) row.groups = await (groupsByKey.get(row.workloadKey) ?? '');
      if (grant?.groups) {
        // Nothing of a batch is stored when any record speaks for a workload outside the token's groups.
        for (const row of rows) {
          if (!mayActFor(grant, row.groups.split(',').filter(Boolean)))
            return reply.code(403).send(outsideGroups(grant));
        }
      }
      const { stored, duplicate, seqAnomalies } = await store.insertDenies(rows);
      // After the records: a batch refused for want of storage is sent again whole, and its counts with it.
      await store.addHits(hitRows);
      metrics.reports.inc({ result: 'stored' }, stored);
      metrics.reports.inc({ result: 'duplicate' }, duplicate);
      metrics.reports.inc({ result: 'rejected' }, rejected);
      const answer = {
        stored,
        duplicate,
        rejected,
        ...(seqAnomalies ? { seqAnomalies } : {}),
        ...(hitRows.length > 0 ? { hits: hitRows.length } : {}),
      };
      return reply.code(202).send(errors.length > 0 ? { ...answer, errors } : answer);
    },
  );
}
