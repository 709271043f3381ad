// LocalStack and the SAM template cannot run here (no Docker, no AWS): their files are checked
// statically — they parse, every file they name exists, every script passes the shell's syntax check.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, type Tags } from 'yaml';
import { formatPolicyError, parsePolicy } from '../../policy/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const at = (...parts: string[]) => join(root, ...parts);

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function syntaxCheck(shell: 'bash' | 'sh', file: string): void {
  const result = spawnSync(shell, ['-n', file], { encoding: 'utf8' });
  expect(result.stderr, `${shell} -n ${file}`).toBe('');
  expect(result.status).toBe(0);
}

function nodeCheck(file: string): void {
  const result = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' });
  expect(result.stderr, `node --check ${file}`).toBe('');
  expect(result.status).toBe(0);
}

// CloudFormation short-form intrinsics, parsed into plain objects so the template can be inspected.
const cloudFormationTags: Tags = [
  'Sub',
  'Ref',
  'If',
  'Equals',
  'Not',
  'Join',
  'GetAtt',
  'Select',
  'Split',
].flatMap((name) =>
  (['scalar', 'seq'] as const).map((collection) => ({
    tag: `!${name}`,
    collection: collection === 'seq' ? ('seq' as const) : undefined,
    resolve: (value: unknown) => ({ [`Fn::${name}`]: value }),
  })),
) as Tags;

describe('localstack/', () => {
  const compose = parse(readFileSync(at('localstack/docker-compose.yml'), 'utf8')) as {
    services: Record<
      string,
      { image?: string; volumes?: string[]; environment?: Record<string, string>; command?: string[] }
    >;
    networks?: Record<string, { name?: string }>;
  };

  it('compose file parses and defines LocalStack Pro, the control API and the deploy step', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['control-api', 'deploy', 'localstack']);
    const localstack = compose.services.localstack;
    expect(localstack?.image).toMatch(/^localstack\/localstack-pro:/);
    expect(localstack?.environment?.LOCALSTACK_AUTH_TOKEN).toMatch(/\$\{LOCALSTACK_AUTH_TOKEN:\?/);
    expect(localstack?.volumes).toContain('/var/run/docker.sock:/var/run/docker.sock');
    expect(localstack?.environment?.LAMBDA_DOCKER_NETWORK).toBe(compose.networks?.default?.name);
    // control serve listens on loopback unless told: the other containers reach it over the network.
    const command = compose.services['control-api']?.command ?? [];
    expect(command.slice(command.indexOf('--host'), command.indexOf('--host') + 2)).toEqual([
      '--host',
      '0.0.0.0',
    ]);
  });

  it('every host path the compose file mounts exists', () => {
    for (const service of Object.values(compose.services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0] ?? '';
        if (!source.startsWith('.')) continue; // named volumes and the docker socket
        expect(existsSync(resolve(at('localstack'), source)), volume).toBe(true);
      }
    }
  });

  it('scripts are executable, have a shebang and pass bash -n', () => {
    for (const script of ['localstack/init/ready.d/10-sample-function.sh', 'localstack/scripts/deploy.sh']) {
      expect(isExecutable(at(script)), script).toBe(true);
      expect(readFileSync(at(script), 'utf8').startsWith('#!')).toBe(true);
      syntaxCheck('bash', at(script));
    }
    nodeCheck(at('localstack/scripts/invoke.mjs'));
    nodeCheck(at('localstack/sample-function/index.mjs'));
  });

  it('files the scripts name exist in the repository', () => {
    const deploy = readFileSync(at('localstack/scripts/deploy.sh'), 'utf8');
    const named = [...deploy.matchAll(/\blocalstack\/[\w./-]+/g)].map((m) => m[0]);
    expect(named.length).toBeGreaterThan(0);
    for (const path of named) expect(existsSync(at(path)), path).toBe(true);
    const init = readFileSync(at('localstack/init/ready.d/10-sample-function.sh'), 'utf8');
    // The init script reads the sample through the compose mount /opt/bulkhead-sample.
    expect(init).toContain('/opt/bulkhead-sample/index.mjs');
    expect(compose.services.localstack?.volumes).toContain('./sample-function:/opt/bulkhead-sample:ro');
  });

  it('every bulkhead command the deploy script runs exists, with the options it passes', async () => {
    const { commands } = await import('../../cli/commands/index.js');
    const deploy = readFileSync(at('localstack/scripts/deploy.sh'), 'utf8').replace(/\\\n\s*/g, ' ');
    const invocations = [...deploy.matchAll(/"\$\{cli\[@\]\}" ([^\n)]+)/g)].map((m) =>
      (m[1] ?? '').split(/\s+/),
    );
    expect(invocations.length).toBeGreaterThanOrEqual(6);
    for (const words of invocations) {
      const entry = commands
        .filter((c) => c.path.every((word, i) => words[i] === word))
        .sort((a, b) => b.path.length - a.path.length)[0];
      expect(entry, words.join(' ')).toBeDefined();
      const command = await entry?.load();
      for (const word of words.filter((w) => w.startsWith('--')))
        expect(command?.options?.[word.slice(2)], `${command?.path.join(' ')} ${word}`).toBeDefined();
    }
  });

  it('the sample policy is valid Bulkhead policy', () => {
    const parsed = parsePolicy([
      { file: 'policy.yaml', text: readFileSync(at('localstack/policy.yaml'), 'utf8') },
    ]);
    expect(parsed.ok ? [] : parsed.errors.map(formatPolicyError)).toEqual([]);
  });

  it('the sample policy has a SmartGroup matching the sample function tags', () => {
    const documents = readFileSync(at('localstack/policy.yaml'), 'utf8')
      .split(/^---$/m)
      .map((text) => parse(text) as { kind: string; spec: { match?: { tags?: Record<string, string> } } });
    expect(documents.map((d) => d.kind)).toEqual(['SmartGroup', 'EgressPolicy']);
    const init = readFileSync(at('localstack/init/ready.d/10-sample-function.sh'), 'utf8');
    for (const [key, value] of Object.entries(documents[0]?.spec.match?.tags ?? {}))
      expect(init).toContain(`${key}=${value}`);
  });
});

describe('deploy/control-api.sam.yaml', () => {
  const template = parse(readFileSync(at('deploy/control-api.sam.yaml'), 'utf8'), {
    customTags: cloudFormationTags,
  }) as {
    Transform: string;
    Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    Outputs: Record<string, unknown>;
  };
  const fn = template.Resources.ControlApiFunction;
  const properties = (fn?.Properties ?? {}) as {
    Handler: string;
    CodeUri: string;
    Timeout: number;
    Layers: unknown[];
    Environment: { Variables: Record<string, string> };
    FunctionUrlConfig: { AuthType: string };
  };

  it('is a SAM function started by run.sh behind aws-lambda-web-adapter', () => {
    expect(template.Transform).toBe('AWS::Serverless-2016-10-31');
    expect(fn?.Type).toBe('AWS::Serverless::Function');
    expect(properties.Handler).toBe('run.sh');
    const env = properties.Environment.Variables;
    expect(env.AWS_LAMBDA_EXEC_WRAPPER).toBe('/opt/bootstrap');
    expect(env.AWS_LWA_READINESS_CHECK_PATH).toBe('/healthz');
    expect(env.PORT).toBe('8080');
    // Bundle long-polls wait up to 60 s.
    expect(properties.Timeout).toBeGreaterThan(60);
  });

  it('uses the public adapter layer for both architectures', () => {
    const text = JSON.stringify(properties.Layers);
    for (const name of ['LambdaAdapterLayerX86', 'LambdaAdapterLayerArm64'])
      expect(text).toContain(
        `arn:aws:lambda:\${AWS::Region}:753240598075:layer:${name}:\${LambdaAdapterLayerVersion}`,
      );
  });

  it('its run.sh and helper scripts exist and pass syntax checks', () => {
    expect(properties.CodeUri).toBe('../.build/control-api');
    const packageScript = readFileSync(at('deploy/package.sh'), 'utf8');
    expect(packageScript).toContain('.build/control-api');
    for (const file of ['run.sh', 'fetch-secrets.cjs']) expect(packageScript).toContain(file);
    expect(isExecutable(at('deploy/run.sh'))).toBe(true);
    expect(isExecutable(at('deploy/package.sh'))).toBe(true);
    syntaxCheck('sh', at('deploy/run.sh'));
    syntaxCheck('bash', at('deploy/package.sh'));
    nodeCheck(at('deploy/fetch-secrets.cjs'));
    const run = readFileSync(at('deploy/run.sh'), 'utf8');
    expect(run).toContain('dist/cli.mjs" control serve --host 127.0.0.1');
    expect(run).toContain('export BULKHEAD_DATABASE_URL');
    expect(run).toContain(['--port "$', '{PORT:-8080}"'].join(''));
  });

  it('keeps secrets out of the template', () => {
    const text = readFileSync(at('deploy/control-api.sam.yaml'), 'utf8');
    expect(text).not.toMatch(/BEGIN [A-Z ]*PRIVATE KEY|postgres(ql)?:\/\/\w+:\w+@/);
    expect(Object.keys(template.Outputs)).toContain('ControlApiUrl');
  });
});
