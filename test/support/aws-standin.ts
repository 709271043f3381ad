// An AWS stand-in for tests: one real HTTP server on 127.0.0.1 that answers STS GetCallerIdentity,
// Secrets Manager GetSecretValue and SSM GetParameter the way AWS does, after really checking the
// SigV4 signature. The check is recomputed with @smithy/signature-v4 (the AWS SDK's signer, an
// implementation independent of runtime-shims/node/aws/sigv4.ts) from a table of known credentials,
// and refuses like AWS: unknown access key (InvalidClientTokenId), missing, wrong or expired session
// token, a signature that does not match, an X-Amz-Date more than 15 minutes off ("Signature
// expired"). STS errors are its XML ErrorResponse (403); the JSON services' are `{__type, message}`
// (400), as AWS answers them. Each credential can be limited to some actions (and resources), so a
// test can show AccessDenied. Every request is recorded in `calls`.
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';

export interface StandinCredential {
  secretAccessKey: string;
  /** Temporary credentials: requests must carry this x-amz-security-token. */
  sessionToken?: string | undefined;
  /** Who GetCallerIdentity says the caller is (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`). */
  arn: string;
  account: string;
  /** GetCallerIdentity's UserId (default `AROA…:SESSION` for a role session, `AIDA…` otherwise). */
  userId?: string | undefined;
  /**
   * What the credential may do, as `service:Action` (any resource) or `{ action, resource }`;
   * absent = everything. GetCallerIdentity needs no permission (as on AWS).
   */
  allow?: (string | { action: string; resource: string })[] | undefined;
  /** The session token has expired (ExpiredToken). */
  expired?: boolean | undefined;
}

export interface AwsStandinOptions {
  /** accessKeyId → credential. */
  credentials: Record<string, StandinCredential>;
  /** Secret ARN (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-abc123`) → SecretString. */
  secrets?: Record<string, string> | undefined;
  /** Parameter ARN (`arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`) → SecureString value. */
  parameters?: Record<string, string> | undefined;
  /** How far X-Amz-Date may be from the clock (default 900 s, as AWS). */
  maxSkewSeconds?: number | undefined;
}

export interface StandinCall {
  service: string;
  action: string;
  accessKeyId: string | undefined;
  status: number;
  /** The error code answered, if any. */
  error?: string | undefined;
}

export interface AwsStandin {
  url: string;
  /** Every request, in order. */
  calls: StandinCall[];
  /** Calls of one action (`GetCallerIdentity`, `GetSecretValue`, `GetParameter`), or all. */
  count(action?: string): number;
  /** When set, every request is answered with this instead (to test what clients make of garbage). */
  hijack: { status: number; body: string; contentType?: string } | undefined;
  close(): Promise<void>;
}

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/\s,]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;
const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

class AwsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function parseAmzDate(text: string | undefined): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text ?? '');
  if (!m) return undefined;
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
}

function amzDate(date: Date): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `NAME` of a secret ARN: the resource after `secret:`, without the 6-character suffix AWS adds. */
function secretName(arn: string): string {
  const resource = arn.split(':secret:')[1] ?? arn;
  return resource.replace(/-[A-Za-z0-9]{6}$/, '');
}

/** The parameter name of a parameter ARN: `parameter/a/b` names `/a/b`, `parameter/a` names `a`. */
function parameterName(arn: string): string {
  const resource = arn.split(':parameter/')[1] ?? arn;
  return resource.includes('/') ? `/${resource}` : resource;
}

export async function startAwsStandin(options: AwsStandinOptions): Promise<AwsStandin> {
  const maxSkewMs = (options.maxSkewSeconds ?? 900) * 1000;
  const calls: StandinCall[] = [];
  const secrets = options.secrets ?? {};
  const parameters = options.parameters ?? {};

  const standin: AwsStandin = {
    url: '',
    calls,
    hijack: undefined,
    count: (action) => calls.filter((c) => action === undefined || c.action === action).length,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  /** Checks the signature; returns the credential's key and entry, or throws the AWS error. */
  async function authenticate(
    req: IncomingMessage,
    body: Buffer,
    json: boolean,
  ): Promise<{ accessKeyId: string; credential: StandinCredential; service: string }> {
    const header = req.headers.authorization;
    if (header === undefined)
      throw json
        ? new AwsError(400, 'MissingAuthenticationTokenException', 'Missing Authentication Token')
        : new AwsError(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
    const auth = AUTHORIZATION.exec(header);
    if (!auth)
      throw new AwsError(
        json ? 400 : 403,
        'IncompleteSignatureException',
        'Authorization header requires Credential, SignedHeaders and Signature.',
      );
    const [, accessKeyId, scopeDate, region, service, signedText, signature] = auth as unknown as string[];
    const credential = options.credentials[accessKeyId as string];
    const invalidToken = () =>
      json
        ? new AwsError(
            400,
            'UnrecognizedClientException',
            'The security token included in the request is invalid.',
          )
        : new AwsError(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    if (!credential) throw invalidToken();
    const token = req.headers['x-amz-security-token'];
    if ((credential.sessionToken ?? undefined) !== token) throw invalidToken();
    if (credential.expired)
      throw json
        ? new AwsError(400, 'ExpiredTokenException', 'The security token included in the request is expired')
        : new AwsError(403, 'ExpiredToken', 'The security token included in the request is expired');

    const mismatch = (message: string) =>
      json
        ? new AwsError(400, 'InvalidSignatureException', message)
        : new AwsError(403, 'SignatureDoesNotMatch', message);
    const dateText = req.headers['x-amz-date'] as string | undefined;
    const signedAt = parseAmzDate(dateText);
    if (!signedAt || dateText?.slice(0, 8) !== scopeDate)
      throw mismatch(
        'Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP',
      );
    const now = Date.now();
    if (Math.abs(now - signedAt.getTime()) > maxSkewMs)
      throw mismatch(
        `Signature expired: ${dateText} is now earlier than ${amzDate(new Date(now - maxSkewMs))} (${amzDate(new Date(now))} - 15 min.)`,
      );

    const signed = (signedText as string).split(';');
    const headers: Record<string, string> = {};
    for (const name of signed) {
      const value = req.headers[name];
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    const [rawPath = '/', rawQuery = ''] = (req.url ?? '/').split('?', 2);
    const query: Record<string, string | string[]> = {};
    for (const part of rawQuery.split('&')) {
      if (part === '') continue;
      const cut = part.indexOf('=');
      const key = decode(cut === -1 ? part : part.slice(0, cut));
      const value = decode(cut === -1 ? '' : part.slice(cut + 1));
      const existing = query[key];
      query[key] =
        existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
    }
    const signer = new SignatureV4({
      credentials: { accessKeyId: accessKeyId as string, secretAccessKey: credential.secretAccessKey },
      region: region as string,
      service: service as string,
      sha256: Sha256,
      uriEscapePath: true,
      applyChecksum: false,
    });
    const expected = await signer.sign(
      {
        method: req.method ?? 'GET',
        protocol: 'http:',
        hostname: '127.0.0.1',
        path: rawPath,
        query,
        headers,
        body,
      },
      { signingDate: signedAt, signableHeaders: new Set(signed) },
    );
    const expectedAuth = String(expected.headers.authorization ?? '');
    const expectedSignature = /Signature=([0-9a-f]{64})$/.exec(expectedAuth)?.[1] ?? '';
    const sameList = expectedAuth.includes(`SignedHeaders=${signedText},`);
    if (
      !sameList ||
      expectedSignature.length !== (signature as string).length ||
      !timingSafeEqual(Buffer.from(expectedSignature), Buffer.from(signature as string))
    )
      throw mismatch(
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      );
    return { accessKeyId: accessKeyId as string, credential, service: service as string };
  }

  function allowed(credential: StandinCredential, action: string, resource: string): boolean {
    if (credential.allow === undefined) return true;
    return credential.allow.some((entry) =>
      typeof entry === 'string' ? entry === action : entry.action === action && entry.resource === resource,
    );
  }

  function denied(credential: StandinCredential, action: string, resource: string): AwsError {
    return new AwsError(
      400,
      'AccessDeniedException',
      `User: ${credential.arn} is not authorized to perform: ${action} on resource: ${resource} because no identity-based policy allows the ${action} action`,
    );
  }

  function getCallerIdentity(credential: StandinCredential): string {
    const session = /:assumed-role\/[^/]+\/(.+)$/.exec(credential.arn)?.[1];
    const userId =
      credential.userId ?? (session ? `AROAEXAMPLE0STANDIN0:${session}` : 'AIDAEXAMPLE0STANDIN0');
    return `<GetCallerIdentityResponse xmlns="${STS_NS}">
  <GetCallerIdentityResult>
    <Arn>${escapeXml(credential.arn)}</Arn>
    <UserId>${escapeXml(userId)}</UserId>
    <Account>${escapeXml(credential.account)}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>${randomUUID()}</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
`;
  }

  function getSecretValue(
    credential: StandinCredential,
    input: Record<string, unknown>,
  ): Record<string, unknown> {
    const id = typeof input.SecretId === 'string' ? input.SecretId : '';
    if (id === '') throw new AwsError(400, 'ValidationException', '1 validation error detected: SecretId');
    const arn = Object.keys(secrets).find((candidate) => candidate === id || secretName(candidate) === id);
    // AWS checks permissions before existence: a caller without access learns nothing.
    if (!allowed(credential, 'secretsmanager:GetSecretValue', arn ?? id))
      throw denied(credential, 'secretsmanager:GetSecretValue', arn ?? id);
    if (arn === undefined)
      throw new AwsError(
        400,
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret.",
      );
    return {
      ARN: arn,
      Name: secretName(arn),
      SecretString: secrets[arn],
      VersionId: '00000000-0000-4000-8000-000000000001',
      VersionStages: ['AWSCURRENT'],
      CreatedDate: 1_700_000_000,
    };
  }

  function getParameter(
    credential: StandinCredential,
    input: Record<string, unknown>,
  ): Record<string, unknown> {
    const name = typeof input.Name === 'string' ? input.Name : '';
    if (name === '') throw new AwsError(400, 'ValidationException', '1 validation error detected: Name');
    const arn = Object.keys(parameters).find(
      (candidate) => candidate === name || parameterName(candidate) === name,
    );
    const resource = arn ?? name;
    if (!allowed(credential, 'ssm:GetParameter', resource))
      throw denied(credential, 'ssm:GetParameter', resource);
    if (arn === undefined) throw new AwsError(400, 'ParameterNotFound', '');
    const decrypt = input.WithDecryption === true;
    if (decrypt && !allowed(credential, 'kms:Decrypt', resource))
      throw new AwsError(
        400,
        'AccessDeniedException',
        `User: ${credential.arn} is not authorized to perform: kms:Decrypt on the resource associated with this ciphertext because no identity-based policy allows the kms:Decrypt action`,
      );
    return {
      Parameter: {
        Name: parameterName(arn),
        Type: 'SecureString',
        Value: decrypt ? parameters[arn] : Buffer.from(`kms-ciphertext:${arn}`).toString('base64'),
        Version: 1,
        LastModifiedDate: 1_700_000_000,
        ARN: arn,
        DataType: 'text',
      },
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    if (standin.hijack) {
      calls.push({
        service: 'hijacked',
        action: 'hijacked',
        accessKeyId: undefined,
        status: standin.hijack.status,
      });
      res.writeHead(standin.hijack.status, { 'content-type': standin.hijack.contentType ?? 'text/xml' });
      res.end(standin.hijack.body);
      return;
    }
    const target = req.headers['x-amz-target'];
    const json = typeof target === 'string';
    const action = json
      ? (target.split('.')[1] ?? target)
      : (new URLSearchParams(body.toString('utf8')).get('Action') ?? 'unknown');
    const service = json
      ? target.startsWith('secretsmanager.')
        ? 'secretsmanager'
        : target.startsWith('AmazonSSM.')
          ? 'ssm'
          : 'unknown'
      : 'sts';
    let accessKeyId: string | undefined;
    try {
      const who = await authenticate(req, body, json);
      accessKeyId = who.accessKeyId;
      if (who.service !== service)
        throw json
          ? new AwsError(
              400,
              'InvalidSignatureException',
              `Credential should be scoped to correct service: '${service}'.`,
            )
          : new AwsError(
              403,
              'SignatureDoesNotMatch',
              `Credential should be scoped to correct service: '${service}'.`,
            );
      let answer: { type: string; body: string };
      if (service === 'sts') {
        if (req.method !== 'POST' || action !== 'GetCallerIdentity')
          throw new AwsError(
            400,
            'InvalidAction',
            `Could not find operation ${action} for version 2011-06-15`,
          );
        answer = { type: 'text/xml', body: getCallerIdentity(who.credential) };
      } else {
        let input: Record<string, unknown>;
        try {
          input = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
        } catch {
          throw new AwsError(
            400,
            'SerializationException',
            'Start of structure or map found where not expected.',
          );
        }
        let output: Record<string, unknown>;
        if (target === 'secretsmanager.GetSecretValue') output = getSecretValue(who.credential, input);
        else if (target === 'AmazonSSM.GetParameter') output = getParameter(who.credential, input);
        else throw new AwsError(400, 'UnknownOperationException', '');
        answer = { type: 'application/x-amz-json-1.1', body: JSON.stringify(output) };
      }
      calls.push({ service, action, accessKeyId, status: 200 });
      res.writeHead(200, { 'content-type': answer.type, 'x-amzn-requestid': randomUUID() });
      res.end(answer.body);
    } catch (error) {
      const failure =
        error instanceof AwsError
          ? error
          : new AwsError(500, json ? 'InternalFailure' : 'InternalFailure', String(error));
      calls.push({ service, action, accessKeyId, status: failure.status, error: failure.code });
      if (json) {
        res.writeHead(failure.status, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify({ __type: failure.code, message: failure.message }));
      } else {
        res.writeHead(failure.status, { 'content-type': 'text/xml' });
        res.end(`<ErrorResponse xmlns="${STS_NS}">
  <Error>
    <Type>${failure.status >= 500 ? 'Receiver' : 'Sender'}</Type>
    <Code>${escapeXml(failure.code)}</Code>
    <Message>${escapeXml(failure.message)}</Message>
  </Error>
  <RequestId>${randomUUID()}</RequestId>
</ErrorResponse>
`);
      }
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  standin.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return standin;
}
