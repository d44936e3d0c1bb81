import type { Client, WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { statusQuery } from '../../src/domain/messages';
import { releaseWorkflowId, type ReleaseRequestInput, type ReleaseResult } from '../../src/domain/release';
import type { ReleaseStatus } from '../../src/domain/status';
import type { releaseWorkflow } from '../../src/workflows';
import { eventually } from './until';

/** Starting a release and watching it through its handle, the same on every server and with every worker. */

export type ReleaseHandle = WorkflowHandleWithFirstExecutionRunId<typeof releaseWorkflow>;

/** What a test does to a release while it runs. */
export type Drive<T> = (handle: ReleaseHandle) => Promise<T>;

/** Starts a release under the ID it must run as (`release-<service>`). */
export function startRelease(
  client: Pick<Client, 'workflow'>,
  taskQueue: string,
  request: ReleaseRequestInput,
): Promise<ReleaseHandle> {
  return client.workflow.start<typeof releaseWorkflow>('releaseWorkflow', {
    taskQueue,
    workflowId: releaseWorkflowId(request.service),
    args: [request],
  });
}

/**
 * Status, or undefined when it cannot be had within `ms`: a query needs a live worker, and there may be none (a
 * worker killed, a server restarting, a run handing over to the next).
 */
export function tryStatus(handle: WorkflowHandle<typeof releaseWorkflow>, ms = 3_000) {
  return within(handle.query(statusQuery), ms).catch(() => undefined);
}

/** Waits for the result (bounded); `undefined` when there is none in time. */
export const resultWithin = (handle: ReleaseHandle, timeoutMs: number): Promise<ReleaseResult | undefined> =>
  within(handle.result(), timeoutMs);

/**
 * `promise`, or undefined once `ms` have passed. The timer is cleared either way: one left running kept jest alive
 * for minutes after the crash suite.
 */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How long to wait for a status: in server time on the time-skipping server (it moves `step` ahead between polls, at
 * most 200 times), or in real time on any other.
 */
export type StatusPace = { env: TestWorkflowEnvironment; step: Duration } | { timeoutMs: number; everyMs?: number };

/**
 * Polls the release's status until `ok` holds, and returns it; past the bound it fails with where the release stood
 * (`what` names what was awaited, the predicate's own text by default). A query that gets no answer in time counts
 * as a status that did not match; the last error it got is in the failure.
 */
export async function waitForStatus(
  handle: WorkflowHandle<typeof releaseWorkflow>,
  ok: (s: ReleaseStatus) => boolean,
  pace: StatusPace,
  what = String(ok),
): Promise<ReleaseStatus> {
  let last: ReleaseStatus | undefined;
  let lastError: string | undefined;
  // A query is not given up on for the next while the wait lasts: abandoned ones pile up on a busy worker, and on
  // the time-skipping server a late answer taken as none would let server time move on past what was awaited.
  const started = Date.now();
  const queryMs = () => ('env' in pace ? 30_000 : Math.max(1, pace.timeoutMs - (Date.now() - started)));
  const poll = async () => {
    const status = await within(handle.query(statusQuery), queryMs()).catch((err: Error) => {
      lastError = err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message;
      return undefined;
    });
    return (last = status ?? last);
  };
  const show = () => `${brief(last)}${lastError === undefined ? '' : `; last query error: ${lastError}`}`;
  await eventually(
    poll,
    (s) => s !== undefined && ok(s),
    `the release to reach "${what}"`,
    'env' in pace
      ? // The wall-clock bound only keeps a stuck server from outlasting jest's timeout with nothing said.
        { polls: 200, timeoutMs: 100_000, pause: () => pace.env.sleep(pace.step), show }
      : { timeoutMs: pace.timeoutMs, everyMs: pace.everyMs ?? 200, show },
  );
  return last!;
}

export const canaryBaking = (s: ReleaseStatus) => s.stage === 'canary' && s.state === 'baking';

/** Where a release stands, in a line: for failure messages and progress. */
export function brief(s: ReleaseStatus | undefined): string {
  if (s === undefined) return 'no status';
  return JSON.stringify({
    stage: s.stage,
    state: s.state,
    outcome: s.outcome,
    gate: s.gate,
    pause: s.pause,
    analysis: { ...s.analysis, checks: s.analysis.checks.map((c) => `${c.check} ${c.verdict}: ${c.reason}`) },
    rollback: s.rollback,
    deployedSteps: s.deployedSteps.map((k) => k.split('/').pop()),
    audit: s.audit.slice(-5).map((a) => `${a.actor} ${a.action}${a.accepted ? '' : ' (refused)'}`),
  });
}
