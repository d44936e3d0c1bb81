import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { TollgateState } from '../../src/domain/search-attributes';
import { durableTimerProbe } from '../fixtures/workflows';
import { workflowBundle } from '../helpers/bundles';
import { randomWorkflowId, startDevServer, startTimeSkipping, taskQueueForTest } from '../helpers/temporal';

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

describe('time-skipping test server (provisioned binary)', () => {
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    env = await startTimeSkipping();
  });
  afterAll(() => env?.teardown());

  it('passes a 24-hour durable timer in seconds of wall time', async () => {
    const wallStart = Date.now();
    const { result } = await runProbe(env, 24);
    expect(result.sleptMs).toBeGreaterThanOrEqual(24 * 60 * 60 * 1000);
    expect(Date.now() - wallStart).toBeLessThan(60_000);
  });
});

describe('Temporal dev server (provisioned binary)', () => {
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    env = await startDevServer();
  });
  afterAll(() => env?.teardown());

  it('runs a workflow to completion and indexes Tollgate search attributes', async () => {
    const { result, description } = await runProbe(env, 0);
    expect(result.historyLength).toBeGreaterThan(0);
    expect(description.status.name).toBe('COMPLETED');
    expect(description.typedSearchAttributes.get(TollgateState)).toBe('probing');
  });
});
