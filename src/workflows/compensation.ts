import { isCancellation, log } from '@temporalio/workflow';
import type { DeployStep } from '../providers/targets/types';
import { deploys, failureMessage, undos } from './activities';
import type { Controls } from './controls';
import type { ReleaseRecord } from './record';
import type { RunBound } from './rollover';

const UNDO_RETRY_MAX_MS = 60_000;

/** What compensation carries across continue-as-new: every step registered for undo, and the retry reached. */
export interface CompensationState {
  deployed: DeployStep[];
  /** Failed attempts at the undo now being retried: its backoff goes on where it was. */
  undoAttempt: number;
}

/**
 * The saga's compensation list: every step is registered for undo before it is deployed (undoing a step that never
 * applied is a no-op, missing one is not), and a rollback undoes them in reverse, retrying each until it succeeds
 * — for weeks if a target stays broken, in runs that continue as new.
 */
export class Compensation {
  constructor(
    private readonly record: ReleaseRecord,
    readonly state: CompensationState,
    private readonly bound: RunBound,
  ) {}

  async deploy(
    controls: Controls,
    name: string,
    step: Omit<DeployStep, 'key' | 'releaseId' | 'service' | 'version' | 'stableVersion'>,
  ): Promise<DeployStep> {
    const { record } = this;
    const s = record.status;
    await controls.whileUnpaused();
    record.setState('deploying');
    const full = this.named(name, step);
    this.state.deployed.push(full);
    const receipt = await deploys.deploy.executeWithOptions({ summary: `deploy ${name}: ${s.version}` }, [full]);
    // Shown as deployed only once it has been.
    s.deployedSteps.push(full.key);
    log.info(`deployed ${name}`, { ...record.logFields(), changes: receipt.changes, applied: receipt.applied });
    return full;
  }

  /**
   * Stops what the release's `keepPrevious` steps kept warm: after a clean watch, or what a rollback did not switch
   * back to. A target that cannot clean up costs spare capacity, not the outcome: the failure is recorded and the
   * release goes on.
   */
  async retirePrevious(): Promise<void> {
    const { record } = this;
    try {
      await deploys.retirePrevious.executeWithOptions(
        { summary: `retire ${record.status.stableVersion ?? 'previous'} (kept warm)` },
        [this.named('retire-previous', { track: 'production', percent: 100 })],
      );
    } catch (err) {
      if (isCancellation(err)) throw err;
      const detail = `the previous version kept warm could not be retired: ${failureMessage(err)}`;
      record.audit({ actor: 'tollgate', action: 'retire-previous', accepted: false, detail });
      log.error(detail, record.logFields());
    }
  }

  /** The release's step `name`: its idempotency key and what it deploys over. */
  private named(name: string, step: Omit<DeployStep, 'key' | 'releaseId' | 'service' | 'version' | 'stableVersion'>) {
    const { record } = this;
    const s = record.status;
    return {
      key: `${record.releaseId}/${name}`,
      releaseId: record.releaseId,
      service: s.service,
      version: s.version,
      stableVersion: s.stableVersion,
      ...step,
    } satisfies DeployStep;
  }

  /** The step deployed as `name`, from this run or an earlier one. */
  step(name: string): DeployStep | undefined {
    return this.state.deployed.find((step) => step.key === `${this.record.releaseId}/${name}`);
  }

  /** Whether a rollback has anything to undo. */
  get anyDeployed(): boolean {
    return this.state.deployed.length > 0;
  }

  /** Undoes every registered step not undone yet, newest first; never gives up. */
  async undoAll(): Promise<void> {
    const { record } = this;
    const rollback = record.status.rollback!;
    for (const step of [...this.state.deployed].reverse()) {
      if (rollback.undone.includes(step.key)) continue;
      for (;;) {
        try {
          await undos.undo.executeWithOptions(
            { summary: `undo ${step.key.split('/').pop()} → ${step.stableVersion ?? 'nothing'}` },
            [step],
          );
          rollback.undone.push(step.key);
          this.state.undoAttempt = 0;
          record.refresh();
          break;
        } catch (err) {
          const attempt = ++this.state.undoAttempt;
          rollback.failedAttempts++;
          rollback.lastError = `${step.key}: ${failureMessage(err)}`;
          log.error(`rollback step failed (attempt ${attempt}); retrying`, {
            ...record.logFields(),
            error: rollback.lastError,
          });
          record.refresh();
          await this.bound.sleep(
            Math.min(UNDO_RETRY_MAX_MS, 1000 * 2 ** Math.min(attempt, 6)),
            `retry undo of ${step.key}`,
          );
        }
      }
    }
    for (const wave of record.status.waves) if (wave.state !== 'pending') wave.state = 'rolled-back';
  }
}
