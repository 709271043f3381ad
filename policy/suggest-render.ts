// A suggestion (./suggest.ts) written as policy YAML, each rule commented with who used it and how
// often: alone (the group's SmartGroup and a suggested EgressPolicy, for review), or merged into the
// applied policy set as a whole (`--mode enforce --out FILE`: ready for `policy check` and `apply`),
// keeping every other document and its comments as written.
import { Document, isMap, isSeq, parseAllDocuments, type YAMLMap, type YAMLSeq } from 'yaml';
import { describeDestination } from './diff.js';
import { API_VERSION, type Destination, type EgressPolicyDoc } from './documents.js';
import type { PolicySet, PolicySource } from './parse.js';
import type { SuggestedGlob, SuggestedRule, Suggestion } from './suggest.js';
import type { Mode } from './types.js';

export interface RenderOptions {
  /** Mode of the suggested policy (standalone: default observe). */
  mode?: Mode | undefined;
  /** Owner of a new policy; else the owner of a policy that governs the group already. */
  owner?: string | undefined;
  /** The records' window, for the header: `since 2026-11-28T09:00:00.000Z`. */
  window?: string | undefined;
}

export interface MergeOptions extends RenderOptions {
  mode: Mode;
  /** Keep the group's allow rules and add the suggested ones (default: replace them). */
  merge?: boolean | undefined;
}

export interface MergedSet {
  /** The complete policy set as one multi-document YAML file. */
  text: string;
  /** What was changed, and what the reader should know (`policy x also governs other groups: unchanged`). */
  notes: string[];
}

/** One line per rule (`to` in flow style) however long, as people write them. */
const STRINGIFY = { lineWidth: 0 } as const;

const n = (value: number) => value.toLocaleString('en-US');

/** ` axios@1.7.2 (12×), (unknown) (3×) · 15 requests · 2026-12-01 → 2026-12-04` */
function usageComment(
  usage: Pick<SuggestedRule, 'packages' | 'requests' | 'firstSeen' | 'lastSeen'>,
  note?: string,
): string {
  const packages = usage.packages.slice(0, 4).map((p) => `${p.package} (${n(p.requests)}×)`);
  if (usage.packages.length > 4) packages.push(`${usage.packages.length - 4} more`);
  const days = (text: string) => text.slice(0, 10);
  const window =
    days(usage.firstSeen) === days(usage.lastSeen)
      ? days(usage.firstSeen)
      : `${days(usage.firstSeen)} → ${days(usage.lastSeen)}`;
  return ` ${[packages.join(', '), `${n(usage.requests)} request${usage.requests === 1 ? '' : 's'}`, window, note].filter(Boolean).join(' · ')}`;
}

function header(suggestion: Suggestion, options: RenderOptions): string {
  const lines = [
    ` Suggested by bulkhead policy suggest --group ${suggestion.group}${options.window ? ` (records ${options.window})` : ''}:`,
    ` ${n(suggestion.rules.length)} rule(s) from ${n(suggestion.records)} record(s), ${n(suggestion.requests)} request(s). Read every rule before you apply it.`,
  ];
  if (suggestion.warnings.length > 0) {
    lines.push(' Not suggested:');
    for (const w of suggestion.warnings) lines.push(`   ${w.destination} (${n(w.requests)}×): ${w.reason}`);
  }
  return lines.join('\n');
}

/** Allow rules as YAML nodes: `to` in flow style, usage as the comment above each. */
function allowNodes(doc: Document, rules: readonly SuggestedRule[]): YAMLMap[] {
  return rules.map((rule) => {
    const node = doc.createNode({ to: rule.to }) as YAMLMap;
    const to = node.get('to', true) as unknown as YAMLMap;
    to.flow = true;
    node.commentBefore = usageComment(rule, rule.note);
    return node;
  });
}

function globNodes(doc: Document, globs: readonly SuggestedGlob[]): YAMLSeq {
  const seq = doc.createNode(globs.map((g) => g.glob)) as YAMLSeq;
  seq.items.forEach((item, i) => {
    (item as { commentBefore?: string }).commentBefore = usageComment(globs[i] as SuggestedGlob);
  });
  return seq;
}

function ownerFor(set: PolicySet, group: string, options: RenderOptions): string | undefined {
  return (
    options.owner ?? set.policies.find((p) => p.spec.appliesTo.includes(group) && p.spec.owner)?.spec.owner
  );
}

/** The suggested EgressPolicy with the group's SmartGroup before it: passes `policy check` on its own. */
export function renderSuggestion(
  suggestion: Suggestion,
  set: PolicySet,
  options: RenderOptions = {},
): string {
  const group = set.groups.find((g) => g.metadata.name === suggestion.group);
  const out: string[] = [];
  if (group) {
    const groupDoc = new Document({
      apiVersion: group.apiVersion,
      kind: group.kind,
      metadata: group.metadata,
      spec: group.spec,
    });
    groupDoc.commentBefore = header(suggestion, options);
    out.push(groupDoc.toString(STRINGIFY));
  }
  const owner = ownerFor(set, suggestion.group, options);
  const policy: Record<string, unknown> = {
    apiVersion: API_VERSION,
    kind: 'EgressPolicy',
    metadata: { name: `${suggestion.group}-suggested` },
    spec: {
      appliesTo: [suggestion.group],
      mode: options.mode ?? 'observe',
      ...(owner ? { owner } : {}),
    },
  };
  const doc = new Document(policy);
  (doc.getIn(['spec', 'appliesTo'], true) as YAMLSeq).flow = true;
  if (!group) doc.commentBefore = header(suggestion, options);
  fillSpec(doc, suggestion, { replaceAllow: true });
  out.push(doc.toString(STRINGIFY));
  return out.join('---\n');
}

/** Put the suggestion's rules, exec and addon globs into an EgressPolicy document's spec. */
function fillSpec(doc: Document, suggestion: Suggestion, how: { replaceAllow: boolean }): number {
  const spec = doc.get('spec', true) as YAMLMap;
  let existing = spec.get('allow', true) as YAMLSeq | undefined;
  if (how.replaceAllow || !isSeq(existing)) {
    existing = doc.createNode([]) as YAMLSeq;
    spec.set('allow', existing);
  }
  const seen = new Set(
    existing.items.map((item) =>
      isMap(item) ? describeDestination((item.toJSON() as { to: Destination }).to) : '',
    ),
  );
  const fresh = suggestion.rules.filter((rule) => !seen.has(describeDestination(rule.to)));
  // Commented items need block style: a flow list would wrap them across lines in braces.
  if (fresh.length > 0) existing.flow = false;
  existing.items.push(...allowNodes(doc, fresh));
  if (existing.items.length === 0) spec.delete('allow');
  for (const [key, globs] of [
    ['exec', suggestion.exec],
    ['addons', suggestion.addons],
  ] as const) {
    if (globs.length === 0) continue;
    let section = spec.get(key, true) as YAMLMap | undefined;
    if (!isMap(section)) {
      section = doc.createNode({}) as YAMLMap;
      spec.set(key, section);
    }
    const list = section.get('allow', true) as YAMLSeq | undefined;
    const have = new Set(
      isSeq(list) ? list.items.map((i) => String((i as { value?: unknown }).value ?? i)) : [],
    );
    const add = globs.filter((g) => !have.has(g.glob));
    if (add.length === 0) continue;
    section.flow = false;
    if (isSeq(list)) {
      list.flow = false;
      list.items.push(...globNodes(doc, add).items);
    } else section.set('allow', globNodes(doc, add));
  }
  return fresh.length;
}

/**
 * The applied set with the group's rules replaced by the suggestion (or merged into them), in the
 * given mode. The group's own policies (appliesTo names it alone) take the suggestion; a policy that
 * also governs other groups is left as it is (said in a note); a group without its own policy gets one.
 */
export function mergeSuggestion(
  sources: readonly PolicySource[],
  set: PolicySet,
  suggestion: Suggestion,
  options: MergeOptions,
): MergedSet {
  const group = suggestion.group;
  const notes: string[] = [];
  const parts: string[] = [];
  let target: Document | undefined;
  for (const source of sources) {
    const docs = parseAllDocuments(source.text);
    if (!Array.isArray(docs)) continue;
    const texts: string[] = [];
    for (const doc of docs) {
      if (doc.contents === null) continue;
      const value = doc.toJS() as Partial<EgressPolicyDoc> | null;
      const appliesTo = value?.kind === 'EgressPolicy' ? (value.spec?.appliesTo ?? []) : [];
      if (appliesTo.includes(group) && appliesTo.length > 1)
        notes.push(
          `policy ${value?.metadata?.name} also governs ${appliesTo.filter((g) => g !== group).join(', ')}: left as it is`,
        );
      if (appliesTo.length === 1 && appliesTo[0] === group) {
        const name = value?.metadata?.name;
        const allowBefore = value?.spec?.allow?.length ?? 0;
        doc.setIn(['spec', 'mode'], options.mode);
        if (target === undefined) {
          target = doc;
          const added = fillSpec(doc, suggestion, { replaceAllow: !options.merge });
          notes.push(
            options.merge
              ? `policy ${name}: ${added} suggested rule(s) added to its ${allowBefore}; mode ${options.mode}`
              : `policy ${name}: its ${allowBefore} allow rule(s) replaced by ${suggestion.rules.length} suggested; mode ${options.mode}`,
          );
          if (!options.merge && allowBefore > 0)
            notes.push(
              `traffic that ${name}'s old rules allowed left no record, so the suggestion cannot know it: --merge keeps them`,
            );
        } else if (!options.merge && allowBefore > 0) {
          doc.deleteIn(['spec', 'allow']);
          notes.push(
            `policy ${name}: its ${allowBefore} allow rule(s) removed (the suggestion is in ${String(target.getIn(['metadata', 'name']))}); mode ${options.mode}`,
          );
        }
      }
      // Documents are joined below with `---`: no marker of their own, else the set reads as empty documents.
      doc.directives.docStart = null;
      texts.push(doc.toString(STRINGIFY));
    }
    parts.push(`# ── ${source.file} ──\n${texts.join('---\n')}`);
  }
  if (target === undefined) {
    const names = new Set(set.policies.map((p) => p.metadata.name));
    let name = `${group}-egress`;
    for (let i = 2; names.has(name); i++) name = `${group}-egress-${i}`;
    const owner = ownerFor(set, group, options);
    const doc = new Document({
      apiVersion: API_VERSION,
      kind: 'EgressPolicy',
      metadata: { name },
      spec: { appliesTo: [group], mode: options.mode, ...(owner ? { owner } : {}) },
    });
    (doc.getIn(['spec', 'appliesTo'], true) as YAMLSeq).flow = true;
    fillSpec(doc, suggestion, { replaceAllow: true });
    doc.commentBefore = header(suggestion, options);
    parts.push(`# ── suggested ──\n${doc.toString(STRINGIFY)}`);
    notes.push(
      `new policy ${name} for ${group}: ${suggestion.rules.length} suggested rule(s); mode ${options.mode}`,
    );
    if (!owner) notes.push(`${name} has no owner: add spec.owner (or pass --owner) before policy check`);
  }
  return { text: `${parts.join('---\n')}`, notes };
}
