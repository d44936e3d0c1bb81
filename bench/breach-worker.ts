import { Context } from '@temporalio/activity';
import { DefaultLogger, makeTelemetryFilterString, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities } from '../src/activities';
import type { AnalyzeInput } from '../src/activities/types';
import { PolicyStore } from '../src/config/policies';
import { PrometheusProvider } from '../src/providers/metrics/prometheus';
import type { MetricsProvider, RangeWindow } from '../src/providers/metrics/types';
import type { DeployStep } from '../src/providers/targets/types';
import { benchActivities, benchTarget, silentLogger } from './fixtures';

/**
 * A bench worker that tells its parent when each step starts: every deploy (with its step name), analysis stretch
 * and undo, and — over a real Prometheus — every query an analysis round makes, with the values it got. Used by the
 * approve → deploy and the breach → rollback measurements.
 */

/** What the parent passes in BENCH_BREACH_WORKER (JSON). */
export interface StepWorkerConfig {
  address: string;
  taskQueue: string;
  bundlePath: string;
  policyDir: string;
  /** Real analysis over this Prometheus; without it, the instant healthy analysis double. */
  prometheusUrl?: string;
}

/** Messages to the parent over the IPC channel. */
export type StepWorkerMessage =
  | { type: 'ready' }
  | { type: 'deploy'; workflowId: string; step: string; at: number }
  | { type: 'analyze'; workflowId: string; at: number }
  | { type: 'undo'; workflowId: string; at: number }
  | { type: 'query'; workflowId: string; at: number; query: string; values: number[] };

const workflowId = () => Context.current().info.workflowExecution!.workflowId;
const stepName = (step: DeployStep) => step.key.split('/').pop() ?? step.key;

/** The metrics provider as the analysis sees it, reporting each answer; `at` is when the round asked. */
function reporting(metrics: MetricsProvider, send: (m: StepWorkerMessage) => void): MetricsProvider {
  return {
    kind: metrics.kind,
    isOnline: () => metrics.isOnline(),
    query: (query) => metrics.query(query),
    queryRange: async (query: string, window: RangeWindow) => {
      const at = Date.now();
      const values = await metrics.queryRange(query, window);
      send({ type: 'query', workflowId: workflowId(), at, query, values });
      return values;
    },
  };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.BENCH_BREACH_WORKER ?? '{}') as StepWorkerConfig;
  const send = (message: StepWorkerMessage) => process.send?.(message);
  // Quiet: terminating releases mid-task (as the bench does between trials) makes core warn of tasks not found.
  Runtime.install({
    logger: new DefaultLogger('ERROR'),
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'ERROR' }), forward: {} } },
    shutdownSignals: [],
  });
  const base = config.prometheusUrl
    ? createActivities({
        target: benchTarget(config.policyDir),
        metrics: reporting(new PrometheusProvider({ url: config.prometheusUrl, timeoutMs: 2000 }), send),
        policies: new PolicyStore(config.policyDir),
        logger: silentLogger,
      })
    : benchActivities(config.policyDir);
  const activities = {
    ...base,
    deploy: (step: DeployStep) => {
      send({ type: 'deploy', workflowId: workflowId(), step: stepName(step), at: Date.now() });
      return base.deploy(step);
    },
    analyze: (input: AnalyzeInput) => {
      send({ type: 'analyze', workflowId: workflowId(), at: Date.now() });
      return base.analyze(input);
    },
    undo: (step: DeployStep) => {
      send({ type: 'undo', workflowId: workflowId(), at: Date.now() });
      return base.undo(step);
    },
  };
  const connection = await NativeConnection.connect({ address: config.address });
  const worker = await Worker.create({
    connection,
    taskQueue: config.taskQueue,
    workflowBundle: { codePath: config.bundlePath },
    activities,
    shutdownGraceTime: '2s',
  });
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'stop') worker.shutdown();
  });
  // An orphan never outlives the bench: a parent that died takes the IPC channel with it.
  process.on('disconnect', () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    setTimeout(() => process.exit(1), 5_000).unref();
  });
  send({ type: 'ready' });
  await worker.run();
  await connection.close();
  process.disconnect?.();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
