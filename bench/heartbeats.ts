import { Writable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import pino from 'pino';
import { createActivities } from '../src/activities';
import type { AnalysisHeartbeat, AnalysisSegment, AnalyzeInput } from '../src/activities/types';
import { PolicyStore } from '../src/config/policies';
import { releaseWorkflowId } from '../src/domain/release';
import type { MetricsProvider } from '../src/providers/metrics/types';
import { workflowBundlerOptions } from '../src/worker';
import { SEGMENT_MAX_ROUNDS } from '../src/domain/bake';
import { countActions, serverActions, type ActionCount } from './actions';
import { benchActivities, benchTarget, instantHealthy, servicePolicy, SERVICE, writePolicies } from './fixtures';
import { chainHistories, type RunCost } from './history';
import { startDevServer, startTimeSkipping } from './servers';
import type { StretchesInput, StretchesResult } from './heartbeat-workflow';
import { summarize, type Summary } from './stats';
import { freePort } from '../scripts/ports';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const T = temporal.api.enums.v1.EventType;

const MINUTE = 60_000;
/** The analysis interval of the releases measured: one round a minute, as §1. */
export const INTERVAL_MS = MINUTE;
export const CYCLE = { label: '7-day', text: '7d', ms: 7 * 24 * 60 * MINUTE } as const;
/** The bake's own margin on a stretch's start-to-close timeout (rounds × interval + 5 min). */
const STRETCH_MARGIN_MS = 5 * MINUTE;

/** One way a running analysis stretch could heartbeat: a value of TOLLGATE_ANALYSIS_HEARTBEAT and its timeouts. */
export interface HeartbeatOption {
  key: string;
  label: string;
  /** TOLLGATE_ANALYSIS_HEARTBEAT */
  setting: 'round' | 'liveness' | '2m';
  /** The activity's heartbeat timeout (the workflow's analysis proxy). */
  heartbeatTimeoutMs: number;
  /** The worker's maxHeartbeatThrottleInterval (TOLLGATE_MAX_HEARTBEAT_THROTTLE). */
  throttleMs: number;
}

const SPACING_MS: Record<HeartbeatOption['setting'], number> = {
  round: 0,
  liveness: Number.POSITIVE_INFINITY,
  '2m': 2 * MINUTE,
};

export const HEARTBEAT_OPTIONS: HeartbeatOption[] = [
  {
    key: 'round-2m',
    label: 'every round, 2-min timeout (today: its cost and its `status`)',
    setting: 'round',
    heartbeatTimeoutMs: 2 * MINUTE,
    throttleMs: MINUTE,
  },
  {
    key: 'round-10m',
    label: 'every round (details only on change), 10-min timeout',
    setting: 'round',
    heartbeatTimeoutMs: 10 * MINUTE,
    throttleMs: MINUTE,
  },
  {
    key: 'round-throttle-10m',
    label: 'every round, spaced by the SDK throttle at 10 min (TOLLGATE_MAX_HEARTBEAT_THROTTLE=10m), 10-min timeout',
    setting: 'round',
    heartbeatTimeoutMs: 10 * MINUTE,
    throttleMs: 10 * MINUTE,
  },
  {
    key: 'every-2m',
    label: 'a new round at most every 2 min, 10-min timeout',
    setting: '2m',
    heartbeatTimeoutMs: 10 * MINUTE,
    throttleMs: MINUTE,
  },
  {
    key: 'liveness-2m',
    label: 'liveness only, 2-min timeout (the workflow unchanged)',
    setting: 'liveness',
    heartbeatTimeoutMs: 2 * MINUTE,
    throttleMs: MINUTE,
  },
  {
    key: 'liveness-10m',
    label: 'liveness only, 10-min timeout',
    setting: 'liveness',
    heartbeatTimeoutMs: 10 * MINUTE,
    throttleMs: MINUTE,
  },
];

/**
 * Stretches that report back without heartbeating: start-to-close is their only liveness, so rounds × interval +
 * margin ≤ 10 min — 5 rounds with the bake's 5-minute margin, 9 with a 1-minute one.
 */
export const SHORT_STRETCHES = [
  { rounds: Math.floor((10 * MINUTE - STRETCH_MARGIN_MS) / INTERVAL_MS), marginMs: STRETCH_MARGIN_MS },
  { rounds: Math.floor((10 * MINUTE - MINUTE) / INTERVAL_MS), marginMs: MINUTE },
];

export interface OptionResult {
  option: HeartbeatOption;
  /** Healthy stretches measured, each of SEGMENT_MAX_ROUNDS rounds. */
  stretches: number;
  rounds: number;
  /** Heartbeats the server recorded over those stretches (its `action` counter, grpc_RecordActivityTaskHeartbeat). */
  heartbeats: number;
  /** The server's action counter for the option's namespace over those stretches, by type. */
  serverActions: Record<string, number>;
  /** The same workflow's actions as counted from its history (bench/actions.ts). */
  historyActions: ActionCount;
  /** Rounds that did not end their stretch (the others reach `status` in the stretch's report), and of them, those
   * whose number the pending activity's heartbeat details showed at some poll: what `watch` could print. */
  liveRounds: number;
  shownLive: number;
  /** From a round's end to `status` showing it (heartbeat details or the stretch's report), in real time. */
  stalenessMs: Summary;
  /** A critical failure at a stretch's third round: its decision, and from that round to the activity's completion. */
  failing?: { decision: string; reportMs: number };
  /** The metrics stop answering after two rounds (a stuck or dead worker sends nothing more): how the stretch ended,
   * and after how long, in real time, the server noticed. */
  dead?: { outcome: string; noticedMs: number };
  error?: string;
}

export interface ReleaseShape {
  /** Rounds per stretch the analysis double runs at most (the workflow asks for up to SEGMENT_MAX_ROUNDS). */
  stretchRounds: number;
  cost: RunCost;
  workflowTasks: number;
  stretches: number;
  rounds: number;
}

export interface HeartbeatResult {
  /** Real time ÷ bench time in the dev-server part. */
  scale: number;
  stretchesPerOption: number;
  options: OptionResult[];
  releases: ReleaseShape[];
  wallMs: number;
}

export interface HeartbeatOptions {
  code: string;
  stretchesPerOption: number;
  scale: number;
  log: (line: string) => void;
}

/**
 * A 7-day release on the time-skipping server with an analysis double that takes its stretch's time on the server's
 * clock (env.sleep while the activity runs holds the skipped clock to it, as a real stretch would), so the history is
 * a real release's: the next stretch starts on the report, with no waiting timer. `stretchRounds` below
 * SEGMENT_MAX_ROUNDS reports back early, as stretches without heartbeats would have to.
 */
async function releaseShape(env: TestWorkflowEnvironment, code: string, stretchRounds: number): Promise<ReleaseShape> {
  const taskQueue = `bench-heartbeats-shape-${stretchRounds}-${randomUUID().slice(0, 8)}`;
  const calls: number[] = [];
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: { code },
    activities: {
      ...benchActivities(writePolicies(servicePolicy(CYCLE.text, '1m'))),
      analyze: async (input: AnalyzeInput): Promise<AnalysisSegment> => {
        const rounds = Math.min(input.maxRounds, stretchRounds);
        calls.push(rounds);
        await env.sleep(rounds * input.intervalMs);
        return instantHealthy({ ...input, maxRounds: rounds });
      },
    },
  });
  const started = Date.now();
  const workflowId = releaseWorkflowId(SERVICE);
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start('releaseWorkflow', {
      taskQueue,
      workflowId,
      args: [{ service: SERVICE, version: '2.0.0', initiator: 'bench' }],
    });
    try {
      const { outcome } = (await handle.result()) as { outcome: string };
      const runs = await chainHistories(env, workflowId, handle.firstExecutionRunId);
      const all = runs.flat();
      return {
        stretchRounds,
        cost: {
          events: all.length,
          largestRun: Math.max(...runs.map((r) => r.length)),
          runs: runs.length,
          actions: countActions(all),
          wallMs: Date.now() - started,
          outcome,
        },
        workflowTasks: all.filter((e) => e.eventType === T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED).length,
        stretches: calls.length,
        rounds: calls.reduce((a, b) => a + b, 0),
      };
    } finally {
      await handle.terminate('bench over').catch(() => undefined);
    }
  });
}

type MetricsMode = 'healthy' | 'fail' | 'hang';

/** Instant metrics that answer healthy, fail (an error ratio of 50 %), or never answer, as the bench switches them. */
class SwitchableMetrics implements MetricsProvider {
  readonly kind = 'bench';
  mode: MetricsMode = 'healthy';
  hungAt: number | undefined;
  private readonly hung: (() => void)[] = [];
  isOnline = () => Promise.resolve(true);
  query = () => this.answer().then((v) => v[0]);
  queryRange = () => this.answer();
  private answer(): Promise<number[]> {
    if (this.mode === 'hang') {
      this.hungAt ??= Date.now();
      return new Promise((resolve) => this.hung.push(() => resolve([0])));
    }
    return Promise.resolve([this.mode === 'fail' ? 0.5 : 0]);
  }
  release(): void {
    this.mode = 'healthy';
    this.hung.splice(0).forEach((r) => r());
  }
}

/** The rounds an activity logs ('analysis round'), with their times: how the bench knows when a round ended. */
function roundLog(onRound: (round: number, at: number) => void) {
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (!line.includes('"analysis round"')) continue;
        const entry = JSON.parse(line) as { round?: number };
        if (typeof entry.round === 'number') onRound(entry.round, Date.now());
      }
      done();
    },
  });
  return pino({ level: 'info' }, stream);
}

const scaled = (ms: number, scale: number) => (Number.isFinite(ms) ? Math.max(1, Math.round(ms / scale)) : ms);

async function scrape(port: number, namespace: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return serverActions(text, namespace);
}

const eventTime = (e: HistoryEvent | undefined): number | undefined => {
  const t = e?.eventTime;
  return t ? Number(t.seconds ?? 0) * 1000 + Math.round((t.nanos ?? 0) / 1e6) : undefined;
};

/**
 * One option on its own namespace of the dev server: the real `analyze` with its setting, under its heartbeat
 * timeout and worker throttle, every duration divided by `scale`. Healthy stretches first (heartbeats and what
 * `status` showed), then a stretch that fails at its third round, then one whose metrics stop answering.
 */
async function measureOption(
  env: TestWorkflowEnvironment,
  metricsPort: number,
  opts: HeartbeatOptions,
  option: HeartbeatOption,
): Promise<OptionResult> {
  const { scale } = opts;
  const namespace = `bench-hb-${option.key}`;
  const client = new Client({ connection: env.connection, namespace });
  const metrics = new SwitchableMetrics();
  const roundEnds = new Map<number, number>();
  let onRound: (round: number) => void = () => undefined;
  const logger = roundLog((round, at) => {
    roundEnds.set(round, at);
    onRound(round);
  });
  const taskQueue = `bench-hb-${option.key}`;
  const policyDir = writePolicies(servicePolicy(CYCLE.text, '1m'));
  const worker = await Worker.create({
    connection: env.nativeConnection,
    namespace,
    taskQueue,
    workflowBundle: { code: opts.code },
    activities: createActivities({
      target: benchTarget(policyDir),
      metrics,
      policies: new PolicyStore(policyDir),
      logger,
      analysisHeartbeatMs: scaled(SPACING_MS[option.setting], scale),
    }),
    maxHeartbeatThrottleInterval: scaled(option.throttleMs, scale),
    shutdownGraceTime: 1_000,
  });
  const stretchInput = (stretches: number, counters = { rounds: 0, failures: 0, inconclusive: 0, requests: 0 }) => {
    const input: StretchesInput = {
      stretches,
      heartbeatTimeoutMs: scaled(option.heartbeatTimeoutMs, scale),
      marginMs: scaled(STRETCH_MARGIN_MS, scale),
      analysis: {
        context: {
          releaseId: `${namespace}/bench`,
          service: SERVICE,
          version: '2.0.0',
          stableVersion: '1.0.0',
          stage: 'canary',
          track: 'canary',
        },
        checks: [{ name: 'errors', template: 'error-ratio', max: 0.01, critical: true }],
        intervalMs: scaled(INTERVAL_MS, scale),
        maxRounds: SEGMENT_MAX_ROUNDS,
        counters,
        failureLimit: 3,
        inconclusiveLimit: 3,
        requestsRequired: 0,
      },
    };
    return input;
  };
  const result: OptionResult = {
    option,
    stretches: opts.stretchesPerOption,
    rounds: 0,
    heartbeats: 0,
    serverActions: {},
    historyActions: countActions([]),
    liveRounds: 0,
    shownLive: 0,
    stalenessMs: summarize([]),
  };
  try {
    await worker.runUntil(async () => {
      // Healthy stretches, with `status`'s view of them: the pending activity's heartbeat details, polled 5× a round.
      const handle = await client.workflow.start('analysisStretchesWorkflow', {
        taskQueue,
        workflowId: `${namespace}-healthy`,
        args: [stretchInput(opts.stretchesPerOption)],
      });
      const shown = new Map<number, number>();
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const at = Date.now();
          const description = await handle.describe().catch(() => undefined);
          const payload = description?.raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0];
          if (payload) {
            const rounds = defaultPayloadConverter.fromPayload<AnalysisHeartbeat>(payload).counters.rounds;
            if (!shown.has(rounds)) shown.set(rounds, at);
          }
          await new Promise((r) => setTimeout(r, scaled(INTERVAL_MS, scale) / 5));
        }
      })();
      const done = (await handle.result()) as StretchesResult;
      polling = false;
      await poller;
      result.serverActions = await scrape(metricsPort, namespace);
      result.heartbeats = result.serverActions.grpc_RecordActivityTaskHeartbeat ?? 0;
      result.rounds = done.rounds;
      const events = (await handle.fetchHistory()).events ?? [];
      result.historyActions = countActions(events);
      // A stretch's last round reaches `status` in its report (its activity's completion).
      const reports = events
        .filter((e) => e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
        .map((e) => eventTime(e) ?? NaN);
      const staleness: number[] = [];
      for (const [round, endedAt] of roundEnds) {
        const lastOfStretch = round % SEGMENT_MAX_ROUNDS === 0;
        if (!lastOfStretch) result.liveRounds++;
        if (!lastOfStretch && shown.has(round)) result.shownLive++;
        const seenAt = [
          ...[...shown].filter(([r]) => r >= round).map(([, at]) => at),
          ...reports.filter((at) => at >= endedAt),
        ];
        if (seenAt.length > 0) staleness.push((Math.min(...seenAt) - endedAt) * scale);
      }
      result.stalenessMs = summarize(staleness);
      opts.log(
        `heartbeats: ${option.key}: ${result.heartbeats} heartbeats over ${done.rounds} rounds (${done.outcomes.join(', ')})`,
      );

      // A critical failure at the third round of a stretch: the activity must report it at once.
      const failingRound = result.rounds + 3;
      onRound = (round) => {
        if (round === failingRound - 1) metrics.mode = 'fail';
      };
      const failing = await client.workflow.start('analysisStretchesWorkflow', {
        taskQueue,
        workflowId: `${namespace}-failing`,
        args: [stretchInput(1, { rounds: result.rounds, failures: 0, inconclusive: 0, requests: 0 })],
      });
      const failed = (await failing.result()) as StretchesResult;
      metrics.mode = 'healthy';
      const completed = eventTime(
        ((await failing.fetchHistory()).events ?? []).find((e) => e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
      );
      const decidedAt = roundEnds.get(failingRound);
      result.failing = {
        decision: failed.outcomes.join(', '),
        reportMs: completed !== undefined && decidedAt !== undefined ? completed - decidedAt : NaN,
      };

      // The metrics stop answering after two rounds: nothing heartbeats any more, as with a worker that died.
      onRound = (round) => {
        if (round === failingRound + 2) metrics.mode = 'hang';
      };
      const dead = await client.workflow.start('analysisStretchesWorkflow', {
        taskQueue,
        workflowId: `${namespace}-dead`,
        args: [stretchInput(1, { rounds: failingRound, failures: 0, inconclusive: 0, requests: 0 })],
      });
      const gone = (await dead.result()) as StretchesResult;
      const timedOut = eventTime(
        ((await dead.fetchHistory()).events ?? []).find((e) => e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT),
      );
      result.dead = {
        outcome: gone.outcomes.join(', '),
        noticedMs: timedOut !== undefined && metrics.hungAt !== undefined ? (timedOut - metrics.hungAt) * scale : NaN,
      };
      onRound = () => undefined;
      metrics.release();
    });
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    metrics.release();
  }
  return result;
}

/**
 * Billable actions of a 7-day release, option by option. History (time-skipping server): a real 7-day release with
 * stretches of SEGMENT_MAX_ROUNDS, and releases whose stretches report back every few rounds (SHORT_STRETCHES).
 * Heartbeats (dev server, every option on a namespace of its own, side by side): the real `analyze` activity under
 * each option, time divided by `scale`, counted by the server.
 */
export async function runHeartbeatBench(opts: HeartbeatOptions): Promise<HeartbeatResult> {
  const t0 = Date.now();
  const releases: ReleaseShape[] = [];
  const noop = () => undefined;
  const { code: shapeCode } = await bundleWorkflowCode({
    workflowsPath: require.resolve('./workflows'),
    workflowInterceptorModules: [require.resolve('./heartbeat-interceptors')],
    logger: { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error },
    ...workflowBundlerOptions(),
  });
  const skipping = await startTimeSkipping();
  try {
    for (const rounds of [SEGMENT_MAX_ROUNDS, ...SHORT_STRETCHES.map((s) => s.rounds)]) {
      const shape = await releaseShape(skipping, shapeCode, rounds);
      releases.push(shape);
      opts.log(
        `heartbeats: 7-day release, stretches of ≤ ${rounds} rounds: ${shape.cost.actions.total} actions in history, ` +
          `${shape.cost.events} events, ${shape.stretches} stretches (${shape.cost.outcome})`,
      );
    }
  } finally {
    await skipping.teardown();
  }
  const metricsPort = await freePort();
  const env = await startDevServer({
    namespaces: HEARTBEAT_OPTIONS.map((o) => `bench-hb-${o.key}`),
    metricsPort,
  });
  try {
    const options = await Promise.all(HEARTBEAT_OPTIONS.map((o) => measureOption(env, metricsPort, opts, o)));
    return {
      scale: opts.scale,
      stretchesPerOption: opts.stretchesPerOption,
      options,
      releases,
      wallMs: Date.now() - t0,
    };
  } finally {
    await env.teardown();
  }
}
