import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { serviceNameSchema } from '../../domain/release';
import type { Logger } from '../../logger';
import { FleetOps, canKeepWarm, type Keeper, type ReconcileReport, type Reversal } from './haproxy-fleet-ops';
import { FleetStateStore, type FleetState, type StepRecord } from './haproxy-fleet-state';
import { HaproxyRuntime } from './haproxy-runtime';
import type { DeployReceipt, DeploymentTarget, DeployStep } from './types';

/**
 * A fleet of `fleetSize` instances of one service behind a real HAProxy frontend, changed only through
 * HAProxy's runtime API (no reload): a new instance starts on a fresh port, goes into a free (disabled)
 * server slot, and only once HAProxy sees it UP is the instance it replaces drained and stopped.
 *
 * Labels (the `track` each instance logs and reports metrics with, and its file_sd label):
 * - staging step: one extra instance on `stagingPort`, not behind the frontend, labelled `staging`;
 * - canary and production steps: instances running the release's version are labelled `canary` — a
 *   production wave widens the canary rather than mixing new and old versions under `stable`, so dashboards
 *   compare new against old until the release is promoted;
 * - `markStable(service, version)`: those instances are relabelled `stable` by a rolling (drained) restart;
 * - undo and bootstrap start `stable` instances.
 *
 * A canary or production step with `keepPrevious` keeps each instance it replaces running, warm: out of rotation
 * (its slot drained, still health-checked) and no longer a fleet member. Undoing the step switches a warm instance of
 * the version it goes back to into rotation again instead of starting one; `retirePrevious` stops those the release
 * kept. The default 2 × fleetSize slots hold a whole fleet warm; with fewer, an instance that would take the last free
 * slot a later replacement needs is stopped as usual, and the receipt says so. Only warm instances labelled `stable`
 * are switched back to (the label is on the process's command line).
 *
 * A step key applied once is never applied again, also after `undo`: a late attempt of an apply activity must
 * not redeploy a version that was rolled back. (The dry-run target lets a key apply again after undo.)
 *
 * State lives in `stateDir` (`<service>.state.json`, an append-only `<service>.actions.jsonl`, instance logs).
 * The first operation of each target object reconciles it with reality: live instances are re-adopted by PID
 * (checked against their command line and health check), dead ones restarted in their slot, steps interrupted
 * half-way finished on their next apply — a restarted worker picks the fleet up where it was.
 */

const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

export const haproxyFleetOptionsSchema = z.object({
  service: serviceNameSchema,
  haproxySocket: z.string().min(1),
  backend: z.string().regex(NAME, 'expected an HAProxy backend name'),
  fleetSize: z.number().int().min(1).max(64),
  /** Instances get ports from basePort .. basePort + portRange - 1, a fresh one for each new process. */
  basePort: z.number().int().min(1024).max(65_000),
  portRange: z.number().int().min(4).max(10_000).default(200),
  stagingPort: z.number().int().min(1024).max(65_535),
  /** argv template; {service} {version} {port} {instance} {track} are replaced in each element. */
  command: z
    .array(z.string())
    .min(1)
    .refine((argv) => argv.some((a) => a.includes('{port}')) && argv.some((a) => a.includes('{instance}')), {
      message: 'the command must pass {port} and {instance} to the instance',
    }),
  cwd: z.string().optional(),
  env: z.record(z.string(), z.string()).optional(),
  stateDir: z.string().min(1),
  fileSdPath: z.string().min(1).optional(),
  host: z.string().default('127.0.0.1'),
  healthPath: z.string().startsWith('/').default('/healthz'),
  timeouts: z
    .object({
      startMs: z.number().int().positive().default(20_000),
      upMs: z.number().int().positive().default(10_000),
      drainMs: z.number().int().positive().default(30_000),
      stopMs: z.number().int().positive().default(15_000),
      lockMs: z.number().int().positive().default(120_000),
      /** One HAProxy runtime API command, connect to answer: a hung HAProxy fails the step instead of stalling it. */
      commandMs: z.number().int().positive().default(5_000),
    })
    .prefault({}),
});
export type HaproxyFleetOptions = z.input<typeof haproxyFleetOptionsSchema> & { logger: Logger };

/** Options that can never work (bad name, missing placeholder): fix the configuration. */
export class FleetConfigError extends Error {
  override readonly name = 'FleetConfigError';
}

/**
 * A step this target cannot carry out as given (wrong service, missing size): retrying cannot help, so it fails the
 * activity without Temporal's retries. The workflow sees an ApplicationFailure of type `FleetStepError`.
 */
export class FleetStepError extends ApplicationFailure {
  override readonly name = 'FleetStepError';
  constructor(message: string) {
    super(message, 'FleetStepError', true);
  }
}

export class HaproxyFleetTarget implements DeploymentTarget {
  readonly kind = 'haproxy-fleet';
  readonly options: z.output<typeof haproxyFleetOptionsSchema>;
  private readonly store: FleetStateStore;
  private readonly ops: FleetOps;
  private readonly log: Logger;
  private queue: Promise<unknown> = Promise.resolve();
  private reconciled: ReconcileReport | undefined;

  constructor({ logger, ...input }: HaproxyFleetOptions) {
    const parsed = haproxyFleetOptionsSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new FleetConfigError(
        `haproxy-fleet options: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
      );
    }
    const o = (this.options = parsed.data);
    this.log = logger.child({ target: this.kind, service: o.service });
    this.store = new FleetStateStore(o.stateDir, o.service, o.basePort, o.fileSdPath, o.host);
    const env = o.env ? { ...process.env, ...o.env } : undefined;
    this.ops = new FleetOps(
      { ...o, env, cwd: o.cwd, timeouts: o.timeouts },
      new HaproxyRuntime(o.haproxySocket, o.timeouts.commandMs),
      this.store,
      this.log,
    );
  }

  apply(step: DeployStep): Promise<DeployReceipt> {
    const size = this.checkStep(step);
    return this.exclusive(async (state) => {
      const done = state.steps[step.key];
      if (done && done.status !== 'in-progress') return { key: step.key, applied: false, changes: [] };
      // Saved before the first change, so an interrupted step is finished (or undone) by whoever comes next.
      const record: StepRecord = done ?? {
        version: step.version,
        status: 'in-progress',
        startedAt: new Date().toISOString(),
        replaced: [],
        changes: [],
        ...(step.track !== 'staging' && { size }),
      };
      state.steps[step.key] = record;
      await this.store.save(state);
      if (step.track === 'staging') {
        const before = this.ops.staging(state);
        if (before?.version !== step.version) {
          const started = await this.ops.replaceStaging(state, step.version, step.key);
          record.replaced.push({ instance: started.id, staging: true, fromVersion: before?.version ?? null });
          record.changes.push(`${started.id} → ${step.version} (staging, port ${started.port})`);
        }
      } else {
        // Nothing to replace would "apply" the step without the version serving anywhere: say so instead.
        if (this.ops.fleet(state).length === 0) {
          throw new FleetStepError(`fleet ${this.options.service} has no instances; start it (startFleet) first`);
        }
        const onVersion = this.ops.fleet(state).filter((i) => i.version === step.version).length;
        const outdated = this.ops.fleet(state).filter((i) => i.version !== step.version);
        const keeper: Keeper = { by: step.key, releaseId: step.releaseId };
        for (const old of outdated.slice(0, Math.max(0, size - onVersion))) {
          let keep: Keeper | undefined;
          let note = '';
          if (step.keepPrevious) {
            const left = this.ops.fleet(state).filter((i) => i.version !== step.version).length;
            keep = canKeepWarm((await this.ops.freeSlots(state)).length, left) ? keeper : undefined;
            note = keep ? `; ${old.id} kept warm` : `; ${old.id} stopped: no free server slot to keep it warm`;
            if (!keep) this.log.warn({ key: step.key, instance: old.id }, 'no free server slot to keep it warm');
          }
          const started = await this.ops.replace(state, old, step.version, 'canary', step.key, keep);
          record.replaced.push({ instance: started.id, staging: false, fromVersion: old.version });
          record.changes.push(`${old.id} ${old.version} → ${started.id} ${step.version} (canary${note})`);
          await this.store.save(state);
        }
      }
      record.status = 'applied';
      await this.store.save(state);
      await this.store.record({ action: 'step-applied', key: step.key, version: step.version });
      return { key: step.key, applied: true, changes: record.changes };
    });
  }

  undo(step: DeployStep): Promise<DeployReceipt> {
    this.checkService(step.service);
    return this.exclusive(async (state) => {
      const record = state.steps[step.key];
      if (!record || record.status === 'undone') return { key: step.key, applied: false, changes: [] };
      const changes: string[] = [];
      const fleetEntries = record.replaced.filter((r) => !r.staging);
      // The step's own instances first; if a restart or relabel replaced them, any instance on its version.
      const ownIds = new Set(fleetEntries.map((r) => r.instance));
      const candidates = this.ops
        .fleet(state)
        .filter((i) => i.version === record.version)
        .sort((a, b) => Number(ownIds.has(b.id)) - Number(ownIds.has(a.id)));
      // Steps are undone latest first, so the fleet goes back to what the release's earlier steps still hold.
      // Counting instances, not the step's own record, also reverts one started by an attempt that died
      // before it could write the record.
      const keep = Math.max(
        0,
        ...Object.entries(state.steps)
          .filter(([key, r]) => key !== step.key && r.version === record.version && r.status !== 'undone')
          .map(([, r]) => r.size ?? r.replaced.filter((e) => !e.staging).length),
      );
      const revert = record.size === undefined && fleetEntries.length === 0 ? 0 : Math.max(0, candidates.length - keep);
      const fallback = fleetEntries.find((e) => e.fromVersion)?.fromVersion ?? null;
      const reversals: Reversal[] = [];
      for (const current of candidates.slice(0, revert)) {
        const target =
          step.stableVersion ?? fleetEntries.find((e) => e.instance === current.id)?.fromVersion ?? fallback;
        if (target && target !== current.version) reversals.push({ current, target });
      }
      // Warm instances first (a traffic switch), then cold starts for what no warm instance covers.
      const { switched, cold } = await this.ops.switchBack(state, reversals, {
        by: step.key,
        releaseId: step.releaseId,
      });
      for (const { current, warm, target } of switched) {
        changes.push(`${current.id} ${current.version} → ${warm.id} ${target} (stable, switched back from warm)`);
      }
      for (const { current, target } of cold) {
        const started = await this.ops.replace(state, current, target, 'stable', step.key);
        changes.push(`${current.id} ${current.version} → ${started.id} ${target} (stable)`);
      }
      for (const entry of record.replaced.filter((r) => r.staging)) {
        const staging = this.ops.staging(state);
        const target = step.stableVersion ?? entry.fromVersion;
        if (!staging || staging.version !== record.version) continue;
        if (target) {
          const started = await this.ops.replaceStaging(state, target, step.key);
          changes.push(`${staging.id} ${staging.version} → ${started.id} ${target} (staging)`);
        } else {
          await this.ops.retire(state, staging, step.key);
          changes.push(`${staging.id} ${staging.version} stopped (staging)`);
        }
      }
      record.status = 'undone';
      await this.store.save(state);
      await this.store.record({ action: 'step-undone', key: step.key, version: record.version });
      return { key: step.key, applied: true, changes };
    });
  }

  async stableVersion(service: string): Promise<string | undefined> {
    if (service !== this.options.service) return undefined;
    return (await this.store.load()).stableVersion;
  }

  markStable(service: string, version: string): Promise<void> {
    this.checkService(service);
    return this.exclusive(async (state) => {
      const key = `mark-stable:${version}`;
      if (state.stableVersion !== version) {
        state.stableVersion = version;
        await this.store.save(state);
        await this.store.record({ action: 'mark-stable', key, version });
      }
      for (const instance of this.ops.fleet(state).filter((i) => i.version === version && i.track !== 'stable')) {
        if ((await this.ops.freeSlots(state)).length === 0) await this.makeRoom(state, version, key);
        await this.ops.replace(state, instance, version, 'stable', key);
      }
    });
  }

  /**
   * Stops what the release's `keepPrevious` steps kept warm (step.key is `<releaseId>/retire-previous`): the slot is
   * drained already, so this is maint and SIGTERM, all at once. Nothing left to stop is a no-op.
   */
  retirePrevious(step: DeployStep): Promise<DeployReceipt> {
    this.checkService(step.service);
    return this.exclusive(async (state) => {
      const kept = state.instances.filter((i) => i.status === 'warm' && i.kept?.releaseId === step.releaseId);
      if (kept.length === 0) return { key: step.key, applied: false, changes: [] };
      await this.ops.retireAll(state, kept, step.key);
      await this.store.record({ action: 'retire-previous', key: step.key, version: step.version });
      const changes = kept.map((i) => `${i.id} ${i.version} stopped (kept warm by ${i.kept?.by ?? step.releaseId})`);
      return { key: step.key, applied: true, changes };
    });
  }

  /**
   * markStable relabels by a rolling restart, one free slot at a time. It runs once the release is promoted, when its
   * warm instances can never be switched back to; the workflow retires them first, but if they still hold every slot,
   * one of those kept for this version's steps makes room rather than the promotion failing.
   */
  private async makeRoom(state: FleetState, version: string, key: string): Promise<void> {
    const spare = state.instances.find(
      (i) => i.status === 'warm' && i.kept && state.steps[i.kept.by]?.version === version,
    );
    if (!spare) return;
    this.log.warn(
      { instance: spare.id, keptBy: spare.kept?.by },
      'no free server slot to relabel: retiring a warm instance',
    );
    await this.ops.retire(state, spare, key);
  }

  /**
   * Brings the fleet up to `fleetSize` instances. A new fleet starts on `version`, which becomes the stable version;
   * a fleet with state (stopped, or its processes gone) comes back as it was — reconcile restarts every recorded
   * instance, canaries included, and the stable version stays what releases made it.
   */
  bootstrap(version: string): Promise<void> {
    return this.exclusive(async (state) => {
      state.stableVersion ??= version;
      await this.store.save(state);
      for (let i = this.ops.fleet(state).length; i < this.options.fleetSize; i++) {
        await this.ops.replace(state, undefined, state.stableVersion, 'stable', 'bootstrap');
      }
    });
  }

  /** What the first operation of this object found: re-adopted, restarted, dropped instances. */
  async reconcile(): Promise<ReconcileReport> {
    await this.exclusive(() => Promise.resolve());
    return this.reconciled ?? { adopted: [], restarted: [], dropped: [], retired: [] };
  }

  /** Stops every instance process of the fleet (teardown of a demo or test fleet); its state is kept. */
  stopAll(): Promise<void> {
    return this.exclusive((state) => this.ops.stopAll(state), { reconcile: false });
  }

  readActions() {
    return this.store.readActions();
  }

  get statePath(): string {
    return this.store.statePath;
  }

  readState(): Promise<FleetState> {
    return this.store.load();
  }

  /** One operation at a time per fleet: in this process by a queue, across processes by the state lock. */
  private exclusive<T>(fn: (state: FleetState) => Promise<T>, opts = { reconcile: true }): Promise<T> {
    const run = this.queue.then(() =>
      this.store.withLock(async () => {
        const state = await this.store.load();
        if (opts.reconcile && !this.reconciled) this.reconciled = await this.ops.reconcile(state);
        else if (opts.reconcile) await this.ops.holdWarm(state, 'reconcile');
        return fn(state);
      }, this.options.timeouts.lockMs),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  private checkService(service: string): void {
    if (service !== this.options.service) {
      throw new FleetStepError(`this haproxy-fleet target deploys ${this.options.service}, not ${service}`);
    }
  }

  /** The number of fleet members that must run the step's version once it is applied. */
  private checkStep(step: DeployStep): number {
    this.checkService(step.service);
    const n = this.options.fleetSize;
    if (step.track === 'staging') return 0;
    if (step.track === 'canary') {
      const k = step.canaryInstances;
      if (k === undefined || !Number.isInteger(k) || k < 1 || k >= n) {
        throw new FleetStepError(`canary step ${step.key}: canaryInstances must be 1..${n - 1} for a fleet of ${n}`);
      }
      return k;
    }
    const p = step.percent;
    if (p === undefined || !(p > 0 && p <= 100)) {
      throw new FleetStepError(`production step ${step.key}: percent must be in (0, 100]`);
    }
    return Math.ceil((n * p) / 100);
  }
}
