// Loopback stand-ins for the two JWT issuers of attested identity and the endpoints functions get
// their tokens from, so tests run without Google or Microsoft:
//
// - an issuer with its own RS256 key pair(s) (jose), serving its JWK set at the paths Google
//   (`/oauth2/v3/certs`) and Entra ID (`/common/discovery/v2.0/keys`) use, and minting tokens shaped
//   like Google identity tokens (`iss` https://accounts.google.com, `email`, `email_verified`, `sub`,
//   `azp`) and like Entra ID v1.0 managed-identity access tokens (`iss` https://sts.windows.net/<tid>/,
//   `tid`, `oid`, `appid`, `idtyp` app, `xms_mirid`, …) — or bad ones: expired, another audience or
//   issuer, signed by a key not in the set, `alg: none`, HS256 keyed with the public key;
// - the GCP metadata server's identity endpoint
//   (`GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=…&format=full`,
//   refused without `Metadata-Flavor: Google`, as the real one refuses it);
// - the App Service / Functions managed-identity endpoint (IDENTITY_ENDPOINT, `X-IDENTITY-HEADER`,
//   `?resource=…&api-version=2019-08-01[&client_id=…]` → {access_token, expires_on, resource, token_type}).
//
// `rotate()` replaces the signing key (the old one stays published unless told otherwise), so a test
// can show a verifier refetching the set for a key it has not seen.
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { base64url, type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';

export const STANDIN_GOOGLE_ISSUER = 'https://accounts.google.com';
export const METADATA_IDENTITY_PATH = '/computeMetadata/v1/instance/service-accounts/default/identity';
export const IDENTITY_PATH = '/msi/token';
export const GOOGLE_JWKS_PATH = '/oauth2/v3/certs';
export const AZURE_JWKS_PATH = '/common/discovery/v2.0/keys';

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

async function newKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, publicKey, jwk };
}

export interface ServiceAccount {
  email: string;
  /** The account's numeric unique id (`sub`, `azp`). */
  sub: string;
}

export interface ManagedIdentity {
  tenant: string;
  objectId: string;
  clientId: string;
  /** `xms_mirid`: the identity's resource id (a function app's for a system-assigned identity). */
  resourceId: string;
}

export interface StandinOptions {
  serviceAccount?: ServiceAccount;
  /** The system-assigned identity the identity endpoint answers for without `client_id`. */
  managedIdentity?: ManagedIdentity;
  /** User-assigned identities, answered for their `client_id`. */
  userAssigned?: ManagedIdentity[];
  /** The IDENTITY_HEADER secret. */
  identityHeader?: string;
  /** Lifetime of minted tokens (s). Default 3600. */
  lifetimeSeconds?: number;
}

export const DEFAULT_SERVICE_ACCOUNT: ServiceAccount = {
  email: 'egress-fn@demo-project.iam.gserviceaccount.com',
  sub: '104857600000000000001',
};

export const DEFAULT_MANAGED_IDENTITY: ManagedIdentity = {
  tenant: '72f988bf-86f1-41af-91ab-2d7cd011db47',
  objectId: '0b4e2a3c-9d1f-4c5e-8a7b-6f3d2e1c0b9a',
  clientId: '5c1e7d2a-3b4f-4a6e-9c8d-7e6f5a4b3c2d',
  resourceId:
    '/subscriptions/6d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a/resourcegroups/rg-egress/providers/Microsoft.Web/sites/egress-app',
};

export type Signing =
  /** The current published key (default). */
  | 'current'
  /** A key pair that is not in the set, under the current key's kid: the signature does not verify. */
  | 'foreign'
  /** A key pair that is not in the set, under a kid of its own. */
  | 'unknown-kid'
  /** `alg: none`, no signature (an unsecured JWT). */
  | 'none'
  /** HS256 keyed with the current public key's PEM (the classic RS/HS confusion). */
  | 'hs256-public-key';

export interface MintOptions {
  audience?: string | string[];
  issuer?: string;
  /** Claims set over the defaults; `undefined` removes one. */
  claims?: Record<string, unknown>;
  /** Expired beyond any tolerance (exp ten minutes ago). */
  expired?: boolean;
  lifetimeSeconds?: number;
  signing?: Signing;
}

export type JwksMode =
  /** Serve the set. */
  | 'up'
  /** Close the connection without an answer. */
  | 'reset'
  /** Answer 500. */
  | 'error'
  /** Answer 200 with something that is not a JWK set. */
  | 'junk'
  /** Never answer. */
  | 'hang';

export interface SeenRequest {
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  status: number;
}

export class JwtStandin {
  readonly url: string;
  /** host:port, for GCE_METADATA_HOST. */
  readonly metadataHost: string;
  readonly googleJwksUri: string;
  readonly azureJwksUri: string;
  /** IDENTITY_ENDPOINT. */
  readonly identityEndpoint: string;
  /** IDENTITY_HEADER. */
  readonly identityHeader: string;
  readonly serviceAccount: ServiceAccount;
  readonly managedIdentity: ManagedIdentity;
  jwksMode: JwksMode = 'up';
  /** JWKS requests answered or refused so far. */
  jwksRequests = 0;
  /** Requests to the metadata server and the identity endpoint, in order. */
  readonly seen: SeenRequest[] = [];

  private keys: SigningKey[];
  private kidSeq: number;
  private readonly userAssigned: ManagedIdentity[];
  private readonly lifetime: number;

  private constructor(
    private readonly server: Server,
    first: SigningKey,
    options: StandinOptions,
  ) {
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    this.metadataHost = `127.0.0.1:${port}`;
    this.googleJwksUri = `${this.url}${GOOGLE_JWKS_PATH}`;
    this.azureJwksUri = `${this.url}${AZURE_JWKS_PATH}`;
    this.identityEndpoint = `${this.url}${IDENTITY_PATH}`;
    this.identityHeader = options.identityHeader ?? randomBytes(16).toString('hex');
    this.serviceAccount = options.serviceAccount ?? DEFAULT_SERVICE_ACCOUNT;
    this.managedIdentity = options.managedIdentity ?? DEFAULT_MANAGED_IDENTITY;
    this.userAssigned = options.userAssigned ?? [];
    this.lifetime = options.lifetimeSeconds ?? 3600;
    this.keys = [first];
    this.kidSeq = 1;
  }

  static async start(options: StandinOptions = {}): Promise<JwtStandin> {
    const first = await newKey('standin-key-1');
    let standin: JwtStandin | undefined;
    const server = createServer((request, response) => {
      standin?.handle(request, response).catch(() => {
        if (!response.headersSent) response.writeHead(500);
        response.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    standin = new JwtStandin(server, first, options);
    return standin;
  }

  /** The key new tokens are signed with. */
  get currentKid(): string {
    return (this.keys[0] as SigningKey).kid;
  }

  /** The published JWK set. */
  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((key) => key.jwk) };
  }

  /** A new signing key, published first; the previous ones stay published unless `dropPrevious`. */
  async rotate(options: { dropPrevious?: boolean } = {}): Promise<string> {
    this.kidSeq += 1;
    const key = await newKey(`standin-key-${this.kidSeq}`);
    this.keys = options.dropPrevious ? [key] : [key, ...this.keys];
    return key.kid;
  }

  /** A token shaped like a Google identity token (metadata server, format=full) for the service account. */
  mintGoogle(options: MintOptions & { full?: boolean } = {}): Promise<string> {
    const sa = this.serviceAccount;
    const claims: Record<string, unknown> = { azp: sa.sub, sub: sa.sub };
    if (options.full !== false) Object.assign(claims, { email: sa.email, email_verified: true });
    return this.mint(
      { issuer: STANDIN_GOOGLE_ISSUER, ...options, claims: { ...claims, ...options.claims } },
      { typ: 'JWT' },
    );
  }

  /** A token shaped like an Entra ID v1.0 managed-identity access token for `identity` (default: the system-assigned one). */
  mintAzure(options: MintOptions & { identity?: ManagedIdentity } = {}): Promise<string> {
    const mi = options.identity ?? this.managedIdentity;
    const sts = `https://sts.windows.net/${mi.tenant}/`;
    const claims: Record<string, unknown> = {
      aio: base64url.encode(randomBytes(24)),
      appid: mi.clientId,
      appidacr: '2',
      idp: sts,
      idtyp: 'app',
      oid: mi.objectId,
      rh: `0.${base64url.encode(randomBytes(30))}.`,
      sub: mi.objectId,
      tid: mi.tenant,
      uti: base64url.encode(randomBytes(16)),
      ver: '1.0',
      xms_mirid: mi.resourceId,
    };
    return this.mint(
      { issuer: sts, ...options, claims: { ...claims, ...options.claims } },
      { typ: 'JWT', x5t: this.currentKid },
    );
  }

  /** A token with these options; `iat`/`nbf`/`exp` from the clock unless set in `claims`. */
  async mint(options: MintOptions, header: Record<string, unknown> = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const iat = options.expired ? now - 4200 : now;
    const exp = options.expired ? now - 600 : now + (options.lifetimeSeconds ?? this.lifetime);
    const payload: Record<string, unknown> = {
      aud: options.audience ?? 'https://control.example',
      iss: options.issuer ?? STANDIN_GOOGLE_ISSUER,
      iat,
      nbf: iat,
      exp,
    };
    for (const [claim, value] of Object.entries(options.claims ?? {})) {
      if (value === undefined) delete payload[claim];
      else payload[claim] = value;
    }
    const current = this.keys[0] as SigningKey;
    const signing = options.signing ?? 'current';
    if (signing === 'none') {
      const encode = (value: unknown) => base64url.encode(JSON.stringify(value));
      return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(payload)}.`;
    }
    if (signing === 'hs256-public-key') {
      const secret = new TextEncoder().encode(await exportSPKI(current.publicKey));
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'HS256', kid: current.kid, typ: 'JWT' })
        .sign(secret);
    }
    let key = current.privateKey;
    let kid = current.kid;
    if (signing === 'foreign' || signing === 'unknown-kid') {
      key = (await generateKeyPair('RS256')).privateKey;
      if (signing === 'unknown-kid') kid = `unpublished-${randomUUID()}`;
    }
    return new SignJWT(payload).setProtectedHeader({ ...header, alg: 'RS256', kid }).sign(key);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.url);
    if (url.pathname === GOOGLE_JWKS_PATH || url.pathname === AZURE_JWKS_PATH)
      return this.serveJwks(response);
    const answer = (status: number, body: string, type = 'text/plain') => {
      this.seen.push({ path: url.pathname, query: url.searchParams, headers: request.headers, status });
      response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      response.end(body);
    };
    if (url.pathname === METADATA_IDENTITY_PATH) {
      // As the real server: the header is required and a forwarded request is refused (SSRF defences).
      if (request.headers['metadata-flavor'] !== 'Google' || request.headers['x-forwarded-for'] !== undefined)
        return answer(403, 'Missing Metadata-Flavor:Google header.\n');
      const audience = url.searchParams.get('audience');
      if (!audience) return answer(400, 'non-empty audience parameter required\n');
      response.setHeader('metadata-flavor', 'Google');
      const token = await this.mintGoogle({ audience, full: url.searchParams.get('format') === 'full' });
      return answer(200, token);
    }
    if (url.pathname === IDENTITY_PATH) {
      const json = (status: number, value: unknown) =>
        answer(status, JSON.stringify(value), 'application/json');
      if (request.headers['x-identity-header'] !== this.identityHeader)
        return json(401, { statusCode: 401, message: 'Unauthorized: X-IDENTITY-HEADER is missing or wrong' });
      if (url.searchParams.get('api-version') !== '2019-08-01')
        return json(400, { statusCode: 400, message: 'api-version 2019-08-01 is required' });
      const resource = url.searchParams.get('resource');
      if (!resource) return json(400, { statusCode: 400, message: 'resource is required' });
      const clientId = url.searchParams.get('client_id');
      const identity =
        clientId === null ? this.managedIdentity : this.userAssigned.find((mi) => mi.clientId === clientId);
      if (!identity) return json(400, { statusCode: 400, message: 'No managed identity for this client_id' });
      const token = await this.mintAzure({ audience: resource, identity });
      return json(200, {
        access_token: token,
        expires_on: String(Math.floor(Date.now() / 1000) + this.lifetime),
        resource,
        token_type: 'Bearer',
        client_id: identity.clientId,
      });
    }
    return answer(404, 'not found\n');
  }

  private serveJwks(response: ServerResponse): void {
    this.jwksRequests += 1;
    switch (this.jwksMode) {
      case 'reset':
        response.socket?.destroy();
        return;
      case 'hang':
        return;
      case 'error':
        response.writeHead(500, { 'content-type': 'text/plain' });
        response.end('internal error');
        return;
      case 'junk':
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end('{"keys": "not a list"}');
        return;
      default: {
        const body = JSON.stringify(this.jwks());
        response.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        });
        response.end(body);
      }
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
