import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { ephemeralExecutable, TEMPORAL_CLI, TEMPORAL_TEST_SERVER } from '../scripts/temporal-binaries';
import { SEARCH_ATTRIBUTES } from '../src/domain/search-attributes';

/** Time-skipping server with Tollgate's search attributes (it has no start-up flag for them). */
export async function startTimeSkipping(): Promise<TestWorkflowEnvironment> {
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: ephemeralExecutable(TEMPORAL_TEST_SERVER) },
  });
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      SEARCH_ATTRIBUTES.map((key) => [key.name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]),
    ),
  });
  return env;
}

/** The real dev server, in memory and headless, as `npm start` runs it. */
export function startDevServer(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: ephemeralExecutable(TEMPORAL_CLI),
      ip: '127.0.0.1',
      searchAttributes: [...SEARCH_ATTRIBUTES],
      extraArgs: ['--log-level', 'error'],
    },
  });
}
