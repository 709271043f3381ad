// The Node client's proofs (runtime-shims/node/client/attest-jwt.ts) against the loopback stand-ins
// of the GCP metadata server and the App Service identity endpoint, checked end to end by the
// control API's verifiers: the right request (headers, audience, format, api-version, client id),
// clear errors for what is missing, bounded time and size, never the token or the secret in a message.
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAzureVerifier, createGcpVerifier } from '../../control/attest/jwt.js';
import {
  azureProof,
  gcpProof,
  MAX_PROOF_ANSWER_BYTES,
  ProofError,
} from '../../runtime-shims/node/client/attest-jwt.js';
import {
  DEFAULT_MANAGED_IDENTITY,
  IDENTITY_PATH,
  JwtStandin,
  METADATA_IDENTITY_PATH,
} from '../support/jwt-standin.js';

const AUDIENCE = 'https://control.example:8443';
const USER_ASSIGNED = {
  tenant: DEFAULT_MANAGED_IDENTITY.tenant,
  objectId: '9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a',
  clientId: '11111111-2222-4333-8444-555555555555',
  resourceId:
    '/subscriptions/6d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/egress-id',
};

let standin: JwtStandin;
/** Answers every request as told by `behaviour`. */
let odd: Server;
let oddHost: string;
let behaviour: 'hang' | 'huge' | 'status' | 'text' | 'json-without-token' = 'status';

beforeAll(async () => {
  standin = await JwtStandin.start({ userAssigned: [USER_ASSIGNED] });
  odd = createServer((_request, response) => {
    switch (behaviour) {
      case 'hang':
        return;
      case 'huge':
        response.end('x'.repeat(MAX_PROOF_ANSWER_BYTES + 1));
        return;
      case 'text':
        response.end('<html>captive portal</html>');
        return;
      case 'json-without-token':
        response.setHeader('content-type', 'application/json');
        response.end('{"error":"nope"}');
        return;
      default:
        response.writeHead(503);
        response.end('busy');
    }
  });
  await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve));
  oddHost = `127.0.0.1:${(odd.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await standin.close();
  odd.closeAllConnections();
  await new Promise<void>((resolve) => odd.close(() => resolve()));
});

async function failure(promise: Promise<unknown>): Promise<ProofError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ProofError);
    return error as ProofError;
  }
  throw new Error('expected a ProofError');
}

describe('gcpProof', () => {
  it('asks the metadata server (GCE_METADATA_HOST) for a full identity token the verifier accepts', async () => {
    const proof = await gcpProof({ audience: AUDIENCE, env: { GCE_METADATA_HOST: standin.metadataHost } });
    expect(proof.type).toBe('gcp');
    const request = standin.seen.at(-1);
    expect(request?.path).toBe(METADATA_IDENTITY_PATH);
    expect(request?.headers['metadata-flavor']).toBe('Google');
    expect(Object.fromEntries(request?.query ?? [])).toEqual({ audience: AUDIENCE, format: 'full' });
    const verifier = createGcpVerifier({ issuers: [], jwksUri: standin.googleJwksUri }, AUDIENCE);
    const outcome = await verifier.verify(proof);
    expect(outcome.ok && outcome.attested.attributes).toEqual({
      cloud: 'gcp',
      account: 'demo-project',
      serviceAccount: standin.serviceAccount.email,
    });
  });

  it('the stand-in refuses a request without Metadata-Flavor, as the real server does', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      get(`${standin.url}${METADATA_IDENTITY_PATH}?audience=x&format=full`, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      }).on('error', reject);
    });
    expect(status).toBe(403);
  });

  it('says what went wrong: refused, not a token, too large, unreachable, out of time', async () => {
    behaviour = 'status';
    const refused = await failure(gcpProof({ audience: AUDIENCE, env: { GCE_METADATA_HOST: oddHost } }));
    expect(refused).toMatchObject({ reason: 'refused', status: 503 });
    expect(refused.message).toBe(
      `the metadata server (${oddHost}) answered 503 to the identity token request`,
    );

    behaviour = 'text';
    expect(
      await failure(gcpProof({ audience: AUDIENCE, env: { GCE_METADATA_HOST: oddHost } })),
    ).toMatchObject({
      reason: 'malformed',
      message: `the metadata server (${oddHost}) did not answer a JWT`,
    });

    behaviour = 'huge';
    expect(
      (await failure(gcpProof({ audience: AUDIENCE, env: { GCE_METADATA_HOST: oddHost } }))).reason,
    ).toBe('malformed');

    const { port } = odd.address() as AddressInfo;
    const closed = await failure(gcpProof({ audience: AUDIENCE, env: { GCE_METADATA_HOST: '127.0.0.1:1' } }));
    expect(closed.reason).toBe('unreachable');
    expect(closed.message).toMatch(/ECONNREFUSED/);

    behaviour = 'hang';
    const started = Date.now();
    const late = await failure(
      gcpProof({ audience: AUDIENCE, env: { GCE_METADATA_HOST: `127.0.0.1:${port}` }, timeoutMs: 200 }),
    );
    expect(late.reason).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('refuses what it cannot send', async () => {
    expect((await failure(gcpProof({ audience: '', env: {} }))).reason).toBe('not-configured');
    expect((await failure(gcpProof({ audience: 'a\nb', env: {} }))).reason).toBe('not-configured');
    const host = await failure(
      gcpProof({ audience: AUDIENCE, env: { GCE_METADATA_HOST: 'evil.example/x?y' } }),
    );
    expect(host.message).toMatch(/GCE_METADATA_HOST/);
  });
});

describe('azureProof', () => {
  const env = () => ({
    IDENTITY_ENDPOINT: standin.identityEndpoint,
    IDENTITY_HEADER: standin.identityHeader,
  });

  it('asks the identity endpoint for a token the verifier accepts', async () => {
    const proof = await azureProof({ audience: AUDIENCE, env: env() });
    expect(proof.type).toBe('azure');
    const request = standin.seen.at(-1);
    expect(request?.path).toBe(IDENTITY_PATH);
    expect(request?.headers['x-identity-header']).toBe(standin.identityHeader);
    expect(Object.fromEntries(request?.query ?? [])).toEqual({
      resource: AUDIENCE,
      'api-version': '2019-08-01',
    });
    const verifier = createAzureVerifier(
      { issuers: [], jwksUri: standin.azureJwksUri, tenants: [DEFAULT_MANAGED_IDENTITY.tenant] },
      AUDIENCE,
    );
    const outcome = await verifier.verify(proof);
    expect(outcome.ok && outcome.attested.attributes).toEqual({
      cloud: 'azure',
      tenant: DEFAULT_MANAGED_IDENTITY.tenant,
      principal: DEFAULT_MANAGED_IDENTITY.objectId,
      account: '6d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a',
      name: 'egress-app',
    });
  });

  it("asks for a user-assigned identity's token with BULKHEAD_AZURE_CLIENT_ID", async () => {
    const proof = await azureProof({
      audience: AUDIENCE,
      env: { ...env(), BULKHEAD_AZURE_CLIENT_ID: USER_ASSIGNED.clientId },
    });
    expect(standin.seen.at(-1)?.query.get('client_id')).toBe(USER_ASSIGNED.clientId);
    const claims = JSON.parse(Buffer.from(proof.token.split('.')[1] as string, 'base64url').toString());
    expect(claims).toMatchObject({
      oid: USER_ASSIGNED.objectId,
      aud: AUDIENCE,
      xms_mirid: USER_ASSIGNED.resourceId,
    });
  });

  it('a wrong IDENTITY_HEADER is refused, and the message never holds it', async () => {
    const wrong = 'not-the-secret-0123456789';
    const error = await failure(
      azureProof({ audience: AUDIENCE, env: { ...env(), IDENTITY_HEADER: wrong } }),
    );
    expect(error).toMatchObject({ reason: 'refused', status: 401 });
    expect(error.message).not.toContain(wrong);
    expect(error.message).not.toContain(standin.identityHeader);
  });

  it('names the variable that is missing', async () => {
    expect((await failure(azureProof({ audience: AUDIENCE, env: {} }))).message).toMatch(
      /^IDENTITY_ENDPOINT is not set/,
    );
    expect(
      (
        await failure(
          azureProof({ audience: AUDIENCE, env: { IDENTITY_ENDPOINT: standin.identityEndpoint } }),
        )
      ).message,
    ).toMatch(/^IDENTITY_HEADER is not set/);
    expect(
      (
        await failure(
          azureProof({ audience: AUDIENCE, env: { IDENTITY_ENDPOINT: 'nope', IDENTITY_HEADER: 'x' } }),
        )
      ).message,
    ).toBe('IDENTITY_ENDPOINT is not a URL');
  });

  it('an answer without a token, or no answer in time, is an error', async () => {
    behaviour = 'json-without-token';
    const odd = { IDENTITY_ENDPOINT: `http://${oddHost}/msi/token`, IDENTITY_HEADER: 'secret' };
    expect(await failure(azureProof({ audience: AUDIENCE, env: odd }))).toMatchObject({
      reason: 'malformed',
      message: `the identity endpoint (${oddHost}) answered no access_token`,
    });
    behaviour = 'hang';
    expect((await failure(azureProof({ audience: AUDIENCE, env: odd, timeoutMs: 150 }))).reason).toBe(
      'timeout',
    );
  });
});
