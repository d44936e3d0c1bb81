import { randomUUID } from 'node:crypto';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { ephemeralExecutable, TEMPORAL_CLI, TEMPORAL_TEST_SERVER } from '../../scripts/temporal-binaries';
import { SEARCH_ATTRIBUTES } from '../../src/domain/search-attributes';

/** Time-skipping server: timers (sleep, condition with timeout) pass as soon as the test waits on a result. */
export async function startTimeSkipping(extraArgs: string[] = []): Promise<TestWorkflowEnvironment> {
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
