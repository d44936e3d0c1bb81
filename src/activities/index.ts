import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { decide, type CheckResult } from '../domain/analysis';
import { PolicyError, resolvePolicy } from '../domain/policy-resolution';
import type { ResolvedPolicy } from '../domain/policy';
import { ConfigError } from '../config/env';
import { PolicyFileError, type PolicyStore } from '../config/policies';
import type { Logger } from '../logger';
import type { MetricsProvider } from '../providers/metrics/types';
import { ProcessRunner } from '../providers/external/command-runner';
import { SignedHttpCaller } from '../providers/external/http-caller';
import type { ExternalRunners } from '../providers/external/types';
import type { Notifier, ReleaseNotification } from '../providers/notify/types';
import { DRY_RUN_KIND } from '../providers/targets/dry-run';
import type { DeploymentTarget, DeployReceipt, DeployStep } from '../providers/targets/types';
import { PROMOTED_LOOKUP_LIMIT, type PromotedRelease } from '../domain/rollback-window';
import { analysisRound, type CheckSources } from './analysis';
import { verifyIdentityToken } from './identity-token';
import { listPromoted } from './promoted-releases';
import { runHook } from './hooks';
import type {
  AnalysisHeartbeat,
  AnalysisSegment,
  AnalyzeInput,
  HookInput,
  HookResult,
  ReleaseContext,
  ResolvePolicyInput,
  SmokeCheckInput,
  TargetDescription,
} from './types';

export interface ActivityDeps {
  target: DeploymentTarget;
  metrics: MetricsProvider;
  policies: PolicyStore;
  logger: Logger;
  /** Where release events go (webhooks); none configured means none sent. */
  notifier?: Notifier;
  /** Runs users' commands and calls their endpoints: hooks and job checks. */
  external?: ExternalRunners;
  /** How often deploys and undos heartbeat while the target works (tests shorten it). */
  heartbeatEveryMs?: number;
  /**
   * The least time between two heartbeats of an analysis stretch that show a new round (TOLLGATE_ANALYSIS_HEARTBEAT):
   * 0 shows every round, Infinity only what liveness needs. Left out: every round.
   */
  analysisHeartbeatMs?: number;
}

/** How often a running round asks whether a liveness heartbeat is due. */
const ROUND_LIVENESS_CHECK_MS = 30_000;

/** A stretch scheduled without a heartbeat timeout still heartbeats (cancellation comes that way), as if it had this. */
const FALLBACK_HEARTBEAT_TIMEOUT_MS = 600_000;

/**
 * When an analysis stretch heartbeats. Every heartbeat that reaches the server is a billable action, so a stretch
 * sends one only when there is a round `status` has not seen and `spacingMs` has passed since the last, or when
 * liveness needs one: after 80% of the heartbeat timeout, the margin the SDK's own throttle keeps. The activity's
 * start counts as a heartbeat (the server's timeout runs from it), and a round that ends the stretch is not sent:
 * its result is.
 */
class StretchBeats {
  private sentAt = Date.now();
  private sentRound: number;
  private readonly livenessMs: number;
  private readonly spacingMs: number;

  constructor(
    private readonly ctx: Context,
    spacingMs: number,
    startRound: number,
  ) {
    this.livenessMs = 0.8 * (ctx.info.heartbeatTimeoutMs ?? FALLBACK_HEARTBEAT_TIMEOUT_MS);
    this.spacingMs = Math.min(spacingMs, this.livenessMs);
    this.sentRound = startRound;
  }

  /** When the next heartbeat falls due for `beat`. */
  dueAt(beat: AnalysisHeartbeat): number {
    const unseen = beat.counters.rounds > this.sentRound;
    return this.sentAt + (unseen ? this.spacingMs : this.livenessMs);
  }

  /** Heartbeats `beat` if one is due. */
  offer(beat: AnalysisHeartbeat): void {
    const now = Date.now();
    if (now < this.dueAt(beat)) return;
    this.ctx.heartbeat(beat);
    this.sentAt = now;
    this.sentRound = beat.counters.rounds;
  }

  /** Waits `ms`, heartbeating `beat` whenever one falls due; a cancellation or worker shutdown ends the wait. */
  async wait(ms: number, beat: AnalysisHeartbeat): Promise<void> {
    const until = Date.now() + ms;
    for (;;) {
      this.offer(beat);
      const now = Date.now();
      if (now >= until) return;
      await this.ctx.sleep(Math.max(1, Math.min(until, this.dueAt(beat)) - now));
    }
  }
}

/**
 * Heartbeats while a target changes the fleet (a drain can take minutes), so the heartbeat timeout can stay short:
 * a worker that dies mid-deploy is noticed, and the step retried, within that timeout rather than the step's whole
 * start-to-close budget.
 */
async function heartbeatingWhile<T>(work: Promise<T>, everyMs: number): Promise<T> {
  const ctx = Context.current();
  ctx.heartbeat();
  const timer = setInterval(() => ctx.heartbeat(), everyMs);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

export function createActivities({
  target,
  metrics,
  policies,
  logger,
  notifier,
  external = { commands: new ProcessRunner(), http: new SignedHttpCaller() },
  heartbeatEveryMs = 5_000,
  analysisHeartbeatMs = 0,
}: ActivityDeps) {
  const releaseLog = (c: Pick<ReleaseContext, 'releaseId' | 'service' | 'version' | 'stage' | 'track'>) =>
    logger.child({ releaseId: c.releaseId, service: c.service, version: c.version, stage: c.stage, track: c.track });
  /** Job checks run through the same runner as hooks, and stop with the activity that runs them. */
  const checkSources = (c: ReleaseContext): CheckSources => ({
    commands: external.commands,
    signal: Context.current().cancellationSignal,
    onJobLine: (check, line, stream) => releaseLog(c).debug({ check, stream, line }, 'job check output'),
  });
  const stepLog = (step: DeployStep) =>
    releaseLog({ ...step, stage: step.track === 'production' ? 'production' : step.track });

  return {
    async resolvePolicy({ service, override }: ResolvePolicyInput): Promise<ResolvedPolicy> {
      try {
        const [org, servicePolicy] = await Promise.all([policies.org(), policies.service(service)]);
        return resolvePolicy(org, servicePolicy, override, {
          org: policies.orgPath(),
          service: policies.servicePath(service),
        });
      } catch (err) {
        if (err instanceof PolicyError || err instanceof PolicyFileError) {
          throw ApplicationFailure.nonRetryable(err.message, err.name);
        }
        throw err;
      }
    },

    stableVersion(service: string): Promise<string | undefined> {
      return target.stableVersion(service);
    },

    /**
     * The service's promoted releases, newest first, from Temporal's visibility (the worker's own namespace): what
     * a rollback window is judged on. Answers `{ unknown: reason }` when visibility cannot be read, so the canary
     * bakes rather than the release failing.
     */
    /** A CI pipeline's OIDC token, checked against its issuer's keys, which the result carries into the history. */
    verifyIdentityToken,

    async promotedReleases(service: string): Promise<{ releases: PromotedRelease[] } | { unknown: string }> {
      try {
        return { releases: await listPromoted(Context.current().client, service, PROMOTED_LOOKUP_LIMIT) };
      } catch (err) {
        const reason = `cannot read the promoted releases of ${service}: ${(err as Error).message}`;
        logger.warn({ service }, reason);
        return { unknown: reason };
      }
    },

    /** So a release can record, and say, that it deployed nothing. A service no target serves can never deploy. */
    describeTarget(service: string): Promise<TargetDescription> {
      let serving: DeploymentTarget;
      try {
        serving = target.targetFor?.(service) ?? target;
      } catch (err) {
        if (err instanceof ConfigError) return Promise.reject(ApplicationFailure.nonRetryable(err.message, err.name));
        throw err;
      }
      return Promise.resolve({ kind: serving.kind, dryRun: serving.kind === DRY_RUN_KIND });
    },

    async deploy(step: DeployStep): Promise<DeployReceipt> {
      const signal = Context.current().cancellationSignal;
      const receipt = await heartbeatingWhile(target.apply(step, { signal }), heartbeatEveryMs);
      stepLog(step).info({ key: step.key, applied: receipt.applied, changes: receipt.changes }, 'deploy step');
      return receipt;
    },

    async undo(step: DeployStep): Promise<DeployReceipt> {
      const signal = Context.current().cancellationSignal;
      const receipt = await heartbeatingWhile(target.undo(step, { signal }), heartbeatEveryMs);
      stepLog(step).warn({ key: step.key, applied: receipt.applied, changes: receipt.changes }, 'undo step');
      return receipt;
    },

    async retirePrevious(step: DeployStep): Promise<DeployReceipt> {
      const signal = Context.current().cancellationSignal;
      const receipt = target.retirePrevious
        ? await heartbeatingWhile(target.retirePrevious(step, { signal }), heartbeatEveryMs)
        : { key: step.key, applied: false, changes: [] };
      stepLog(step).info(
        { key: step.key, applied: receipt.applied, changes: receipt.changes },
        'retired the previous version',
      );
      return receipt;
    },

    async smokeCheck({ context, checks, metricNames }: SmokeCheckInput): Promise<CheckResult[]> {
      // Job and web smoke checks take their own time: heartbeating keeps a long one alive and lets a cancel reach it.
      const { results } = await heartbeatingWhile(
        analysisRound(metrics, context, checks, 60_000, new Date(), undefined, metricNames, checkSources(context)),
        heartbeatEveryMs,
      );
      releaseLog(context).info({ results }, 'smoke checks');
      return results;
    },

    /**
     * Runs rounds of analysis, one per interval, until a decision or `maxRounds`; resumes from heartbeats on retry.
     * A round that decides (a failure, inconclusive, the requests met) returns at once: no heartbeat waits for it.
     */
    async analyze(input: AnalyzeInput): Promise<AnalysisSegment> {
      const ctx = Context.current();
      const log = releaseLog(input.context);
      const resumed = ctx.info.heartbeatDetails as AnalysisHeartbeat | undefined;
      let beat: AnalysisHeartbeat = resumed ?? { counters: input.counters, checks: [] };
      const beats = new StretchBeats(ctx, analysisHeartbeatMs, beat.counters.rounds);
      const firstRound = beat.counters.rounds - input.counters.rounds;
      for (let round = firstRound; round < input.maxRounds; round++) {
        try {
          await beats.wait(input.intervalMs, beat);
        } catch (err) {
          // A worker shutting down ends the stretch with the rounds it ran: heartbeats reach the server minutes
          // apart, so failing here would make the retry repeat them. With no new round, the retry resumes exactly
          // where this attempt began.
          if (err instanceof CancelledFailure && err.message === 'WORKER_SHUTDOWN' && round > firstRound) {
            log.info({ counters: beat.counters }, 'analysis stretch cut short by worker shutdown');
            return { ...beat, decision: 'healthy', reason: 'stretch cut short: worker shutting down', cutShort: true };
          }
          throw err;
        }
        // A round with a job check can run for minutes: liveness heartbeats go on meanwhile (offer sends only due ones).
        const during = beat;
        const live = setInterval(() => beats.offer(during), ROUND_LIVENESS_CHECK_MS);
        const { results, requests } = await analysisRound(
          metrics,
          input.context,
          input.checks,
          input.intervalMs,
          new Date(),
          beat.counters.rounds,
          input.metricNames,
          checkSources(input.context),
          input.baselineEnd !== undefined ? new Date(input.baselineEnd) : undefined,
        ).finally(() => clearInterval(live));
        const before = beat.counters.requests;
        const { counters, decision, reason } = decide(beat.counters, results, requests, input);
        beat = { counters, checks: results };
        log.info({ round: counters.rounds, decision, counters, results }, 'analysis round');
        if (decision !== 'healthy') return { ...beat, decision, reason };
        const requestsMet =
          input.requestsRequired > 0 && before < input.requestsRequired && counters.requests >= input.requestsRequired;
        if (requestsMet) return { ...beat, decision, reason: `${counters.requests} requests served` };
        if (round + 1 < input.maxRounds) beats.offer(beat);
      }
      return { ...beat, decision: 'healthy', reason: 'healthy' };
    },

    /** A stage hook: the user's command or endpoint, heartbeating while it runs, killed if the release cancels it. */
    runHook(input: HookInput): Promise<HookResult> {
      const ctx = Context.current();
      return heartbeatingWhile(
        runHook(external, releaseLog(input.context), input, ctx.cancellationSignal),
        heartbeatEveryMs,
      );
    },

    /** Never fails: a notification that cannot be delivered must not hold up or fail a release. */
    async notify(notification: ReleaseNotification): Promise<void> {
      await notifier
        ?.notify(notification)
        .catch((err: unknown) => releaseLog(notification).warn({ err }, 'notification failed'));
    },

    async markStable({
      service,
      version,
      releaseId,
    }: {
      service: string;
      version: string;
      releaseId: string;
    }): Promise<void> {
      await target.markStable(service, version);
      releaseLog({ releaseId, service, version, stage: 'done', track: 'production' }).info('marked stable');
    },
  };
}
