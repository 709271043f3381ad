// Summaries the Lambda benchmarks print: medians and percentiles of samples in milliseconds, and the
// cost a layer adds as the difference of medians taken side by side in one run.

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Nearest-rank percentile, `p` from 0 to 100. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function line(label: string, values: number[]): string {
  return `${label}: p50 ${median(values).toFixed(2)} ms, p95 ${percentile(values, 95).toFixed(2)} ms, n=${values.length}`;
}

/** What `withLayer` adds over `without` (medians), and their ratio. */
export function added(label: string, withLayer: number[], without: number[], goal: string): string {
  const a = median(withLayer);
  const b = median(without);
  return `${label} added (p50): ${(a - b).toFixed(2)} ms, ratio ${(a / b).toFixed(2)} (goal: ${goal})`;
}
