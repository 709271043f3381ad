// The parser: multi-document YAML (or JSON) → a validated PolicySet, or every error at once with
// file:line:column and field path. One of two kernel modules that use the yaml package (the other,
// suggest-render.ts, writes YAML).
import { isMap, isScalar, isSeq, LineCounter, type Node, parseAllDocuments } from 'yaml';
import {
  API_VERSION,
  documentSchemas,
  type EgressPolicyDoc,
  type GuardrailDoc,
  type PolicyDocument,
  type SmartGroupDoc,
} from './documents.js';
import { errorAt, formatPath, type PolicyError, type SourceLocation, setLocator } from './errors.js';
import type { Issue, PathSegment } from './schema-kit.js';

export interface PolicySource {
  file: string;
  text: string;
}

/** A validated set of documents. Documents keep their source positions (see `locate`). */
export interface PolicySet {
  groups: SmartGroupDoc[];
  policies: EgressPolicyDoc[];
  guardrails: GuardrailDoc[];
}

export type ParseResult = { ok: true; set: PolicySet } | { ok: false; errors: PolicyError[] };

export const MAX_SOURCE_BYTES = 16 * 1024 * 1024;
const MAX_DOCUMENTS = 10_000;
const MAX_ERRORS = 500;

function positionOf(lineCounter: LineCounter, file: string, offset: number): SourceLocation {
  const { line, col } = lineCounter.linePos(offset);
  return { file, line, column: col };
}

/** Find the node at `path` (or the deepest existing ancestor) and return where it starts. */
function nodeLocator(root: Node | null | undefined, file: string, lineCounter: LineCounter) {
  return (path: readonly PathSegment[], atKey = false): SourceLocation => {
    let node: unknown = root;
    let offset = (root?.range?.[0] as number | undefined) ?? 0;
    for (let i = 0; i < path.length; i++) {
      const segment = path[i];
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(segment),
        );
        if (!pair) break;
        const keyNode = pair.key as Node | undefined;
        if (last && atKey && keyNode?.range) {
          offset = keyNode.range[0];
          break;
        }
        const value = pair.value as Node | null;
        if (!value?.range) {
          if (keyNode?.range) offset = keyNode.range[0];
          break;
        }
        node = value;
        offset = value.range[0];
      } else if (isSeq(node) && typeof segment === 'number') {
        const item = node.items[segment] as Node | undefined;
        if (!item?.range) break;
        node = item;
        offset = item.range[0];
      } else break;
    }
    return positionOf(lineCounter, file, offset);
  };
}

function describeKind(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value.slice(0, 60)) : String(value);
}

/**
 * Parse and validate policy sources. Returns every error at once; never throws on any input text
 * (only on a programmer error such as a non-array argument).
 */
export function parsePolicy(sources: readonly PolicySource[]): ParseResult {
  if (!Array.isArray(sources)) throw new TypeError('parsePolicy expects an array of {file, text}');
  const errors: PolicyError[] = [];
  const groups: SmartGroupDoc[] = [];
  const policies: EgressPolicyDoc[] = [];
  const guardrails: GuardrailDoc[] = [];
  let documentCount = 0;

  for (const source of sources) {
    const file = source.file;
    if (typeof source.text !== 'string') throw new TypeError(`parsePolicy: text of ${file} is not a string`);
    if (Buffer.byteLength(source.text, 'utf8') > MAX_SOURCE_BYTES) {
      errors.push({
        file,
        line: 1,
        column: 1,
        path: '',
        message: `file larger than ${MAX_SOURCE_BYTES} bytes`,
      });
      continue;
    }
    const lineCounter = new LineCounter();
    let documents: ReturnType<typeof parseAllDocuments>;
    try {
      documents = parseAllDocuments(source.text, {
        lineCounter,
        prettyErrors: false,
        uniqueKeys: true,
        schema: 'core',
        customTags: [],
        keepSourceTokens: false,
      });
    } catch (error) {
      errors.push({
        file,
        line: 1,
        column: 1,
        path: '',
        message: `cannot parse: ${(error as Error).message}`,
      });
      continue;
    }
    const docs = Array.isArray(documents) ? documents : [];
    for (const document of docs) {
      if (document.errors.length > 0) {
        for (const e of document.errors) {
          const pos = e.linePos?.[0];
          errors.push({
            file,
            line: pos?.line ?? 1,
            column: pos?.col ?? 1,
            path: '',
            message: e.message.split('\n')[0] ?? 'YAML syntax error',
          });
        }
        continue;
      }
      for (const w of document.warnings) {
        const pos = w.linePos?.[0];
        errors.push({
          file,
          line: pos?.line ?? 1,
          column: pos?.col ?? 1,
          path: '',
          message: w.message.split('\n')[0] ?? 'YAML warning',
        });
      }
      let value: unknown;
      try {
        value = document.toJS({ maxAliasCount: 100 });
      } catch (error) {
        const offset = document.contents?.range?.[0] ?? 0;
        errors.push({
          ...positionOf(lineCounter, file, offset),
          path: '',
          message: (error as Error).message,
        });
        continue;
      }
      if (value === null || value === undefined) continue; // empty document (a trailing `---`)
      // A JSON file may hold one document or a list of documents.
      const contents = document.contents as Node | null;
      const entries: { value: unknown; node: Node | null | undefined }[] =
        Array.isArray(value) && isSeq(contents)
          ? value.map((item, i) => ({ value: item, node: contents.items[i] as Node | undefined }))
          : [{ value, node: contents }];
      for (const entry of entries) {
        documentCount++;
        if (documentCount > MAX_DOCUMENTS) {
          errors.push({
            file,
            line: 1,
            column: 1,
            path: '',
            message: `more than ${MAX_DOCUMENTS} documents`,
          });
          break;
        }
        const locator = nodeLocator(entry.node, file, lineCounter);
        const parsed = validateDocument(entry.value, locator);
        if ('errors' in parsed) {
          errors.push(...parsed.errors);
          continue;
        }
        setLocator(parsed.doc, locator);
        if (parsed.doc.kind === 'SmartGroup') groups.push(parsed.doc);
        else if (parsed.doc.kind === 'EgressPolicy') policies.push(parsed.doc);
        else guardrails.push(parsed.doc);
      }
      if (errors.length > MAX_ERRORS) break;
    }
  }

  errors.push(...checkReferences({ groups, policies, guardrails }));
  if (errors.length > 0) return { ok: false, errors: errors.slice(0, MAX_ERRORS) };
  return { ok: true, set: { groups, policies, guardrails } };
}

function validateDocument(
  value: unknown,
  locator: (path: readonly PathSegment[], atKey?: boolean) => SourceLocation,
): { doc: PolicyDocument } | { errors: PolicyError[] } {
  const toErrors = (issues: Issue[]): { errors: PolicyError[] } => ({
    errors: issues.map((issue) => ({
      ...locator(issue.path, issue.atKey),
      path: formatPath(issue.path),
      message: issue.message,
    })),
  });
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return toErrors([
      { path: [], message: 'expected a document (a mapping with apiVersion, kind, metadata, spec)' },
    ]);
  const record = value as Record<string, unknown>;
  if (record.apiVersion !== API_VERSION)
    return toErrors([
      {
        path: Object.hasOwn(record, 'apiVersion') ? ['apiVersion'] : [],
        message: `expected apiVersion ${API_VERSION}, got ${describeKind(record.apiVersion)}`,
      },
    ]);
  const kind = record.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(documentSchemas, kind))
    return toErrors([
      {
        path: Object.hasOwn(record, 'kind') ? ['kind'] : [],
        message: `expected kind ${Object.keys(documentSchemas).join(' | ')}, got ${describeKind(kind)}`,
      },
    ]);
  const schema = documentSchemas[kind as keyof typeof documentSchemas];
  const issues: Issue[] = [];
  const doc = schema.check(value, [], issues);
  if (issues.length > 0 || doc === undefined) return toErrors(issues);
  return { doc: doc as PolicyDocument };
}

/**
 * Why a SmartGroup cannot be an east-west destination, or undefined: its workloads must be
 * addressable, i.e. AWS Lambda functions named by `name` globs (`cloud` absent or `aws` only).
 */
export function eastWestProblem(group: SmartGroupDoc): string | undefined {
  const cloud = group.spec.match.cloud;
  const clouds = cloud === undefined ? [] : Array.isArray(cloud) ? cloud : [cloud];
  if (clouds.some((c) => c !== 'aws'))
    return `SmartGroup ${group.metadata.name} is not AWS-only: east-west by group reaches Lambda functions (use host or url for other clouds)`;
  if (group.spec.match.name === undefined)
    return `SmartGroup ${group.metadata.name} does not select by name: east-west needs the function names (match.name)`;
  return undefined;
}

/** Cross-document checks: unique names per kind, appliesTo and group destinations name existing SmartGroups. */
function checkReferences(set: PolicySet): PolicyError[] {
  const errors: PolicyError[] = [];
  const seen = (docs: { metadata: { name: string } }[], kind: string) => {
    const names = new Map<string, object>();
    for (const doc of docs) {
      if (names.has(doc.metadata.name))
        errors.push(
          errorAt(doc, ['metadata', 'name'], `duplicate ${kind} name ${JSON.stringify(doc.metadata.name)}`),
        );
      else names.set(doc.metadata.name, doc);
    }
    return names;
  };
  const groupNames = seen(set.groups, 'SmartGroup');
  seen(set.policies, 'EgressPolicy');
  seen(set.guardrails, 'Guardrail');
  for (const policy of set.policies) {
    policy.spec.appliesTo.forEach((name, i) => {
      if (!groupNames.has(name))
        errors.push(
          errorAt(
            policy,
            ['spec', 'appliesTo', i],
            `no SmartGroup named ${JSON.stringify(name)} in this policy set`,
          ),
        );
    });
    for (const kind of ['allow', 'deny'] as const)
      (policy.spec[kind] ?? []).forEach((rule, i) => {
        const name = rule.to.group;
        if (name === undefined) return;
        const group = groupNames.get(name) as SmartGroupDoc | undefined;
        const problem = group
          ? eastWestProblem(group)
          : `no SmartGroup named ${JSON.stringify(name)} in this policy set`;
        if (problem) errors.push(errorAt(policy, ['spec', kind, i, 'to', 'group'], problem));
      });
  }
  return errors;
}
