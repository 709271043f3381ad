// The CLI's HTTP client for a running control API. Token from --token or BULKHEAD_TOKEN,
// URL from --control or BULKHEAD_CONTROL_URL, so neither need appear on a command line.
import { type ParsedArgs, stringOption, UsageError } from './command.js';

export interface ControlClient {
  baseUrl: string;
  request(
    method: string,
    path: string,
    init?: { body?: string; contentType?: string; accept?: string },
  ): Promise<Response>;
}

/** `urlOption`: the option naming the API (`--control`; `policy check` says `--against`). */
export function controlClient(args: ParsedArgs, urlOption = 'control'): ControlClient {
  const raw = stringOption(args, urlOption) ?? process.env.BULKHEAD_CONTROL_URL;
  if (!raw) throw new UsageError(`--${urlOption} URL (or BULKHEAD_CONTROL_URL) is required`);
  let base: URL;
  try {
    base = new URL(raw);
  } catch {
    throw new UsageError(`--${urlOption}: not a URL: ${raw}`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new UsageError(`--${urlOption}: expected http(s)://`);
  const token = stringOption(args, 'token') ?? process.env.BULKHEAD_TOKEN;
  if (!token) throw new UsageError('--token (or BULKHEAD_TOKEN) is required');
  const baseUrl = base.href.replace(/\/+$/, '');
  return {
    baseUrl,
    async request(method, path, init = {}) {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      if (init.contentType) headers['content-type'] = init.contentType;
      if (init.accept) headers.accept = init.accept;
      try {
        return await fetch(`${baseUrl}${path}`, { method, headers, body: init.body });
      } catch (error) {
        const cause = (error as { cause?: { code?: string; message?: string } }).cause;
        throw new Error(
          `cannot reach ${baseUrl}: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
        );
      }
    },
  };
}

/** The API's `{error, message}` body as one line, or the status when the body is not ours. */
export async function describeFailure(response: Response): Promise<string> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { error?: string; message?: string };
    if (body.message) return `${response.status} ${body.error ?? ''}: ${body.message}`.replace(' :', ':');
  } catch {
    // not JSON: fall through
  }
  return `${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`;
}

export const clientOptions = {
  control: { type: 'string' },
  token: { type: 'string' },
} as const;

/** Left-aligned columns for terminal tables. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows
    .map((row) =>
      row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  '),
    )
    .join('\n');
}
