import type { AlertAction, AlertTrack } from './alerts';
import type { AnalysisCounters, CheckResult } from './analysis';
import type { HookMoment, ResolvedPolicy } from './policy';
import type { Outcome, Stage } from './release';

/** An explicit phase enum, as Flagger keeps one: what the release is doing right now. */
export const RELEASE_STATES = [
  'resolving-policy',
  'deploying',
  'smoke-testing',
  'baking',
  'awaiting-approval',
  'paused',
  'waiting-for-window',
  /** After the last wave: production is analysed for the watch window before the release counts as promoted. */
  'watching',
  'rolling-back',
  'done',
] as const;
export type ReleaseState = (typeof RELEASE_STATES)[number];

export type GateName = 'canary' | 'production' | 'inconclusive';

export interface PeakWindowProgress {
  window: string;
  seen: boolean;
}

export interface BakeProgress {
  stage: Stage;
  wave?: number;
  /** The watch of production after the last wave, not a wave's bake. */
  watch?: true;
  startedAt: string;
  /** Required baking time (the traffic cycle for the canary, the wave's bake otherwise). */
  cycleMs: number;
  /** Baked so far; paused time does not count. */
  elapsedMs: number;
  remainingMs: number;
  requestsSeen: number;
  requestsRequired: number;
  peakWindows: PeakWindowProgress[];
  /** Why the bake is not complete yet, in words ("3h12m left", "12/500 requests", "peak lunch not seen"). */
  waitingFor: string[];
}

export interface AuditEntry {
  at: string;
  actor: string;
  action: string;
  accepted: boolean;
  detail?: string;
  /** The actor proved it: the fingerprint of the key that signed, or the CI identity's token issuer. */
  proof?: string;
}

export interface WaveStatus {
  index: number;
  percent: number;
  state: 'pending' | 'waiting-for-window' | 'deploying' | 'baking' | 'done' | 'rolled-back';
}

export interface RollbackStatus {
  reason: string;
  startedAt: string;
  /** Undo attempts that failed and were retried; rollback never gives up. */
  failedAttempts: number;
  lastError?: string;
  undone: string[];
  finishedAt?: string;
}

export interface WatchStatus {
  startedAt: string;
  durationMs: number;
  /** The previous version is kept warm, out of rotation, for a rollback by traffic switch. */
  keepPrevious: boolean;
  /** The window passed clean: the release is promoted. */
  passedAt?: string;
}

/** One run of a stage hook, as `status`, the audit trail and the Web UI show it. */
export interface HookRun {
  hook: string;
  at: HookMoment;
  /** The deploy step an after-deploy hook followed. */
  step?: string;
  /** The hook's own tool said no, or could not be run or reached (the reason says which). */
  outcome: 'passed' | 'failed';
  reason: string;
  startedAt: string;
  durationMs: number;
}

/** An alert of this release's service that is firing, and what it did to the release. */
export interface FiringAlert {
  name: string;
  track: AlertTrack;
  severity?: string;
  summary?: string;
  /** What the policy made of it; `rule` names the rule that decided. */
  action: AlertAction;
  rule?: string;
  startsAt: string;
  fingerprint: string;
  /** Its labels (at most 12, cut), printable. */
  labels: Record<string, string>;
}

export interface ReleaseStatus {
  releaseId: string;
  service: string;
  version: string;
  /** Who started the release: once proven (a signed start or a CI token), the identity the policy lists. */
  initiator: string;
  /** How the start was proven: the signing key's fingerprint, or the CI token's issuer and subject. */
  startProof?: string;
  reason?: string;
  stableVersion: string | undefined;
  stage: Stage;
  state: ReleaseState;
  outcome?: Outcome;
  policy?: ResolvedPolicy;
  /** Where the release deploys; `dryRun` when nothing is really deployed. Absent in releases started before it. */
  target?: { kind: string; dryRun: boolean };
  bake?: BakeProgress;
  analysis: AnalysisCounters & { checks: CheckResult[] };
  waves: WaveStatus[];
  gate?: { name: GateName; since: string; message: string };
  pause?: { by: string; reason: string; since: string };
  waitingForWindowUntil?: string;
  deployedSteps: string[];
  /** Every hook run, oldest first (bounded). Absent in releases started before hooks. */
  hooks?: HookRun[];
  /** The service's alerts firing now, as Alertmanager reported them (bounded). Absent until one fires. */
  alerts?: FiringAlert[];
  rollback?: RollbackStatus;
  /** Production watched after the last wave (policy `production.watch`). Absent until the watch starts. */
  watch?: WatchStatus;
  /** The version was stable here recently, so the canary bake was skipped (policy `production.rollbackWindow`). */
  rollbackWindow?: { releaseId: string; promotedAt: string; stableUntil?: string; releasesAgo: number };
  audit: AuditEntry[];
  /** Entries dropped from the front of `audit` to keep the status small. */
  auditDropped: number;
  updatedAt: string;
  /**
   * Steps Temporal is retrying right now (a deploy whose target keeps failing), with the last error. The workflow
   * cannot see activity retries, so clients fill this in from the execution's pending activities.
   */
  retrying?: RetryingStep[];
  /**
   * Set by clients when the execution closed without an outcome: it failed (e.g. its policy was refused), was
   * terminated or timed out. The workflow cannot report its own termination, so this comes from Temporal.
   */
  ended?: EndedExecution;
}

export interface EndedExecution {
  /** Temporal's execution status: FAILED, TERMINATED, TIMED_OUT, CANCELLED. */
  status: string;
  message: string;
}

export interface RetryingStep {
  activity: string;
  attempt: number;
  lastError: string;
}

/**
 * A release that has done nothing yet: where a run's status starts, and what a client shows of a release that closed
 * before it could answer a query.
 */
export function initialStatus(
  releaseId: string,
  request: { service: string; version: string; initiator: string; reason?: string },
  state: ReleaseState,
  at: string,
): ReleaseStatus {
  return {
    releaseId,
    service: request.service,
    version: request.version,
    initiator: request.initiator,
    ...(request.reason !== undefined && { reason: request.reason }),
    stableVersion: undefined,
    stage: 'staging',
    state,
    analysis: { rounds: 0, failures: 0, inconclusive: 0, requests: 0, checks: [] },
    waves: [],
    deployedSteps: [],
    audit: [],
    auditDropped: 0,
    updatedAt: at,
  };
}
