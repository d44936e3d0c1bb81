import { randomUUID } from 'node:crypto';
import type { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { releaseWorkflowId } from '../src/domain/release';
import { SEGMENT_MAX_ROUNDS } from '../src/domain/bake';
import { countActions, estimatedHeartbeats, type ActionCount } from './actions';
import { benchActivities, servicePolicy, SERVICE, writePolicies } from './fixtures';
import { startTimeSkipping } from './servers';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** Where the real server terminates a run (the time-skipping server does not enforce it). */
export const HISTORY_EVENT_LIMIT = 51_200;
/** The heartbeat timeout of the workflow's analysis proxy (`analyses`, src/workflows/); keep the two in step. */
export const ANALYSIS_HEARTBEAT_TIMEOUT_MS = 600_000;
/** How often a running stretch heartbeats with TOLLGATE_ANALYSIS_HEARTBEAT=liveness: 80% of that timeout. */
export const HEARTBEAT_SPACING_MS = 0.8 * ANALYSIS_HEARTBEAT_TIMEOUT_MS;
const INTERVAL_MS = 60_000;

export const CYCLES = [
  { label: '1-hour', text: '1h', ms: 3_600_000 },
  { label: '24-hour', text: '24h', ms: 86_400_000 },
  { label: '7-day', text: '7d', ms: 604_800_000 },
] as const;
export type CycleLabel = (typeof CYCLES)[number]['label'];

export interface RunCost {
  /** Events of the whole release, over every run of its continue-as-new chain. */
  events: number;
  /** Events of its largest single run. */
  largestRun: number;
  runs: number;
  actions: ActionCount;
  wallMs: number;
  outcome: string;
}

export interface CycleResult {
  label: CycleLabel;
  cycleMs: number;
  release: RunCost[];
  naive: RunCost[];
  /** Heartbeats real analysis would add for the canary bake (none reach history, but each is a billable action). */
  heartbeatsEstimate: number;
  segments: number;
}

export interface HistoryResult {
  cycles: CycleResult[];
  wallMs: number;
}

export interface HistoryOptions {
  code: string;
  repeats: Record<'release' | 'naive', Record<CycleLabel, number>>;
  /** Wall-time bound of one naive run; past it the run is terminated and recorded as such. */
  naiveRunBoundMs: number;
  deadline: number;
  log: (line: string) => void;
}

/** The history of every run of a release from the first, following continue-as-new (at most 100 runs). */
export async function chainHistories(
  env: TestWorkflowEnvironment,
  workflowId: string,
  firstRunId: string,
): Promise<HistoryEvent[][]> {
  const runs: HistoryEvent[][] = [];
  for (let runId: string | undefined = firstRunId; runId && runs.length < 100;) {
    const history = await env.client.workflow.getHandle(workflowId, runId).fetchHistory();
    const events: HistoryEvent[] = history.events ?? [];
    runs.push(events);
    runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return runs;
}

/** Cost of a release: every run from the first, following continue-as-new, counted from the server's history. */
async function costOf(
  env: TestWorkflowEnvironment,
  workflowId: string,
  firstRunId: string,
  started: number,
  outcome: string,
): Promise<RunCost> {
  const runs = await chainHistories(env, workflowId, firstRunId);
  return {
    events: runs.reduce((n, events) => n + events.length, 0),
    largestRun: Math.max(0, ...runs.map((events) => events.length)),
    runs: runs.length,
    actions: countActions(runs.flat()),
    wallMs: Date.now() - started,
    outcome,
  };
}

type Design = 'release' | 'naive';
interface Job {
  design: Design;
  cycle: (typeof CYCLES)[number];
  repeats: number;
}

/**
 * Runs jobs one after another on their own time-skipping server (its clock is shared by everything on it, so
 * one server per lane keeps runs from waiting on each other's timers).
 */
async function lane(
  opts: HistoryOptions,
  jobs: Job[],
  record: (design: Design, label: CycleLabel, cost: RunCost) => void,
): Promise<void> {
  const env = await startTimeSkipping();
  try {
    for (const job of jobs) {
      const { cycle } = job;
      const taskQueue = `bench-history-${job.design}-${cycle.text}-${randomUUID().slice(0, 8)}`;
      const worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: { code: opts.code },
        activities: benchActivities(writePolicies(servicePolicy(cycle.text, '1m'))),
      });
      await worker.runUntil(async () => {
        for (let i = 0; i < job.repeats && Date.now() < opts.deadline; i++) {
          const cost =
            job.design === 'release'
              ? await runRelease(env, taskQueue)
              : await runNaive(env, taskQueue, cycle.ms, opts);
          record(job.design, cycle.label, cost);
          opts.log(`history: ${job.design} ${cycle.label} run ${i + 1}: ${cost.events} events (${cost.outcome})`);
        }
      });
    }
  } finally {
    await env.teardown();
  }
}

export async function runHistoryBench(opts: HistoryOptions): Promise<HistoryResult> {
  const t0 = Date.now();
  const cycles: CycleResult[] = CYCLES.map((cycle) => ({
    label: cycle.label,
    cycleMs: cycle.ms,
    release: [],
    naive: [],
    heartbeatsEstimate: estimatedHeartbeats(cycle.ms, ANALYSIS_HEARTBEAT_TIMEOUT_MS),
    segments: Math.ceil(cycle.ms / INTERVAL_MS / SEGMENT_MAX_ROUNDS),
  }));
  const record = (design: Design, label: CycleLabel, cost: RunCost) =>
    cycles.find((c) => c.label === label)![design].push(cost);
  const jobs = (design: Design, labels: CycleLabel[]): Job[] =>
    CYCLES.filter((c) => labels.includes(c.label)).map((cycle) => ({
      design,
      cycle,
      repeats: opts.repeats[design][cycle.label],
    }));
  // The naive 7-day run is the long pole: it gets a lane of its own, beside everything else.
  await Promise.all([
    lane(opts, jobs('naive', ['7-day']), record),
    lane(opts, [...jobs('release', ['1-hour', '24-hour', '7-day']), ...jobs('naive', ['1-hour', '24-hour'])], record),
  ]);
  return { cycles, wallMs: Date.now() - t0 };
}

/** Runs one at a time per server, each closed (terminate in finally) before the next reuses `release-<service>`. */
async function runRelease(env: TestWorkflowEnvironment, taskQueue: string): Promise<RunCost> {
  const workflowId = releaseWorkflowId(SERVICE);
  const started = Date.now();
  const handle = await env.client.workflow.start('releaseWorkflow', {
    taskQueue,
    workflowId,
    args: [{ service: SERVICE, version: '2.0.0', initiator: 'bench' }],
  });
  try {
    const { outcome } = (await handle.result()) as { outcome: string };
    return await costOf(env, workflowId, handle.firstExecutionRunId, started, outcome);
  } finally {
    await handle.terminate('bench over').catch(() => undefined);
  }
}

async function runNaive(
  env: TestWorkflowEnvironment,
  taskQueue: string,
  cycleMs: number,
  opts: HistoryOptions,
): Promise<RunCost> {
  const workflowId = `bench-naive-${randomUUID()}`;
  const started = Date.now();
  const handle = await env.client.workflow.start('naiveReleaseWorkflow', {
    taskQueue,
    workflowId,
    args: [{ service: SERVICE, version: '2.0.0', cycleMs, intervalMs: INTERVAL_MS, historyLimit: HISTORY_EVENT_LIMIT }],
  });
  let timer: NodeJS.Timeout | undefined;
  const bound = Math.min(opts.naiveRunBoundMs, Math.max(1_000, opts.deadline - Date.now()));
  const timedOut = new Promise<'time-bound'>((resolve) => (timer = setTimeout(() => resolve('time-bound'), bound)));
  try {
    const outcome = await Promise.race([
      handle.result().then(
        (r) => (r as { outcome: string }).outcome,
        (err: unknown) => {
          const cause = (err as { cause?: { type?: string } }).cause;
          return cause?.type === 'HistoryLimitExceeded' ? 'terminated at the history limit' : `failed: ${String(err)}`;
        },
      ),
      timedOut,
    ]);
    if (outcome === 'time-bound') await handle.terminate('bench time bound').catch(() => undefined);
    const recorded = outcome === 'time-bound' ? 'stopped by the time bound' : outcome;
    return await costOf(env, workflowId, handle.firstExecutionRunId, started, recorded);
  } finally {
    clearTimeout(timer);
    await handle.terminate('bench over').catch(() => undefined);
  }
}
