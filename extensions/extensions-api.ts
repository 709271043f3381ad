// Client of the Lambda Extensions API (2020-01-01) and the Telemetry API subscription
// (2022-07-01). `next` is a long-poll without a timeout, as the platform requires.
import { Agent, request } from 'node:http';
import { readBody } from '../runtime-shims/node/client/read-body.js';

export interface RegisterAnswer {
  extensionId: string;
  functionName: string | undefined;
  functionVersion: string | undefined;
  handler: string | undefined;
  accountId: string | undefined;
}

export type ExtensionEvent =
  | { eventType: 'INVOKE'; requestId: string; deadlineMs: number; invokedFunctionArn: string | undefined }
  | { eventType: 'SHUTDOWN'; shutdownReason: string; deadlineMs: number };

export class ExtensionsApiError extends Error {
  override readonly name = 'ExtensionsApiError';
  constructor(
    message: string,
    readonly status: number | undefined,
  ) {
    super(message);
  }
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const MAX_ANSWER_BYTES = 1024 * 1024;

export class ExtensionsApi {
  private readonly host: string;
  private readonly port: number;
  // One connection for `next`, which stays open across freezes; others get their own.
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 2 });
  private extensionId: string | undefined;

  /** `extensionId`: the identifier of a Register done before this process started (the layer's launcher). */
  constructor(runtimeApi: string, extensionId?: string) {
    this.extensionId = extensionId;
    const match = /^([^:]+):(\d{1,5})$/.exec(runtimeApi);
    if (!match) throw new ExtensionsApiError(`AWS_LAMBDA_RUNTIME_API is not host:port`, undefined);
    this.host = match[1] ?? '127.0.0.1';
    this.port = Number(match[2]);
  }

  get id(): string | undefined {
    return this.extensionId;
  }

  async register(name: string, events: ('INVOKE' | 'SHUTDOWN')[]): Promise<RegisterAnswer> {
    const answer = await this.call(
      'POST',
      '/2020-01-01/extension/register',
      { 'Lambda-Extension-Name': name, 'Lambda-Extension-Accept-Feature': 'accountId' },
      JSON.stringify({ events }),
    );
    if (answer.status !== 200) throw this.failure('register', answer);
    const id = answer.headers['lambda-extension-identifier'];
    if (typeof id !== 'string' || id === '')
      throw new ExtensionsApiError('register: no Lambda-Extension-Identifier in the answer', answer.status);
    this.extensionId = id;
    const body = parseObject(answer.body);
    return {
      extensionId: id,
      functionName: stringField(body, 'functionName'),
      functionVersion: stringField(body, 'functionVersion'),
      handler: stringField(body, 'handler'),
      accountId: stringField(body, 'accountId'),
    };
  }

  async next(): Promise<ExtensionEvent> {
    const answer = await this.call('GET', '/2020-01-01/extension/event/next', this.identified());
    if (answer.status !== 200) throw this.failure('event/next', answer);
    const body = parseObject(answer.body);
    const eventType = stringField(body, 'eventType')?.toUpperCase();
    const deadlineMs = typeof body?.deadlineMs === 'number' ? body.deadlineMs : Date.now() + 1_000;
    if (eventType === 'INVOKE') {
      return {
        eventType,
        requestId: stringField(body, 'requestId') ?? '',
        deadlineMs,
        invokedFunctionArn: stringField(body, 'invokedFunctionArn'),
      };
    }
    if (eventType === 'SHUTDOWN')
      return { eventType, shutdownReason: stringField(body, 'shutdownReason') ?? 'unknown', deadlineMs };
    throw new ExtensionsApiError(`event/next: unknown event ${JSON.stringify(eventType)}`, answer.status);
  }

  async initError(errorType: string, message: string): Promise<void> {
    await this.reportError('/2020-01-01/extension/init/error', errorType, message);
  }

  async exitError(errorType: string, message: string): Promise<void> {
    await this.reportError('/2020-01-01/extension/exit/error', errorType, message);
  }

  /**
   * Subscribes to platform telemetry. Returns false when the environment does not support it
   * (a local emulator answers 202); throws on a real refusal.
   */
  async subscribeTelemetry(listenerPort: number): Promise<boolean> {
    const answer = await this.call(
      'PUT',
      '/2022-07-01/telemetry',
      { ...this.identified(), 'Content-Type': 'application/json' },
      JSON.stringify({
        schemaVersion: '2022-12-13',
        types: ['platform'],
        buffering: { maxItems: 1_000, maxBytes: 262_144, timeoutMs: 25 },
        destination: { protocol: 'HTTP', URI: `http://sandbox.localdomain:${listenerPort}/` },
      }),
    );
    if (answer.status === 200) return true;
    if (answer.status === 202) return false;
    throw this.failure('telemetry subscribe', answer);
  }

  close(): void {
    this.agent.destroy();
  }

  private async reportError(path: string, errorType: string, message: string): Promise<void> {
    const answer = await this.call(
      'POST',
      path,
      {
        ...this.identified(),
        'Lambda-Extension-Function-Error-Type': errorType,
        'Content-Type': 'application/json',
      },
      JSON.stringify({ errorMessage: message, errorType, stackTrace: [] }),
    );
    if (answer.status !== 202) throw this.failure(path, answer);
  }

  private identified(): Record<string, string> {
    if (!this.extensionId) throw new ExtensionsApiError('not registered', undefined);
    return { 'Lambda-Extension-Identifier': this.extensionId };
  }

  private failure(what: string, answer: Answer): ExtensionsApiError {
    const body = parseObject(answer.body);
    const type = stringField(body, 'errorType') ?? 'unknown';
    const message = stringField(body, 'errorMessage') ?? answer.body.slice(0, 200);
    return new ExtensionsApiError(`${what}: ${answer.status} ${type}: ${message}`, answer.status);
  }

  private call(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.agent,
          headers: body === undefined ? headers : { ...headers, 'Content-Length': Buffer.byteLength(body) },
        },
        (res) => {
          void readBody(res, MAX_ANSWER_BYTES).then((read) => {
            if (read.ok)
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: read.body.toString('utf8'),
              });
            else reject(read.reason === 'too-large' ? new Error('answer too large') : read.error);
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function stringField(body: Record<string, unknown> | undefined, key: string): string | undefined {
  const value = body?.[key];
  return typeof value === 'string' ? value : undefined;
}
