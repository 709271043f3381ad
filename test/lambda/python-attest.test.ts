// Attested identity and the token secret on a Python function, end to end: the layer built from dist/
// (with the vendored cryptography), the layer's PYTHON extension (Lambda's Python runtimes have no
// node), the function under the real `awslambdaric`, the real control API in this process and the AWS
// stand-in, which checks SigV4 signatures with the AWS SDK's own signer (@smithy/signature-v4).
//
// - BULKHEAD_ATTEST=aws: the extension signs sts:GetCallerIdentity with the role's credentials; the
//   control API (--require-attested, a workload token limited to the function's SmartGroup) sends it to
//   the stand-in and answers a session; bundles and records go with it. Without attestation, or with
//   another function's role, no bundle: the fail mode governs, and the log says why.
// - BULKHEAD_TOKEN_SECRET: the extension reads its workload token from Secrets Manager / SSM with the
//   role's credentials; a secret it may not read is the fail mode, read again at a later INVOKE.
import { cpSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPythonRuntime, type LambdaEmulator } from '../../emulator/index.js';
import { packageRoot } from '../../layers/build.js';
import { type AwsStandin, type StandinCredential, startAwsStandin } from '../support/aws-standin.js';
import {
  buildLayerDir,
  type ControlHarness,
  cardsPolicy,
  createSandbox,
  FIXTURES,
  type LayerHarness,
  startControl,
} from './harness.js';

const python = findPythonRuntime();
// The venv's interpreter through the venv folder's real path (bin/python itself stays a link, so the venv
// stays active): the shim exempts LAMBDA_RUNTIME_DIR by its real path, and a checkout whose .venv is a
// symbolic link (a git worktree sharing the main one's) would otherwise see awslambdaric's native
// module refused as an addon.
const interpreter = python.python
  ? join(realpathSync(dirname(dirname(python.python))), 'bin', 'python')
  : undefined;
const SITE = join(packageRoot(), 'runtime-shims', 'python', 'tests', 'fixtures', 'site-packages');
// The emulator's account (the Extensions API registers the extension with it).
const ACCOUNT = '012345678912';
const AUDIENCE = 'https://bulkhead.example.test';
const CHARGE_CARD_ROLE = {
  id: 'ASIACHARGECARDPY0001',
  secret: 'charge/card+python/secret111111111111111',
  token: 'IQoJb3JpZ2luX2VjECHARGECARDPY//attest==',
};
const OTHER_ROLE = {
  id: 'ASIALEDGERWRITERPY01',
  secret: 'ledger/writer+python/secret2222222222222',
  token: 'IQoJb3JpZ2luX2VjLEDGERPY//attest==',
};
const SECRET = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/charge-card-py-AbC123`;
const JSON_SECRET = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/charge-card-py-json-QwE456`;
const DENIED = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/other-team-py-ZzZ999`;
const PARAMETER = `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter/bulkhead/charge-card-py/token`;

interface Answer {
  requestId: string;
  track?: { outcome: 'allowed' | 'denied' | 'failed'; message?: string };
  shim?: { revision: number | null; mode: string };
}

async function eventually<T>(read: () => Promise<T>, ok: (value: T) => boolean, ms = 8_000): Promise<T> {
  const deadline = Date.now() + ms;
  let value = await read();
  while (!ok(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await read();
  }
  return value;
}

describe.skipIf(!python.python)(
  `attested identity and the token secret on a Python function (${python.python ? `python${python.version}` : python.reason})`,
  () => {
    /** --require-attested, the workload token limited to SmartGroup cards. */
    let attested: ControlHarness;
    /** No attestation: the token secret alone. */
    let plain: ControlHarness;
    let aws: AwsStandin;
    let role: StandinCredential;
    let layer: LayerHarness;
    let taskRoot: string;
    let attestedRevision: number;
    let plainRevision: number;
    const sandboxes: LambdaEmulator[] = [];

    beforeAll(async () => {
      role = {
        secretAccessKey: CHARGE_CARD_ROLE.secret,
        sessionToken: CHARGE_CARD_ROLE.token,
        arn: `arn:aws:sts::${ACCOUNT}:assumed-role/charge-card-role/charge-card`,
        account: ACCOUNT,
        allow: [
          { action: 'secretsmanager:GetSecretValue', resource: SECRET },
          { action: 'secretsmanager:GetSecretValue', resource: JSON_SECRET },
          { action: 'ssm:GetParameter', resource: PARAMETER },
          { action: 'kms:Decrypt', resource: PARAMETER },
        ],
      };
      // The stand-in keeps these objects: the secrets are filled in once the control APIs made the tokens.
      const secrets: Record<string, string> = {};
      const parameters: Record<string, string> = {};
      aws = await startAwsStandin({
        credentials: {
          [CHARGE_CARD_ROLE.id]: role,
          [OTHER_ROLE.id]: {
            secretAccessKey: OTHER_ROLE.secret,
            sessionToken: OTHER_ROLE.token,
            arn: `arn:aws:sts::${ACCOUNT}:assumed-role/ledger-role/ledger-writer`,
            account: ACCOUNT,
          },
        },
        secrets,
        parameters,
      });
      attested = await startControl(
        {
          attestation: {
            audience: AUDIENCE,
            aws: { stsEndpoint: aws.url, accounts: [ACCOUNT] },
            require: true,
          },
        },
        { groups: ['cards'] },
      );
      plain = await startControl();
      secrets[SECRET] = plain.workloadToken;
      secrets[JSON_SECRET] = JSON.stringify({ token: attested.workloadToken });
      secrets[DENIED] = plain.workloadToken;
      parameters[PARAMETER] = plain.workloadToken;
      attestedRevision = await attested.apply(cardsPolicy([443], 'enforce', 'api.example.com'));
      plainRevision = await plain.apply(cardsPolicy([443], 'enforce', 'api.example.com'));
      layer = buildLayerDir({
        controlUrl: attested.url,
        trustedKeys: [attested.publicKeyPem, plain.publicKeyPem],
        pythonDeps: true,
      });
      // The deployment package: the handler and its (compromised) dependency, as `pip install -t .` leaves them.
      taskRoot = mkdtempSync(join(tmpdir(), 'bulkhead-py-attest-'));
      cpSync(join(FIXTURES, 'python-functions', 'net'), taskRoot, { recursive: true });
      cpSync(SITE, taskRoot, { recursive: true });
    }, 180_000);

    afterAll(async () => {
      for (const sandbox of sandboxes) await sandbox.close();
      layer?.cleanup();
      await aws?.close();
      await attested?.close();
      await plain?.close();
      if (taskRoot) rmSync(taskRoot, { recursive: true, force: true });
    });

    function sandbox(options: {
      role?: typeof CHARGE_CARD_ROLE;
      attest?: boolean;
      token?: string;
      tokenSecret?: string;
      controlUrl?: string;
      attestKind?: string;
    }): LambdaEmulator {
      const credentials = options.role ?? CHARGE_CARD_ROLE;
      const made = createSandbox({
        layer,
        taskRoot,
        handler: 'app.handler',
        runtimeName: `python${python.version}` as 'python3.12',
        ...(interpreter ? { pythonPath: interpreter } : {}),
        timeoutMs: 10_000,
        region: 'eu-west-1',
        env: {
          // This machine has node and python3 side by side; Lambda's Python runtimes have no node.
          BULKHEAD_EXTENSION_RUNTIME: 'python',
          AWS_ACCESS_KEY_ID: credentials.id,
          AWS_SECRET_ACCESS_KEY: credentials.secret,
          AWS_SESSION_TOKEN: credentials.token,
          AWS_ENDPOINT_URL_STS: aws.url,
          AWS_ENDPOINT_URL_SECRETS_MANAGER: aws.url,
          AWS_ENDPOINT_URL_SSM: aws.url,
          BULKHEAD_FETCH_TIMEOUT_MS: '3000',
          ...(options.attest ? { BULKHEAD_ATTEST: 'aws', BULKHEAD_ATTEST_AUDIENCE: AUDIENCE } : {}),
          ...(options.token ? { BULKHEAD_TOKEN: options.token } : {}),
          ...(options.tokenSecret ? { BULKHEAD_TOKEN_SECRET: options.tokenSecret } : {}),
          ...(options.controlUrl ? { BULKHEAD_CONTROL_URL: options.controlUrl } : {}),
          ...(options.attestKind ? { BULKHEAD_ATTEST: options.attestKind } : {}),
        },
      });
      sandboxes.push(made);
      return made;
    }

    function status(box: LambdaEmulator): Record<string, unknown> {
      return JSON.parse(readFileSync(join(box.stateDir, 'extension-status.json'), 'utf8')) as Record<
        string,
        unknown
      >;
    }

    function expectNoSecrets(box: LambdaEmulator): void {
      const logs = box.logText();
      expect(logs).not.toContain(attested.workloadToken);
      expect(logs).not.toContain(plain.workloadToken);
      for (const credentials of [CHARGE_CARD_ROLE, OTHER_ROLE]) {
        expect(logs).not.toContain(credentials.secret);
        expect(logs).not.toContain(credentials.token);
      }
      // Neither a workload token nor a session token.
      expect(logs).not.toMatch(/bhk_[0-9a-f]{16}_/);
    }

    /** Records of one invocation, once the extension has forwarded them (the next INVOKE thaws it). */
    async function stored(control: ControlHarness, box: LambdaEmulator, requestId: string) {
      await box.invoke({});
      return eventually(
        async () => (await control.denies('limit=1000')).filter((r) => r.invocationId === requestId),
        (list) => list.length > 0,
      );
    }

    it('attests with the role (BULKHEAD_ATTEST=aws): bundle fetched, records filed as the attested function', async () => {
      const box = sandbox({ attest: true, token: attested.workloadToken });
      const result = await box.invoke({ track: ['127.0.0.7', 9], status: true });
      expect(result.status, box.logText()).toBe('success');
      const answer = result.json<Answer>();
      expect(status(box)).toMatchObject({
        source: 'control-api',
        revision: attestedRevision,
        runtimeFamily: 'python',
      });
      expect(answer.shim?.revision).toBe(attestedRevision);
      // The policy denies it (not the fail mode): the bundle governs.
      expect(answer.track?.outcome).toBe('denied');
      expect(answer.track?.message).not.toContain('fail-closed');
      const logs = box.logText('extension:bulkhead');
      expect(logs).toContain(
        `attested (aws) as arn:aws:sts::${ACCOUNT}:assumed-role/charge-card-role/charge-card; session `,
      );
      expect(aws.calls).toContainEqual(
        expect.objectContaining({
          action: 'GetCallerIdentity',
          accessKeyId: CHARGE_CARD_ROLE.id,
          status: 200,
        }),
      );
      const records = await stored(attested, box, answer.requestId);
      expect(records.length).toBeGreaterThan(0);
      for (const record of records)
        expect(record.workload).toMatchObject({
          cloud: 'aws',
          name: 'charge-card',
          account: ACCOUNT,
          role: 'charge-card-role',
          attested: 'aws',
        });
      expectNoSecrets(box);
    });

    it('without attestation the workload token alone gets no bundle: the fail mode governs', async () => {
      const box = sandbox({ token: attested.workloadToken });
      const result = await box.invoke({ track: ['127.0.0.7', 9], status: true });
      expect(result.status, box.logText()).toBe('success');
      expect(status(box)).toMatchObject({ source: 'none', revision: 0, failMode: 'closed' });
      expect(result.json<Answer>().track?.message).toContain('fail-closed');
      expect(box.logText('extension:bulkhead')).toMatch(
        /bundle fetch failed \(http\): control API answered 403/,
      );
      expectNoSecrets(box);
    });

    it("a function holding another function's role is refused, and the log says why", async () => {
      const box = sandbox({ attest: true, role: OTHER_ROLE, token: attested.workloadToken });
      const result = await box.invoke({ track: ['127.0.0.7', 9], status: true });
      expect(result.status, box.logText()).toBe('success');
      expect(status(box)).toMatchObject({ source: 'none', revision: 0 });
      expect(result.json<Answer>().track?.message).toContain('fail-closed');
      const logs = box.logText('extension:bulkhead');
      expect(logs).toContain('attestation (aws) failed: the control API answered 403');
      expect(logs).toContain('the workload claims name=charge-card but the proof says name=ledger-writer');
      expect(logs).toContain('using the workload token');
      expectNoSecrets(box);
    });

    it('reads its token from a JSON secret (BULKHEAD_TOKEN_SECRET) and attests with it', async () => {
      const box = sandbox({ attest: true, tokenSecret: JSON_SECRET });
      const result = await box.invoke({ track: ['127.0.0.7', 9], status: true });
      expect(result.status, box.logText()).toBe('success');
      const answer = result.json<Answer>();
      expect(status(box)).toMatchObject({ source: 'control-api', revision: attestedRevision });
      expect(answer.shim?.revision).toBe(attestedRevision);
      const logs = box.logText('extension:bulkhead');
      expect(logs).toContain(`workload token read from ${JSON_SECRET}`);
      expect(logs).toContain('attested (aws) as ');
      expect(aws.calls).toContainEqual({
        service: 'secretsmanager',
        action: 'GetSecretValue',
        accessKeyId: CHARGE_CARD_ROLE.id,
        status: 200,
      });
      const records = await stored(attested, box, answer.requestId);
      expect(records.length).toBeGreaterThan(0);
      expect(records[0]?.workload).toMatchObject({ role: 'charge-card-role', attested: 'aws' });
      expectNoSecrets(box);
    });

    it('reads its token from a secret and from an SSM parameter, without attestation', async () => {
      for (const arn of [SECRET, PARAMETER]) {
        const box = sandbox({ tokenSecret: arn, controlUrl: plain.url });
        const result = await box.invoke({ track: ['127.0.0.7', 9], status: true });
        expect(result.status, box.logText()).toBe('success');
        const answer = result.json<Answer>();
        expect(status(box)).toMatchObject({ source: 'control-api', revision: plainRevision });
        expect(answer.shim?.revision).toBe(plainRevision);
        expect(box.logText('extension:bulkhead')).toContain(`workload token read from ${arn}`);
        // The forwarder uses the same token: the records reach the control API.
        const records = await stored(plain, box, answer.requestId);
        expect(records.length).toBeGreaterThan(0);
        expect(records[0]?.workload).toMatchObject({ cloud: 'aws', name: 'charge-card' });
        expectNoSecrets(box);
      }
      expect(aws.calls).toContainEqual({
        service: 'ssm',
        action: 'GetParameter',
        accessKeyId: CHARGE_CARD_ROLE.id,
        status: 200,
      });
    });

    it('a malformed BULKHEAD_TOKEN_SECRET or BULKHEAD_ATTEST is a configuration error (Extension.ConfigInvalid)', async () => {
      for (const [env, message] of [
        [
          { tokenSecret: 'bulkhead/charge-card' },
          "BULKHEAD_TOKEN_SECRET: 'bulkhead/charge-card' is not an ARN",
        ],
        [{ attestKind: 'vault' }, 'BULKHEAD_ATTEST must be aws, gcp or azure'],
      ] as const) {
        const box = sandbox({ controlUrl: plain.url, ...env });
        await box.start();
        const init = await box.init();
        expect(init).toMatchObject({ ok: false, errorType: 'Extension.ConfigInvalid' });
        expect(init.errorMessage).toContain(message);
      }
    });

    it('a secret the role may not read: fail mode, the reason logged without secrets; read again once allowed', async () => {
      const box = sandbox({ tokenSecret: DENIED, controlUrl: plain.url });
      const first = await box.invoke({ status: true });
      expect(first.status, box.logText()).toBe('success');
      const failed = status(box);
      expect(failed).toMatchObject({ source: 'none', revision: 0, failMode: 'closed' });
      expect(failed.reason).toMatch(
        new RegExp(`^token secret: Secrets Manager refused ${DENIED} \\(400 AccessDeniedException\\)`),
      );
      const logs = box.logText('extension:bulkhead');
      expect(logs).toMatch(/cannot read the workload token: Secrets Manager refused .*AccessDeniedException/);
      expect(logs).toMatch(/no verified bundle: the shim applies fail mode closed \(token secret:/);
      expectNoSecrets(box);

      // Allowed now: after the retry wait (2 s after a failure), the next INVOKE reads it and fetches.
      role.allow?.push({ action: 'secretsmanager:GetSecretValue', resource: DENIED });
      await new Promise((resolve) => setTimeout(resolve, 2_100));
      const second = await box.invoke({ status: true });
      expect(second.status).toBe('success');
      expect(second.json<Answer>().shim?.revision).toBe(plainRevision);
      expect(box.logText('extension:bulkhead')).toContain(`workload token read from ${DENIED}`);
      expectNoSecrets(box);
    });
  },
);
