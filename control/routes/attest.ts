// POST /v1/attest: a workload proves which function it is (control/attest/) and gets a session
// token pinned to that identity; bundles and records of the session are that identity's only.
import type { FastifyInstance } from 'fastify';
import type { AttestAnswer } from '../../policy/attestation.js';
import { checkIdentityBounds, formatIdentity, parseIdentity } from '../../policy/identity.js';
import type { WorkloadIdentity } from '../../policy/types.js';
import { attestedIdentity } from '../attest/identity.js';
import type { Attestor } from '../attest/index.js';
import { issueToken } from '../auth.js';
import { mayActFor, outsideGroups } from '../authorize.js';
import type { ControlContext } from '../context.js';

export const DEFAULT_SESSION_TTL_SECONDS = 3600;

export function registerAttestRoutes(
  app: FastifyInstance,
  context: ControlContext,
  attestor: Attestor | undefined,
): void {
  const { store, state, metrics } = context;
  const ttlMs = (context.attestation?.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS) * 1000;
  app.post<{ Body: { workload?: string; proof: unknown } }>(
    '/v1/attest',
    {
      config: { access: 'workload' },
      schema: {
        summary:
          'Prove the workload identity (AWS STS, GCP identity token, Azure managed identity); get a session',
        description:
          'Verifies the proof (docs/identity.md), lays the attested attributes over the claimed identity ' +
          '(a claim that disagrees: 403 identity-mismatch) and answers a session token pinned to that identity, ' +
          "limited to the workload token's SmartGroups and expiring with it at the latest. Use the session " +
          'for GET /v1/bundle (workload= is then not needed) and POST /v1/reports (records are stamped with the identity).',
        body: {
          type: 'object',
          required: ['proof'],
          properties: {
            workload: { type: 'string', maxLength: 4096 },
            proof: { type: 'object' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              token: { type: 'string' },
              id: { type: 'string' },
              expiresAt: { type: 'string' },
              identity: { type: 'string' },
              attested: {
                type: 'object',
                properties: {
                  kind: { type: 'string' },
                  principal: { type: 'string' },
                  attributes: { type: 'object', additionalProperties: { type: 'string' } },
                },
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const grant = request.grant;
      if (!attestor || !grant) {
        return reply.code(404).send({
          error: 'attestation-off',
          message: 'this control API does not verify workload identity (start it with --attestation FILE)',
        });
      }
      if (grant.scope !== 'workload' || grant.pinned) {
        return reply.code(403).send({
          error: 'forbidden',
          message: grant.pinned
            ? 'this token is already an attested session: attest with the workload token'
            : 'attest with a workload token',
        });
      }
      const admitted = context.admitsAttestation(grant);
      if (!admitted.ok) {
        metrics.rateLimited.inc();
        reply.header('retry-after', String(admitted.retryAfterSeconds));
        return reply
          .code(429)
          .send({ error: 'rate-limited', message: 'too many attestations for this token' });
      }
      let claimed: WorkloadIdentity;
      try {
        claimed = parseIdentity(request.body.workload ?? '');
        checkIdentityBounds(claimed);
      } catch (error) {
        return reply
          .code(400)
          .send({ error: 'bad-request', message: `workload: ${(error as Error).message}` });
      }
      const outcome = await attestor.verify(request.body.proof);
      if (!outcome.ok) {
        metrics.attestations.inc({
          kind: attestor.kindOf(request.body.proof),
          result: `refused-${outcome.status}`,
        });
        if (outcome.status === 503) reply.header('retry-after', '5');
        return reply.code(outcome.status).send({ error: 'attestation-failed', message: outcome.error });
      }
      const { attested } = outcome;
      const merged = attestedIdentity(claimed, attested);
      if (!merged.ok) {
        metrics.attestations.inc({ kind: attested.kind, result: 'identity-mismatch' });
        return reply.code(403).send({
          error: 'identity-mismatch',
          message: `the workload claims ${merged.attribute}=${merged.claimed} but the proof says ${merged.attribute}=${merged.attested}`,
        });
      }
      try {
        checkIdentityBounds(merged.identity);
      } catch (error) {
        return reply
          .code(400)
          .send({ error: 'bad-request', message: `workload: ${(error as Error).message}` });
      }
      const text = formatIdentity(merged.identity);
      const fresh = context.admitsNewWorkload(grant, text);
      if (!fresh.ok) {
        metrics.rateLimited.inc();
        reply.header('retry-after', String(fresh.retryAfterSeconds));
        return reply.code(429).send({
          error: 'rate-limited',
          message: 'too many workloads this control API has not seen before for this token',
        });
      }
      const resolved = await state.resolve(merged.identity);
      if (resolved && !mayActFor(grant, resolved.groups)) {
        metrics.forbidden.inc({ route: '/v1/attest' });
        metrics.attestations.inc({ kind: attested.kind, result: 'outside-groups' });
        return reply.code(403).send(outsideGroups(grant));
      }
      const nowMs = Date.now();
      const expiresMs = Math.min(nowMs + ttlMs, grant.expiresAtMs ?? Number.POSITIVE_INFINITY);
      const session = await issueToken(store, 'workload', `session:${attested.kind}`, {
        groups: grant.groups ? [...grant.groups] : undefined,
        expiresAt: new Date(expiresMs),
        parentId: grant.tokenId,
        identity: text,
        attestation: attested,
      });
      metrics.attestations.inc({ kind: attested.kind, result: 'session' });
      const answer: AttestAnswer = {
        token: session.token,
        id: session.id,
        expiresAt: session.expiresAt ?? new Date(expiresMs).toISOString(),
        identity: text,
        attested,
      };
      return answer;
    },
  );
}
