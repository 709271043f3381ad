// The Extensions API (2020-01-01): Register (external extensions launched from the extensions folder,
// internal ones from inside the runtime process), `event/next` (INVOKE and SHUTDOWN events, one per
// call), `init/error` and `exit/error`, and the identifier checks every call but Register goes
// through (RIE's middleware, also used by the Telemetry API). Status codes and error types follow RIE.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ACCEPTED,
  headerValue,
  isUuid,
  MAX_CONTROL_BODY_BYTES,
  parseJson,
  readBody,
  sendError,
  sendJson,
} from './http.js';
import type {
  ExtensionEventType,
  LaunchedExtension,
  RegisteredExtension,
  SandboxOptions,
  SandboxState,
} from './types.js';

const MAX_EXTENSIONS = 10;

/** What the Extensions API handlers see of the sandbox: live views, not copies. */
export interface ExtensionsApiHost {
  readonly options: SandboxOptions;
  readonly functionName: string;
  readonly accountId: string;
  readonly state: SandboxState;
  /** Register is accepted: during init, until the runtime's first `next`. */
  readonly registrationOpen: boolean;
  /** The extensions of the current init's launch, registered or not. */
  readonly launched: readonly LaunchedExtension[];
  /** Registered extensions by identifier. */
  readonly extensions: Map<string, RegisteredExtension>;
  emitTelemetry(type: string, record: unknown): void;
  /** Wakes whatever waits on the sandbox's state (init, the invoke phase). */
  notify(): void;
  /** Ends the current phase with an error. */
  setFatal(errorType: string, errorMessage: string): void;
}

/** Identifier checks shared by every extension call (RIE middleware). */
export function identify(
  extensions: ReadonlyMap<string, RegisteredExtension>,
  req: IncomingMessage,
  res: ServerResponse,
): RegisteredExtension | undefined {
  const id = headerValue(req, 'Lambda-Extension-Identifier');
  if (!id) {
    sendError(res, 403, 'Extension.MissingExtensionIdentifier', 'Missing Lambda-Extension-Identifier header');
    return undefined;
  }
  if (!isUuid(id)) {
    sendError(res, 403, 'Extension.InvalidExtensionIdentifier', 'Invalid Lambda-Extension-Identifier');
    return undefined;
  }
  const extension = extensions.get(id);
  if (!extension) {
    sendError(res, 403, 'Extension.UnknownExtensionIdentifier', 'Unknown extension identifier');
    return undefined;
  }
  return extension;
}

/** `POST register`: an extension says which events it wants; the answer carries its identifier. */
export async function extensionRegister(
  host: ExtensionsApiHost,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const body = await readBody(req, MAX_CONTROL_BODY_BYTES);
  const name = headerValue(req, 'Lambda-Extension-Name')?.trim();
  if (!name) return sendError(res, 403, 'Extension.InvalidExtensionName', 'Empty extension name');
  if (!host.registrationOpen)
    return sendError(res, 403, 'Extension.RegistrationClosed', 'Extension registration is closed');
  if (!body.ok) return sendError(res, 403, 'InvalidRequestFormat', 'request body too large');
  const document = parseJson(body.body);
  if (typeof document !== 'object' || document === null || Array.isArray(document))
    return sendError(res, 403, 'InvalidRequestFormat', 'request body must be a JSON object');
  const { events = [], configurationKeys } = document as { events?: unknown; configurationKeys?: unknown };
  if (Array.isArray(configurationKeys) && configurationKeys.length > 0)
    return sendError(res, 403, 'InvalidRequestFormat', 'configurationKeys are not supported');
  if (!Array.isArray(events) || !events.every((e) => e === 'INVOKE' || e === 'SHUTDOWN'))
    return sendError(res, 403, 'Extension.InvalidEventType', 'events must be INVOKE and/or SHUTDOWN');
  if ([...host.extensions.values()].some((e) => e.name === name))
    return sendError(res, 403, 'Extension.InvalidExtensionState', `extension ${name} is already registered`);
  if (host.extensions.size >= MAX_EXTENSIONS)
    return sendError(res, 403, 'Extension.TooManyExtensions', `at most ${MAX_EXTENSIONS} extensions`);
  const launched = host.launched.find((l) => l.name === name && !l.registration);
  const kind = launched ? 'external' : 'internal';
  if (kind === 'internal' && events.includes('SHUTDOWN'))
    return sendError(
      res,
      403,
      'Extension.InvalidEventType',
      'internal extensions cannot register for SHUTDOWN',
    );
  const features = (headerValue(req, 'Lambda-Extension-Accept-Feature') ?? '')
    .split(',')
    .map((f) => f.trim());
  const extension: RegisteredExtension = {
    id: randomUUID(),
    name,
    kind,
    events: new Set(events as ExtensionEventType[]),
    queue: [],
    errored: false,
    ...(launched ? { launched } : {}),
  };
  host.extensions.set(extension.id, extension);
  if (launched) {
    launched.registration = extension;
    launched.registeredAt = Date.now();
  }
  sendJson(
    res,
    200,
    {
      functionName: host.functionName,
      functionVersion: host.options.functionVersion ?? '$LATEST',
      handler: host.options.handler,
      ...(features.includes('accountId') ? { accountId: host.accountId } : {}),
    },
    { 'Lambda-Extension-Identifier': extension.id },
  );
  host.emitTelemetry('platform.extension', { name, state: 'Ready', events: [...extension.events] });
  host.notify();
}

/** `GET event/next`: waits for the extension's next event. */
export function extensionNext(host: ExtensionsApiHost, req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const extension = identify(host.extensions, req, res);
  if (!extension) return;
  if (extension.errored || extension.pendingNext) {
    sendError(res, 403, 'Extension.InvalidExtensionState', `extension ${extension.name} cannot wait now`);
    return;
  }
  extension.pendingNext = res;
  res.on('close', () => {
    if (extension.pendingNext === res && !res.writableEnded) extension.pendingNext = undefined;
  });
  deliverToExtension(extension);
  host.notify();
}

/** `POST init/error` and `exit/error`: the extension failed; the phase ends with its error type. */
export async function extensionError(
  host: ExtensionsApiHost,
  req: IncomingMessage,
  res: ServerResponse,
  kind: 'init' | 'exit',
): Promise<void> {
  const body = await readBody(req, MAX_CONTROL_BODY_BYTES);
  const extension = identify(host.extensions, req, res);
  if (!extension) return;
  const errorType = headerValue(req, 'Lambda-Extension-Function-Error-Type');
  if (!errorType)
    return sendError(
      res,
      403,
      'Extension.MissingHeader',
      'Missing Lambda-Extension-Function-Error-Type header',
    );
  if (extension.errored)
    return sendError(
      res,
      403,
      'Extension.InvalidExtensionState',
      `extension ${extension.name} already reported an error`,
    );
  if (kind === 'init' && host.state !== 'initializing')
    return sendError(res, 403, 'Extension.InvalidExtensionState', 'init/error is only accepted during init');
  extension.errored = true;
  const document = body.ok ? (parseJson(body.body) as { errorMessage?: unknown } | undefined) : undefined;
  const message = typeof document?.errorMessage === 'string' ? document.errorMessage : `${kind} error`;
  sendJson(res, 202, ACCEPTED);
  if (host.state !== 'shutting-down') host.setFatal(errorType, `extension ${extension.name}: ${message}`);
}

/** Answers the extension's pending `next` with its oldest queued event, if both exist. */
export function deliverToExtension(extension: RegisteredExtension): void {
  const res = extension.pendingNext;
  const event = extension.queue[0];
  if (!res || event === undefined) return;
  extension.queue.shift();
  extension.pendingNext = undefined;
  sendJson(res, 200, event, {
    'Lambda-Extension-Event-Identifier': randomUUID(),
    'Lambda-Extension-Identifier': extension.id,
  });
}
