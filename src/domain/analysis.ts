export type Verdict = 'pass' | 'fail' | 'inconclusive';

/** One check's verdict in one analysis round, with the numbers it was judged on. */
export interface CheckResult {
  check: string;
  verdict: Verdict;
  critical: boolean;
  /** Why, in words, without the check's name (readers prefix it): "mean 0.21 > max 0.01", "no data", "canary higher than baseline: …". */
  reason: string;
  canary?: number;
  baseline?: number;
  threshold?: { min?: number; max?: number };
  samples?: { canary: number; baseline: number };
  pValue?: number;
  /** Inconclusive only because the canary is younger than the samples the check needs; not held against it. */
  warmingUp?: boolean;
  at: string;
}

/** What the canary's analysis decided over one stretch of rounds. */
export type AnalysisDecision = 'healthy' | 'failed' | 'critical' | 'inconclusive';

export interface AnalysisCounters {
  rounds: number;
  /** Failed rounds so far in this stage (a round fails if any check failed). */
  failures: number;
  /** Consecutive inconclusive rounds; a healthy round resets it. */
  inconclusive: number;
  /** Requests the canary served, as far as the request-count check saw. */
  requests: number;
}

/** Folds one round into the counters and says whether the stage must stop. */
export function decide(
  counters: AnalysisCounters,
  results: CheckResult[],
  requests: number,
  limits: { failureLimit: number; inconclusiveLimit: number },
): { counters: AnalysisCounters; decision: AnalysisDecision; reason: string } {
  const failed = results.filter((r) => r.verdict === 'fail');
  const inconclusive = results.filter((r) => r.verdict === 'inconclusive' && !r.warmingUp);
  const warmingUp = results.some((r) => r.warmingUp);
  const next: AnalysisCounters = {
    rounds: counters.rounds + 1,
    failures: counters.failures + (failed.length > 0 ? 1 : 0),
    inconclusive:
      failed.length === 0 && inconclusive.length > 0
        ? counters.inconclusive + 1
        : failed.length > 0 || warmingUp
          ? counters.inconclusive
          : 0,
    requests: counters.requests + requests,
  };
  const describe = (rs: CheckResult[]) => rs.map((r) => `${r.check}: ${r.reason}`).join('; ');
  const critical = failed.filter((r) => r.critical);
  if (critical.length > 0)
    return { counters: next, decision: 'critical', reason: `critical check failed — ${describe(critical)}` };
  if (next.failures >= limits.failureLimit) {
    return {
      counters: next,
      decision: 'failed',
      reason: `${next.failures} failed analysis rounds (limit ${limits.failureLimit}) — ${describe(failed)}`,
    };
  }
  if (next.inconclusive >= limits.inconclusiveLimit) {
    return {
      counters: next,
      decision: 'inconclusive',
      reason: `${next.inconclusive} inconclusive analysis rounds in a row (limit ${limits.inconclusiveLimit}) — ${describe(inconclusive)}`,
    };
  }
  return { counters: next, decision: 'healthy', reason: failed.length > 0 ? describe(failed) : 'healthy' };
}

/**
 * The checks that can be judged when `percent` of the fleet runs the new version: at 100% no stable population is
 * left, so baseline comparisons are dropped (a check that only compares is dropped entirely).
 */
export function checksAt<C extends { baseline?: unknown; max?: number; min?: number }>(
  checks: C[],
  percent: number,
): C[] {
  if (percent < 100) return checks;
  return checks.flatMap((c) => {
    if (c.baseline === undefined) return [c];
    if (c.max === undefined && c.min === undefined) return [];
    const { baseline: _dropped, ...absolute } = c;
    return [absolute as C];
  });
}

/** A measured value as reasons and the UI show it: 3 significant digits (0.18372946 → "0.184", 1250.4 → "1250"). */
export function formatMeasure(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  return String(Number(value.toPrecision(3)));
}
