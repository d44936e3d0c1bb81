import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  log,
  patched,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { checksAt } from '../domain/analysis';
import { startBake, type BakePlan, type BakeState } from '../domain/bake';
import type { Analysis, ResolvedPolicy } from '../domain/policy';
import {
  releaseRequestSchema,
  releaseWorkflowId,
  type ReleaseRequest,
  type ReleaseResult,
  type Stage,
} from '../domain/release';
import { TollgateService, TollgateVersion } from '../domain/search-attributes';
import type { ReleaseEvent } from '../providers/notify/types';
import { printable } from '../domain/text';
import { activeFreeze, nextAllowedTime } from '../domain/windows';
import { describeZodError } from '../domain/zod-errors';
import { formatDuration } from '../domain/duration';
import { describeMatch, inRollbackWindow } from '../domain/rollback-window';
import { proofProblem } from '../domain/controls';
import { claimsProblem } from '../domain/identity-token';
import { POLICY_FIRST_PATCH, START_RUN } from '../domain/signing-policy';
import { failureMessage, quick, smokeChecks } from './activities';
import { Alerts, freshAlerts, type AlertsState } from './alerts';
import { Bake, ReleaseFailure } from './bake';
import { Compensation, type CompensationState } from './compensation';
import { Controls, freshControls, type ControlsState } from './controls';
import { Hooks } from './hooks';
import { ReleaseRecord, type RecordState } from './record';
import { RollOver, RunBound } from './rollover';

/**
 * Guards what hostile messages may no longer do, for releases started after it: a release runs only as
 * `release-<service>` (one per service, whatever ID the caller picks); an inconclusive-analysis gate is a gate,
 * not a pause (`resume` cannot clear it, approving it never lifts a person's pause); the release records the kind
 * of target it deploys to.
 */
const HOSTILE_INPUT = 'hostile-input-hardening';

/** Everything a release is, as plain data: what one run hands the next when it continues as new. */
export interface Carried {
  request: ReleaseRequest;
  hardened: boolean;
  /** Absent in runs carried before signed controls. */
  policyFirst?: boolean;
  startedAt: string;
  record: RecordState;
  /** Resolved by the first run; every continued run has it. */
  policy?: ResolvedPolicy;
  controls: ControlsState;
  /** Absent in runs carried before alerts. */
  alerts?: AlertsState;
  compensation: CompensationState;
  /** Pipeline steps finished; a continued run skips them. */
  done: string[];
  /** The bake in progress when the run rolled over, by the step it belongs to. */
  bake?: { step: string; state: BakeState };
  /** Set once the release is rolling back: why, and which outcome that ends in. */
  rollback?: { reason: string; outcome: 'aborted' | 'rolled_back' | 'rolled_back_after_promotion' };
  runs: number;
}

/** Its input: a release request, or (only for a run that continues an earlier one) what that run carried. */
export async function releaseWorkflow(input: unknown): Promise<ReleaseResult> {
  return new Release(continued(input) ?? begin(input)).run();
}

function continued(input: unknown): Carried | undefined {
  // Only Temporal sets continuedFromExecutionRunId: a caller cannot start a release mid-way by sending state.
  if (workflowInfo().continuedFromExecutionRunId === undefined) return undefined;
  return (input as { carried?: Carried } | null)?.carried;
}

/** Validates the request and resolves the policy; nothing is deployed before both hold. */
function begin(input: unknown): Carried {
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
  const policyFirst = patched(POLICY_FIRST_PATCH);
  // Temporal runs one execution per workflow ID: with one ID per service, a second release of a service is
  // refused by Temporal itself, on every worker. Refused before anything is deployed.
  if (hardened && info.workflowId !== releaseWorkflowId(request.service)) {
    throw ApplicationFailure.nonRetryable(
      `a release of ${request.service} runs as workflow ID "${releaseWorkflowId(request.service)}", ` +
        `not "${printable(info.workflowId, 200)}": one release per service at a time`,
      'InvalidWorkflowId',
    );
  }
  const startedAt = new Date().toISOString();
  return {
    request,
    hardened,
    policyFirst,
    startedAt,
    record: ReleaseRecord.fresh(request, `${info.workflowId}/${info.firstExecutionRunId}`, startedAt),
    controls: freshControls(),
    alerts: freshAlerts(),
    compensation: { deployed: [], undoAttempt: 0 },
    done: [],
    runs: 1,
  };
}

const OUTCOME_EVENTS = {
  promoted: 'promoted',
  rolled_back: 'rolled-back',
  rolled_back_after_promotion: 'rolled-back-after-promotion',
  aborted: 'aborted',
} as const satisfies Record<ReleaseResult['outcome'], ReleaseEvent>;

/** What a canary or production step asks of the target while the release's production will be watched. */
const keepPrevious = (policy: ResolvedPolicy) =>
  policy.production.watch?.keepPrevious ? { keepPrevious: true as const } : {};

/** A wave's analysis judges the share of the fleet the wave put on the new version. */
const atWave = (analysis: Analysis, percent: number): Analysis => ({
  ...analysis,
  checks: checksAt(analysis.checks, percent),
});

/** One run of a release: the pipeline from wherever the release is. */
class Release {
  private readonly bound = new RunBound();
  private readonly record: ReleaseRecord;
  private readonly controls: Controls;
  private readonly compensation: Compensation;
  private readonly hooks: Hooks;
  private readonly alerts: Alerts;
  /** While the pipeline runs, a known error can still cancel it; after promotion there is nothing to roll back. */
  private inPipeline = false;

  constructor(private readonly carried: Carried) {
    this.record = new ReleaseRecord(carried.request, carried.record);
    this.controls = new Controls(
      this.record,
      carried.controls,
      () => this.carried.policy,
      carried.hardened,
      carried.policyFirst ?? false,
      this.bound,
    );
    this.compensation = new Compensation(this.record, carried.compensation, this.bound);
    this.hooks = new Hooks(this.record, () => this.carried.policy);
    this.alerts = new Alerts(this.record, (carried.alerts ??= freshAlerts()), () => this.carried.policy, {
      rollBack: () => this.rollBackNow(),
      canaryDeployed: () => this.compensation.step('canary') !== undefined,
    });
  }

  /** A known error from an alert: the pipeline stops where it is and the release rolls back. */
  private rollBackNow(): boolean {
    const { record, controls } = this;
    if (this.carried.rollback || controls.state.abort || record.status.state === 'done') return false;
    if (this.carried.runs === 1 && !controls.forward) return true; // cancelled as soon as the pipeline starts
    if (!this.inPipeline) return false;
    controls.forward?.cancel();
    return true;
  }

  async run(): Promise<ReleaseResult> {
    const { record, controls, carried } = this;
    const { request } = carried;
    controls.register();
    this.alerts.register();
    if (carried.runs === 1) {
      upsertSearchAttributes([
        { key: TollgateService, value: request.service },
        { key: TollgateVersion, value: request.version },
      ]);
      record.audit({
        actor: request.initiator,
        action: 'start',
        accepted: true,
        ...(request.reason && { detail: request.reason }),
      });
      record.refresh();
      const refused = await this.resolve();
      if (refused) return refused;
    }
    try {
      if (!carried.rollback) {
        controls.forward = new CancellationScope();
        // Aborted, or a known error fired, while the policy was being resolved.
        if (controls.state.abort || this.alerts.state.tripped) controls.forward.cancel();
        this.inPipeline = true;
        await controls.forward.run(() => this.pipeline());
        this.inPipeline = false;
        // Promoted: an abort can no longer undo it, so nothing a hook does here can start a rollback.
        await CancellationScope.nonCancellable(() =>
          this.step('hooks:after-promotion', () => this.hooks.run('after-promotion', 'done')),
        );
        const watched = record.status.watch;
        const clean = watched?.passedAt
          ? `, watched clean for ${formatDuration(Date.parse(watched.passedAt) - Date.parse(watched.startedAt))}`
          : '';
        return await this.finish('promoted', `${request.version} serves all production traffic${clean}`);
      }
    } catch (err) {
      if (err instanceof RollOver) return this.rollOver();
      this.startRollback(err);
    }
    try {
      await CancellationScope.nonCancellable(async () => {
        await this.compensation.undoAll();
        if (this.compensation.anyDeployed) {
          // Undo switched back to what was kept warm; anything it did not need is stopped rather than left running.
          if (carried.policy?.production.watch?.keepPrevious) {
            await this.step('retire-previous', () => this.compensation.retirePrevious());
          }
          await this.step('hooks:after-rollback', () => this.hooks.run('after-rollback', this.record.status.stage));
        }
      });
    } catch (err) {
      if (err instanceof RollOver) return this.rollOver();
      throw err;
    }
    const rollback = carried.rollback!;
    record.status.rollback!.finishedAt = new Date().toISOString();
    return this.finish(rollback.outcome, rollback.reason);
  }

  /** The policy and the target, or why the release cannot start; nothing is deployed yet. */
  private async resolve(): Promise<ReleaseResult | undefined> {
    const { record, carried } = this;
    const { request } = carried;
    const cancelled = () => this.finish('aborted', 'workflow cancelled before anything was deployed');
    try {
      carried.policy = await quick.resolvePolicy.executeWithOptions(
        { summary: `resolve policy for ${request.service}` },
        [{ service: request.service, ...(request.policy && { override: request.policy }) }],
      );
    } catch (err) {
      if (isCancellation(err)) return cancelled();
      // A policy that can never be valid fails the release outright.
      throw ApplicationFailure.nonRetryable(failureMessage(err), 'InvalidPolicy');
    }
    record.status.policy = carried.policy;
    try {
      await this.proveStart(carried.policy);
    } catch (err) {
      if (isCancellation(err)) return cancelled();
      throw err;
    }
    if (carried.hardened) {
      try {
        record.status.target = await quick.describeTarget.executeWithOptions(
          { summary: `target of ${request.service}` },
          [request.service],
        );
      } catch (err) {
        if (isCancellation(err)) return cancelled();
        throw ApplicationFailure.nonRetryable(failureMessage(err), 'NoTarget');
      }
    }
    void record.notify('release-started', `release of ${request.version} started by ${record.status.initiator}`);
    return undefined;
  }

  /**
   * Who started the release, proven when the request carries a proof (and required to be when the policy asks):
   * a person's signature over the start, or a CI pipeline's OIDC token, whose issuer's keys an activity fetches so
   * they are in the history. A proof that fails refuses the release before anything is deployed.
   */
  private async proveStart(policy: ResolvedPolicy): Promise<void> {
    const { record, carried } = this;
    const { request } = carried;
    const approvals = policy.approvals;
    const required = approvals.signing?.require.includes('start') ?? false;
    const refuse = (reason: string) => ApplicationFailure.nonRetryable(`start refused: ${reason}`, 'UnprovenStart');
    let proven: { identity: string; proof: string } | undefined;
    if (request.signed) {
      const checked = proofProblem(
        'start',
        request.initiator,
        request.signed,
        { workflowId: workflowInfo().workflowId, runId: START_RUN, target: request.version },
        {
          workflowId: workflowInfo().workflowId,
          runId: START_RUN,
          now: Date.parse(carried.startedAt),
          require: approvals.signing?.require ?? [],
          signers: approvals.signers ?? [],
          maxSkewMs: approvals.signing?.maxSkew ?? 0,
          seenNonces: new Set(),
        },
      );
      if (!checked || 'reason' in checked) throw refuse(checked?.reason ?? 'unsigned');
      carried.controls.nonces = [{ nonce: checked.proof.nonce, at: checked.proof.at }];
      proven = { identity: checked.identity, proof: checked.proof.fingerprint };
    } else if (request.identityToken) {
      const machines = approvals.machines ?? [];
      if (machines.length === 0) throw refuse('an identity token was sent, but this service lists no machines');
      const result = await quick.verifyIdentityToken
        .executeWithOptions({ summary: `verify the CI identity token for ${request.service}` }, [
          { token: request.identityToken, machines, at: carried.startedAt },
        ])
        .catch((err: unknown) => {
          // Retried for minutes already (the issuer down): the start cannot be proven, so nothing is deployed.
          if (isCancellation(err)) throw err;
          throw refuse(`the token's issuer could not be reached: ${failureMessage(err)}`);
        });
      const { verdict } = result;
      if (!verdict.ok) throw refuse(verdict.reason);
      // The claims the policy restricts are judged here too, where the policy that allowed them is in force.
      const machine = machines.find((m) => m.name === verdict.machine);
      const problem = machine ? claimsProblem(machine, verdict.claims) : `no machine named ${verdict.machine}`;
      if (problem) throw refuse(problem);
      proven = { identity: verdict.machine, proof: `${result.issuer} ${printable(verdict.subject, 200)}` };
    } else if (required) {
      throw refuse(
        'this service requires a proven start: sign it (tollgate start --sign-key …) or send a CI identity token',
      );
    }
    if (!proven) return;
    record.status.initiator = proven.identity;
    record.status.startProof = proven.proof;
    const start = record.status.audit.find((e) => e.action === 'start');
    if (start) Object.assign(start, { actor: proven.identity, proof: proven.proof });
    record.refresh();
  }

  /** staging → canary (a traffic cycle) → production, wave by wave; a continued run skips the steps done. */
  private async pipeline(): Promise<void> {
    const { record, carried } = this;
    const { request } = carried;
    const policy = carried.policy!;
    await this.step('stable-version', async () => {
      record.status.stableVersion = await quick.stableVersion.executeWithOptions(
        { summary: 'look up stable version' },
        [request.service],
      );
      record.status.waves = policy.production.waves.map((w, index) => ({
        index,
        percent: w.percent,
        state: 'pending',
      }));
      record.refresh();
    });
    await this.rollbackWindow(policy);
    await this.staging(policy);
    await this.canary(policy);
    await this.production(policy);
    await this.watch(policy);
    await this.step('stable', () =>
      quick.markStable.executeWithOptions({ summary: `mark ${request.version} stable` }, [
        { service: request.service, version: request.version, releaseId: record.releaseId },
      ]),
    );
  }

  private async staging(policy: ResolvedPolicy): Promise<void> {
    this.record.status.stage = 'staging';
    await this.step('hooks:before-staging', () => this.hooks.run('before-staging', 'staging'));
    await this.step('staging', () => this.compensation.deploy(this.controls, 'staging', { track: 'staging' }));
    await this.afterDeploy('staging', 'staging');
    await this.step('smoke', () => this.smokeChecks());
    await this.bake('staging-bake', {
      stage: 'staging',
      durationMs: policy.staging.bake,
      analysis: undefined,
      requestsRequired: 0,
      peakWindows: [],
    });
  }

  /** A small pool serving a random sample of production traffic, for a full traffic cycle. */
  private async canary(policy: ResolvedPolicy): Promise<void> {
    const { record, controls } = this;
    const { version } = this.carried.request;
    record.status.stage = 'canary';
    record.refresh();
    if (policy.canary.approval) {
      await this.step('canary-gate', () => controls.gate('canary', `approve ${version} for canary`));
    }
    await this.step('hooks:before-canary', () => this.hooks.run('before-canary', 'canary'));
    await this.step('canary', async () => {
      await this.compensation.deploy(controls, 'canary', {
        track: 'canary',
        canaryInstances: policy.canary.poolSize,
        ...keepPrevious(policy),
      });
      void record.notify(
        'canary-started',
        `canary of ${version} on ${policy.canary.poolSize} instance(s); bakes for a traffic cycle`,
      );
    });
    await this.afterDeploy('canary', 'canary');
    // In the rollback window: this version has had its traffic cycle here, not long ago.
    if (record.status.rollbackWindow) return;
    await this.bake('canary-bake', {
      stage: 'canary',
      durationMs: policy.trafficCycle.duration,
      analysis: policy.canary.analysis,
      requestsRequired: policy.trafficCycle.minCanaryRequests,
      peakWindows: policy.trafficCycle.peakWindows,
    });
  }

  /** At once or in waves, each in a deployment window, each analysed on the share of the fleet it moved. */
  private async production(policy: ResolvedPolicy): Promise<void> {
    const { record, controls } = this;
    const status = record.status;
    status.stage = 'production';
    record.refresh();
    // Before the approval gate: nobody is asked to approve what an automated check has already refused.
    await this.step('hooks:before-production', () => this.hooks.run('before-production', 'production'));
    if (policy.production.approval) {
      await this.step('production-gate', () =>
        controls.gate('production', `approve ${this.carried.request.version} for production`),
      );
    }
    for (const [index, wave] of policy.production.waves.entries()) {
      const name = `wave-${index + 1}`;
      await this.step(name, async () => {
        await this.waitForWindow(index);
        status.waves[index]!.state = 'deploying';
        await this.compensation.deploy(controls, name, {
          track: 'production',
          percent: wave.percent,
          ...keepPrevious(policy),
        });
      });
      await this.afterDeploy(name, 'production');
      if (wave.bake > 0) status.waves[index]!.state = 'baking';
      await this.bake(`${name}-bake`, {
        stage: 'production',
        wave: index,
        durationMs: wave.bake,
        analysis: atWave(wave.analysis ?? policy.canary.analysis, wave.percent),
        requestsRequired: 0,
        peakWindows: [],
      });
      status.waves[index]!.state = 'done';
    }
  }

  /**
   * A version this service was stable on recently skips the canary bake (Argo Rollouts' rollbackWindow); the
   * decision and its evidence go into the audit trail. When visibility cannot be read, the canary bakes.
   */
  private async rollbackWindow(policy: ResolvedPolicy): Promise<void> {
    const window = policy.production.rollbackWindow;
    if (!window) return;
    const { record } = this;
    const { service, version } = this.carried.request;
    await this.step('rollback-window', async () => {
      const found = await quick.promotedReleases.executeWithOptions({ summary: `promoted releases of ${service}` }, [
        service,
      ]);
      if ('unknown' in found) {
        record.audit({
          actor: 'tollgate',
          action: 'rollback-window',
          accepted: false,
          detail: `${found.unknown}; the canary bakes`,
        });
        return;
      }
      const match = inRollbackWindow(window, version, found.releases, Date.now());
      if (!match) return;
      record.status.rollbackWindow = match;
      const detail = describeMatch(version, match, window);
      record.audit({ actor: 'tollgate', action: 'rollback-window', accepted: true, detail });
      log.info(detail, record.logFields());
      record.refresh();
    });
  }

  /**
   * After the last wave the release stays open and analyses production for the watch window, the previous version
   * warm: a failure, a rollback alert, an abort or `tollgate rollback` takes production back. Only a window that
   * passes clean promotes; then what was kept warm is retired.
   */
  private async watch(policy: ResolvedPolicy): Promise<void> {
    const watch = policy.production.watch;
    if (!watch) return;
    const { record, carried } = this;
    const status = record.status;
    // Once per release: a continued run carries the watch in its status.
    if (!status.watch) {
      status.watch = {
        startedAt: new Date().toISOString(),
        durationMs: watch.duration,
        keepPrevious: watch.keepPrevious,
      };
      record.setState('watching');
      const warm = watch.keepPrevious ? `, ${status.stableVersion ?? 'the previous version'} kept warm` : '';
      void record.notify(
        'watch-started',
        `${carried.request.version} serves all production traffic; watched for ${formatDuration(watch.duration)}${warm}`,
      );
    }
    await this.bake('watch', {
      stage: 'production',
      watch: true,
      durationMs: watch.duration,
      analysis: watch.analysis,
      requestsRequired: 0,
      peakWindows: [],
      baselineEnd: carried.startedAt,
    });
    status.watch.passedAt ??= new Date().toISOString();
    if (watch.keepPrevious) await this.step('retire-previous', () => this.compensation.retirePrevious());
  }

  /** The after-deploy hooks of the step deployed as `name` (a smoke or short load test): a failure rolls back. */
  private afterDeploy(name: string, stage: Stage): Promise<void> {
    return this.step(`hooks:after-deploy:${name}`, () =>
      this.hooks.run('after-deploy', stage, this.compensation.step(name)),
    );
  }

  /** Runs `work` once per release: a continued run skips what an earlier run finished. */
  private async step(name: string, work: () => Promise<unknown>): Promise<void> {
    if (this.carried.done.includes(name)) return;
    await work();
    this.carried.done.push(name);
  }

  /** A bake, carried across runs by its step name; none when it has nothing to wait for. */
  private async bake(name: string, plan: BakePlan): Promise<void> {
    if (plan.durationMs <= 0 && plan.stage !== 'canary') return;
    await this.step(name, async () => {
      let state = this.carried.bake?.step === name ? this.carried.bake.state : undefined;
      if (!state) {
        // A fresh bake: nothing promoted or analysed yet. A continued one keeps both.
        this.controls.state.promoteRequested = false;
        state = startBake(new Date().toISOString(), Date.now(), this.controls.held());
        this.record.status.analysis = { rounds: 0, failures: 0, inconclusive: 0, requests: 0, checks: [] };
      }
      this.carried.bake = { step: name, state };
      await new Bake(this.record, this.controls, this.alerts, this.bound, plan, state).run();
      this.carried.bake = undefined;
    });
  }

  private async smokeChecks(): Promise<void> {
    const { record } = this;
    const checks = this.carried.policy!.staging.smokeChecks;
    if (checks.length === 0) return;
    record.setState('smoke-testing');
    const results = await smokeChecks.smokeCheck.executeWithOptions({ summary: `smoke checks: ${checks.length}` }, [
      {
        context: record.context('staging'),
        checks,
        ...(this.carried.policy!.metrics && { metricNames: this.carried.policy!.metrics }),
      },
    ]);
    record.status.analysis.checks = results;
    const bad = results.filter((r) => r.verdict !== 'pass');
    if (bad.length > 0) {
      throw new ReleaseFailure(`smoke checks failed: ${bad.map((r) => `${r.check} (${r.reason})`).join('; ')}`);
    }
  }

  private async waitForWindow(wave: number): Promise<void> {
    const { record } = this;
    const status = record.status;
    const p = this.carried.policy!;
    const now = Date.now();
    const allowedAt = nextAllowedTime(now, p.windows.allowed, p.windows.freezes);
    if (allowedAt === now) return;
    if (allowedAt === undefined) throw new ReleaseFailure('no deployment window opens in the next 15 days');
    const freeze = activeFreeze(now, p.windows.freezes);
    status.waitingForWindowUntil = new Date(allowedAt).toISOString();
    status.waves[wave]!.state = 'waiting-for-window';
    record.setState('waiting-for-window');
    log.info(`waiting for a deployment window until ${status.waitingForWindowUntil}`, {
      ...record.logFields(),
      freeze: freeze?.reason,
    });
    await this.bound.sleep(allowedAt - now, `deployment window opens ${status.waitingForWindowUntil}`);
    status.waitingForWindowUntil = undefined;
  }

  /** Any known error, an abort or a cancel: production is never left half-changed. */
  private startRollback(err: unknown): void {
    const { record, controls } = this;
    const status = record.status;
    const abort = controls.state.abort;
    const alert = this.alerts.state.tripped;
    const cancelled = isCancellation(err) && alert === undefined;
    // Unknown errors (a deploy that kept failing, a bug) roll back too.
    if (!(err instanceof ReleaseFailure) && !isCancellation(err))
      log.error(`release failed: ${failureMessage(err)}`, record.logFields());
    const rollback = controls.state.rollback;
    const reason = rollback
      ? `rolled back by ${rollback.by}: ${rollback.reason}`
      : abort
        ? `aborted by ${abort.by}: ${abort.reason}`
        : alert !== undefined && isCancellation(err)
          ? alert
          : cancelled
            ? 'workflow cancelled'
            : failureMessage(err);
    // Every wave was out: whatever took production back, it was after the release reached all of it.
    const outcome = status.watch ? 'rolled_back_after_promotion' : abort || cancelled ? 'aborted' : 'rolled_back';
    this.carried.rollback = { reason, outcome };
    status.rollback = { reason, startedAt: new Date().toISOString(), failedAttempts: 0, undone: [] };
    // Nothing waits for an approval, a window or a resume any more: status says what is true.
    status.gate = undefined;
    status.pause = undefined;
    status.waitingForWindowUntil = undefined;
    record.setState('rolling-back');
    log.warn(`rolling back: ${reason}`, record.logFields());
  }

  private finish(outcome: ReleaseResult['outcome'], reason: string): Promise<ReleaseResult> {
    const { record, carried } = this;
    const status = record.status;
    status.outcome = outcome;
    if (outcome === 'promoted') status.stage = 'done';
    record.setState('done');
    record.audit({ actor: 'tollgate', action: outcome, accepted: true, detail: reason });
    record.refresh();
    log.info(`release ${outcome}: ${reason}`, record.logFields());
    return record.notify(OUTCOME_EVENTS[outcome], reason).then(() => ({
      outcome,
      service: carried.request.service,
      version: carried.request.version,
      stableVersion: outcome === 'promoted' ? carried.request.version : status.stableVersion,
      stage: status.stage,
      ...(status.target?.dryRun && { dryRun: true as const }),
      reason,
      startedAt: carried.startedAt,
      endedAt: new Date().toISOString(),
    }));
  }

  /** Hands everything to a fresh run once every message handler has finished. */
  private async rollOver(): Promise<never> {
    await condition(allHandlersFinished);
    const info = workflowInfo();
    log.info(`continuing as new after ${info.historyLength} events`, this.record.logFields());
    const next: Carried = { ...this.carried, record: this.record.carried, runs: this.carried.runs + 1 };
    return continueAsNew<typeof releaseWorkflow>({ carried: next });
  }
}
