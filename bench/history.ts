import { randomUUID } from 'node:crypto';
import { temporal } from '@temporalio/proto';
import type { WorkflowHandle } from '@temporalio/client';
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
/** A release's history is read over at most this many runs of its continue-as-new chain. */
const MAX_CHAIN_RUNS = 100;

export const CYCLES = [
  { label: '1-hour', text: '1h', ms: 3_600_000 },
  { label: '24-hour', text: '24h', ms: 86_400_000 },
  { label: '7-day', text: '7d', ms: 604_800_000 },
  { label: '30-day', text: '30d', ms: 2_592_000_000 },
] as const;
export type CycleLabel = (typeof CYCLES)[number]['label'];

export interface RunCost {
  /** Events of the whole release, over every run of its continue-as-new chain. */
  events: number;
  /** Events of its largest single run. */
  largestRun: number;
  /** Encoded size of the events of its largest run in bytes (the history bench sets it). */
  largestRunBytes?: number;
  /** Events of each run, in chain order (the history bench sets it). */
  runEvents?: number[];
  runs: number;
  actions: ActionCount;
  /** What the release's history is made of beyond rounds (the history bench sets it). */
  anatomy?: Anatomy;
  wallMs: number;
  outcome: string;
}

/** The parts of a release's history a change of the workflow adds once per release rather than per round. */
export interface Anatomy {
  /** Patch IDs the release recorded (a marker each), in order of first appearance. */
  patches: string[];
  /** Upserts of TemporalChangeVersion, which the SDK's core adds after every patch marker. */
  changeVersionUpserts: number;
  /** Activities scheduled, by type. */
  activities: Record<string, number>;
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
  /** Releases per design and cycle; 0 runs none (the naive design cannot finish the longest cycles). */
  repeats: Record<'release' | 'naive', Record<CycleLabel, number>>;
  /** Wall-time bound of one naive run; past it the run is terminated and recorded as such. */
  naiveRunBoundMs: number;
  /** Wall-time bound of one Tollgate release, whatever its cycle (a 30-day one takes ≈ 15 s alone). */
  releaseRunBoundMs: number;
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
  for (let runId: string | undefined = firstRunId; runId && runs.length < MAX_CHAIN_RUNS;) {
    const history = await env.client.workflow.getHandle(workflowId, runId).fetchHistory();
    const events: HistoryEvent[] = history.events ?? [];
    runs.push(events);
    runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return runs;
}

const T = temporal.api.enums.v1.EventType;
const CHANGE_VERSION = 'TemporalChangeVersion';

function anatomyOf(events: HistoryEvent[]): Anatomy {
  const patches = new Set<string>();
  const activities: Record<string, number> = {};
  let changeVersionUpserts = 0;
  for (const e of events) {
    if (e.eventType === T.EVENT_TYPE_MARKER_RECORDED) {
      const data = e.markerRecordedEventAttributes?.details?.['patch-data']?.payloads?.[0]?.data;
      if (data) patches.add(String((JSON.parse(Buffer.from(data).toString()) as { id?: unknown }).id));
    } else if (e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) {
      const type = e.activityTaskScheduledEventAttributes?.activityType?.name ?? '?';
      activities[type] = (activities[type] ?? 0) + 1;
    } else if (e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.[CHANGE_VERSION]) {
      changeVersionUpserts++;
    }
  }
  return { patches: [...patches], changeVersionUpserts, activities };
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
  const bytes = runs.map((events) => temporal.api.history.v1.History.encode({ events }).finish().length);
  return {
    events: runs.reduce((n, events) => n + events.length, 0),
    largestRun: Math.max(0, ...runs.map((events) => events.length)),
    largestRunBytes: Math.max(0, ...bytes),
    runEvents: runs.map((events) => events.length),
    runs: runs.length,
    actions: countActions(runs.flat()),
    anatomy: anatomyOf(runs.flat()),
    wallMs: Date.now() - started,
    outcome,
  };
}

/**
 * The release's outcome, or `undefined` once `boundMs` has passed (the caller terminates it). A failed run's
 * outcome names the failure; the naive design's own end at the history limit is named as the real server's.
 */
async function outcomeWithin(handle: WorkflowHandle, boundMs: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), boundMs)));
  try {
    return await Promise.race([
      handle.result().then(
        (r) => (r as { outcome: string }).outcome,
        (err: unknown) => {
          const cause = (err as { cause?: { type?: string } }).cause;
          return cause?.type === 'HistoryLimitExceeded' ? 'terminated at the history limit' : `failed: ${String(err)}`;
        },
      ),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A run's wall-time bound: its own, never past the section's deadline (at least a second). */
const boundOf = (opts: HistoryOptions, ms: number) => Math.min(ms, Math.max(1_000, opts.deadline - Date.now()));

type Design = 'release' | 'naive';
interface Job {
  design: Design;
  cycle: (typeof CYCLES)[number];
  repeats: number;
}

/**
 * Runs jobs one after another on their own time-skipping server (its clock is shared by everything on it, so
 * one server per lane keeps runs from waiting on each other's timers). Bounded: each job runs at most its repeats,
 * none starts past the deadline, and every run has a wall-time bound of its own.
 */
async function lane(
  opts: HistoryOptions,
  jobs: Job[],
  record: (design: Design, label: CycleLabel, cost: RunCost) => void,
): Promise<void> {
  if (jobs.length === 0) return;
  const env = await startTimeSkipping();
  try {
    for (const job of jobs) {
      if (Date.now() >= opts.deadline) break;
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
              ? await runRelease(env, taskQueue, opts)
              : await runNaive(env, taskQueue, cycle.ms, opts);
          record(job.design, cycle.label, cost);
          const runs = cost.runs > 1 ? ` in ${cost.runs} runs (${cost.runEvents?.join(' + ')})` : '';
          opts.log(
            `history: ${job.design} ${cycle.label} run ${i + 1}: ${cost.events} events${runs} (${cost.outcome})`,
          );
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
    CYCLES.filter((c) => labels.includes(c.label) && opts.repeats[design][c.label] > 0).map((cycle) => ({
      design,
      cycle,
      repeats: opts.repeats[design][cycle.label],
    }));
  // The naive 7-day run is the long pole: it gets a lane of its own, after the 30-day releases (≈ 20 s each), beside
  // everything else. The naive design is not run for 30 days (it cannot finish 7): its figure there is projected.
  await Promise.all([
    lane(opts, [...jobs('release', ['30-day']), ...jobs('naive', ['7-day', '30-day'])], record),
    lane(opts, [...jobs('release', ['1-hour', '24-hour', '7-day']), ...jobs('naive', ['1-hour', '24-hour'])], record),
  ]);
  return { cycles, wallMs: Date.now() - t0 };
}

/** Runs one at a time per server, each closed (terminate in finally) before the next reuses `release-<service>`. */
function runRelease(env: TestWorkflowEnvironment, taskQueue: string, opts: HistoryOptions): Promise<RunCost> {
  const args = [{ service: SERVICE, version: '2.0.0', initiator: 'bench' }];
  return measure(
    env,
    taskQueue,
    'releaseWorkflow',
    releaseWorkflowId(SERVICE),
    args,
    boundOf(opts, opts.releaseRunBoundMs),
  );
}

function runNaive(env: TestWorkflowEnvironment, taskQueue: string, cycleMs: number, opts: HistoryOptions) {
  const args = [
    { service: SERVICE, version: '2.0.0', cycleMs, intervalMs: INTERVAL_MS, historyLimit: HISTORY_EVENT_LIMIT },
  ];
  return measure(
    env,
    taskQueue,
    'naiveReleaseWorkflow',
    `bench-naive-${randomUUID()}`,
    args,
    boundOf(opts, opts.naiveRunBoundMs),
  );
}

/** One run of `workflowType` to its end or its wall-time bound (then terminated, and recorded as such), costed. */
async function measure(
  env: TestWorkflowEnvironment,
  taskQueue: string,
  workflowType: string,
  workflowId: string,
  args: unknown[],
  boundMs: number,
): Promise<RunCost> {
  const started = Date.now();
  const handle = await env.client.workflow.start(workflowType, { taskQueue, workflowId, args });
  try {
    const outcome = await outcomeWithin(handle, boundMs);
    if (outcome === undefined) await handle.terminate('bench time bound').catch(() => undefined);
    return await costOf(env, workflowId, handle.firstExecutionRunId, started, outcome ?? 'stopped by the time bound');
  } finally {
    await handle.terminate('bench over').catch(() => undefined);
  }
}
