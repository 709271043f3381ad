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
        const code = cause?.code;
        throw new Error(
          `cannot reach ${baseUrl}: ${code ?? cause?.message ?? (error as Error).message}${connectHint(base, code)}`,
        );
      }
    },
  };
}

/** Certificate verification failures that a private CA explains (Node's codes). */
const UNTRUSTED_CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
]);

/** What a connection failure's code most likely means here, or ''. */
function connectHint(base: URL, code: string | undefined): string {
  if (code === undefined) return '';
  if (UNTRUSTED_CERTIFICATE.has(code))
    return ' (the certificate is not from a CA this machine trusts; for a private CA start node with NODE_EXTRA_CA_CERTS=ca.pem)';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return ` (the certificate does not name ${base.hostname})`;
  // An HTTPS server drops a plain-HTTP request without a word.
  if (code === 'UND_ERR_SOCKET' && base.protocol === 'http:')
    return ' (closed without an answer: if the API serves HTTPS, use https://)';
  return '';
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
