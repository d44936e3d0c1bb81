import { condition, patched, workflowInfo } from '@temporalio/workflow';

/**
 * Continue-as-new. A run rolls over into a fresh one well before Temporal's limits (a warning at 10,240 events or
 * 10 MiB, termination at 51,200 or 50 MiB, 10,000 signals): a flood of refused messages, a rollback retried for
 * weeks or a month-long bake each stay within one run's bound, however long the release lives.
 */
const CONTINUE_AS_NEW = 'continue-as-new';
/** A 7-day release fits in one run (≈1,230 events): only what floods a release, or outlives a week, rolls over. */
export const RUN_MAX_EVENTS = 2_000;
export const RUN_MAX_BYTES = 2 * 1024 * 1024;
/**
 * The event count is read when a workflow task starts, after the wake that filled the run (≈ 13 events for an
 * analysis report) and before the rollover's own: rolling over this far below the bound keeps every run under it.
 */
export const EVENTS_HEADROOM = 100;

/** Thrown from a wait when the run is full: unwinds to the pipeline, which continues as new from its record. */
export class RollOver extends Error {
  override readonly name = 'RollOver';
}

export class RunBound {
  /** Decided once per run: releases recorded before continue-as-new existed replay as they were. */
  private readonly enabled = patched(CONTINUE_AS_NEW);

  /** The run should roll over now (safe in a condition: it reads, it writes no command). */
  full(): boolean {
    if (!this.enabled) return false;
    const info = workflowInfo();
    return (
      info.continueAsNewSuggested ||
      info.historyLength >= RUN_MAX_EVENTS - EVENTS_HEADROOM ||
      info.historySize >= RUN_MAX_BYTES
    );
  }

  /** Throws RollOver when the run is full. */
  check(): void {
    if (this.full()) throw new RollOver();
  }

  /** Waits until `ready`, or rolls over when the run fills up first. */
  async until(ready: () => boolean): Promise<void> {
    await condition(() => ready() || this.full());
    if (!ready()) throw new RollOver();
  }

  /**
   * Sleeps `ms` (a timer, as `sleep` would start), or rolls over when the run fills up first. The deadline is
   * the caller's to carry: a continued run sleeps what is left of it.
   */
  async sleep(ms: number, summary: string): Promise<void> {
    if (this.full()) throw new RollOver();
    const filled = await condition(() => this.full(), ms, { summary });
    if (filled) throw new RollOver();
  }
}
