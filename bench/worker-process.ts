import { statSync } from 'node:fs';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { loadWorkerConfig } from '../src/config/worker-config';
import { workerCapacity } from '../src/worker';
import { benchActivities } from './fixtures';

/** What the parent passes in BENCH_WORKER (JSON). */
export interface WorkerProcessConfig {
  address: string;
  taskQueue: string;
  bundlePath: string;
  policyDir: string;
  /** Serve the SDK's Prometheus metrics here (host:port), or not at all. */
  metricsAddress?: string;
  /** Tell the parent about every analysis call and undo start (reaction bench). */
  reportActivities: boolean;
  /** Overrides the worker's workflow cache size (TOLLGATE_MAX_CACHED_WORKFLOWS, else the product's default). */
  maxCachedWorkflows?: number;
}

/** The settings a bench worker ran with, as the SDK resolved them. */
export interface WorkerSettings {
  maxCachedWorkflows: number;
  maxConcurrentActivityTaskExecutions: number;
  bundleKiB: number;
}

/** Messages to the parent over the IPC channel. */
export type WorkerMessage =
  | ({ type: 'ready' } & WorkerSettings)
  | { type: 'analyze'; workflowId: string; at: number }
  | { type: 'undo'; workflowId: string; at: number }
  | {
      type: 'usage';
      cpuUserMs: number;
      cpuSystemMs: number;
      rssMiB: number;
      peakRssMiB: number;
      errors: number;
      errorSample: string[];
    }
  | { type: 'stopped' };

/** Histogram buckets (ms) fine enough to read a p99 of a few to a few hundred milliseconds. */
export const LATENCY_BUCKETS_MS = [
  1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 2000,
];

/** Counts SDK log lines at ERROR (a failed task, a lost connection), so the parent can report the worker's errors. */
const errorLog = { count: 0, sample: [] as string[] };
const logger = new DefaultLogger('WARN', (entry) => {
  if (entry.level !== 'ERROR') return;
  errorLog.count++;
  if (errorLog.sample.length < 5) errorLog.sample.push(entry.message);
});

async function main(): Promise<void> {
  const config = JSON.parse(process.env.BENCH_WORKER ?? '{}') as WorkerProcessConfig;
  const send = (message: WorkerMessage) => process.send?.(message);
  Runtime.install({
    logger,
    shutdownSignals: [],
    ...(config.metricsAddress && {
      telemetryOptions: {
        metrics: {
          prometheus: {
            bindAddress: config.metricsAddress,
            histogramBucketOverrides: {
              workflow_task_schedule_to_start_latency: LATENCY_BUCKETS_MS,
              activity_schedule_to_start_latency: LATENCY_BUCKETS_MS,
            },
          },
        },
      },
    }),
  });
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  // The product's capacity settings, from the same environment schema the real worker parses.
  const capacity = workerCapacity(
    loadWorkerConfig({
      ...process.env,
      ...(config.maxCachedWorkflows !== undefined && {
        TOLLGATE_MAX_CACHED_WORKFLOWS: String(config.maxCachedWorkflows),
      }),
    }),
  );
  const connection = await NativeConnection.connect({ address: config.address });
  const worker = await Worker.create({
    connection,
    taskQueue: config.taskQueue,
    workflowBundle: { codePath: config.bundlePath },
    activities: benchActivities(
      config.policyDir,
      config.reportActivities
        ? {
            onAnalyze: (workflowId) => send({ type: 'analyze', workflowId, at: Date.now() }),
            onUndo: (workflowId, at) => send({ type: 'undo', workflowId, at }),
          }
        : {},
    ),
    shutdownGraceTime: '2s',
    ...capacity,
  });
  const cpuAtStart = process.cpuUsage();
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'usage') {
      const cpu = process.cpuUsage(cpuAtStart);
      send({
        type: 'usage',
        cpuUserMs: cpu.user / 1000,
        cpuSystemMs: cpu.system / 1000,
        rssMiB: process.memoryUsage().rss / 2 ** 20,
        peakRssMiB: Math.max(peakRss, process.memoryUsage().rss) / 2 ** 20,
        errors: errorLog.count,
        errorSample: errorLog.sample,
      });
    } else if (message.type === 'stop') {
      worker.shutdown();
    }
  });
  send({
    type: 'ready',
    maxCachedWorkflows: worker.options.maxCachedWorkflows,
    maxConcurrentActivityTaskExecutions: capacity.maxConcurrentActivityTaskExecutions ?? NaN,
    bundleKiB: statSync(config.bundlePath).size / 1024,
  });
  await worker.run();
  clearInterval(sampler);
  await connection.close();
  send({ type: 'stopped' });
  process.disconnect?.();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
