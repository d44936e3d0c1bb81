// Records the histories that `replay.test.ts` replays on every run. Not matched by the default test run:
//
//   npx jest --testMatch '**/record-histories.record.ts'
//
// It overwrites test/histories/<scenario>.json. When workflow code changes behind `patched()`, first rename the
// current files (e.g. `git mv happy-waves-approval.json happy-waves-approval.before-<change>.json`) and keep them:
// releases started on the old code are still in flight somewhere, and their histories must keep replaying.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  abortUpdate,
  approveSignal,
  approveUpdate,
  pauseUpdate,
  promoteUpdate,
  resumeSignal,
  statusQuery,
} from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { releaseWorkflowId, type ReleaseResult } from '../../src/domain/release';
import { releaseWorkflow } from '../../src/workflows';
import {
  failing,
  healthy,
  inconclusive,
  releaseHarness,
  until,
  writePolicies,
  type HarnessOptions,
} from '../helpers/release-harness';
import { runHistories, startDevServer, startTimeSkipping } from '../helpers/temporal';

const HISTORY_DIR = join(__dirname, '..', 'histories');

const errors = { name: 'errors', template: 'error-ratio', max: 0.01 } as const;

/** Short cycles keep the recorded files small; the code paths are the same as for a 7-day cycle. */
function policy(overrides: Partial<ServicePolicyInput> = {}): ServicePolicyInput {
  return {
    service: 'checkout',
    trafficCycle: { duration: '1h' },
    canary: { analysis: { interval: '1m', checks: [errors] } },
    production: {
      approval: false,
      waves: [
        { percent: 50, bake: '30m' },
        { percent: 100, bake: '30m' },
      ],
    },
    ...overrides,
  };
}

describe('record release histories for replay', () => {
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    env = await startTimeSkipping();
    mkdirSync(HISTORY_DIR, { recursive: true });
  });
  afterAll(() => env?.teardown());

  async function record(
    name: string,
    opts: Omit<HarnessOptions, 'policyDir'> & { policy?: ServicePolicyInput; org?: Record<string, unknown> },
    drive: (handle: WorkflowHandle<typeof releaseWorkflow>) => Promise<void> = () => Promise.resolve(),
  ): Promise<ReleaseResult> {
    const policyDir = writePolicies(opts.org ?? { minimums: { productionApproval: false } }, [opts.policy ?? policy()]);
    const harness = await releaseHarness(env, { ...opts, policyDir });
    return harness.worker.runUntil(async () => {
      const handle = await env.client.workflow.start(releaseWorkflow, {
        taskQueue: harness.taskQueue,
        // The ID replay.test.ts replays every fixture under: a release runs only as release-<service>.
        workflowId: releaseWorkflowId('checkout'),
        args: [{ service: 'checkout', version: '2.0.0', initiator: 'alice', reason: `replay fixture: ${name}` }],
      });
      try {
        await drive(handle);
        const result = await handle.result();
        const history = await handle.fetchHistory();
        writeFileSync(join(HISTORY_DIR, `${name}.json`), `${historyToJSON(history)}\n`);
        console.log(`${name}: ${history.events?.length ?? 0} events, outcome ${result.outcome}`);
        return result;
      } finally {
        await handle.terminate('recording over').catch(() => undefined);
      }
    });
  }

  it('happy path: waves and a four-eyes production approval', async () => {
    const result = await record(
      'happy-waves-approval',
      {
        org: { minimums: { productionApproval: true } },
        policy: policy({
          approvals: { fourEyes: true },
          production: {
            approval: true,
            waves: [
              { percent: 25, bake: '20m' },
              { percent: 50, bake: '20m' },
              { percent: 100, bake: '20m' },
            ],
          },
        }),
      },
      async (handle) => {
        await until(env, handle, (s) => s.gate?.name === 'production', '10m');
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'canary clean' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('rollback after a failed analysis stretch', async () => {
    const result = await record('rollback-on-failure', {
      policy: policy({ trafficCycle: { duration: '4h' } }),
      analysis: [healthy(), failing('error ratio 0.2 > max 0.01')],
    });
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });
  });

  it('abort during the canary bake', async () => {
    const result = await record('abort-during-canary', {}, async (handle) => {
      await until(env, handle, (s) => s.stage === 'canary' && s.state === 'baking', '10m');
      await handle.executeUpdate(abortUpdate, { args: [{ by: 'carol', reason: 'customer reports' }] });
    });
    expect(result).toMatchObject({ outcome: 'aborted', stage: 'canary' });
  });

  it('pause (update), resume (signal), promote', async () => {
    const result = await record(
      'pause-resume-promote',
      { policy: policy({ trafficCycle: { duration: '4h' } }) },
      async (handle) => {
        await until(env, handle, (s) => s.stage === 'canary' && s.state === 'baking', '10m');
        await env.sleep('1h');
        await handle.executeUpdate(pauseUpdate, { args: [{ by: 'dave', reason: 'incident elsewhere' }] });
        await env.sleep('6h');
        await handle.signal(resumeSignal, { by: 'dave' });
        await until(env, handle, (s) => s.state === 'baking', '1m');
        await env.sleep('30m');
        await handle.executeUpdate(promoteUpdate, { args: [{ by: 'erin', reason: 'fix needed now' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('inconclusive analysis, then approved by a person', async () => {
    const result = await record(
      'inconclusive-approve',
      { analysis: [inconclusive('no data: Prometheus unreachable')] },
      async (handle) => {
        await until(env, handle, (s) => s.gate?.name === 'inconclusive', '1m');
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'metrics back' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('inconclusive analysis while a person has paused: the gate is approved, the pause lifted apart', async () => {
    const result = await record(
      'inconclusive-gate-and-pause',
      { analysis: [inconclusive('no data: Prometheus unreachable')] },
      async (handle) => {
        await until(env, handle, (s) => s.gate?.name === 'inconclusive', '1m');
        await handle.signal(resumeSignal, { by: 'alice' }); // refused: nothing is paused
        await handle.executeUpdate(pauseUpdate, { args: [{ by: 'carol', reason: 'INCIDENT-42' }] });
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'metrics back' }] });
        await env.sleep('2h');
        await handle.signal(resumeSignal, { by: 'carol' });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('waits for a deployment window before production', async () => {
    const result = await record(
      'deployment-window-wait',
      { policy: policy({ windows: { allowed: [{ days: ['tue', 'wed', 'thu'], start: '09:00', end: '11:00' }] } }) },
      async (handle) => {
        await until(env, handle, (s) => s.state === 'waiting-for-window', '30m');
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('retries failing undos until the rollback completes', async () => {
    const result = await record('undo-retries', {
      analysis: [failing('error ratio 0.3 > max 0.01')],
      undoFailures: 2,
    });
    expect(result.outcome).toBe('rolled_back');
  });
});

describe('record a release that continued as new (dev server suggesting it at 150 events)', () => {
  let dev: TestWorkflowEnvironment;
  beforeAll(async () => {
    dev = await startDevServer(['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=150']);
  });
  afterAll(() => dev?.teardown());

  it('rolls over at the production gate under refused approvals, then is approved and promotes', async () => {
    const policyDir = writePolicies({ minimums: { productionApproval: false } }, [
      policy({
        trafficCycle: { duration: '2s' },
        canary: { analysis: { interval: '1s', checks: [errors] } },
        production: { approval: true, waves: [{ percent: 100 }] },
        approvals: { fourEyes: true },
      }),
    ]);
    const harness = await releaseHarness(dev, { policyDir });
    const runs = await harness.worker.runUntil(async () => {
      const handle = await dev.client.workflow.start(releaseWorkflow, {
        taskQueue: harness.taskQueue,
        workflowId: releaseWorkflowId('checkout'),
        args: [{ service: 'checkout', version: '2.0.0', initiator: 'alice', reason: 'replay fixture: continued' }],
      });
      try {
        const rolledOver = async () => (await handle.describe()).runId !== handle.firstExecutionRunId;
        for (let i = 0; i < 100 && (await handle.query(statusQuery)).gate?.name !== 'production'; i++) {
          await new Promise((r) => setTimeout(r, 100));
        }
        // alice started the release: four-eyes refuses her approvals, each one an event in history.
        for (let i = 0; i < 40 && !(await rolledOver()); i++) {
          await Promise.all(Array.from({ length: 10 }, () => handle.signal(approveSignal, { by: 'alice' })));
          await new Promise((r) => setTimeout(r, 200));
        }
        expect(await rolledOver()).toBe(true);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'after the rollover' }] });
        expect((await handle.result()).outcome).toBe('promoted');
        return await runHistories(dev.client, handle.workflowId, handle.firstExecutionRunId);
      } finally {
        await handle.terminate('recording over').catch(() => undefined);
      }
    });
    expect(runs.length).toBeGreaterThan(1);
    for (const [i, { history }] of runs.entries()) {
      writeFileSync(join(HISTORY_DIR, `continued-as-new.run-${i + 1}.json`), `${historyToJSON(history)}\n`);
      console.log(`continued-as-new run ${i + 1}: ${history.events?.length ?? 0} events`);
    }
  });
});
