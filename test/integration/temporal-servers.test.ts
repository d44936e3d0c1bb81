import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { findBinary, TEMPORAL_CLI, TEMPORAL_TEST_SERVER, type BinarySpec } from '../../scripts/temporal-binaries';
import { TollgateState } from '../../src/domain/search-attributes';
import { durableTimerProbe } from '../fixtures/workflows';
import { workflowBundle } from '../helpers/bundles';
import { devServerForTests, randomWorkflowId, taskQueueForTest, timeSkippingForTests } from '../helpers/temporal';

async function runProbe(env: TestWorkflowEnvironment, hours: number) {
  const taskQueue = taskQueueForTest();
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: workflowBundle('fixtures'),
  });
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start(durableTimerProbe, {
      taskQueue,
      workflowId: randomWorkflowId('probe'),
      args: [hours],
    });
    const result = await handle.result();
    const description = await handle.describe();
    return { result, description };
  });
}

/** CI reads these lines as proof of what ran where (the issue's done-when), so they go to the log unconditionally. */
function report(spec: BinarySpec, what: string): void {
  process.stderr.write(`temporal-servers: ${what} (${findBinary(spec) ?? `the SDK's downloaded ${spec.name}`})\n`);
}

describe('time-skipping test server (provisioned binary)', () => {
  const server = timeSkippingForTests();

  it('passes a 24-hour durable timer in seconds of wall time', async () => {
    const wallStart = Date.now();
    const { result } = await runProbe(server.env, 24);
    const wallMs = Date.now() - wallStart;
    expect(result.sleptMs).toBeGreaterThanOrEqual(24 * 60 * 60 * 1000);
    expect(wallMs).toBeLessThan(60_000);
    report(
      TEMPORAL_TEST_SERVER,
      `a 24-hour durable timer passed in ${(wallMs / 1000).toFixed(1)} s of wall time on the time-skipping server`,
    );
  });
});

describe('Temporal dev server (provisioned binary)', () => {
  const server = devServerForTests();

  it('runs a workflow to completion and indexes Tollgate search attributes', async () => {
    const { result, description } = await runProbe(server.env, 0);
    expect(result.historyLength).toBeGreaterThan(0);
    expect(description.status.name).toBe('COMPLETED');
    expect(description.typedSearchAttributes.get(TollgateState)).toBe('probing');
    report(
      TEMPORAL_CLI,
      `workflow ${description.workflowId} completed (${result.historyLength} events) on the dev server`,
    );
  });
});
