// The GCP and Azure proof verifiers (control/attest/jwt.ts) against the loopback issuer stand-in:
// good tokens attest with the attributes policy/attestation.ts names, every bad token and classic
// attack is refused with the status VerifyOutcome gives it, allow-lists answer 403, an unreachable
// key set 503, a rotated key is picked up by refetching the set, and junk never throws.
import { createServer } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AZURE_JWKS_URI,
  azureIssuers,
  createAzureVerifier,
  createGcpVerifier,
  GOOGLE_ISSUERS,
  GOOGLE_JWKS_URI,
  type JwtVerifierOptions,
} from '../../control/attest/jwt.js';
import type { VerifyOutcome } from '../../control/attest/types.js';
import { DEFAULT_MANAGED_IDENTITY, JwtStandin, type MintOptions } from '../support/jwt-standin.js';

const AUDIENCE = 'https://control.example';
const TENANT = DEFAULT_MANAGED_IDENTITY.tenant;
const SUBSCRIPTION = '6d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a';

let standin: JwtStandin;

beforeAll(async () => {
  standin = await JwtStandin.start();
});
afterAll(async () => {
  await standin.close();
});
beforeEach(() => {
  standin.jwksMode = 'up';
});

function gcp(options: JwtVerifierOptions = {}, projects?: string[]) {
  return createGcpVerifier({ issuers: [], jwksUri: standin.googleJwksUri, projects }, AUDIENCE, options);
}

function azure(options: JwtVerifierOptions = {}, tenants: string[] = [TENANT]) {
  return createAzureVerifier({ issuers: [], jwksUri: standin.azureJwksUri, tenants }, AUDIENCE, options);
}

function refused(outcome: VerifyOutcome): { status: number; error: string } {
  if (outcome.ok) throw new Error(`expected a refusal, got ${JSON.stringify(outcome)}`);
  return { status: outcome.status, error: outcome.error };
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('defaults', () => {
  it('are the issuers and key sets Google and Entra ID publish', () => {
    expect(GOOGLE_ISSUERS).toEqual(['https://accounts.google.com', 'accounts.google.com']);
    expect(GOOGLE_JWKS_URI).toBe('https://www.googleapis.com/oauth2/v3/certs');
    expect(AZURE_JWKS_URI).toBe('https://login.microsoftonline.com/common/discovery/v2.0/keys');
    expect(azureIssuers([TENANT])).toEqual([
      `https://sts.windows.net/${TENANT}/`,
      `https://login.microsoftonline.com/${TENANT}/v2.0`,
    ]);
  });

  it('refuse a configuration that would trust too much', () => {
    expect(() =>
      createAzureVerifier({ issuers: [], jwksUri: standin.azureJwksUri, tenants: [] }, AUDIENCE),
    ).toThrow(/at least one tenant/);
    expect(() => createGcpVerifier({ issuers: [], jwksUri: 'http://keys.example/certs' }, AUDIENCE)).toThrow(
      /https/,
    );
    expect(() => createGcpVerifier({ issuers: [], jwksUri: standin.googleJwksUri }, '')).toThrow(/audience/);
  });
});

describe('GCP identity tokens', () => {
  it('a token from the metadata server attests the service account and its project', async () => {
    const token = await standin.mintGoogle({ audience: AUDIENCE });
    const outcome = await gcp().verify({ type: 'gcp', token });
    expect(outcome).toEqual({
      ok: true,
      attested: {
        kind: 'gcp',
        principal: 'egress-fn@demo-project.iam.gserviceaccount.com',
        attributes: {
          cloud: 'gcp',
          account: 'demo-project',
          serviceAccount: 'egress-fn@demo-project.iam.gserviceaccount.com',
        },
      },
    });
    // The other issuer form Google uses is accepted too.
    const bare = await standin.mintGoogle({ audience: AUDIENCE, issuer: 'accounts.google.com' });
    expect((await gcp().verify({ type: 'gcp', token: bare })).ok).toBe(true);
  });

  it('a default compute service account attests without a project', async () => {
    const email = '123456789012-compute@developer.gserviceaccount.com';
    const token = await standin.mintGoogle({ audience: AUDIENCE, claims: { email } });
    const outcome = await gcp().verify({ type: 'gcp', token });
    expect(outcome.ok && outcome.attested.attributes).toEqual({ cloud: 'gcp', serviceAccount: email });
    // …and is refused where projects are listed.
    expect(refused(await gcp({}, ['demo-project']).verify({ type: 'gcp', token })).status).toBe(403);
  });

  it('a project not listed is refused with 403, a listed one attests', async () => {
    const token = await standin.mintGoogle({ audience: AUDIENCE });
    expect((await gcp({}, ['demo-project']).verify({ type: 'gcp', token })).ok).toBe(true);
    const other = refused(await gcp({}, ['payments-prod']).verify({ type: 'gcp', token }));
    expect(other).toEqual({ status: 403, error: 'project demo-project is not allowed to attest' });
  });

  it('needs the email (format=full) and a verified one', async () => {
    const standard = await standin.mintGoogle({ audience: AUDIENCE, full: false });
    expect(refused(await gcp().verify({ type: 'gcp', token: standard }))).toEqual({
      status: 401,
      error: 'token has no email claim (ask the metadata server with format=full)',
    });
    for (const emailVerified of [false, 'true', undefined]) {
      const token = await standin.mintGoogle({
        audience: AUDIENCE,
        claims: { email_verified: emailVerified },
      });
      expect(refused(await gcp().verify({ type: 'gcp', token })).error).toBe("token's email is not verified");
    }
  });
});

describe('Azure managed-identity tokens', () => {
  it("a function app's system-assigned identity attests tenant, principal, subscription and site", async () => {
    const token = await standin.mintAzure({ audience: AUDIENCE });
    expect(await azure().verify({ type: 'azure', token })).toEqual({
      ok: true,
      attested: {
        kind: 'azure',
        principal: DEFAULT_MANAGED_IDENTITY.objectId,
        attributes: {
          cloud: 'azure',
          tenant: TENANT,
          principal: DEFAULT_MANAGED_IDENTITY.objectId,
          account: SUBSCRIPTION,
          name: 'egress-app',
        },
      },
    });
  });

  it('reads xms_mirid case-insensitively; a user-assigned identity has no site', async () => {
    const upper = `/SUBSCRIPTIONS/${SUBSCRIPTION.toUpperCase()}/RESOURCEGROUPS/rg/PROVIDERS/microsoft.web/SITES/Egress-App/slots/staging`;
    const slot = await standin.mintAzure({ audience: AUDIENCE, claims: { xms_mirid: upper } });
    const attested = await azure().verify({ type: 'azure', token: slot });
    expect(attested.ok && attested.attested.attributes).toMatchObject({
      account: SUBSCRIPTION,
      name: 'Egress-App',
    });
    const userAssigned = await standin.mintAzure({
      audience: AUDIENCE,
      claims: {
        xms_mirid: `/subscriptions/${SUBSCRIPTION}/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/egress-id`,
      },
    });
    const outcome = await azure().verify({ type: 'azure', token: userAssigned });
    expect(outcome.ok && outcome.attested.attributes).toEqual({
      cloud: 'azure',
      tenant: TENANT,
      principal: DEFAULT_MANAGED_IDENTITY.objectId,
    });
  });

  it('a v2.0 token of the tenant is accepted too', async () => {
    const token = await standin.mintAzure({
      audience: AUDIENCE,
      issuer: `https://login.microsoftonline.com/${TENANT}/v2.0`,
      claims: { ver: '2.0' },
    });
    expect((await azure().verify({ type: 'azure', token })).ok).toBe(true);
  });

  it('a tenant not listed is refused with 403', async () => {
    const other = 'a1b2c3d4-0000-4000-8000-000000000001';
    const token = await standin.mintAzure({
      audience: AUDIENCE,
      identity: { ...DEFAULT_MANAGED_IDENTITY, tenant: other },
    });
    // Its issuer is one of the configured tenants' forms only when issuers are given explicitly.
    const verifier = createAzureVerifier(
      { issuers: azureIssuers([TENANT, other]), jwksUri: standin.azureJwksUri, tenants: [TENANT] },
      AUDIENCE,
    );
    expect(refused(await verifier.verify({ type: 'azure', token }))).toEqual({
      status: 403,
      error: `tenant ${other} is not allowed to attest`,
    });
    // With derived issuers, the other tenant's issuer is already wrong.
    expect(refused(await azure().verify({ type: 'azure', token })).status).toBe(401);
  });

  it("an issuer of another listed tenant than the token's is refused", async () => {
    const second = 'a1b2c3d4-0000-4000-8000-000000000002';
    const token = await standin.mintAzure({
      audience: AUDIENCE,
      issuer: `https://sts.windows.net/${second}/`,
    });
    expect(refused(await azure({}, [TENANT, second]).verify({ type: 'azure', token }))).toEqual({
      status: 401,
      error: "wrong issuer for the token's tenant",
    });
  });

  it('needs tid and oid', async () => {
    const noOid = await standin.mintAzure({ audience: AUDIENCE, claims: { oid: undefined } });
    expect(refused(await azure().verify({ type: 'azure', token: noOid }))).toEqual({
      status: 401,
      error: 'token has no object id (oid)',
    });
    const noTid = await standin.mintAzure({ audience: AUDIENCE, claims: { tid: undefined } });
    expect(refused(await azure().verify({ type: 'azure', token: noTid })).status).toBe(401);
  });
});

describe('bad tokens and classic attacks', () => {
  const CASES: [string, MintOptions, number, RegExp][] = [
    ['expired', { expired: true }, 401, /^token expired \(ERR_JWT_EXPIRED\)$/],
    ['another audience', { audience: 'https://other.example' }, 401, /^wrong audience \(/],
    ['another issuer', { issuer: 'https://evil.example' }, 401, /^wrong issuer \(/],
    ['not valid yet', { claims: { nbf: Math.floor(Date.now() / 1000) + 3600 } }, 401, /^not valid yet/],
    ['no exp', { claims: { exp: undefined } }, 401, /^no valid expiry/],
    ['a key not in the set, same kid', { signing: 'foreign' }, 401, /^bad signature \(/],
    ['a key not in the set, its own kid', { signing: 'unknown-kid' }, 401, /does not publish/],
    ['alg none', { signing: 'none' }, 401, /RS256 only/],
    ['HS256 keyed with the public key', { signing: 'hs256-public-key' }, 401, /RS256 only/],
  ];

  for (const [name, options, status, error] of CASES) {
    it(`${name} → ${status} (gcp and azure)`, async () => {
      const google = await standin.mintGoogle({ audience: AUDIENCE, ...options });
      const entra = await standin.mintAzure({ audience: AUDIENCE, ...options });
      for (const [outcome, token] of [
        [await gcp().verify({ type: 'gcp', token: google }), google],
        [await azure().verify({ type: 'azure', token: entra }), entra],
      ] as const) {
        const got = refused(outcome);
        expect(got.status).toBe(status);
        expect(got.error).toMatch(error);
        expect(got.error).not.toContain(token.split('.')[1]);
      }
    });
  }

  it('a token within the clock tolerance is accepted', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await standin.mintGoogle({
      audience: AUDIENCE,
      claims: { iat: now - 3630, exp: now - 30 },
    });
    expect((await gcp().verify({ type: 'gcp', token })).ok).toBe(true);
  });

  it('a tampered payload does not verify', async () => {
    const [header, , signature] = (await standin.mintGoogle({ audience: AUDIENCE })).split('.');
    const forged = Buffer.from(
      JSON.stringify({
        iss: 'https://accounts.google.com',
        aud: AUDIENCE,
        exp: Math.floor(Date.now() / 1000) + 600,
        email: 'admin@payments-prod.iam.gserviceaccount.com',
        email_verified: true,
      }),
    ).toString('base64url');
    const outcome = await gcp().verify({ type: 'gcp', token: `${header}.${forged}.${signature}` });
    expect(refused(outcome).status).toBe(401);
    expect(refused(outcome).error).toMatch(/^bad signature/);
  });

  it('malformed proofs are 400 without a key set fetch', async () => {
    const verifier = gcp();
    const before = standin.jwksRequests;
    for (const proof of [
      null,
      'eyJ.eyJ.sig',
      [],
      { type: 'azure', token: 'a.b.c' },
      { type: 'gcp' },
      { type: 'gcp', token: 42 },
      { type: 'gcp', token: 'not a jwt' },
      { type: 'gcp', token: 'a.b' },
      { type: 'gcp', token: `${'a'.repeat(16 * 1024)}.b.c` },
    ]) {
      expect(refused(await verifier.verify(proof)).status).toBe(400);
    }
    expect(standin.jwksRequests).toBe(before);
  });
});

describe('the key set', () => {
  it('is fetched once and cached', async () => {
    const verifier = gcp();
    const before = standin.jwksRequests;
    for (let i = 0; i < 3; i++) {
      const token = await standin.mintGoogle({ audience: AUDIENCE });
      expect((await verifier.verify({ type: 'gcp', token })).ok).toBe(true);
    }
    expect(standin.jwksRequests - before).toBe(1);
  });

  it('unreachable → 503; an error answer → 503; junk → 502; never the token', async () => {
    const token = await standin.mintGoogle({ audience: AUDIENCE });
    const port = await closedPort();
    const down = createGcpVerifier({ issuers: [], jwksUri: `http://127.0.0.1:${port}/certs` }, AUDIENCE);
    const closed = refused(await down.verify({ type: 'gcp', token }));
    expect(closed).toEqual({ status: 503, error: "the issuer's key set unreachable (ECONNREFUSED)" });

    standin.jwksMode = 'reset';
    expect(refused(await gcp().verify({ type: 'gcp', token })).status).toBe(503);
    standin.jwksMode = 'error';
    expect(refused(await gcp().verify({ type: 'gcp', token }))).toEqual({
      status: 503,
      error: "the issuer's key set answered HTTP 500",
    });
    standin.jwksMode = 'hang';
    expect(refused(await gcp({ jwksTimeoutMs: 200 }).verify({ type: 'gcp', token }))).toEqual({
      status: 503,
      error: "the issuer's key set timed out",
    });
    standin.jwksMode = 'junk';
    expect(refused(await azure().verify({ type: 'azure', token: await standin.mintAzure() })).status).toBe(
      502,
    );
  });

  it('an oversized answer is refused (502)', async () => {
    const token = await standin.mintGoogle({ audience: AUDIENCE });
    expect(refused(await gcp({ maxJwksBytes: 100 }).verify({ type: 'gcp', token }))).toEqual({
      status: 502,
      error: "the issuer's key set answer is larger than 100 bytes",
    });
  });

  it('a rotated signing key is fetched when a token names it', async () => {
    const verifier = azure({ jwksCooldownMs: 0 });
    const before = standin.jwksRequests;
    expect(
      (await verifier.verify({ type: 'azure', token: await standin.mintAzure({ audience: AUDIENCE }) })).ok,
    ).toBe(true);
    const kid = await standin.rotate({ dropPrevious: true });
    const rotated = await standin.mintAzure({ audience: AUDIENCE });
    expect(JSON.parse(Buffer.from(rotated.split('.')[0] as string, 'base64url').toString()).kid).toBe(kid);
    expect((await verifier.verify({ type: 'azure', token: rotated })).ok).toBe(true);
    expect(standin.jwksRequests - before).toBe(2);
  });

  it('an unknown key within the cooldown does not refetch (no fetch per forged kid)', async () => {
    const verifier = gcp();
    expect(
      (await verifier.verify({ type: 'gcp', token: await standin.mintGoogle({ audience: AUDIENCE }) })).ok,
    ).toBe(true);
    const before = standin.jwksRequests;
    await standin.rotate();
    const rotated = await standin.mintGoogle({ audience: AUDIENCE });
    expect(refused(await verifier.verify({ type: 'gcp', token: rotated })).status).toBe(401);
    for (let i = 0; i < 5; i++) {
      const forged = await standin.mintGoogle({ audience: AUDIENCE, signing: 'unknown-kid' });
      expect(refused(await verifier.verify({ type: 'gcp', token: forged })).status).toBe(401);
    }
    expect(standin.jwksRequests).toBe(before);
  });
});

describe('junk', () => {
  const part = fc.oneof(
    fc.base64String().map((s) => s.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')),
    fc.string(),
    fc.constantFrom('eyJhbGciOiJSUzI1NiJ9', 'eyJhbGciOiJub25lIn0', 'e30', ''),
  );
  const token = fc.oneof(
    fc.tuple(part, part, part).map((parts) => parts.join('.')),
    fc.string({ maxLength: 200 }),
    fc.anything(),
  );
  const proof = fc.oneof(
    fc.anything(),
    token.map((t) => ({ type: 'gcp', token: t })),
    token.map((t) => ({ type: 'azure', token: t })),
    fc.record({ type: fc.constantFrom('gcp', 'azure', 'aws'), token: fc.anything() }),
  );

  it('never throws and always answers 4xx', async () => {
    const verifiers = [gcp(), azure()];
    await fc.assert(
      fc.asyncProperty(proof, async (value) => {
        for (const verifier of verifiers) {
          const outcome = await verifier.verify(value);
          expect(outcome.ok).toBe(false);
          const { status } = refused(outcome);
          expect(status).toBeGreaterThanOrEqual(400);
          expect(status).toBeLessThan(500);
        }
      }),
      { numRuns: 300 },
    );
  });
});
