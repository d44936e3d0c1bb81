import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, makeTelemetryFilterString, Runtime, type LogLevel } from '@temporalio/worker';
import { ephemeralExecutable, TEMPORAL_CLI, TEMPORAL_TEST_SERVER } from '../../scripts/temporal-binaries';
import { SEARCH_ATTRIBUTES } from '../../src/domain/search-attributes';

// The servers tests and the bench run on. No jest globals in here: the bench compiles this file without jest's types.

/** Time-skipping server: timers (sleep, condition with timeout) pass as soon as the test waits on a result. */
export async function startTimeSkipping(extraArgs: string[] = []): Promise<TestWorkflowEnvironment> {
  quietRuntime();
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: ephemeralExecutable(TEMPORAL_TEST_SERVER), extraArgs },
  });
  // The test server has no start-up flag for custom search attributes; its operator service registers them.
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      SEARCH_ATTRIBUTES.map((key) => [key.name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]),
    ),
  });
  return env;
}

export interface DevServerOptions {
  /** Passed to `temporal server start-dev` as they are (e.g. `--dynamic-config-value`). */
  extraArgs?: string[];
  /** Serves the Web UI there (browser tests); without it, the server runs headless. */
  uiPort?: number;
  /** Namespaces beside `default`. */
  namespaces?: string[];
  /** The server's own Prometheus metrics (its `action` counter among them) are served on this port. */
  metricsPort?: number;
}

/** The real dev server (what `npm start` runs), in memory, with Tollgate's search attributes registered. */
export function startDevServer(opts: DevServerOptions = {}): Promise<TestWorkflowEnvironment> {
  quietRuntime();
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: ephemeralExecutable(TEMPORAL_CLI),
      ip: '127.0.0.1',
      ...(opts.uiPort !== undefined && { uiPort: opts.uiPort }),
      searchAttributes: [...SEARCH_ATTRIBUTES],
      extraArgs: [
        '--log-level',
        'error',
        ...(opts.namespaces ?? []).flatMap((n) => ['--namespace', n]),
        ...(opts.metricsPort !== undefined ? ['--metrics-port', String(opts.metricsPort)] : []),
        ...(opts.extraArgs ?? []),
      ],
    },
  });
}

/**
 * Workflow, worker and SDK core logs at ERROR (TEST_LOG_LEVEL=WARN or INFO for more): the failure-path tests make
 * activities fail by the hundred, each a WARN with its stack, and a test run's output should be its results. A
 * process that installs its own runtime first (a test file, the bench) keeps it.
 */
export function quietRuntime(): void {
  if (Runtime._instance) return;
  const level = process.env.TEST_LOG_LEVEL?.toUpperCase() as LogLevel | undefined;
  Runtime.install({
    logger: new DefaultLogger(level ?? 'ERROR'),
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: level ?? 'ERROR' }), forward: {} } },
  });
}
