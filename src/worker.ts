import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { NativeConnection, Runtime, Worker, makeTelemetryFilterString, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from './activities';
import { ConfigError } from './config/env';
import { PolicyStore } from './config/policies';
import { createMetrics, createNotifier, createTarget } from './providers';
import { connectionSettings } from './config/connection';
import { loadWorkerConfig, type WorkerConfig } from './config/worker-config';
import { createLogger, PinoSdkLogger, type Logger } from './logger';

/** `npm run build` writes the bundle next to the compiled worker: dist/workflow-bundle.js. */
export const DEFAULT_BUNDLE_PATH = join(__dirname, '..', 'workflow-bundle.js');

function workflowSource(config: WorkerConfig, logger: Logger): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const codePath = config.TOLLGATE_WORKFLOW_BUNDLE ?? DEFAULT_BUNDLE_PATH;
  if (existsSync(codePath)) return { workflowBundle: { codePath } };
  if (config.NODE_ENV === 'production') {
    throw new ConfigError(
      `invalid configuration: TOLLGATE_WORKFLOW_BUNDLE: ${codePath} does not exist (run npm run build)`,
    );
  }
  logger.warn({ codePath }, 'no prebuilt workflow bundle; bundling at start (development only)');
  return { workflowsPath: require.resolve('./workflows') };
}

export async function runWorker(config: WorkerConfig, logger: Logger): Promise<void> {
  const connection = await NativeConnection.connect(connectionSettings(config));
  try {
    const worker = await Worker.create({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      taskQueue: config.TOLLGATE_TASK_QUEUE,
      ...workflowSource(config, logger),
      activities: createActivities({
        target: await createTarget(config.TOLLGATE_TARGETS_FILE, logger),
        metrics: createMetrics(
          config.TOLLGATE_METRICS,
          config.TOLLGATE_PROMETHEUS_URL,
          config.TOLLGATE_METRICS_TIMEOUT,
        ),
        policies: new PolicyStore(config.TOLLGATE_POLICY_DIR),
        notifier: await createNotifier(config.TOLLGATE_NOTIFY_FILE, logger),
        logger,
      }),
      shutdownGraceTime: config.TOLLGATE_SHUTDOWN_GRACE,
      maxConcurrentActivityTaskExecutions: config.TOLLGATE_MAX_ACTIVITIES,
    });
    logger.info(
      { taskQueue: config.TOLLGATE_TASK_QUEUE, namespace: config.TEMPORAL_NAMESPACE, address: config.TEMPORAL_ADDRESS },
      'worker started',
    );
    // The Runtime shuts the worker down on SIGINT/SIGTERM; run() resolves once in-flight tasks have drained.
    await worker.run();
    logger.info('worker stopped');
  } finally {
    await connection.close();
  }
}

async function main(): Promise<void> {
  let config: WorkerConfig;
  try {
    config = loadWorkerConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tollgate worker: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.TOLLGATE_LOG_LEVEL);
  Runtime.install({
    logger: new PinoSdkLogger(logger),
    telemetryOptions: {
      logging: { forward: {}, filter: makeTelemetryFilterString({ core: 'WARN', other: 'ERROR' }) },
      ...(config.TOLLGATE_METRICS_ADDRESS !== 'off' && {
        metrics: { prometheus: { bindAddress: config.TOLLGATE_METRICS_ADDRESS } },
      }),
    },
  });
  try {
    await runWorker(config, logger);
  } catch (err) {
    if (err instanceof ConfigError) {
      logger.error(err.message);
      process.stderr.write(`tollgate worker: ${err.message}\n`);
      process.exit(2);
    }
    logger.fatal({ err }, 'worker failed');
    process.exit(1);
  }
}

if (require.main === module) void main();
