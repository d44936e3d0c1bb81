import type { HistogramSummary } from './concurrency';

/** Summaries of repeated measurements: the median and the spread, never a lone mean. */
export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  p5: number;
  p50: number;
  p95: number;
  p99: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], q: number): number {
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((q / 100) * sorted.length) - 1));
  return sorted[rank] ?? NaN;
}

export function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median =
    sorted.length === 0
      ? NaN
      : sorted.length % 2 === 1
        ? sorted[Math.floor(mid)]!
        : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return {
    n: sorted.length,
    median,
    min: sorted[0] ?? NaN,
    max: sorted.at(-1) ?? NaN,
    p5: percentile(sorted, 5),
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
  };
}

export const num = (value: number, digits = 0): string =>
  Number.isFinite(value)
    ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : 'n/a';

/** A latency bucket's upper bound; past the last bucket (2,000 ms: LATENCY_BUCKETS_MS) only that it was more. */
export const le = (ms: number): string => (Number.isFinite(ms) ? `≤ ${num(ms)} ms` : '> 2,000 ms');

/** "≤ 15 ms / ≤ 50 ms (n = 200)": the buckets holding p50 and p99 of a latency histogram, and its count. */
export const latency = (h: HistogramSummary | undefined): string =>
  h ? `${le(h.p50LeMs)} / ${le(h.p99LeMs)} (n = ${num(h.count)})` : '—';

/** "1,214 (1,210–1,220)": the median and the min–max of the runs. */
export function medianRange(s: Summary, digits = 0, unit = ''): string {
  if (s.n === 0) return 'n/a';
  const m = `${num(s.median, digits)}${unit}`;
  if (s.n === 1) return `${m} (1 run)`;
  return s.min === s.max ? `${m} (all ${s.n} runs)` : `${m} (${num(s.min, digits)}–${num(s.max, digits)}${unit})`;
}
