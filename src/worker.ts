import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  NativeConnection,
  Runtime,
  Worker,
  makeTelemetryFilterString,
  type BundleOptions,
  type WorkerOptions,
} from '@temporalio/worker';
import { createActivities } from './activities';
import { releaseLogAttributes } from './interceptors/log-attributes';
import { ConfigError } from './config/env';
import { PolicyStore } from './config/policies';
import { createMetrics, createNotifier, createTarget } from './providers';
import { ProcessRunner } from './providers/external/command-runner';
import { SignedHttpCaller } from './providers/external/http-caller';
import { connectionSettings } from './config/connection';
import { loadWorkerConfig, type WorkerConfig } from './config/worker-config';
import { createLogger, PinoSdkLogger, type Logger } from './logger';

/** `npm run build` writes the bundle next to the compiled worker: dist/workflow-bundle.js. */
export const DEFAULT_BUNDLE_PATH = join(__dirname, '..', 'workflow-bundle.js');

/**
 * Modules loaded once into the SDK's shared workflow context rather than once per cached workflow (the SDK's
 * reusable V8 context gives each workflow its own copy of every module it imports, except preloaded ones, which it
 * freezes). zod evaluated per release cost ≈1.1 MiB of heap and ≈15 ms of CPU each: most of the worker's memory
 * at 1,000 baking releases. zod itself cannot be listed (webpack drops it as side-effect free, and it sets module
 * state lazily, which throws once frozen); src/workflows/preload.ts imports it and parses once before the freeze.
 */
const PRELOAD_MODULES = [join(__dirname, 'workflows', 'preload')];

/**
 * How every workflow bundle is built: `npm run build`, the development fallback below and the bench (the tests
 * should match). The SDK requires an inline source map; without `sourcesContent` it still maps stack traces to the
 * TypeScript lines, at a fifth of the size. zod's locale table (≈60 modules, a quarter of the code) is left out:
 * zod imports its English messages directly, and workflow code has no use for `z.locales`.
 */
export function workflowBundlerOptions(): Required<Pick<BundleOptions, 'preloadModules' | 'webpackConfigHook'>> {
  const zodLocales = require.resolve('zod/v4/locales/index.cjs');
  return {
    preloadModules: PRELOAD_MODULES,
    webpackConfigHook: (config) => ({
      ...config,
      devtool: 'inline-nosources-source-map',
      resolve: { ...config.resolve, alias: { ...config.resolve?.alias, [zodLocales]: false } },
    }),
  };
}

/** Worker settings that decide its capacity; the bench's workers use them too. */
export function workerCapacity(
  config: WorkerConfig,
): Pick<WorkerOptions, 'maxCachedWorkflows' | 'maxConcurrentActivityTaskExecutions' | 'maxHeartbeatThrottleInterval'> {
  return {
    maxCachedWorkflows: config.TOLLGATE_MAX_CACHED_WORKFLOWS,
    maxConcurrentActivityTaskExecutions: config.TOLLGATE_MAX_ACTIVITIES,
    maxHeartbeatThrottleInterval: config.TOLLGATE_MAX_HEARTBEAT_THROTTLE,
  };
}

function workflowSource(
  config: WorkerConfig,
  logger: Logger,
): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath' | 'bundlerOptions'> {
  const codePath = config.TOLLGATE_WORKFLOW_BUNDLE ?? DEFAULT_BUNDLE_PATH;
  if (existsSync(codePath)) return { workflowBundle: { codePath } };
  if (config.NODE_ENV === 'production') {
    throw new ConfigError(
      `invalid configuration: TOLLGATE_WORKFLOW_BUNDLE: ${codePath} does not exist (run npm run build)`,
    );
  }
  logger.warn({ codePath }, 'no prebuilt workflow bundle; bundling at start (development only)');
  return { workflowsPath: require.resolve('./workflows'), bundlerOptions: workflowBundlerOptions() };
}

export async function runWorker(config: WorkerConfig, logger: Logger): Promise<void> {
  // Configuration files are read before connecting, so a worker that can never work fails without touching the server.
  const code = workflowSource(config, logger);
  const activities = createActivities({
    target: await createTarget(config.TOLLGATE_TARGETS_FILE, logger),
    metrics: createMetrics(config.TOLLGATE_METRICS, config.TOLLGATE_PROMETHEUS_URL, config.TOLLGATE_METRICS_TIMEOUT),
    policies: new PolicyStore(config.TOLLGATE_POLICY_DIR),
    notifier: await createNotifier(config.TOLLGATE_NOTIFY_FILE, logger),
    logger,
    analysisHeartbeatMs: config.TOLLGATE_ANALYSIS_HEARTBEAT,
    external: {
      commands: new ProcessRunner({ runningDir: config.TOLLGATE_RUNNING_DIR }),
      http: new SignedHttpCaller(),
    },
  });
  const connection = await NativeConnection.connect(connectionSettings(config));
  try {
    const worker = await Worker.create({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      taskQueue: config.TOLLGATE_TASK_QUEUE,
      ...code,
      activities,
      interceptors: { activity: [releaseLogAttributes] },
      shutdownGraceTime: config.TOLLGATE_SHUTDOWN_GRACE,
      ...workerCapacity(config),
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
