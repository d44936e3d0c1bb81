import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { createActivities } from '../activities';
import { NOTIFY_ACTIVITY_TIMEOUT_MS } from '../domain/notify-budget';

/** Every activity the release calls, with the options it is called with: each set's one-line why beside it. */

export type Activities = ReturnType<typeof createActivities>;

/**
 * Errors that say retrying cannot help: a step the fleet cannot carry out, a service with no target, a check whose
 * query cannot be built. The first two fail non-retryable by themselves; the list also covers a worker still
 * running code from before they did.
 */
const nonRetryableErrorTypes = ['FleetStepError', 'ConfigError', 'CheckQueryError'];

/** Lookups and bookkeeping: quick, and safe to repeat. */
export const quick = proxyActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes },
});

/**
 * Deploys wait for a cancelled attempt to finish: an undo must never race the step it reverts. Deploys and undos
 * heartbeat every 5 s while the target works, so a worker that died mid-step is noticed within 20 s.
 */
export const deploys = proxyActivities<Activities>({
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
export const undos = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '20s',
  retry: { maximumAttempts: 1 },
});

/** One attempt: the notifier retries on its own, and a lost notification must never hold a release up. */
export const notifications = proxyActivities<Activities>({
  startToCloseTimeout: NOTIFY_ACTIVITY_TIMEOUT_MS,
  retry: { maximumAttempts: 1 },
});

/**
 * A crashed stretch is noticed within ten minutes, the liveness a bake needs: its heartbeats are most of a long
 * release's bill (Temporal Cloud counts each), and at one per 80% of this timeout (TOLLGATE_ANALYSIS_HEARTBEAT=
 * liveness) a 7-day release costs ≈1,390 actions instead of ≈10,100 (BENCHMARKS.md §5). A failing round reports at
 * once, heartbeat or not.
 */
export const analyses = proxyActivities<Activities>({
  startToCloseTimeout: '1m', // replaced per call with the stretch's length
  heartbeatTimeout: '10m',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes },
});

/** The innermost message: an ActivityFailure says only "Activity task failed"; its cause says why. */
export function failureMessage(err: unknown): string {
  let current = err;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  return current instanceof Error ? current.message : String(current);
}

/**
 * A hook runs for as long as its own timeout allows (at most 9 minutes) and heartbeats meanwhile; one that answers
 * "try again" is retried a few times, then counts as failed.
 */
export const hookRuns = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '20s',
  retry: {
    initialInterval: '2s',
    backoffCoefficient: 2,
    maximumInterval: '30s',
    maximumAttempts: 4,
    nonRetryableErrorTypes,
  },
});

/**
 * Smoke checks may run jobs and call slow APIs (a job check may take up to 9 minutes): the deploys' budget, with a
 * heartbeat so a dead worker is noticed in 20 s. Only the timeouts differ from `quick`, which replay does not compare.
 */
export const smokeChecks = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '20s',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes },
});
