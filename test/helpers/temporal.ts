import { randomUUID } from 'node:crypto';
import type { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startDevServer, startTimeSkipping, type DevServerOptions } from './temporal-servers';

export interface ServerForTests {
  /** The server, once `beforeAll` has started it: read it inside tests and hooks only. */
  readonly env: TestWorkflowEnvironment;
}

/** A time-skipping server for the tests of the enclosing `describe` (or file): started before them, torn down after. */
export const timeSkippingForTests = (): ServerForTests => serverForTests(() => startTimeSkipping());

/** A dev server for the tests of the enclosing `describe` (or file): started before them, torn down after. */
export const devServerForTests = (opts?: DevServerOptions): ServerForTests =>
  serverForTests(() => startDevServer(opts));

function serverForTests(start: () => Promise<TestWorkflowEnvironment>): ServerForTests {
  let env: TestWorkflowEnvironment | undefined;
  beforeAll(async () => {
    env = await start();
  });
  afterAll(() => env?.teardown());
  return {
    get env() {
      if (!env) throw new Error('the Temporal server is not up (beforeAll failed?)');
      return env;
    },
  };
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
