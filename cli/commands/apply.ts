// bulkhead apply FILES…: send the policy set to a control API (CI gates on the exit code).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { clientOptions, controlClient, describeFailure } from '../client.js';
import { type Command, EXIT_FAILURE, EXIT_OK, UsageError } from '../command.js';

const usage = `Usage: bulkhead apply FILES… --control URL --token T [--dry-run] [--json]

Sends every policy file (directories: their .yaml/.yml/.json files) as one policy set. The control API
validates it (parser and guardrails), stores it as the next revision and answers with the diff per
SmartGroup and the workloads affected. --dry-run validates and diffs without storing.
Exit 0 applied (or unchanged), 1 invalid policy or refused, 2 usage. Token also from BULKHEAD_TOKEN.`;

const POLICY_FILE = /\.(ya?ml|json)$/i;

export function collectPolicyFiles(paths: string[]): { file: string; text: string }[] {
  const sources: { file: string; text: string }[] = [];
  for (const path of paths) {
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(path);
    } catch {
      throw new UsageError(`no such file: ${path}`);
    }
    if (stat.isDirectory()) {
      for (const name of readdirSync(path).sort()) {
        if (POLICY_FILE.test(name)) sources.push(...collectPolicyFiles([join(path, name)]));
      }
    } else {
      const file = relative(process.cwd(), path).replace(/\\/g, '/') || path;
      sources.push({ file: file.startsWith('..') ? path : file, text: readFileSync(path, 'utf8') });
    }
  }
  return sources;
}

interface ApplyAnswer {
  revision: number;
  previousRevision: number;
  dryRun: boolean;
  unchanged: boolean;
  diff: unknown;
  affectedWorkloads: { count: number; workloads: { key: string }[] };
}

export const applyCommand: Command = {
  path: ['apply'],
  summary: 'Apply policy files to a control API',
  usage,
  positionals: true,
  options: { ...clientOptions, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } },
  async run(args, io) {
    if (args.positionals.length === 0) throw new UsageError('name at least one policy file or directory');
    const sources = collectPolicyFiles(args.positionals);
    if (sources.length === 0) throw new UsageError('no .yaml/.yml/.json files found');
    const client = controlClient(args);
    const dryRun = args.values['dry-run'] === true;
    const response = await client.request('PUT', `/v1/policy${dryRun ? '?dryRun=true' : ''}`, {
      body: JSON.stringify({ sources }),
      contentType: 'application/json',
    });
    if (response.status === 400) {
      const body = (await response.json()) as { message?: string; errors?: unknown[] };
      if (args.values.json) io.out(JSON.stringify(body));
      else io.err(body.message ?? 'invalid policy');
      return EXIT_FAILURE;
    }
    if (!response.ok) {
      io.err(`bulkhead apply: ${await describeFailure(response)}`);
      return EXIT_FAILURE;
    }
    const answer = (await response.json()) as ApplyAnswer;
    if (args.values.json) {
      io.out(JSON.stringify(answer));
      return EXIT_OK;
    }
    const headline = answer.dryRun
      ? `dry run: valid; would become revision ${answer.previousRevision + 1}`
      : answer.unchanged
        ? `unchanged: revision ${answer.revision} already holds this policy`
        : `applied revision ${answer.revision} (was ${answer.previousRevision})`;
    io.out(headline);
    io.out(`workloads affected: ${answer.affectedWorkloads.count}`);
    for (const w of answer.affectedWorkloads.workloads.slice(0, 20)) io.out(`  ${w.key}`);
    io.out(`diff: ${JSON.stringify(answer.diff, null, 2)}`);
    return EXIT_OK;
  },
};
