export type Verdict = 'pass' | 'fail' | 'inconclusive';

/** One check's verdict in one analysis round, with the numbers it was judged on. */
export interface CheckResult {
  check: string;
  verdict: Verdict;
  critical: boolean;
  /** Why, in words: "error ratio 0.21 > max 0.01", "no data", "p=0.003: canary higher than baseline". */
  reason: string;
  canary?: number;
  baseline?: number;
  threshold?: { min?: number; max?: number };
  samples?: { canary: number; baseline: number };
  pValue?: number;
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
