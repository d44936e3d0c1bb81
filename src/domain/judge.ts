import { formatMeasure, type CheckResult } from './analysis';
import type { Check } from './policy';

/**
 * Judges one check from per-interval samples, the way Kayenta's judge does: absolute bounds on the canary's level,
 * and a Mann-Whitney U test of the canary's samples against the stable population's over the same window.
 */

/** Significance level of the baseline comparison. */
export const ALPHA = 0.05;

export interface CheckSamples {
  canary: number[];
  baseline: number[];
}

export interface MannWhitneyResult {
  /** U of the first sample: pairs where a > b, ties counted half. */
  u: number;
  /** (u - mean) / sd under H0, without continuity correction; positive when `a` tends to be larger. */
  z: number;
  pTwoSided: number;
  /** H1: `a` is stochastically greater than `b`. */
  pGreater: number;
  /** H1: `a` is stochastically less than `b`. */
  pLess: number;
}

/**
 * Mann-Whitney U by the normal approximation with tie correction and continuity correction, which is what scipy's
 * `mannwhitneyu(a, b, method='asymptotic')` computes; exact small-sample tables are not worth it here because the
 * judge asks for `minSamples` per side anyway.
 */
export function mannWhitneyU(a: readonly number[], b: readonly number[]): MannWhitneyResult {
  const na = a.length;
  const nb = b.length;
  if (na === 0 || nb === 0) throw new RangeError('mannWhitneyU needs at least one sample on each side');

  const pooled = [...a.map((value) => ({ value, fromA: true })), ...b.map((value) => ({ value, fromA: false }))];
  pooled.sort((x, y) => x.value - y.value);

  let rankSumA = 0;
  let tieTerm = 0;
  for (let i = 0; i < pooled.length;) {
    let j = i;
    while (j + 1 < pooled.length && pooled[j + 1]!.value === pooled[i]!.value) j++;
    const averageRank = (i + j + 2) / 2;
    const ties = j - i + 1;
    tieTerm += ties ** 3 - ties;
    for (let k = i; k <= j; k++) if (pooled[k]!.fromA) rankSumA += averageRank;
    i = j + 1;
  }

  const n = na + nb;
  const u = rankSumA - (na * (na + 1)) / 2;
  const mean = (na * nb) / 2;
  const sd = Math.sqrt(((na * nb) / 12) * (n + 1 - tieTerm / (n * (n - 1))));
  // Every value tied: the samples cannot be told apart, which is no evidence of a difference.
  if (!(sd > 0)) return { u, z: 0, pTwoSided: 1, pGreater: 1, pLess: 1 };

  return {
    u,
    z: (u - mean) / sd,
    pTwoSided: Math.min(1, 2 * normalSf((Math.abs(u - mean) - 0.5) / sd)),
    pGreater: normalSf((u - mean - 0.5) / sd),
    pLess: normalSf((mean - u - 0.5) / sd),
  };
}

/**
 * The verdict of one check in one round.
 *
 * The canary's level against `max`/`min` is the mean of its per-interval samples: one noisy interval alone does not
 * fail a check, while a level that stays high over the window does. The baseline comparison fails only when the test
 * is significant at ALPHA in the bad direction AND the medians differ by more than `tolerance` (relative to the
 * baseline's median), so a statistically real but harmless shift (2 ms on 200 ms) passes.
 *
 * Recorded numbers: with a baseline, `canary`/`baseline` are the two medians; without one, `canary` is the mean.
 */
export function judgeCheck(check: Check, samples: CheckSamples, at: string): CheckResult {
  const canary = samples.canary.filter((v) => !Number.isNaN(v));
  const baseline = samples.baseline.filter((v) => !Number.isNaN(v));
  const parts: Part[] = [];
  const result: CheckResult = { check: check.name, verdict: 'inconclusive', critical: check.critical, reason: '', at };

  if (check.max !== undefined || check.min !== undefined) {
    result.threshold = {
      ...(check.max !== undefined && { max: check.max }),
      ...(check.min !== undefined && { min: check.min }),
    };
    const part = judgeAbsolute(check, canary);
    parts.push(part);
    if (part.value !== undefined) result.canary = part.value;
  }

  if (check.baseline !== undefined) {
    const comparison = judgeBaseline(check.baseline, canary, baseline);
    parts.push(comparison);
    result.samples = { canary: canary.length, baseline: baseline.length };
    if (comparison.canaryMedian !== undefined) result.canary = comparison.canaryMedian;
    if (comparison.baselineMedian !== undefined) result.baseline = comparison.baselineMedian;
    if (comparison.pValue !== undefined) result.pValue = comparison.pValue;
  } else {
    result.samples = { canary: canary.length, baseline: 0 };
  }

  const failed = parts.filter((p) => p.verdict === 'fail');
  const inconclusive = parts.filter((p) => p.verdict === 'inconclusive');
  const deciding = failed.length > 0 ? failed : inconclusive.length > 0 ? inconclusive : parts;
  result.verdict = failed.length > 0 ? 'fail' : inconclusive.length > 0 ? 'inconclusive' : 'pass';
  result.reason = deciding.map((p) => p.reason).join('; ');
  return result;
}

interface Part {
  verdict: CheckResult['verdict'];
  reason: string;
}

function judgeAbsolute(check: Check, canary: number[]): Part & { value?: number } {
  if (canary.length === 0) return { verdict: 'inconclusive', reason: 'no data' };
  const value = canary.reduce((sum, v) => sum + v, 0) / canary.length;
  if (check.max !== undefined && value > check.max) {
    return { verdict: 'fail', value, reason: `mean ${formatMeasure(value)} > max ${formatMeasure(check.max)}` };
  }
  if (check.min !== undefined && value < check.min) {
    return { verdict: 'fail', value, reason: `mean ${formatMeasure(value)} < min ${formatMeasure(check.min)}` };
  }
  const bounds = [
    check.min !== undefined ? `min ${formatMeasure(check.min)}` : undefined,
    check.max !== undefined ? `max ${formatMeasure(check.max)}` : undefined,
  ].filter(Boolean);
  return { verdict: 'pass', value, reason: `mean ${formatMeasure(value)} within ${bounds.join(', ')}` };
}

type BaselineRule = NonNullable<Check['baseline']>;

function judgeBaseline(
  rule: BaselineRule,
  canary: number[],
  baseline: number[],
): Part & { canaryMedian?: number; baselineMedian?: number; pValue?: number } {
  if (canary.length < rule.minSamples || baseline.length < rule.minSamples) {
    const reason =
      canary.length === 0
        ? 'no data'
        : `not enough samples to compare with baseline (canary ${canary.length}, baseline ${baseline.length}, need ${rule.minSamples} each)`;
    return { verdict: 'inconclusive', reason };
  }

  const test = mannWhitneyU(canary, baseline);
  const pValue =
    rule.direction === 'increase' ? test.pGreater : rule.direction === 'decrease' ? test.pLess : test.pTwoSided;
  const canaryMedian = median(canary);
  const baselineMedian = median(baseline);
  const change = relativeChange(canaryMedian, baselineMedian);
  const bad =
    rule.direction === 'increase'
      ? change > rule.tolerance
      : rule.direction === 'decrease'
        ? -change > rule.tolerance
        : Math.abs(change) > rule.tolerance;
  const numbers = `canary median ${formatMeasure(canaryMedian)} vs baseline ${formatMeasure(baselineMedian)} (${fmtChange(change)}, p=${formatMeasure(pValue)})`;
  const measured = { canaryMedian, baselineMedian, pValue };

  if (pValue < ALPHA && bad) {
    const side = change > 0 ? 'higher' : 'lower';
    return { verdict: 'fail', reason: `canary ${side} than baseline: ${numbers}`, ...measured };
  }
  const why =
    pValue < ALPHA
      ? `within tolerance ${formatMeasure(rule.tolerance * 100)}%`
      : `no significant ${rule.direction === 'either' ? 'difference' : rule.direction}`;
  return { verdict: 'pass', reason: `${why}: ${numbers}`, ...measured };
}

/** Relative to the baseline; from a zero baseline any rise is an infinite change, since there is no scale to use. */
function relativeChange(canary: number, baseline: number): number {
  if (baseline === 0) return canary === 0 ? 0 : canary > 0 ? Infinity : -Infinity;
  return (canary - baseline) / Math.abs(baseline);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmtChange(change: number): string {
  if (!Number.isFinite(change)) return change > 0 ? 'up from zero' : 'down from zero';
  return `${change >= 0 ? '+' : ''}${formatMeasure(change * 100)}%`;
}

/** Upper tail of the standard normal, via erfc (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7). */
function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -1.26551223 +
    t *
      (1.00002368 +
        t *
          (0.37409196 +
            t *
              (0.09678418 +
                t *
                  (-0.18628806 +
                    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const r = t * Math.exp(-z * z + poly);
  return x >= 0 ? r : 2 - r;
}
