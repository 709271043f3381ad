// Hand-written Prometheus counters: a few numbers, no client library needed.

type Labels = Readonly<Record<string, string>>;

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  const escaped = entries.map(
    ([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`,
  );
  return `{${escaped.join(',')}}`;
}

class Counter {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  /** Rendered label text per raw label values: the per-request path formats nothing. */
  private readonly labelCache = new Map<string, string>();

  inc(labels: Labels = {}, by = 1): void {
    const raw = Object.values(labels).join('\u0000');
    let key = this.labelCache.get(raw);
    if (key === undefined) {
      key = labelText(labels);
      if (this.labelCache.size < 10_000) this.labelCache.set(raw, key);
    }
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  /** Adds to the series of `labels` by its pre-rendered key (see `series`): the hot path allocates nothing. */
  add(key: string, by = 1): void {
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  /** The key of one series, rendered once, for `add`. */
  series(labels: Labels): string {
    return labelText(labels);
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels)) ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) lines.push(`${this.name} 0`);
    for (const [labels, value] of this.values) lines.push(`${this.name}${labels} ${value}`);
    return lines.join('\n');
  }
}

export function gauge(name: string, help: string, samples: { labels?: Labels; value: number }[]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`];
  for (const sample of samples) lines.push(`${name}${labelText(sample.labels ?? {})} ${sample.value}`);
  return lines.join('\n');
}

export class ControlMetrics {
  readonly requests = new Counter(
    'bulkhead_http_requests_total',
    'HTTP requests answered, by route and status',
  );
  readonly reports = new Counter(
    'bulkhead_report_records_total',
    'Deny records received, by result (stored, duplicate, rejected)',
  );
  readonly bundles = new Counter(
    'bulkhead_bundle_responses_total',
    'Bundle requests answered, by result (sent, not_modified, capped)',
  );
  readonly applies = new Counter('bulkhead_policy_applies_total', 'Policy applies, by result');
  readonly rateLimited = new Counter(
    'bulkhead_rate_limited_total',
    'Requests refused by the per-token rate limit',
  );
  readonly storeUnavailable = new Counter(
    'bulkhead_store_unavailable_total',
    'Requests answered 503/507 because the store could not serve them, by failure (unavailable, disk-full)',
  );
  readonly attestations = new Counter(
    'bulkhead_attestations_total',
    'Attestations (POST /v1/attest), by cloud and result (session, or why refused)',
  );
  readonly forbidden = new Counter(
    'bulkhead_forbidden_total',
    'Requests refused because the token may not act for that workload, by route',
  );
  /** Milliseconds from a revision's announcement to each workload receiving it, as a sum and count. */
  propagationSumMs = 0;
  propagationCount = 0;

  counters(): Counter[] {
    return [
      this.requests,
      this.reports,
      this.bundles,
      this.applies,
      this.rateLimited,
      this.storeUnavailable,
      this.attestations,
      this.forbidden,
    ];
  }
}
