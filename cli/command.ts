import { type ParseArgsConfig, parseArgs } from 'node:util';

/** One `bulkhead` sub-command. `path` is the words that select it (`['policy', 'check']`). */
export interface Command {
  path: readonly string[];
  summary: string;
  /** Full help text shown by `--help` (usage line first). */
  usage: string;
  options?: ParseArgsConfig['options'];
  /** Accept positional arguments (files …). */
  positionals?: boolean;
  run(args: ParsedArgs, io: CliIO): Promise<number>;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
  /** Arguments after a literal `--`, kept apart (for `policy diff OLD -- NEW`). */
  rest: string[];
}

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A usage error: printed with the command's usage line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function parseCommandArgs(command: Command, argv: string[]): ParsedArgs {
  const dashDash = argv.indexOf('--');
  const head = dashDash === -1 ? argv : argv.slice(0, dashDash);
  const rest = dashDash === -1 ? [] : argv.slice(dashDash + 1);
  try {
    const parsed = parseArgs({
      args: head,
      options: { help: { type: 'boolean', short: 'h' }, ...(command.options ?? {}) },
      allowPositionals: command.positionals ?? false,
      strict: true,
    });
    return { values: parsed.values, positionals: parsed.positionals, rest };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * An integer option's value (`text` as given), or undefined when absent. Without `range`, any
 * non-negative integer of up to 15 digits; with it, one from `min` to `max`.
 */
export function integerOption(
  text: string | undefined,
  name: string,
  range?: { min: number; max: number },
): number | undefined {
  if (text === undefined) return undefined;
  const value = /^\d{1,15}$/.test(text) ? Number(text) : Number.NaN;
  if (range === undefined) {
    if (Number.isNaN(value))
      throw new UsageError(`--${name}: expected a non-negative integer, got ${JSON.stringify(text)}`);
  } else if (!(value >= range.min && value <= range.max))
    throw new UsageError(
      `--${name}: expected an integer from ${range.min} to ${range.max}, got ${JSON.stringify(text)}`,
    );
  return value;
}

const DURATION = /^(\d{1,9})(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `24h`, `30m`, `7d`, `3600s` → milliseconds, from 1 s to `maxDays` days. */
export function durationOption(text: string, name: string, maxDays = 366): number {
  const m = DURATION.exec(text.trim());
  if (!m)
    throw new UsageError(`--${name}: expected a duration like 24h, 30m, 7d, got ${JSON.stringify(text)}`);
  const ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  if (ms <= 0 || ms > maxDays * 86_400_000) throw new UsageError(`--${name}: between 1s and ${maxDays}d`);
  return ms;
}

export function requireOption(args: ParsedArgs, name: string): string {
  const value = stringOption(args, name);
  if (value === undefined || value === '') throw new UsageError(`--${name} is required`);
  return value;
}
