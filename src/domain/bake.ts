import type { CheckResult } from './analysis';
import { formatDuration } from './duration';
import type { Analysis, DailyWindow } from './policy';
import type { Stage } from './release';
import type { PeakWindowProgress } from './status';
import { observationTime, observedIn, windowLabel, type Occurrence } from './windows';

/**
 * The arithmetic of a bake: how long it has baked, what it still waits for, when to wake next, how many rounds the
 * next analysis stretch gets. Pure, on plain data, so a bake can be carried across continue-as-new and tested
 * without a Temporal server; the workflow's bake loop owns the timers and activities.
 */

/** Longest stretch of analysis rounds before the activity reports back (live rounds show through its heartbeats). */
export const SEGMENT_MAX_ROUNDS = 120;
/** The UI's progress moves at least every twentieth of the bake, and never more often than this. */
export const PROGRESS_TICK_MIN_MS = 60_000;

/** What one bake must see: the traffic cycle for the canary, a wave's bake in production. */
export interface BakePlan {
  stage: Stage;
  wave?: number;
  durationMs: number;
  analysis: Analysis | undefined;
  requestsRequired: number;
  peakWindows: DailyWindow[];
  /** The watch of production after the last wave. */
  watch?: true;
  /**
   * Baseline checks compare with the service's own samples up to this moment (the release's start) instead of a
   * stable population over the same window: after the last wave there is none left.
   */
  baselineEnd?: string;
}

/** Everything a bake has learnt so far. Plain data: it crosses continue-as-new as it is. */
export interface BakeState {
  startedAt: string;
  /** Stretches of unpaused baking that have ended; `openSince` is the one running, if any. */
  intervals: Occurrence[];
  openSince?: number;
  /**
   * Bake time never reads less than the latest milestone whose timer has fired. The timer is in history, so every
   * decision taken after it is the same on every replay — even one where the workflow clock lags, as it can when a
   * query makes a fresh worker replay a task that has not started yet.
   */
  floor: number;
  /** The latest analysis of every check. */
  latest: CheckResult[];
  /** When the latest analysis reported, and when everything but analysis was first met: completion needs both. */
  reportedAt?: number;
  readyAt?: number;
  /**
   * A stretch's rounds take real time; the next stretch starts no earlier than the last one's rounds could have
   * taken, so an analysis that answers instantly (a broken provider, a test double) never spins a hot loop.
   */
  nextSegmentAt: number;
  /** `nextSegmentAt` was put off while nobody answered; an answer brings it back to now. */
  putOffWhilePaused: boolean;
}

export interface Milestone {
  at: number;
  what: string;
}

export function startBake(startedAt: string, now: number, held: boolean): BakeState {
  return {
    startedAt,
    intervals: [],
    ...(!held && { openSince: now }),
    floor: 0,
    latest: [],
    nextSegmentAt: 0,
    putOffWhilePaused: false,
  };
}

/** The bake's clock: the workflow's, never behind a milestone already reached. */
export const bakeTime = (b: BakeState, clock: number): number => Math.max(clock, b.floor);

export const bakedMs = (b: BakeState, now: number): number =>
  b.intervals.reduce((s, iv) => s + iv.end - iv.start, 0) + (b.openSince !== undefined ? now - b.openSince : 0);

const allIntervals = (b: BakeState, now: number): Occurrence[] =>
  b.openSince !== undefined ? [...b.intervals, { start: b.openSince, end: now }] : b.intervals;

/** The bake clock only runs while nothing holds the release. */
export function syncClock(b: BakeState, held: boolean, now: number): void {
  if (held && b.openSince !== undefined) {
    b.intervals.push({ start: b.openSince, end: now });
    b.openSince = undefined;
  } else if (!held && b.openSince === undefined) {
    b.openSince = now;
  }
}

export const isHealthy = (plan: BakePlan, b: BakeState): boolean =>
  (plan.analysis?.checks.length ?? 0) === 0 || (b.latest.length > 0 && b.latest.every((r) => r.verdict === 'pass'));

export interface Requirements {
  elapsedMs: number;
  peaks: PeakWindowProgress[];
  /** Time, traffic and peak windows not yet seen, in words: everything but the analysis. */
  unmet: string[];
}

export function requirements(plan: BakePlan, b: BakeState, requests: number, now: number): Requirements {
  const elapsedMs = bakedMs(b, now);
  const seen = allIntervals(b, now);
  const peaks = plan.peakWindows.map((w) => ({ window: windowLabel(w), seen: observedIn(w, seen) }));
  return {
    elapsedMs,
    peaks,
    unmet: [
      ...(elapsedMs < plan.durationMs ? [`${formatDuration(plan.durationMs - elapsedMs)} of baking`] : []),
      ...(requests < plan.requestsRequired ? [`${requests}/${plan.requestsRequired} requests`] : []),
      ...peaks.filter((p) => !p.seen).map((p) => `peak ${p.window}`),
    ],
  };
}

/**
 * Stretches are sized to end when the last requirement is met; the one running then judges the release, not one
 * that reported hours before. `bounded` says whether that rule applies (releases recorded before it do without).
 */
export const awaitsFreshReport = (plan: BakePlan, b: BakeState, bounded: () => boolean): boolean =>
  (plan.analysis?.checks.length ?? 0) > 0 &&
  b.readyAt !== undefined &&
  (b.reportedAt === undefined || b.reportedAt < b.readyAt) &&
  bounded();

/** When each peak window not yet observed will have been, if the bake stays unpaused. */
export function nextPeaksSeen(plan: BakePlan, b: BakeState, now: number): Milestone[] {
  const since = b.openSince;
  if (since === undefined) return [];
  const seen = allIntervals(b, now);
  return plan.peakWindows
    .filter((w) => !observedIn(w, seen))
    .map((w) => ({ at: observationTime(w, since), what: `peak ${windowLabel(w)} ends` }))
    .filter((m): m is Milestone => m.at !== undefined && m.at > now);
}

/**
 * Next moments worth waking for: the cycle's end, an unseen peak's end, or the next twentieth of the cycle — the
 * last only so the UI's progress moves; it costs a timer per 5% of the bake, whatever its length.
 */
export function nextTimeMilestones(plan: BakePlan, b: BakeState, now: number): Milestone[] {
  if (b.openSince === undefined) return [];
  const baked = bakedMs(b, now);
  const tick = Math.max(PROGRESS_TICK_MIN_MS, plan.durationMs / 20);
  return [
    ...(baked < plan.durationMs ? [{ at: now + plan.durationMs - baked, what: 'cycle ends' }] : []),
    ...(baked + tick < plan.durationMs ? [{ at: now + tick - (baked % tick), what: 'progress' }] : []),
    ...nextPeaksSeen(plan, b, now),
  ];
}

export const earliest = (milestones: Milestone[]): Milestone | undefined =>
  milestones.reduce<Milestone | undefined>((a, m) => (a === undefined || m.at < a.at ? m : a), undefined);

/**
 * Rounds for the next stretch: sized to report back when the next requirement is met — the bake clock runs out,
 * an unseen peak window ends — so completion is judged on fresh results and however long the wait, it costs a
 * stretch per SEGMENT_MAX_ROUNDS. Missing requests are reported as they arrive; nothing else comes due while held.
 */
export function stretchRounds(plan: BakePlan, b: BakeState, held: boolean, requests: number, now: number): number {
  const interval = plan.analysis?.interval ?? 60_000;
  const roundsUntil = (at: number) => Math.min(SEGMENT_MAX_ROUNDS, Math.max(1, Math.ceil((at - now) / interval)));
  if (held) return SEGMENT_MAX_ROUNDS;
  const remainingMs = Math.max(0, plan.durationMs - bakedMs(b, now));
  if (remainingMs > 0) return roundsUntil(now + remainingMs);
  if (requests < plan.requestsRequired) return SEGMENT_MAX_ROUNDS;
  const peakSeen = earliest(nextPeaksSeen(plan, b, now));
  return peakSeen ? roundsUntil(peakSeen.at) : 1;
}
