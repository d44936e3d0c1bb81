import { randomUUID } from 'node:crypto';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, makeTelemetryFilterString, Runtime, type LogLevel } from '@temporalio/worker';
import { ephemeralExecutable, TEMPORAL_CLI, TEMPORAL_TEST_SERVER } from '../../scripts/temporal-binaries';
import { SEARCH_ATTRIBUTES } from '../../src/domain/search-attributes';

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

/**
 * The real dev server (what `npm start` runs), in memory, with Tollgate's search attributes registered.
 * With `uiPort`, the Web UI is served there too (browser tests); without, the server runs headless.
 */
export function startDevServer(extraArgs: string[] = [], uiPort?: number): Promise<TestWorkflowEnvironment> {
  quietRuntime();
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: ephemeralExecutable(TEMPORAL_CLI),
      ip: '127.0.0.1',
      ...(uiPort !== undefined && { uiPort }),
      searchAttributes: [...SEARCH_ATTRIBUTES],
      extraArgs: ['--log-level', 'error', ...extraArgs],
    },
  });
}

/** A task queue per test, so a stray worker from one test can never pick up another test's tasks. */
export function taskQueueForTest(): string {
  const name = expect.getState().currentTestName ?? 'test';
  const slug = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 60);
  return `${slug}-${randomUUID().slice(0, 8)}`;
}

export function randomWorkflowId(prefix = 'wf'): string {
  return `${prefix}-${randomUUID()}`;
}

/**
 * Workflow, worker and SDK core logs at ERROR (TEST_LOG_LEVEL=WARN or INFO for more): the failure-path tests make
 * activities fail by the hundred, each a WARN with its stack, and a test run's output should be its results. A test
 * file that installs its own runtime first keeps it.
 */
function quietRuntime(): void {
  if (Runtime._instance) return;
  const level = process.env.TEST_LOG_LEVEL?.toUpperCase() as LogLevel | undefined;
  Runtime.install({
    logger: new DefaultLogger(level ?? 'ERROR'),
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: level ?? 'ERROR' }), forward: {} } },
  });
}

/** The history of every run of a workflow, first to last, following continue-as-new (at most 1,000 runs). */
export async function runHistories(
  client: TestWorkflowEnvironment['client'],
  workflowId: string,
  firstRunId: string,
): Promise<{ runId: string; history: temporal.api.history.v1.IHistory }[]> {
  const runs: { runId: string; history: temporal.api.history.v1.IHistory }[] = [];
  for (let runId: string | undefined = firstRunId; runId && runs.length < 1_000;) {
    const history: temporal.api.history.v1.IHistory = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    runs.push({ runId, history });
    runId = history.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return runs;
}
