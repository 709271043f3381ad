// bulkhead token create / list / revoke: API tokens, straight in the store (the operator's
// bootstrap path: no admin token is needed to make the first one). A revocation reaches every
// replica within a second: each polls the store's revocation log.
import { issueToken, isTokenScope, REVOCATION_POLL_MS, tokenGroupsProblem } from '../../control/auth.js';
import { openStore } from '../../control/store/index.js';
import type { ControlStore, TokenListing } from '../../control/store/types.js';
import { parsePolicy } from '../../policy/parse.js';
import { table } from '../client.js';
import {
  type Command,
  durationOption,
  EXIT_FAILURE,
  EXIT_OK,
  type ParsedArgs,
  requireOption,
  stringOption,
  UsageError,
} from '../command.js';

const storeOptions = {
  db: { type: 'string' },
  'database-url': { type: 'string' },
} as const;

const storeHelp = `  --db FILE            SQLite database of the control API (default ./bulkhead.db)
  --database-url URL   its PostgreSQL instead; also BULKHEAD_DATABASE_URL`;

async function withStore<T>(args: ParsedArgs, work: (store: ControlStore) => Promise<T>): Promise<T> {
  const databaseUrl = stringOption(args, 'database-url') ?? process.env.BULKHEAD_DATABASE_URL;
  const db = stringOption(args, 'db');
  if (databaseUrl && db) throw new UsageError('give --db or --database-url, not both');
  const store = await openStore({ databaseUrl, db: db ?? './bulkhead.db' });
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

function groupsOption(args: ParsedArgs): string[] | undefined {
  const value = args.values.group;
  if (value === undefined) return undefined;
  const groups = (Array.isArray(value) ? value : [value]).map(String);
  const problem = tokenGroupsProblem(groups);
  if (problem) throw new UsageError(`--group: ${problem}`);
  return groups;
}

const createUsage = `Usage: bulkhead token create --scope admin|workload [--group NAME]... [--expires 30d] [--name TEXT] [--json]
                             [--db FILE | --database-url URL]

Creates a token and prints it once (only its hash is stored). Give it to clients through BULKHEAD_TOKEN
(on Lambda, better: a Secrets Manager secret, bulkhead attach --token-secret ARN).
  admin     apply policy, query denies and workloads, metrics
  workload  fetch bundles and send deny reports (what the shim, extension and wrappers use)

  --group NAME   workload tokens: act only for workloads this SmartGroup selects (repeat for several).
                 Without it the token acts for any workload: a fleet token — prefer one token per group.
  --expires D    it stops working after D (24h, 30d; at most 3660d)
${storeHelp}

--json prints { "token", "id", "scope", "name", "groups", "expiresAt" }.`;

export const tokenCreateCommand: Command = {
  path: ['token', 'create'],
  summary: 'Create an admin or workload API token (workload tokens limited to SmartGroups)',
  usage: createUsage,
  options: {
    scope: { type: 'string' },
    name: { type: 'string' },
    group: { type: 'string', multiple: true },
    expires: { type: 'string' },
    ...storeOptions,
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const scope = requireOption(args, 'scope');
    if (!isTokenScope(scope)) throw new UsageError(`--scope: expected admin or workload, got ${scope}`);
    const groups = groupsOption(args);
    if (groups && scope !== 'workload')
      throw new UsageError(
        '--group: only workload tokens are limited to SmartGroups (admin tokens act for all)',
      );
    const expires = stringOption(args, 'expires');
    const expiresAt = expires ? new Date(Date.now() + durationOption(expires, 'expires', 3660)) : undefined;
    const { issued, unknownGroups, revision } = await withStore(args, async (store) => ({
      issued: await issueToken(store, scope, stringOption(args, 'name'), { groups, expiresAt }),
      ...(await groupsNotApplied(store, groups ?? [])),
    }));
    for (const group of unknownGroups)
      io.err(
        `warning: SmartGroup ${group} is not in the applied revision ${revision}: the token acts for no workload of it until a revision defines it`,
      );
    if (args.values.json) {
      io.out(
        JSON.stringify({
          token: issued.token,
          id: issued.id,
          scope: issued.scope,
          name: issued.name,
          groups: issued.groups,
          expiresAt: issued.expiresAt,
        }),
      );
      return EXIT_OK;
    }
    io.out(issued.token);
    const limits = [
      issued.groups
        ? `for SmartGroups ${issued.groups.join(', ')}`
        : scope === 'workload'
          ? 'for any workload'
          : '',
      issued.expiresAt ? `until ${issued.expiresAt}` : 'without expiry',
    ].filter(Boolean);
    io.err(`created ${scope} token ${issued.id} ${limits.join(', ')} (shown once; store it as a secret)`);
    return EXIT_OK;
  },
};

/** The groups the applied revision does not define (a typo, or a group not applied yet). */
async function groupsNotApplied(
  store: ControlStore,
  groups: readonly string[],
): Promise<{ unknownGroups: string[]; revision: number }> {
  if (groups.length === 0) return { unknownGroups: [], revision: 0 };
  const latest = await store.latestRevision();
  if (!latest) return { unknownGroups: [...groups], revision: 0 };
  const parsed = parsePolicy(latest.sources);
  if (!parsed.ok) return { unknownGroups: [], revision: latest.revision };
  const defined = new Set(parsed.set.groups.map((group) => group.metadata.name));
  return { unknownGroups: groups.filter((group) => !defined.has(group)), revision: latest.revision };
}

export function tokenStatus(token: TokenListing, nowMs: number): 'active' | 'expired' | 'revoked' {
  if (token.revokedAt) return 'revoked';
  if (token.expiresAt && Date.parse(token.expiresAt) <= nowMs) return 'expired';
  return 'active';
}

const listUsage = `Usage: bulkhead token list [--sessions] [--json] [--db FILE | --database-url URL]

Lists tokens newest first: id, name, scope, SmartGroups, status, expiry, last use and how many attested
sessions each has. Never the secret (only its hash is stored). --sessions also lists the sessions
(POST /v1/attest), with the identity each is pinned to.
${storeHelp}`;

export const tokenListCommand: Command = {
  path: ['token', 'list'],
  summary: 'List API tokens (ids, scope, groups, expiry, last use; never secrets)',
  usage: listUsage,
  options: { sessions: { type: 'boolean' }, ...storeOptions, json: { type: 'boolean' } },
  async run(args, io) {
    const nowMs = Date.now();
    const tokens = await withStore(args, (store) =>
      store.listTokens({ sessions: args.values.sessions === true, nowIso: new Date(nowMs).toISOString() }),
    );
    const rows = tokens.map((token) => ({
      id: token.id,
      name: token.name,
      scope: token.scope,
      groups: token.groups ?? null,
      status: tokenStatus(token, nowMs),
      createdAt: token.createdAt,
      expiresAt: token.expiresAt ?? null,
      lastUsedAt: token.lastUsedAt ?? null,
      revokedAt: token.revokedAt ?? null,
      sessions: token.sessions,
      ...(token.parentId
        ? { parentId: token.parentId, identity: token.identity ?? null, attested: token.attestation ?? null }
        : {}),
    }));
    if (args.values.json) {
      io.out(JSON.stringify({ tokens: rows }));
      return EXIT_OK;
    }
    if (rows.length === 0) {
      io.out('no tokens (bulkhead token create --scope admin makes the first)');
      return EXIT_OK;
    }
    io.out(
      table([
        ['ID', 'NAME', 'SCOPE', 'GROUPS', 'STATUS', 'EXPIRES', 'LAST USED', 'SESSIONS'],
        ...rows.map((row) => [
          row.parentId ? `  ${row.id}` : row.id,
          row.parentId ? `session of ${row.parentId}: ${row.identity ?? ''}` : (row.name ?? '-'),
          row.scope,
          row.groups?.join(',') ?? (row.scope === 'workload' ? '(any)' : '-'),
          row.status,
          row.expiresAt ?? 'never',
          row.lastUsedAt ?? 'never',
          row.parentId ? '' : String(row.sessions),
        ]),
      ]),
    );
    return EXIT_OK;
  },
};

const revokeUsage = `Usage: bulkhead token revoke ID [--json] [--db FILE | --database-url URL]

Revokes the token with that id (the 16 hex digits after bhk_, as token list shows them) and every
attested session issued to it. Every replica of the control API refuses it within a second; long-polls
parked with it are answered 401.
${storeHelp}`;

export const tokenRevokeCommand: Command = {
  path: ['token', 'revoke'],
  summary: 'Revoke a token (and its sessions) on every replica within a second',
  usage: revokeUsage,
  positionals: true,
  options: { ...storeOptions, json: { type: 'boolean' } },
  async run(args, io) {
    const id = args.positionals[0];
    if (!id || args.positionals.length > 1) throw new UsageError('expected one token id');
    const match = /^(?:bhk_)?([0-9a-f]{16})(?:_.*)?$/.exec(id);
    if (!match?.[1])
      throw new UsageError(`not a token id: ${JSON.stringify(id.slice(0, 40))} (16 hex digits)`);
    const tokenId = match[1];
    const outcome = await withStore(args, async (store) => {
      const row = await store.findToken(tokenId);
      if (!row) return { found: false as const };
      if (row.revokedAt) return { found: true as const, already: row.revokedAt, revoked: 0 };
      const revoked = await store.revokeToken(tokenId, new Date().toISOString());
      return { found: true as const, already: undefined, revoked };
    });
    if (!outcome.found) {
      io.err(`bulkhead token revoke: no token ${tokenId}`);
      return EXIT_FAILURE;
    }
    const sessions = Math.max(0, outcome.revoked - 1);
    if (args.values.json) {
      io.out(
        JSON.stringify({
          id: tokenId,
          revoked: outcome.already === undefined,
          sessions,
          already: outcome.already ?? null,
        }),
      );
      return EXIT_OK;
    }
    if (outcome.already) io.out(`token ${tokenId} was already revoked (${outcome.already})`);
    else
      io.out(
        `revoked token ${tokenId}${sessions > 0 ? ` and ${sessions} attested session(s)` : ''}; every replica refuses it within ${REVOCATION_POLL_MS * 2} ms`,
      );
    return EXIT_OK;
  },
};
