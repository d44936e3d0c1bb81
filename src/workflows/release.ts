import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  type SignalDefinition,
  workflowInfo,
} from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import type { createActivities } from '../activities';
import type { ReleaseEvent } from '../providers/notify/types';
import type { DeployStep } from '../providers/targets/types';
import { checksAt, type CheckResult } from '../domain/analysis';
import { rejectionFor, type ControlView } from '../domain/controls';
import { formatDuration } from '../domain/duration';
import { NOTIFY_ACTIVITY_TIMEOUT_MS } from '../domain/notify-budget';
import {
  CONTROL_SCHEMAS,
  CONTROL_SIGNALS,
  CONTROL_UPDATES,
  statusQuery,
  type ControlName,
  type ControlInput,
} from '../domain/messages';
import type { Analysis, ResolvedPolicy } from '../domain/policy';
import {
  describeZodError,
  releaseRequestSchema,
  releaseWorkflowId,
  type ReleaseResult,
  type Stage,
  type Track,
} from '../domain/release';
import { TollgateService, TollgateStage, TollgateState, TollgateVersion } from '../domain/search-attributes';
import { printable } from '../domain/text';
import type { AuditEntry, GateName, ReleaseState, ReleaseStatus } from '../domain/status';
import {
  activeFreeze,
  nextAllowedTime,
  observationTime,
  observedIn,
  windowLabel,
  type Occurrence,
} from '../domain/windows';
import { renderDetails } from './details';

type Activities = ReturnType<typeof createActivities>;

/**
 * Errors that say retrying cannot help: a step the fleet cannot carry out, a service with no target, a check whose
 * query cannot be built. The first two fail non-retryable by themselves; the list also covers a worker still
 * running code from before they did.
 */
const nonRetryableErrorTypes = ['FleetStepError', 'ConfigError', 'CheckQueryError'];

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes },
});
/**
 * Deploys wait for a cancelled attempt to finish: an undo must never race the step it reverts. Deploys and undos
 * heartbeat every 5 s while the target works, so a worker that died mid-step is noticed within 20 s.
 */
const deploys = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '20s',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: {
    initialInterval: '2s',
    backoffCoefficient: 2,
    maximumInterval: '1m',
    maximumAttempts: 5,
    nonRetryableErrorTypes,
  },
});
/** One attempt per call: the workflow retries undos itself so every failed attempt shows in `status`. */
const undos = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '20s',
  retry: { maximumAttempts: 1 },
});
/** One attempt: the notifier retries on its own, and a lost notification must never hold a release up. */
const notifications = proxyActivities<Activities>({
  startToCloseTimeout: NOTIFY_ACTIVITY_TIMEOUT_MS,
  retry: { maximumAttempts: 1 },
});
/**
 * A crashed stretch is noticed within two minutes; a shorter timeout would multiply heartbeats, which Temporal Cloud
 * bills as actions (the SDK sends one per 80% of the timeout: ~6,300 over a 7-day bake instead of ~25,000 at 30 s).
 */
const analyses = proxyActivities<Activities>({
  startToCloseTimeout: '1m', // replaced per call with the segment's length
  heartbeatTimeout: '2m',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes },
});

/** Longest stretch of analysis rounds before the activity reports back (live rounds show through its heartbeats). */
export const SEGMENT_MAX_ROUNDS = 120;
const AUDIT_LIMIT = 200;
const PROGRESS_TICK_MIN_MS = 60_000;
const UNDO_RETRY_MAX_MS = 60_000;
/**
 * Guards the bake's history bounds (one question per inconclusive gate, failed stretches retried a stretch apart,
 * paused stretches restarted on resume, completion waiting for a report after the last requirement was met):
 * releases started before them replay as recorded.
 */
const BOUNDED_BAKE = 'bounded-bake-history';
/**
 * Guards what hostile messages may no longer do, for releases started after it: a release runs only as
 * `release-<service>` (one per service, whatever ID the caller picks); an inconclusive-analysis gate is a gate,
 * not a pause (`resume` cannot clear it, approving it never lifts a person's pause); the release records the kind
 * of target it deploys to.
 */
const HOSTILE_INPUT = 'hostile-input-hardening';

const waveAnalysis = (analysis: Analysis, percent: number): Analysis => ({
  ...analysis,
  checks: checksAt(analysis.checks, percent),
});

interface Milestone {
  at: number;
  what: string;
}

interface Alarm {
  at: number;
  scope: CancellationScope;
  rang: boolean;
}

/** A known error: the release cannot go on and must be rolled back. */
class ReleaseFailure extends Error {}

/**
 * Who a refused message says it is from, for the audit trail: only a string is read (a `toString` in a payload
 * must never run, and an object cannot be converted), shown printable and cut.
 */
function claimedActor(payload: unknown): string {
  const by: unknown = typeof payload === 'object' && payload !== null ? (payload as { by?: unknown }).by : undefined;
  return typeof by === 'string' && by.trim() !== '' ? printable(by.trim(), 128) : 'unreadable';
}

/** The innermost message: an ActivityFailure says only "Activity task failed"; its cause says why. */
function failureMessage(err: unknown): string {
  let current = err;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  return current instanceof Error ? current.message : String(current);
}

export async function releaseWorkflow(input: unknown): Promise<ReleaseResult> {
  const parsed = releaseRequestSchema.safeParse(input);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(
      `invalid release request: ${describeZodError(parsed.error)}`,
      'InvalidRequest',
    );
  }
  const request = parsed.data;
  const info = workflowInfo();
  const hardened = patched(HOSTILE_INPUT);
  // Temporal runs one execution per workflow ID: with one ID per service, a second release of a service is
  // refused by Temporal itself, on every worker. Refused before anything is deployed.
  if (hardened && info.workflowId !== releaseWorkflowId(request.service)) {
    throw ApplicationFailure.nonRetryable(
      `a release of ${request.service} runs as workflow ID "${releaseWorkflowId(request.service)}", ` +
        `not "${printable(info.workflowId, 200)}": one release per service at a time`,
      'InvalidWorkflowId',
    );
  }
  const releaseId = `${info.workflowId}/${info.firstExecutionRunId}`;
  const startedAt = new Date().toISOString();

  const status: ReleaseStatus = {
    releaseId,
    service: request.service,
    version: request.version,
    initiator: request.initiator,
    ...(request.reason !== undefined && { reason: request.reason }),
    stableVersion: undefined,
    stage: 'staging',
    state: 'resolving-policy',
    analysis: { rounds: 0, failures: 0, inconclusive: 0, requests: 0, checks: [] },
    waves: [],
    deployedSteps: [],
    audit: [],
    auditDropped: 0,
    updatedAt: startedAt,
  };
  let policy: ResolvedPolicy | undefined;
  const deployed: DeployStep[] = [];
  let abortRequest: { by: string; reason: string } | undefined;
  let promoteRequested = false;
  let approvedGate: GateName | undefined;
  /** Bumped on every human message, so waits can wake on "something changed". */
  let controlEpoch = 0;

  // ---- status, search attributes, UI details, logs ----
  const trackOf = (stage: Stage): Track => (stage === 'done' ? 'production' : stage);
  const logFields = () => ({
    service: request.service,
    version: request.version,
    stage: status.stage,
    track: trackOf(status.stage),
    releaseId,
  });
  const notify = (event: ReleaseEvent, message: string, details?: Record<string, unknown>): Promise<void> =>
    notifications.notify
      .executeWithOptions({ summary: `notify ${event}` }, [
        {
          event,
          message,
          service: request.service,
          version: request.version,
          stage: status.stage,
          track: trackOf(status.stage),
          releaseId,
          at: new Date().toISOString(),
          ...(status.stableVersion !== undefined && { stableVersion: status.stableVersion }),
          ...(status.target?.dryRun && { dryRun: true as const }),
          ...(details && { details }),
        },
      ])
      // Never holds the release up; but a notification nobody got is worth a line in the worker's log.
      .catch((err: unknown) =>
        log.warn(`release notification ${event} not delivered: ${failureMessage(err)}`, logFields()),
      );
  let indexed = { stage: '', state: '' };
  const refresh = () => {
    status.updatedAt = new Date().toISOString();
    if (indexed.stage !== status.stage || indexed.state !== status.state) {
      indexed = { stage: status.stage, state: status.state };
      upsertSearchAttributes([
        { key: TollgateStage, value: status.stage },
        { key: TollgateState, value: status.state },
      ]);
    }
    renderDetails(status);
  };
  const setState = (state: ReleaseState) => {
    status.state = state;
    refresh();
  };
  /** Bounded; refusals go first, so a flood of refused messages cannot push decisions out of the trail. */
  const audit = (entry: Omit<AuditEntry, 'at'>) => {
    status.audit.push({ at: new Date().toISOString(), ...entry });
    if (status.audit.length > AUDIT_LIMIT) {
      const oldestRefusal = status.audit.findIndex((e) => !e.accepted);
      status.audit.splice(Math.max(0, oldestRefusal), 1);
      status.auditDropped++;
    }
  };

  // ---- human control: one decision function for updates (validator) and signals (audit) ----
  const controlView = (): ControlView => ({
    state: status.state,
    gate: status.gate?.name,
    paused: status.pause !== undefined,
    baking: status.bake !== undefined,
    initiator: request.initiator,
    fourEyes: policy?.approvals.fourEyes ?? true,
    approvers: policy?.approvals.approvers,
  });
  /** What a paused release goes back to when it resumes. */
  let unpausedState: ReleaseState = 'baking';
  let forward: CancellationScope | undefined;
  const apply = <N extends ControlName>(name: N, input: ControlInput<N>): void => {
    controlEpoch++;
    const detail = 'reason' in input ? input.reason : 'comment' in input ? input.comment : undefined;
    audit({ actor: input.by, action: name, accepted: true, ...(detail !== undefined && { detail }) });
    log.info(`${name} by ${input.by}`, { ...logFields(), actor: input.by, detail });
    switch (name) {
      case 'approve':
        // Approving inconclusive analysis means "carry on baking with the evidence so far"; health is still required.
        if (status.gate?.name === 'inconclusive') clearInconclusiveGate();
        else {
          approvedGate = status.gate?.name;
          status.gate = undefined;
        }
        break;
      case 'abort':
        abortRequest = { by: input.by, reason: (input as ControlInput<'abort'>).reason };
        forward?.cancel();
        status.state = 'rolling-back';
        break;
      case 'pause':
        status.pause = {
          by: input.by,
          reason: (input as ControlInput<'pause'>).reason,
          since: new Date().toISOString(),
        };
        break;
      case 'resume':
        // Before the hardening, the inconclusive gate came with a pause of its own and resume lifted both.
        if (!hardened && status.gate?.name === 'inconclusive') clearInconclusiveGate();
        status.pause = undefined;
        break;
      case 'promote':
        promoteRequested = true;
        break;
    }
    refresh();
  };
  const clearInconclusiveGate = () => {
    if (!hardened) status.pause = undefined;
    status.gate = undefined;
    status.analysis.inconclusive = 0;
  };
  /** The bake stands still while a person paused it or analysis waits for a human's answer. */
  const held = () => status.pause !== undefined || status.gate?.name === 'inconclusive';
  /**
   * The state a control's answer reports. The main loop moves the release on only when it next runs, after the
   * answer is sent: an approved or resumed release must not read as still waiting.
   */
  const answerState = (): ReleaseState => {
    if (status.pause || (status.state !== 'paused' && status.state !== 'awaiting-approval')) return status.state;
    if (status.gate) return 'awaiting-approval';
    return status.state === 'paused' ? unpausedState : status.bake ? 'baking' : status.state;
  };
  const register = <N extends ControlName>(
    name: N,
    signal: SignalDefinition<[ControlInput<N>]>,
    update: UpdateDefinition<ReleaseStatus, [ControlInput<N>]>,
  ) => {
    // A signal cannot answer its sender: a refusal is audited, from what can be read of the payload safely.
    setHandler(signal, (payload: unknown) => {
      const rejection = rejectionFor(name, payload, controlView());
      if (rejection) {
        audit({ actor: claimedActor(payload), action: name, accepted: false, detail: rejection });
        log.warn(`${name} signal rejected: ${rejection}`, logFields());
        refresh();
        return;
      }
      apply(name, CONTROL_SCHEMAS[name].parse(payload) as ControlInput<N>);
    });
    setHandler(
      update,
      (payload: unknown) => {
        apply(name, CONTROL_SCHEMAS[name].parse(payload) as ControlInput<N>);
        return { ...status, state: answerState() };
      },
      {
        validator: (payload: unknown) => {
          const rejection = rejectionFor(name, payload, controlView());
          if (rejection) throw new Error(rejection);
        },
      },
    );
  };
  for (const name of Object.keys(CONTROL_SCHEMAS) as ControlName[]) {
    register(name, CONTROL_SIGNALS[name] as never, CONTROL_UPDATES[name] as never);
  }
  setHandler(statusQuery, () => status);

  upsertSearchAttributes([
    { key: TollgateService, value: request.service },
    { key: TollgateVersion, value: request.version },
  ]);
  audit({
    actor: request.initiator,
    action: 'start',
    accepted: true,
    ...(request.reason && { detail: request.reason }),
  });
  refresh();

  // ---- steps ----
  const context = (stage: Stage) => ({
    releaseId,
    service: request.service,
    version: request.version,
    stableVersion: status.stableVersion,
    stage,
    track: trackOf(stage),
  });

  /** Waits while paused: progression stops, but analysis and automatic rollback carry on. */
  const whileUnpaused = async () => {
    if (status.pause) {
      const before = status.state;
      unpausedState = before;
      setState('paused');
      await condition(() => status.pause === undefined);
      setState(before);
    }
  };

  const deployStep = async (
    name: string,
    step: Omit<DeployStep, 'key' | 'releaseId' | 'service' | 'version' | 'stableVersion'>,
  ) => {
    await whileUnpaused();
    setState('deploying');
    const full: DeployStep = {
      key: `${releaseId}/${name}`,
      releaseId,
      service: request.service,
      version: request.version,
      stableVersion: status.stableVersion,
      ...step,
    };
    // Registered for undo before the deploy starts (undoing a step that never applied is a no-op, missing one is
    // not); shown as deployed only once it has been.
    deployed.push(full);
    const receipt = await deploys.deploy.executeWithOptions({ summary: `deploy ${name}: ${request.version}` }, [full]);
    status.deployedSteps.push(full.key);
    log.info(`deployed ${name}`, { ...logFields(), changes: receipt.changes, applied: receipt.applied });
  };

  const gate = async (name: GateName, message: string) => {
    await whileUnpaused();
    approvedGate = undefined;
    status.gate = { name, since: new Date().toISOString(), message };
    setState('awaiting-approval');
    log.info(`awaiting approval: ${message}`, logFields());
    void notify('awaiting-approval', message);
    await condition(() => approvedGate === name);
    status.gate = undefined;
    refresh();
  };

  /**
   * Bakes until the required time has passed unpaused, the canary served enough requests, every peak window was
   * observed and the latest analysis is healthy — or a human promotes. Analysis runs in stretches of rounds as one
   * heartbeating activity each, which keeps history small however long the cycle is.
   */
  const bake = async (opts: {
    stage: Stage;
    wave?: number;
    durationMs: number;
    analysis: Analysis | undefined;
    requestsRequired: number;
    peakWindows: ResolvedPolicy['trafficCycle']['peakWindows'];
  }) => {
    promoteRequested = false;
    /**
     * Bake time never reads less than the latest milestone whose timer has fired. The timer is in history, so
     * every decision taken after it is the same on every replay — even one where the workflow clock lags, as it
     * can when a query makes a fresh worker replay a task that has not started yet.
     */
    let clockFloor = 0;
    const now = () => Math.max(Date.now(), clockFloor);
    const checks = opts.analysis?.checks ?? [];
    const intervals: Occurrence[] = [];
    let openSince: number | undefined = held() ? undefined : now();
    const bakeStartedAt = new Date().toISOString();
    status.analysis = { rounds: 0, failures: 0, inconclusive: 0, requests: 0, checks: [] };
    let latest: CheckResult[] = [];
    /** When the latest analysis reported, and when everything but analysis was first met: completion needs both. */
    let reportedAt: number | undefined;
    let readyAt: number | undefined;
    const baked = () =>
      intervals.reduce((s, iv) => s + iv.end - iv.start, 0) + (openSince !== undefined ? now() - openSince : 0);
    const allIntervals = () => (openSince !== undefined ? [...intervals, { start: openSince, end: now() }] : intervals);
    const healthy = () => checks.length === 0 || (latest.length > 0 && latest.every((r) => r.verdict === 'pass'));

    const progress = () => {
      const elapsedMs = baked();
      const peaks = opts.peakWindows.map((w) => ({ window: windowLabel(w), seen: observedIn(w, allIntervals()) }));
      const timeAndTraffic = [
        ...(elapsedMs < opts.durationMs ? [`${formatDuration(opts.durationMs - elapsedMs)} of baking`] : []),
        ...(status.analysis.requests < opts.requestsRequired
          ? [`${status.analysis.requests}/${opts.requestsRequired} requests`]
          : []),
        ...peaks.filter((p) => !p.seen).map((p) => `peak ${p.window}`),
      ];
      if (timeAndTraffic.length === 0 && !held()) readyAt ??= now();
      // Stretches are sized to end when the last requirement is met; the one running then judges the release,
      // not one that reported hours before.
      const stale =
        checks.length > 0 &&
        readyAt !== undefined &&
        (reportedAt === undefined || reportedAt < readyAt) &&
        patched(BOUNDED_BAKE);
      const waitingFor = [
        ...timeAndTraffic,
        ...(!healthy() ? ['healthy analysis'] : stale ? ['analysis since the cycle completed'] : []),
        ...(status.pause ? ['resume (paused)'] : []),
        ...(status.gate?.name === 'inconclusive' ? ['approval (inconclusive analysis)'] : []),
      ];
      status.bake = {
        stage: opts.stage,
        ...(opts.wave !== undefined && { wave: opts.wave }),
        startedAt: bakeStartedAt,
        cycleMs: opts.durationMs,
        elapsedMs,
        remainingMs: Math.max(0, opts.durationMs - elapsedMs),
        requestsSeen: status.analysis.requests,
        requestsRequired: opts.requestsRequired,
        peakWindows: peaks,
        waitingFor,
      };
      return waitingFor;
    };
    /**
     * Next moment worth waking for: the cycle's end, an unseen peak's end, or the next twentieth of the cycle —
     * the last only so the UI's progress moves; it costs a timer per 5% of the bake, whatever its length.
     */
    const nextTimeMilestones = (): Milestone[] => {
      if (openSince === undefined) return [];
      const at = now();
      const tick = Math.max(PROGRESS_TICK_MIN_MS, opts.durationMs / 20);
      return [
        ...(baked() < opts.durationMs ? [{ at: at + opts.durationMs - baked(), what: 'cycle ends' }] : []),
        ...(baked() + tick < opts.durationMs ? [{ at: at + tick - (baked() % tick), what: 'progress' }] : []),
        ...nextPeaksSeen(),
      ];
    };
    /** When each peak window not yet observed will have been, if the bake stays unpaused. */
    const nextPeaksSeen = (): Milestone[] => {
      if (openSince === undefined) return [];
      const at = now();
      return opts.peakWindows
        .filter((w) => !observedIn(w, allIntervals()))
        .map((w) => ({ at: observationTime(w, openSince!), what: `peak ${windowLabel(w)} ends` }))
        .filter((m): m is Milestone => m.at !== undefined && m.at > at);
    };
    const earliest = (milestones: Milestone[]): Milestone | undefined =>
      milestones.reduce<Milestone | undefined>((a, b) => (a === undefined || b.at < a.at ? b : a), undefined);

    let segment:
      | {
          scope: CancellationScope;
          startedAt: number;
          /** Sized for a pause, when no requirement comes closer: replaced by one sized to what is due on resume. */
          whilePaused: boolean;
          result?: Awaited<ReturnType<Activities['analyze']>>;
          error?: Error;
        }
      | undefined;
    /**
     * A stretch's rounds take real time; the next stretch starts no earlier than the last one's rounds could have
     * taken, so an analysis that answers instantly (a broken provider, a test double) never spins a hot loop.
     */
    let nextSegmentAt = 0;
    /** `nextSegmentAt` was put off while nobody answered; an answer brings it back to now. */
    let putOffWhilePaused = false;
    let alarm: Alarm | undefined;
    const startSegment = () => {
      // Sized to report back when the next requirement is met — the bake clock runs out, an unseen peak window
      // ends — so completion is judged on fresh results and however long the wait, it costs a stretch per
      // SEGMENT_MAX_ROUNDS. Missing requests are reported as they arrive; nothing else comes due while paused.
      const interval = opts.analysis!.interval;
      const roundsUntil = (at: number) => Math.min(SEGMENT_MAX_ROUNDS, Math.max(1, Math.ceil((at - now()) / interval)));
      const remainingMs = Math.max(0, opts.durationMs - baked());
      const peakSeen = earliest(nextPeaksSeen());
      const maxRounds = held()
        ? SEGMENT_MAX_ROUNDS
        : remainingMs > 0
          ? roundsUntil(now() + remainingMs)
          : status.analysis.requests < opts.requestsRequired
            ? SEGMENT_MAX_ROUNDS
            : peakSeen
              ? roundsUntil(peakSeen.at)
              : 1;
      // A human already has the question: until they answer, only failures need to come back.
      const inconclusiveLimit =
        status.gate?.name === 'inconclusive' ? Number.MAX_SAFE_INTEGER : opts.analysis!.inconclusiveLimit;
      const scope = new CancellationScope();
      const current: NonNullable<typeof segment> = { scope, startedAt: now(), whilePaused: held() };
      segment = current;
      scope
        .run(() =>
          analyses.analyze.executeWithOptions(
            {
              summary: `analyse ${opts.stage}: ${maxRounds} rounds every ${formatDuration(interval)}`,
              startToCloseTimeout: maxRounds * interval + 5 * 60_000,
            },
            [
              {
                context: context(opts.stage),
                checks,
                intervalMs: interval,
                maxRounds,
                // The counters alone: the latest checks would ride along in every stretch's input in history.
                counters: {
                  rounds: status.analysis.rounds,
                  failures: status.analysis.failures,
                  inconclusive: status.analysis.inconclusive,
                  requests: status.analysis.requests,
                },
                failureLimit: opts.analysis!.failureLimit,
                inconclusiveLimit,
                requestsRequired: opts.requestsRequired,
              },
            ],
          ),
        )
        .then(
          (result) => void (current.result = result),
          (error: unknown) => void (current.error = error instanceof Error ? error : new Error(String(error))),
        );
    };

    /** The bake clock only runs while unpaused. */
    const syncClock = () => {
      if (held() && openSince !== undefined) {
        intervals.push({ start: openSince, end: now() });
        openSince = undefined;
      } else if (!held() && openSince === undefined) {
        openSince = now();
      }
    };
    unpausedState = 'baking';
    try {
      for (;;) {
        if (segment?.whilePaused && !held() && patched(BOUNDED_BAKE)) {
          segment.scope.cancel();
          segment = undefined;
        }
        if (putOffWhilePaused && !held()) {
          nextSegmentAt = now();
          putOffWhilePaused = false;
        }
        if (checks.length > 0 && !segment && now() >= nextSegmentAt) startSegment();
        syncClock();
        const waitingFor = progress();
        setState(status.pause ? 'paused' : status.gate ? 'awaiting-approval' : 'baking');
        if (promoteRequested && !held()) {
          log.info('bake skipped by promote', logFields());
          break;
        }
        if (waitingFor.length === 0) break;

        const epoch = controlEpoch;
        const milestone = earliest([
          ...nextTimeMilestones(),
          ...(checks.length > 0 && !segment ? [{ at: nextSegmentAt, what: 'next analysis' }] : []),
        ]);
        // One timer per distinct milestone, kept across wake-ups: re-arming it on every analysis report would
        // add a start and a cancel event to history each time.
        if (alarm && alarm.at !== milestone?.at) {
          alarm.scope.cancel();
          alarm = undefined;
        }
        if (milestone !== undefined && !alarm) {
          const armed: Alarm = { at: milestone.at, scope: new CancellationScope(), rang: false };
          alarm = armed;
          const summary = `bake ${opts.stage}${opts.wave !== undefined ? ` wave ${opts.wave + 1}` : ''}: ${milestone.what} ${new Date(milestone.at).toISOString()}`;
          armed.scope
            .run(() => sleep(Math.max(1, milestone.at - now()), { summary }))
            .then(
              () => void (armed.rang = true),
              () => undefined,
            );
        }
        const current = alarm;
        await condition(
          () =>
            controlEpoch !== epoch ||
            segment?.result !== undefined ||
            segment?.error !== undefined ||
            current?.rang === true,
        );
        if (alarm?.rang) {
          clockFloor = Math.max(clockFloor, alarm.at);
          alarm = undefined;
        }

        if (segment?.error !== undefined) {
          const { error } = segment;
          segment = undefined;
          if (isCancellation(error)) throw error;
          const asked = status.gate?.name === 'inconclusive';
          pauseForHuman('inconclusive', `analysis could not run: ${failureMessage(error)}`);
          // Retried a stretch apart until someone answers, not at once: every failed stretch costs history.
          if (asked && patched(BOUNDED_BAKE)) {
            nextSegmentAt = now() + SEGMENT_MAX_ROUNDS * opts.analysis!.interval;
            putOffWhilePaused = true;
          }
        } else if (segment?.result) {
          const { result } = segment;
          nextSegmentAt =
            segment.startedAt + (result.counters.rounds - status.analysis.rounds) * opts.analysis!.interval;
          segment = undefined;
          // A stretch a worker's shutdown cut short reports the rounds it ran, not that the bake's requirements held.
          if (!result.cutShort) reportedAt = now();
          status.analysis = { ...result.counters, checks: result.checks };
          latest = result.checks;
          const failed = result.checks.filter((c) => c.verdict === 'fail');
          if (failed.length > 0) {
            void notify('check-failed', result.reason, {
              checks: failed.map((c) => ({ check: c.check, reason: c.reason })),
            });
          }
          if (result.decision === 'critical' || result.decision === 'failed') throw new ReleaseFailure(result.reason);
          if (result.decision === 'inconclusive') pauseForHuman('inconclusive', result.reason);
        }
      }
    } finally {
      segment?.scope.cancel();
      alarm?.scope.cancel();
      status.bake = undefined;
      promoteRequested = false;
    }
  };

  const pauseForHuman = (gateName: GateName, reason: string) => {
    // Asked once: repeating the question every stretch nobody answers would push decisions out of the audit trail.
    if (status.gate?.name === gateName && patched(BOUNDED_BAKE)) return;
    if (!hardened && !status.pause) status.pause = { by: 'tollgate', reason, since: new Date().toISOString() };
    status.gate = {
      name: gateName,
      since: new Date().toISOString(),
      message: `${reason} — approve to continue baking, or abort`,
    };
    audit({ actor: 'tollgate', action: hardened ? 'gate' : 'pause', accepted: true, detail: reason });
    log.warn(`waiting for a human: ${reason}`, logFields());
    void notify('awaiting-approval', `paused: ${reason} — approve to continue baking, or abort`);
  };

  const waitForWindow = async (wave: number) => {
    const p = policy!;
    const now = Date.now();
    const allowedAt = nextAllowedTime(now, p.windows.allowed, p.windows.freezes);
    if (allowedAt === now) return;
    if (allowedAt === undefined) throw new ReleaseFailure('no deployment window opens in the next 15 days');
    const freeze = activeFreeze(now, p.windows.freezes);
    status.waitingForWindowUntil = new Date(allowedAt).toISOString();
    status.waves[wave]!.state = 'waiting-for-window';
    setState('waiting-for-window');
    log.info(`waiting for a deployment window until ${status.waitingForWindowUntil}`, {
      ...logFields(),
      freeze: freeze?.reason,
    });
    await sleep(allowedAt - now, { summary: `deployment window opens ${status.waitingForWindowUntil}` });
    status.waitingForWindowUntil = undefined;
  };

  const undoAll = async () => {
    const rollback = status.rollback!;
    for (const step of [...deployed].reverse()) {
      for (let attempt = 1; ; attempt++) {
        try {
          await undos.undo.executeWithOptions(
            { summary: `undo ${step.key.split('/').pop()} → ${step.stableVersion ?? 'nothing'}` },
            [step],
          );
          rollback.undone.push(step.key);
          refresh();
          break;
        } catch (err) {
          rollback.failedAttempts++;
          rollback.lastError = `${step.key}: ${failureMessage(err)}`;
          log.error(`rollback step failed (attempt ${attempt}); retrying`, {
            ...logFields(),
            error: rollback.lastError,
          });
          refresh();
          await sleep(Math.min(UNDO_RETRY_MAX_MS, 1000 * 2 ** Math.min(attempt, 6)), {
            summary: `retry undo of ${step.key}`,
          });
        }
      }
    }
    for (const wave of status.waves) if (wave.state !== 'pending') wave.state = 'rolled-back';
  };

  const finish = (outcome: ReleaseResult['outcome'], reason: string): Promise<ReleaseResult> => {
    status.outcome = outcome;
    if (outcome === 'promoted') status.stage = 'done';
    setState('done');
    audit({ actor: 'tollgate', action: outcome, accepted: true, detail: reason });
    refresh();
    log.info(`release ${outcome}: ${reason}`, logFields());
    return notify(outcome === 'rolled_back' ? 'rolled-back' : outcome, reason).then(() => ({
      outcome,
      service: request.service,
      version: request.version,
      stableVersion: outcome === 'promoted' ? request.version : status.stableVersion,
      stage: status.stage,
      ...(status.target?.dryRun && { dryRun: true as const }),
      reason,
      startedAt,
      endedAt: new Date().toISOString(),
    }));
  };

  // ---- the pipeline ----
  try {
    policy = await quick.resolvePolicy.executeWithOptions({ summary: `resolve policy for ${request.service}` }, [
      { service: request.service, ...(request.policy && { override: request.policy }) },
    ]);
  } catch (err) {
    if (isCancellation(err)) return finish('aborted', 'workflow cancelled before anything was deployed');
    // Nothing has been deployed; a policy that can never be valid fails the release outright.
    throw ApplicationFailure.nonRetryable(failureMessage(err), 'InvalidPolicy');
  }
  status.policy = policy;
  if (hardened) {
    try {
      status.target = await quick.describeTarget.executeWithOptions({ summary: `target of ${request.service}` }, [
        request.service,
      ]);
    } catch (err) {
      if (isCancellation(err)) return finish('aborted', 'workflow cancelled before anything was deployed');
      throw ApplicationFailure.nonRetryable(failureMessage(err), 'NoTarget');
    }
  }
  void notify('release-started', `release of ${request.version} started by ${request.initiator}`);

  const pipeline = async () => {
    policy = policy!;
    status.stableVersion = await quick.stableVersion.executeWithOptions({ summary: 'look up stable version' }, [
      request.service,
    ]);
    status.waves = policy.production.waves.map((w, index) => ({ index, percent: w.percent, state: 'pending' }));
    refresh();

    // staging
    status.stage = 'staging';
    await deployStep('staging', { track: 'staging' });
    if (policy.staging.smokeChecks.length > 0) {
      setState('smoke-testing');
      const results = await quick.smokeCheck.executeWithOptions(
        { summary: `smoke checks: ${policy.staging.smokeChecks.length}` },
        [{ context: context('staging'), checks: policy.staging.smokeChecks }],
      );
      status.analysis.checks = results;
      const bad = results.filter((r) => r.verdict !== 'pass');
      if (bad.length > 0)
        throw new ReleaseFailure(`smoke checks failed: ${bad.map((r) => `${r.check} (${r.reason})`).join('; ')}`);
    }
    if (policy.staging.bake > 0) {
      await bake({
        stage: 'staging',
        durationMs: policy.staging.bake,
        analysis: undefined,
        requestsRequired: 0,
        peakWindows: [],
      });
    }

    // canary
    status.stage = 'canary';
    refresh();
    if (policy.canary.approval) await gate('canary', `approve ${request.version} for canary`);
    await deployStep('canary', { track: 'canary', canaryInstances: policy.canary.poolSize });
    void notify(
      'canary-started',
      `canary of ${request.version} on ${policy.canary.poolSize} instance(s); bakes for a traffic cycle`,
    );
    await bake({
      stage: 'canary',
      durationMs: policy.trafficCycle.duration,
      analysis: policy.canary.analysis,
      requestsRequired: policy.trafficCycle.minCanaryRequests,
      peakWindows: policy.trafficCycle.peakWindows,
    });

    // production
    status.stage = 'production';
    refresh();
    if (policy.production.approval) await gate('production', `approve ${request.version} for production`);
    for (const [index, wave] of policy.production.waves.entries()) {
      await waitForWindow(index);
      status.waves[index]!.state = 'deploying';
      await deployStep(`wave-${index + 1}`, { track: 'production', percent: wave.percent });
      if (wave.bake > 0) {
        status.waves[index]!.state = 'baking';
        await bake({
          stage: 'production',
          wave: index,
          durationMs: wave.bake,
          analysis: waveAnalysis(wave.analysis ?? policy.canary.analysis, wave.percent),
          requestsRequired: 0,
          peakWindows: [],
        });
      }
      status.waves[index]!.state = 'done';
    }
    await quick.markStable.executeWithOptions({ summary: `mark ${request.version} stable` }, [
      { service: request.service, version: request.version, releaseId },
    ]);
  };

  try {
    forward = new CancellationScope();
    if (abortRequest) forward.cancel(); // aborted while the policy was being resolved
    await forward.run(pipeline);
    return finish('promoted', `${request.version} serves all production traffic`);
  } catch (err) {
    const cancelled = isCancellation(err);
    // Unknown errors (a deploy that kept failing, a bug) roll back too: production is never left half-changed.
    if (!(err instanceof ReleaseFailure) && !cancelled)
      log.error(`release failed: ${failureMessage(err)}`, logFields());
    const reason = abortRequest
      ? `aborted by ${abortRequest.by}: ${abortRequest.reason}`
      : cancelled
        ? 'workflow cancelled'
        : failureMessage(err);
    status.rollback = { reason, startedAt: new Date().toISOString(), failedAttempts: 0, undone: [] };
    // Nothing waits for an approval, a window or a resume any more: status says what is true.
    status.gate = undefined;
    status.pause = undefined;
    status.waitingForWindowUntil = undefined;
    setState('rolling-back');
    log.warn(`rolling back: ${reason}`, logFields());
    await CancellationScope.nonCancellable(undoAll);
    status.rollback.finishedAt = new Date().toISOString();
    return finish(abortRequest || cancelled ? 'aborted' : 'rolled_back', reason);
  }
}
