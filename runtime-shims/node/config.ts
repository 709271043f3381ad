// The shim's configuration, read once from the environment (contract §2), and the endpoints that
// are exempt from policy by construction: the Lambda Runtime API, the report sink and the control
// API. Nothing else is ever exempt.
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalizeIp } from '../../policy/cidr.js';
import { parseIdentity } from '../../policy/identity.js';
import type { WorkloadIdentity } from '../../policy/types.js';
import { detectIdentity } from './identity.js';

export type FailMode = 'closed' | 'observe';

export interface Endpoint {
  /** Lower-case host name or normalised IP literal. */
  host: string;
  port: number;
}

export interface ShimConfig {
  bundleFile: string | undefined;
  trustedKeys: string[];
  workload: WorkloadIdentity;
  report: { kind: 'spool'; path: string } | { kind: 'http'; url: URL } | undefined;
  token: string | undefined;
  failMode: FailMode;
  exempt: Endpoint[];
  /** Configuration problems, one line each, logged at install (never fatal: the fail mode governs). */
  problems: string[];
  /** The BULKHEAD_* variables a child process or worker must see to enforce the same policy. */
  propagate: Record<string, string>;
  /**
   * Lambda only: the runtime's own folder (`LAMBDA_RUNTIME_DIR`, real path). Its native client
   * (`rapid-client.node`) is exempt from the addon policy by construction (contract §2).
   */
  runtimeDir: string | undefined;
  /**
   * Lambda: the extension's status file (`BULKHEAD_EXTENSION_STATUS`). The extension registers first and
   * fetches beside the runtime's init; the first decision waits until this file exists, at most
   * `extensionWaitMs` (`BULKHEAD_EXTENSION_WAIT_MS`, default 3000), so the bundle is verified first.
   */
  extensionStatus: string | undefined;
  extensionWaitMs: number;
  /**
   * The control API the process fetches its bundle from itself (the control link), when no bundle
   * file and no extension is configured but BULKHEAD_CONTROL_URL and BULKHEAD_TOKEN are.
   */
  control: ControlConfig | undefined;
  /**
   * Longest a rule hit count waits for records to ride with before it is sent alone
   * (`BULKHEAD_HITS_INTERVAL_MS`, default 60 000; contract §3).
   */
  hitsIntervalMs: number;
}

export interface ControlConfig {
  url: URL;
  /** Where records go: `BULKHEAD_REPORT` when it is a URL, else the control API's `/v1/reports`. */
  reportsUrl: URL;
  token: string;
  /** Longest wait of the first decision for the first bundle (`BULKHEAD_CONTROL_WAIT_MS`, default 3000). */
  waitMs: number;
  /** Longest wait at exit for the delivery of queued records (`BULKHEAD_EXIT_FLUSH_MS`, default 1000). */
  exitFlushMs: number;
  /** Where records not delivered at exit go (`BULKHEAD_SPOOL`; default a private folder in the temp dir). */
  spool: string;
  defaultSpool: boolean;
}

const DEFAULT_EXTENSION_WAIT_MS = 3_000;
const MAX_WAIT_MS = 10_000;
const DEFAULT_HITS_INTERVAL_MS = 60_000;
const DEFAULT_EXIT_FLUSH_MS = 1_000;

/** A bounded number of milliseconds from the environment, or the default (with a problem line). */
function millisecondsOf(
  env: Readonly<Record<string, string | undefined>>,
  variable: string,
  fallback: number,
  problems: string[],
): number {
  const text = env[variable]?.trim();
  if (!text) return fallback;
  const value = Number(text);
  if (Number.isInteger(value) && value >= 0 && value <= MAX_WAIT_MS) return value;
  problems.push(`${variable} must be an integer from 0 to ${MAX_WAIT_MS}; using ${fallback}`);
  return fallback;
}

function endpointOfUrl(text: string, problems: string[], variable: string): Endpoint | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    problems.push(`${variable} is not a URL`);
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    problems.push(`${variable} must be an http(s) URL`);
    return undefined;
  }
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return { host: hostKey(url.hostname), port };
}

/** `host:port` without a scheme (AWS_LAMBDA_RUNTIME_API), IPv6 in brackets. */
function endpointOfHostPort(text: string, problems: string[], variable: string): Endpoint | undefined {
  const match = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match?.[1] || !(port > 0 && port < 65536)) {
    problems.push(`${variable} is not host:port`);
    return undefined;
  }
  return { host: hostKey(match[1]), port };
}

/** The form exempt hosts are compared in: IP literals normalised (IPv4-mapped unwrapped), names lower-case. */
/** Variables that widen what a process may do (exemptions, configuration): a child gets ours or none. */
export function isControlledVariable(name: string): boolean {
  return (
    name.startsWith('BULKHEAD_') ||
    name === 'AWS_LAMBDA_RUNTIME_API' ||
    name === 'LAMBDA_RUNTIME_DIR' ||
    name === 'NODE_OPTIONS'
  );
}

function withSlash(url: URL): URL {
  const copy = new URL(url.href);
  if (!copy.pathname.endsWith('/')) copy.pathname = `${copy.pathname}/`;
  copy.search = '';
  copy.hash = '';
  return copy;
}

export function hostKey(host: string): string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return normalizeIp(bare) ?? bare.toLowerCase().replace(/\.$/, '');
}

const PROPAGATED = [
  'BULKHEAD_BUNDLE_FILE',
  'BULKHEAD_TRUSTED_KEYS',
  'BULKHEAD_WORKLOAD',
  'BULKHEAD_REPORT',
  'BULKHEAD_FAIL_MODE',
  'BULKHEAD_CONTROL_URL',
  'BULKHEAD_TOKEN',
  'BULKHEAD_SPOOL',
  'BULKHEAD_CONTROL_WAIT_MS',
  'BULKHEAD_EXIT_FLUSH_MS',
  'BULKHEAD_HITS_INTERVAL_MS',
  'BULKHEAD_EXTENSION_STATUS',
  'BULKHEAD_EXTENSION_WAIT_MS',
  'BULKHEAD_TAGS',
  'BULKHEAD_STATE_DIR',
  'AWS_LAMBDA_RUNTIME_API',
  'LAMBDA_RUNTIME_DIR',
  'AWS_LAMBDA_FUNCTION_NAME',
  'AWS_REGION',
  'AWS_EXECUTION_ENV',
  'WEBSITE_SITE_NAME',
  'REGION_NAME',
  'WEBSITE_OWNER_NAME',
  'K_SERVICE',
  'K_REVISION',
  'FUNCTION_TARGET',
  'GOOGLE_CLOUD_PROJECT',
  'GCLOUD_PROJECT',
];

export function readConfig(env: Readonly<Record<string, string | undefined>>): ShimConfig {
  const problems: string[] = [];
  const exempt: Endpoint[] = [];
  const add = (endpoint: Endpoint | undefined) => {
    if (endpoint) exempt.push(endpoint);
  };
  if (env.AWS_LAMBDA_RUNTIME_API)
    add(endpointOfHostPort(env.AWS_LAMBDA_RUNTIME_API, problems, 'AWS_LAMBDA_RUNTIME_API'));
  const controlEndpoint = env.BULKHEAD_CONTROL_URL
    ? endpointOfUrl(env.BULKHEAD_CONTROL_URL, problems, 'BULKHEAD_CONTROL_URL')
    : undefined;
  add(controlEndpoint);

  const bundleFile = env.BULKHEAD_BUNDLE_FILE?.trim() || undefined;
  const extensionStatus = env.BULKHEAD_EXTENSION_STATUS?.trim() || undefined;
  const token = env.BULKHEAD_TOKEN || undefined;
  const controlText = env.BULKHEAD_CONTROL_URL?.trim();
  const controlReports =
    controlText && controlEndpoint ? new URL('v1/reports', withSlash(new URL(controlText))) : undefined;
  let report: ShimConfig['report'];
  // Without an extension to forward them, records go to the control API unless BULKHEAD_REPORT says otherwise.
  const reportText = env.BULKHEAD_REPORT?.trim() || (extensionStatus ? undefined : controlReports?.href);
  if (reportText) {
    if (/^https?:\/\//i.test(reportText)) {
      const endpoint = endpointOfUrl(reportText, problems, 'BULKHEAD_REPORT');
      if (endpoint) {
        add(endpoint);
        report = { kind: 'http', url: new URL(reportText) };
      }
    } else report = { kind: 'spool', path: reportText };
  }

  let control: ControlConfig | undefined;
  if (controlText && controlReports && !bundleFile && !extensionStatus) {
    if (!token)
      problems.push('BULKHEAD_CONTROL_URL is set but BULKHEAD_TOKEN is not: no bundle can be fetched');
    else if (/[\r\n]/.test(token)) problems.push('BULKHEAD_TOKEN must be a single line');
    else {
      const spoolText = env.BULKHEAD_SPOOL?.trim();
      control = {
        url: new URL(controlText),
        reportsUrl: report?.kind === 'http' ? report.url : controlReports,
        token,
        waitMs: millisecondsOf(env, 'BULKHEAD_CONTROL_WAIT_MS', DEFAULT_EXTENSION_WAIT_MS, problems),
        exitFlushMs: millisecondsOf(env, 'BULKHEAD_EXIT_FLUSH_MS', DEFAULT_EXIT_FLUSH_MS, problems),
        spool: spoolText || join(tmpdir(), `bulkhead-${process.getuid?.() ?? 'user'}`, 'spool.ndjson'),
        defaultSpool: !spoolText,
      };
    }
  }

  let failMode: FailMode = 'closed';
  const failText = env.BULKHEAD_FAIL_MODE?.trim().toLowerCase();
  if (failText === 'observe' || failText === 'open') failMode = 'observe';
  else if (failText && failText !== 'closed')
    problems.push(`BULKHEAD_FAIL_MODE ${JSON.stringify(failText)} is not closed|observe; using closed`);

  const trustedKeys = (env.BULKHEAD_TRUSTED_KEYS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const propagate: Record<string, string> = {};
  for (const name of PROPAGATED) {
    const value = env[name];
    if (value !== undefined) propagate[name] = value;
  }
  let runtimeDir: string | undefined;
  if (env.AWS_LAMBDA_RUNTIME_API && env.LAMBDA_RUNTIME_DIR) {
    try {
      runtimeDir = realpathSync(env.LAMBDA_RUNTIME_DIR);
    } catch {
      runtimeDir = undefined;
    }
  }
  if (env.BULKHEAD_WORKLOAD) {
    try {
      parseIdentity(env.BULKHEAD_WORKLOAD);
    } catch (error) {
      problems.push(`BULKHEAD_WORKLOAD: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const extensionWaitMs = millisecondsOf(
    env,
    'BULKHEAD_EXTENSION_WAIT_MS',
    DEFAULT_EXTENSION_WAIT_MS,
    problems,
  );
  const hitsText = env.BULKHEAD_HITS_INTERVAL_MS?.trim();
  let hitsIntervalMs = DEFAULT_HITS_INTERVAL_MS;
  if (hitsText) {
    const value = Number(hitsText);
    if (Number.isInteger(value) && value >= 10 && value <= 3_600_000) hitsIntervalMs = value;
    else
      problems.push(
        `BULKHEAD_HITS_INTERVAL_MS must be an integer from 10 to 3600000; using ${DEFAULT_HITS_INTERVAL_MS}`,
      );
  }
  return {
    hitsIntervalMs,
    runtimeDir,
    extensionStatus,
    extensionWaitMs,
    bundleFile,
    trustedKeys,
    workload: detectIdentity(env),
    report,
    control,
    token,
    failMode,
    exempt,
    problems,
    propagate,
  };
}
