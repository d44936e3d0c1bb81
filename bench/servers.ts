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

/**
 * The real dev server, in memory and headless, as `npm start` runs it; `namespaces` beside `default`, and the server's
 * own Prometheus metrics (its `action` counter among them) on `metricsPort`.
 */
export function startDevServer(
  opts: { namespaces?: string[]; metricsPort?: number } = {},
): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: ephemeralExecutable(TEMPORAL_CLI),
      ip: '127.0.0.1',
      searchAttributes: [...SEARCH_ATTRIBUTES],
      extraArgs: [
        '--log-level',
        'error',
        ...(opts.namespaces ?? []).flatMap((n) => ['--namespace', n]),
        ...(opts.metricsPort !== undefined ? ['--metrics-port', String(opts.metricsPort)] : []),
      ],
    },
  });
}
