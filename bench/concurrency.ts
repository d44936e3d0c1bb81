import { randomUUID } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { releaseWorkflowId } from '../src/domain/release';
import { benchServices, servicePolicy, writePolicies } from './fixtures';
import type { ServerProbe, TreeUsage } from './proc';
import { WorkerProcess } from './worker-handle';
import { freePort } from '../scripts/ports';

export interface Phase {
  wallMs: number;
  /** Worker CPU (user + system, all workers) as a share of one core. */
  cpuPercent: number;
  /** The server's, part by part (with a probe): CPU as a share of one core. */
  serverCpuPercent?: Record<string, number>;
  workflowTaskScheduleToStart: HistogramSummary | undefined;
  activityScheduleToStart: HistogramSummary | undefined;
}

export interface ConcurrencyResult {
  releases: number;
  cycle: string;
  interval: string;
  /** Starting every release until each is baking in canary. */
  rampUp: Phase;
  /** All of them baking, nothing else happening. */
  steady: Phase;
  whole: Phase;
  /** The workers' RSS (added up) once started, before any release, and at the end of the steady window. */
  idleRssMiB: number;
  endRssMiB: number;
  peakRssMiB: number;
  /** The same, worker by worker. */
  perWorker: { idleRssMiB: number; endRssMiB: number; peakRssMiB: number }[];
  /** The server's parts' memory (PSS) before any release and at the end of the steady window (with a probe). */
  serverPssMiB?: { idle: Record<string, number>; end: Record<string, number> };
  errors: string[];
  worker: WorkerProcess['settings'];
  wallMs: number;
}

export interface HistogramSummary {
  count: number;
  /** Upper bounds of the buckets holding the 50th and 99th percentiles, in ms. */
  p50LeMs: number;
  p99LeMs: number;
}

/** Nothing finishes in the window, and every release wakes in it: a progress tick a minute into its bake. */
const CYCLE = '20m';
const INTERVAL = '1s';

export interface ConcurrencyOptions {
  env: TestWorkflowEnvironment;
  bundlePath: string;
  releases: number;
  steadyMs: number;
  /** Worker processes polling the one task queue; 1 unless set. */
  workers?: number;
  /** Reads the server's CPU and memory at the phase boundaries, for its share beside the workers'. */
  server?: ServerProbe;
  maxCachedWorkflows?: number;
  deadline: number;
  log: (line: string) => void;
}

type Buckets = Map<number, number>;

/** A Prometheus histogram's cumulative buckets, added up across label sets (task queues, workflow types). */
export function buckets(metrics: string, name: string): Buckets {
  const out: Buckets = new Map();
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (le === undefined || !Number.isFinite(value)) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + value);
  }
  return out;
}

/** The buckets holding p50 and p99 of what was observed between two scrapes. */
export function between(before: Buckets, after: Buckets): HistogramSummary | undefined {
  const sorted = [...after.entries()]
    .map(([le, n]) => [le, n - (before.get(le) ?? 0)] as const)
    .sort((a, b) => a[0] - b[0]);
  const count = sorted.at(-1)?.[1] ?? 0;
  if (count === 0) return undefined;
  const at = (q: number) => sorted.find(([, cumulative]) => cumulative >= q * count)?.[0] ?? Infinity;
  return { count, p50LeMs: at(0.5), p99LeMs: at(0.99) };
}

function counter(metrics: string, name: string): number {
  return metrics
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

async function inBatches<T, R>(items: T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

function mapValues(
  parts: Record<string, TreeUsage>,
  fn: (usage: TreeUsage, part: string) => number,
): Record<string, number> {
  return Object.fromEntries(Object.entries(parts).map(([part, u]) => [part, fn(u, part)]));
}

const WFT_SCHEDULE_TO_START = 'temporal_workflow_task_schedule_to_start_latency';
const ACTIVITY_SCHEDULE_TO_START = 'temporal_activity_schedule_to_start_latency';

export async function runConcurrencyBench(opts: ConcurrencyOptions): Promise<ConcurrencyResult> {
  const t0 = Date.now();
  const taskQueue = `bench-concurrency-${randomUUID().slice(0, 8)}`;
  // One service per release: each runs as its own `release-<service>`, the only ID the workflow accepts.
  const services = benchServices(opts.releases);
  const policyDir = writePolicies(servicePolicy(CYCLE, INTERVAL), services);
  const workers: { process: WorkerProcess; port: number }[] = [];
  const stopWorkers = () => Promise.all(workers.map((w) => w.process.stop()));
  try {
    for (let i = 0; i < (opts.workers ?? 1); i++) {
      const port = await freePort();
      const started = await WorkerProcess.start({
        address: opts.env.address,
        taskQueue,
        bundlePath: opts.bundlePath,
        policyDir,
        metricsAddress: `127.0.0.1:${port}`,
        reportActivities: true,
        ...(opts.maxCachedWorkflows !== undefined && { maxCachedWorkflows: opts.maxCachedWorkflows }),
      });
      workers.push({ process: started, port });
    }
  } catch (err) {
    await stopWorkers();
    throw err;
  }
  const settings = workers[0]?.process.settings;
  if (!settings) throw new Error(`workers: ${opts.workers}, need at least one`);
  // Every worker's metrics in one text: buckets() and counter() add up across lines, so across workers too.
  const scrape = async () =>
    (await Promise.all(workers.map(async (w) => (await fetch(`http://127.0.0.1:${w.port}/metrics`)).text()))).join(
      '\n',
    );
  const usage = () => Promise.all(workers.map((w) => w.process.usage()));
  const probe = () => opts.server?.();
  const errors: string[] = [];
  const baking = new Set<string>();
  let allBaking: () => void = () => undefined;
  const everyoneBaking = new Promise<void>((resolve) => (allBaking = resolve));
  for (const w of workers) {
    w.process.onMessage((m) => {
      if (m.type !== 'analyze') return;
      baking.add(m.workflowId);
      if (baking.size >= opts.releases) allBaking();
    });
  }
  let handles: WorkflowHandle[] = [];
  try {
    const [u0, m0, s0] = [await usage(), await scrape(), probe()];
    const rampStart = Date.now();
    handles = (
      await inBatches(services, 50, (service) =>
        opts.env.client.workflow
          .start('releaseWorkflow', {
            taskQueue,
            workflowId: releaseWorkflowId(service),
            args: [{ service, version: '2.0.0', initiator: 'bench' }],
          })
          .then(
            (h): WorkflowHandle | undefined => h,
            (err: unknown) => {
              errors.push(`start: ${String(err)}`);
              return undefined;
            },
          ),
      )
    ).filter((h): h is WorkflowHandle => h !== undefined);
    const rampBound = Math.max(5_000, Math.min(300_000, opts.deadline - Date.now() - opts.steadyMs));
    const ramped = await Promise.race([
      everyoneBaking.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), rampBound)),
    ]);
    if (!ramped) errors.push(`only ${baking.size} of ${opts.releases} releases were baking after ${rampBound} ms`);
    const [u1, m1, s1] = [await usage(), await scrape(), probe()];
    const rampEnd = Date.now();
    opts.log(
      `concurrency: ${baking.size} releases baking after ${rampEnd - rampStart} ms; steady for ${opts.steadyMs} ms`,
    );
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, Math.min(opts.steadyMs, opts.deadline - Date.now()))),
    );
    const [u2, m2, s2] = [await usage(), await scrape(), probe()];
    const steadyEnd = Date.now();
    const described = await inBatches(handles, 50, (h) => h.describe().catch(() => undefined));
    const notRunning = described.filter((d) => d?.status.name !== 'RUNNING').length;
    if (notRunning > 0) errors.push(`${notRunning} releases were no longer running at the end of the window`);
    const errorLines = u2.reduce((n, u) => n + u.errors, 0);
    if (errorLines > 0)
      errors.push(`${errorLines} worker error log lines, e.g. ${u2.flatMap((u) => u.errorSample).join(' | ')}`);
    const workflowTaskFailures = counter(m2, 'temporal_workflow_task_execution_failed');
    if (workflowTaskFailures > 0) errors.push(`${workflowTaskFailures} workflow task failures`);
    const cpuMs = (u: typeof u0) => u.reduce((n, w) => n + w.cpuUserMs + w.cpuSystemMs, 0);
    const cpu = (a: typeof u0, b: typeof u0, wall: number) => (100 * (cpuMs(b) - cpuMs(a))) / wall;
    const serverCpu = (a: Record<string, TreeUsage>, b: Record<string, TreeUsage>, wall: number) =>
      mapValues(b, (u, part) => (100 * (u.cpuMs - (a[part]?.cpuMs ?? 0))) / wall);
    const latency = (name: string, a: string, b: string) => between(buckets(a, name), buckets(b, name));
    const rss = (u: typeof u0, pick: (w: (typeof u0)[number]) => number) => u.reduce((n, w) => n + pick(w), 0);
    type Sample = [typeof u0, string, typeof s0];
    const phase = (a: number, b: number, [ua, ma, sa]: Sample, [ub, mb, sb]: Sample): Phase => ({
      wallMs: b - a,
      cpuPercent: cpu(ua, ub, b - a),
      ...(sa && sb && { serverCpuPercent: serverCpu(sa, sb, b - a) }),
      workflowTaskScheduleToStart: latency(WFT_SCHEDULE_TO_START, ma, mb),
      activityScheduleToStart: latency(ACTIVITY_SCHEDULE_TO_START, ma, mb),
    });
    return {
      releases: opts.releases,
      cycle: CYCLE,
      interval: INTERVAL,
      rampUp: phase(rampStart, rampEnd, [u0, m0, s0], [u1, m1, s1]),
      steady: phase(rampEnd, steadyEnd, [u1, m1, s1], [u2, m2, s2]),
      whole: phase(rampStart, steadyEnd, [u0, m0, s0], [u2, m2, s2]),
      idleRssMiB: rss(u0, (w) => w.rssMiB),
      endRssMiB: rss(u2, (w) => w.rssMiB),
      peakRssMiB: rss(u2, (w) => w.peakRssMiB),
      perWorker: u0.map((w, i) => ({
        idleRssMiB: w.rssMiB,
        endRssMiB: u2[i]?.rssMiB ?? NaN,
        peakRssMiB: u2[i]?.peakRssMiB ?? NaN,
      })),
      ...(s0 && s2 && { serverPssMiB: { idle: mapValues(s0, (u) => u.pssMiB), end: mapValues(s2, (u) => u.pssMiB) } }),
      errors,
      // Every worker runs the same settings.
      worker: settings,
      wallMs: Date.now() - t0,
    };
  } finally {
    // Worker first: terminating releases under a live worker only makes it log tasks that vanished.
    await stopWorkers();
    await inBatches(handles, 50, (h) => h.terminate('bench over').catch(() => undefined));
  }
}
