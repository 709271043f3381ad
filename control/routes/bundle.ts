// GET /v1/bundle: the signed envelope for the caller's workload scope, with ETag and long-poll.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { formatIdentity, IDENTITY_BOUNDS, parseIdentity } from '../../policy/identity.js';
import type { WorkloadIdentity } from '../../policy/types.js';
import type { TokenGrant } from '../auth.js';
import { mayActFor, outsideGroups } from '../authorize.js';
import type { ControlContext } from '../context.js';
import type { ResolvedWorkload, SignedBundle, TextEntry } from '../policy-state.js';

interface BundleQuery {
  workload?: string;
  wait?: number;
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header === etag) return true;
  // One tag (what every client sends): compared without splitting.
  if (!header.includes(',')) {
    const trimmed = header.trim();
    return trimmed === '*' || (trimmed.startsWith('W/') ? trimmed.slice(2) : trimmed) === etag;
  }
  if (header.trim() === '*') return true;
  return header.split(',').some((candidate) => {
    const trimmed = candidate.trim();
    return (trimmed.startsWith('W/') ? trimmed.slice(2) : trimmed) === etag;
  });
}

function unavailable(reply: FastifyReply) {
  reply.header('retry-after', '1');
  return reply.code(503).send({
    error: 'unavailable',
    message: 'the policy thread could not prepare this bundle; retry shortly',
  });
}

export function registerBundleRoutes(app: FastifyInstance, context: ControlContext): void {
  const { state, longPolls, metrics, limits } = context;
  const SENT = metrics.bundles.series({ result: 'sent' });
  const NOT_MODIFIED = metrics.bundles.series({ result: 'not_modified' });
  app.get<{ Querystring: BundleQuery }>(
    '/v1/bundle',
    {
      config: { access: 'workload', actsForWorkload: true },
      schema: {
        summary: "The signed bundle for the caller's workload scope",
        description:
          'Answers 200 with the DSSE envelope and an ETag, or 304 when If-None-Match names the current one. ' +
          'With wait=N and a matching If-None-Match, holds the request up to N seconds and answers as soon as a ' +
          'newer revision exists. A workload seen for the first time joins the inventory.',
        querystring: {
          type: 'object',
          properties: {
            workload: {
              type: 'string',
              maxLength: IDENTITY_BOUNDS.textLength,
              description:
                'identity k=v,k=v (percent-encoded values); required unless the token is an attested session, whose identity it is then',
            },
            wait: {
              type: 'integer',
              minimum: 0,
              maximum: 3600,
              description: 'long-poll seconds (capped at 60)',
            },
          },
        },
        headers: {
          type: 'object',
          properties: { 'if-none-match': { type: 'string', maxLength: 1024 } },
        },
        response: {
          200: {
            description: 'DSSE envelope',
            type: 'object',
            properties: {
              payloadType: { type: 'string' },
              payload: { type: 'string' },
              signatures: {
                type: 'array',
                items: { type: 'object', properties: { keyid: { type: 'string' }, sig: { type: 'string' } } },
              },
            },
          },
          304: { description: 'not modified', type: 'null' },
        },
      },
    },
    async (request, reply) => {
      const { grant } = request;
      // An attested session's identity is the one its proof established, whatever the query says.
      const text = grant?.pinned?.text ?? request.query.workload;
      if (text === undefined) {
        return reply.code(400).send({
          error: 'bad-request',
          message: 'querystring must have property workload (k=v,…) unless the token is an attested session',
        });
      }
      let identity: WorkloadIdentity;
      try {
        if (grant && !state.cachedText(text)) {
          // An identity this replica has not resolved yet: one the inventory does not know counts
          // against the token's budget of new workloads before any policy work is spent on it.
          const admitted = context.admitsNewWorkload(grant, formatIdentity(parseIdentity(text)));
          if (!admitted.ok) {
            metrics.rateLimited.inc();
            reply.header('retry-after', String(admitted.retryAfterSeconds));
            return reply.code(429).send({
              error: 'rate-limited',
              message: 'too many workloads this control API has not seen before for this token',
            });
          }
        }
        identity = (await state.resolveText(text)).identity;
      } catch (error) {
        return reply.code(400).send({ error: 'bad-request', message: (error as Error).message });
      }
      // Set when this token may not have the answer: its groups do not select the workload, or it
      // was revoked (or expired) while its request was parked.
      let refusal: 'outside-groups' | 'no-longer-valid' | undefined;
      const refuses = (resolved: ResolvedWorkload): boolean => {
        if (!mayActFor(grant, resolved.groups)) refusal = 'outside-groups';
        else if (parked && grant && context.verifier.noLongerValid(grant)) refusal = 'no-longer-valid';
        return refusal !== undefined;
      };
      const refuse = () => {
        if (refusal === 'no-longer-valid') {
          reply.header('www-authenticate', 'Bearer realm="bulkhead"');
          return reply.code(401).send({ error: 'unauthorized', message: 'token revoked or expired' });
        }
        return reply.code(403).send(outsideGroups(grant as TokenGrant));
      };
      const ifNoneMatch = request.headers['if-none-match'];
      let deadline = Date.now() + Math.min(request.query.wait ?? 0, limits.maxWaitSeconds) * 1000;
      let parked = false;
      // Answers from the policy thread that came back stale (a new revision was swapped in meanwhile).
      let misses = 0;
      let sent: { bundle: SignedBundle; resolved: ResolvedWorkload } | undefined;
      const send = (bundle: SignedBundle, resolved: ResolvedWorkload) => {
        if (refuses(resolved)) return;
        // The same bytes for every workload of the scope, headers included: written directly
        // (onResponse hooks still run on 'finish'); Fastify's send path would rebuild them each time.
        reply.hijack();
        bundle.answer.write(reply.raw);
        sent = { bundle, resolved };
      };
      // The entry read last, kept while the state says it is current (a woken fleet skips 10,000 lookups).
      let entry: TextEntry | undefined;
      let entryVersion = -1;
      // A known workload whose scope's bundle is signed for this revision and epoch: answered from
      // memory, synchronously. Every request tries it first, and the long-poll hub runs it in the
      // turn a new revision is installed, so a woken fleet's answers go out back to back on a path
      // that ordinary fetches keep warm.
      const answerFromMemory = (): boolean => {
        if (entryVersion !== state.textsVersion || !entry) {
          entry = state.cachedText(text);
          entryVersion = state.textsVersion;
        }
        const resolved = entry?.resolved;
        const bundle = resolved && state.signedBundle(resolved);
        if (!bundle || etagMatches(ifNoneMatch, bundle.etag)) return false;
        send(bundle, resolved);
        return true;
      };
      try {
        for (;;) {
          if (!sent && !answerFromMemory()) {
            const resolved = (state.cachedText(text) ?? (await state.resolveText(text))).resolved;
            const answerNow = Date.now() >= deadline;
            if (resolved) {
              const etag = state.etagFor(resolved);
              const notModified = etagMatches(ifNoneMatch, etag);
              if (!notModified || answerNow) {
                const signed = notModified ? undefined : state.bundleFor(identity, resolved);
                const bundle = signed instanceof Promise ? await signed : signed;
                if (bundle) send(bundle, resolved);
                else if (notModified) {
                  if (refuses(resolved)) return refuse();
                  context.sawWorkload(resolved.key, identity, state.revision, resolved.scope);
                  reply.header('etag', etag).header('x-bulkhead-revision', String(state.revision));
                  reply.header('cache-control', 'no-cache');
                  metrics.bundles.add(NOT_MODIFIED);
                  return reply.code(304).send();
                } else {
                  if (++misses > 3) return unavailable(reply);
                  continue;
                }
              }
            } else if (state.current) {
              if (++misses > 3) return unavailable(reply);
              continue;
            } else if (answerNow) {
              return reply.code(404).send({
                error: 'no-policy',
                message: 'no policy has been applied yet; apply one with PUT /v1/policy',
              });
            }
          }
          if (refusal) return refuse();
          if (sent) {
            const { bundle, resolved } = sent;
            context.sawWorkload(resolved.key, identity, bundle.revision, resolved.scope);
            metrics.bundles.add(SENT);
            if (parked) {
              metrics.propagationSumMs += Date.now() - context.revisionSeenAtMs();
              metrics.propagationCount++;
            }
            return reply;
          }
          if (!parked && !longPolls.hasRoom()) {
            metrics.bundles.inc({ result: 'capped' });
            reply.header('retry-after', '1');
            return reply.code(429).send({
              error: 'long-poll-capacity',
              message: 'too many parked long-polls on this replica; retry shortly',
            });
          }
          if (!parked) state.park(text);
          parked = true;
          const reason = await longPolls.wait(
            Math.max(0, deadline - Date.now()),
            // The response's close fires when the client goes away before we answer.
            (abort) => reply.raw.once('close', abort),
            answerFromMemory,
          );
          // Anything but a new revision ends the wait: answer with what is current (304 when unchanged).
          if (reason !== 'revision') deadline = 0;
        }
      } finally {
        if (parked) state.unpark(text);
      }
    },
  );
}
