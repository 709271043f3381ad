// Policy errors: every one names file, line, column and the field path.
import type { PathSegment } from './schema-kit.js';

export interface PolicyError {
  file: string;
  line: number;
  column: number;
  /** Field path in the document: `spec.allow[2].to.port` (empty for the document itself). */
  path: string;
  message: string;
  /** The guardrail a break belongs to (guardrail errors only). */
  guardrail?: string;
}

export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

/** `['spec', 'allow', 2, 'to', 'port']` → `spec.allow[2].to.port`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** `payments.yaml:14:9 spec.allow[2].to.port: expected 1-65535, got 70000` */
export function formatPolicyError(error: PolicyError): string {
  const where = `${error.file}:${error.line}:${error.column}`;
  const tag = error.guardrail ? ` [guardrail ${error.guardrail}]` : '';
  return error.path ? `${where} ${error.path}: ${error.message}${tag}` : `${where} ${error.message}${tag}`;
}

type Locator = (path: readonly PathSegment[], atKey?: boolean) => SourceLocation;
const locators = new WeakMap<object, Locator>();

/** Attach the source position finder of a parsed document. */
export function setLocator(document: object, locator: Locator): void {
  locators.set(document, locator);
}

/** Where a field of a parsed document was written (the document start for built documents). */
export function locate(document: object, path: readonly PathSegment[], atKey = false): SourceLocation {
  const locator = locators.get(document);
  return locator ? locator(path, atKey) : { file: '<built>', line: 1, column: 1 };
}

export function errorAt(
  document: object,
  path: readonly PathSegment[],
  message: string,
  extra: { atKey?: boolean; guardrail?: string } = {},
): PolicyError {
  const where = locate(document, path, extra.atKey);
  return {
    ...where,
    path: formatPath(path),
    message,
    ...(extra.guardrail ? { guardrail: extra.guardrail } : {}),
  };
}
