import type { AnalysisCounters, AnalysisDecision, CheckResult } from '../domain/analysis';
import type { MetricNames } from '../domain/metric-names';
import type { Check, Hook, PolicyOverride } from '../domain/policy';
import type { DeployStep } from '../providers/targets/types';
import type { Stage, Track } from '../domain/release';

/** Who a step belongs to; every activity log line carries these. */
export interface ReleaseContext {
  releaseId: string;
  service: string;
  version: string;
  stableVersion: string | undefined;
  stage: Stage;
  track: Track;
}

export interface ResolvePolicyInput {
  service: string;
  override?: PolicyOverride;
}

export interface SmokeCheckInput {
  context: ReleaseContext;
  checks: Check[];
  /** The resolved policy's `metrics`; absent: the default names. */
  metricNames?: MetricNames;
}

export interface AnalyzeInput {
  context: ReleaseContext;
  checks: Check[];
  /** The resolved policy's `metrics`; absent (as in stretches scheduled before the field existed): the default names. */
  metricNames?: MetricNames;
  intervalMs: number;
  /** Rounds to run before reporting back, unless a decision comes first. */
  maxRounds: number;
  counters: AnalysisCounters;
  failureLimit: number;
  inconclusiveLimit: number;
  /** Report back as soon as the canary has served this many requests (0: no requirement). */
  requestsRequired: number;
  /** Baseline samples end here (ISO), not at the round: the watch compares production with its own pre-release window. */
  baselineEnd?: string;
}

export interface AnalysisSegment {
  counters: AnalysisCounters;
  /** The latest result of every check. */
  checks: CheckResult[];
  decision: AnalysisDecision;
  reason: string;
  /**
   * A worker shutting down ended the stretch before its rounds were up: the rounds it ran count, but it is not a
   * report that the stage's requirements were met, so it must never be the one that completes a bake. Absent (not
   * false) otherwise, as in results recorded before the field existed.
   */
  cutShort?: true;
}

/** Heartbeat details of a running analysis: what a retry resumes from and what `tollgate status` shows live. */
export interface AnalysisHeartbeat {
  counters: AnalysisCounters;
  checks: CheckResult[];
}

/** Where a release's service deploys to; `dryRun`: nowhere, the target only records what it would do. */
export interface TargetDescription {
  kind: string;
  dryRun: boolean;
}

export interface HookInput {
  hook: Hook;
  context: ReleaseContext;
  /** The deploy step an after-deploy hook follows. */
  step?: DeployStep;
}

/** A hook's final answer; a hook that keeps asking to be tried again ends as the activity's failure. */
export interface HookResult {
  outcome: 'passed' | 'failed';
  reason: string;
  durationMs: number;
}
