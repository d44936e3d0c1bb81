import { CancellationScope, condition, isCancellation, log, patched, sleep } from '@temporalio/workflow';
import {
  awaitsFreshReport,
  bakeTime,
  earliest,
  isHealthy,
  nextTimeMilestones,
  requirements,
  SEGMENT_MAX_ROUNDS,
  stretchRounds,
  syncClock,
  type BakePlan,
  type BakeState,
} from '../domain/bake';
import { formatDuration } from '../domain/duration';
import { analyses, failureMessage, type Activities } from './activities';
import type { Alerts } from './alerts';
import type { Controls } from './controls';
import type { ReleaseRecord } from './record';
import { RollOver, type RunBound } from './rollover';

/**
 * Guards the bake's history bounds (one question per inconclusive gate, failed stretches retried a stretch apart,
 * paused stretches restarted on resume, completion waiting for a report after the last requirement was met):
 * releases started before them replay as recorded.
 */
const BOUNDED_BAKE = 'bounded-bake-history';
export const boundedBake = (): boolean => patched(BOUNDED_BAKE);

/** A known error: the release cannot go on and must be rolled back. */
export class ReleaseFailure extends Error {}

/** One analysis stretch in flight: an activity running rounds until a decision or its round budget. */
interface Stretch {
  scope: CancellationScope;
  startedAt: number;
  /** Sized for a hold, when no requirement comes closer: replaced by one sized to what is due on resume. */
  whileHeld: boolean;
  result?: Awaited<ReturnType<Activities['analyze']>>;
  error?: Error;
  /** Failed rounds alerts added while it ran: its counters, which started before them, lack them. */
  alertFailures: number;
}

/** The timer for the next milestone, kept across wake-ups. */
interface Alarm {
  at: number;
  scope: CancellationScope;
  rang: boolean;
}

/**
 * Bakes until the required time has passed unheld, the canary served enough requests, every peak window was
 * observed and the latest analysis is healthy — or a person promotes. Analysis runs in stretches of rounds, one
 * heartbeating activity each, which keeps history small however long the cycle is. `state` is the bake so far (a
 * continued run passes the one it was carried); it is updated in place.
 */
export class Bake {
  private stretch: Stretch | undefined;
  private alarm: Alarm | undefined;
  /** Failed rounds from `fail-round` alerts, not yet counted. */
  private alertRounds: string[] = [];

  constructor(
    private readonly record: ReleaseRecord,
    private readonly controls: Controls,
    private readonly alerts: Alerts,
    private readonly bound: RunBound,
    private readonly plan: BakePlan,
    readonly state: BakeState,
  ) {}

  private now(): number {
    return bakeTime(this.state, Date.now());
  }

  private get checks() {
    return this.plan.analysis?.checks ?? [];
  }

  async run(): Promise<void> {
    const { record, controls, state } = this;
    const status = record.status;
    const running = this.plan.watch ? 'watching' : 'baking';
    controls.state.unpausedState = running;
    let rolledOver = false;
    const counting =
      this.checks.length > 0
        ? this.alerts.countFailedRounds((reason) => void this.alertRounds.push(reason))
        : undefined;
    try {
      for (;;) {
        if (this.stretch?.whileHeld && !controls.held() && boundedBake()) {
          this.stretch.scope.cancel();
          this.stretch = undefined;
        }
        if (state.putOffWhilePaused && !controls.held()) {
          state.nextSegmentAt = this.now();
          state.putOffWhilePaused = false;
        }
        if (this.checks.length > 0 && !this.stretch && this.now() >= state.nextSegmentAt) this.startStretch();
        syncClock(state, controls.held(), this.now());
        const waitingFor = this.progress();
        record.setState(status.pause ? 'paused' : status.gate ? 'awaiting-approval' : running);
        if (controls.state.promoteRequested && !controls.held()) {
          log.info('bake skipped by promote', record.logFields());
          break;
        }
        if (waitingFor.length === 0) break;
        await this.waitForNews();
        this.takeReport();
        this.countAlertRounds();
        this.bound.check();
      }
    } catch (err) {
      rolledOver = err instanceof RollOver;
      throw err;
    } finally {
      counting?.stop();
      this.stretch?.scope.cancel();
      this.alarm?.scope.cancel();
      status.bake = undefined;
      // A continued run bakes on: a promote asked for in this run still applies there.
      if (!rolledOver) controls.state.promoteRequested = false;
    }
  }

  /** Sleeps until something changes: a person, an analysis report, or the next milestone's timer. */
  private async waitForNews(): Promise<void> {
    const { controls, state } = this;
    const epoch = controls.epoch;
    const milestone = earliest([
      ...nextTimeMilestones(this.plan, state, this.now()),
      ...(this.checks.length > 0 && !this.stretch ? [{ at: state.nextSegmentAt, what: 'next analysis' }] : []),
    ]);
    // One timer per distinct milestone, kept across wake-ups: re-arming it on every analysis report would add a
    // start and a cancel event to history each time.
    if (this.alarm && this.alarm.at !== milestone?.at) {
      this.alarm.scope.cancel();
      this.alarm = undefined;
    }
    if (milestone !== undefined && !this.alarm) {
      const armed: Alarm = { at: milestone.at, scope: new CancellationScope(), rang: false };
      this.alarm = armed;
      const { stage, wave } = this.plan;
      const summary = `bake ${stage}${wave !== undefined ? ` wave ${wave + 1}` : ''}: ${milestone.what} ${new Date(milestone.at).toISOString()}`;
      armed.scope
        .run(() => sleep(Math.max(1, milestone.at - this.now()), { summary }))
        .then(
          () => void (armed.rang = true),
          () => undefined,
        );
    }
    const current = this.alarm;
    await condition(
      () =>
        controls.epoch !== epoch ||
        this.stretch?.result !== undefined ||
        this.stretch?.error !== undefined ||
        this.alertRounds.length > 0 ||
        current?.rang === true ||
        this.bound.full(),
    );
    if (this.alarm?.rang) {
      state.floor = Math.max(state.floor, this.alarm.at);
      this.alarm = undefined;
    }
  }

  /** What is still awaited, in words, and the bake's progress in status. */
  private progress(): string[] {
    const { record, controls, plan, state } = this;
    const status = record.status;
    const now = this.now();
    const { elapsedMs, peaks, unmet } = requirements(plan, state, status.analysis.requests, now);
    if (unmet.length === 0 && !controls.held()) state.readyAt ??= now;
    const waitingFor = [
      ...unmet,
      ...(!isHealthy(plan, state)
        ? ['healthy analysis']
        : awaitsFreshReport(plan, state, boundedBake)
          ? ['analysis since the cycle completed']
          : []),
      ...(status.pause ? ['resume (paused)'] : []),
      ...(status.gate?.name === 'inconclusive' ? ['approval (inconclusive analysis)'] : []),
    ];
    status.bake = {
      stage: plan.stage,
      ...(plan.wave !== undefined && { wave: plan.wave }),
      ...(plan.watch && { watch: true as const }),
      startedAt: state.startedAt,
      cycleMs: plan.durationMs,
      elapsedMs,
      remainingMs: Math.max(0, plan.durationMs - elapsedMs),
      requestsSeen: status.analysis.requests,
      requestsRequired: plan.requestsRequired,
      peakWindows: peaks,
      waitingFor,
    };
    return waitingFor;
  }

  private startStretch(): void {
    const { record, controls, plan, state } = this;
    const status = record.status;
    const analysis = plan.analysis!;
    const maxRounds = stretchRounds(plan, state, controls.held(), status.analysis.requests, this.now());
    // A person already has the question: until they answer, only failures need to come back.
    const inconclusiveLimit =
      status.gate?.name === 'inconclusive' ? Number.MAX_SAFE_INTEGER : analysis.inconclusiveLimit;
    const scope = new CancellationScope();
    const stretch: Stretch = { scope, startedAt: this.now(), whileHeld: controls.held(), alertFailures: 0 };
    this.stretch = stretch;
    const { rounds, failures, inconclusive, requests } = status.analysis;
    scope
      .run(() =>
        analyses.analyze.executeWithOptions(
          {
            summary: `analyse ${plan.watch ? 'watch of production' : plan.stage}: ${maxRounds} rounds every ${formatDuration(analysis.interval)}`,
            startToCloseTimeout: maxRounds * analysis.interval + 5 * 60_000,
          },
          [
            {
              context: record.context(plan.stage),
              checks: this.checks,
              intervalMs: analysis.interval,
              maxRounds,
              // The counters alone: the latest checks would ride along in every stretch's input in history.
              counters: { rounds, failures, inconclusive, requests },
              failureLimit: analysis.failureLimit,
              inconclusiveLimit,
              requestsRequired: plan.requestsRequired,
              ...(plan.baselineEnd !== undefined && { baselineEnd: plan.baselineEnd }),
              ...(status.policy?.metrics && { metricNames: status.policy.metrics }),
            },
          ],
        ),
      )
      .then(
        (result) => void (stretch.result = result),
        (error: unknown) => void (stretch.error = error instanceof Error ? error : new Error(String(error))),
      );
  }

  /** Folds a finished stretch into the bake: a failure rolls back, inconclusive asks a person. */
  private takeReport(): void {
    const { record, controls, plan, state } = this;
    const status = record.status;
    const stretch = this.stretch;
    if (stretch?.error !== undefined) {
      const { error } = stretch;
      this.stretch = undefined;
      if (isCancellation(error)) throw error;
      const asked = status.gate?.name === 'inconclusive';
      controls.askHuman('inconclusive', `analysis could not run: ${failureMessage(error)}`, boundedBake);
      // Retried a stretch apart until someone answers, not at once: every failed stretch costs history.
      if (asked && boundedBake()) {
        state.nextSegmentAt = this.now() + SEGMENT_MAX_ROUNDS * plan.analysis!.interval;
        state.putOffWhilePaused = true;
      }
    } else if (stretch?.result) {
      const { result } = stretch;
      state.nextSegmentAt =
        stretch.startedAt + (result.counters.rounds - status.analysis.rounds) * plan.analysis!.interval;
      this.stretch = undefined;
      // A stretch a worker's shutdown cut short reports the rounds it ran, not that the bake's requirements held.
      if (!result.cutShort) state.reportedAt = this.now();
      const { alertFailures } = stretch;
      status.analysis = {
        ...result.counters,
        rounds: result.counters.rounds + alertFailures,
        failures: result.counters.failures + alertFailures,
        checks: result.checks,
      };
      state.latest = result.checks;
      const failed = result.checks.filter((c) => c.verdict === 'fail');
      if (failed.length > 0) {
        void record.notify('check-failed', result.reason, {
          checks: failed.map((c) => ({ check: c.check, reason: c.reason })),
        });
      }
      if (result.decision === 'critical' || result.decision === 'failed') throw new ReleaseFailure(result.reason);
      this.checkFailureLimit(result.reason);
      if (result.decision === 'inconclusive') controls.askHuman('inconclusive', result.reason, boundedBake);
    }
  }

  /** `fail-round` alerts, each one failed round of this bake's analysis, judged against its failure limit. */
  private countAlertRounds(): void {
    const fired = this.alertRounds.splice(0);
    if (fired.length === 0) return;
    const analysis = this.record.status.analysis;
    analysis.rounds += fired.length;
    analysis.failures += fired.length;
    if (this.stretch) this.stretch.alertFailures += fired.length;
    this.record.refresh();
    this.checkFailureLimit(fired.join('; '));
  }

  /** The analysis' own rounds and the alerts' failed rounds count against one limit. */
  private checkFailureLimit(reason: string): void {
    const { failures } = this.record.status.analysis;
    const limit = this.plan.analysis!.failureLimit;
    if (failures >= limit) throw new ReleaseFailure(`${failures} failed analysis rounds (limit ${limit}) — ${reason}`);
  }
}
