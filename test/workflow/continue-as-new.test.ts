import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { approveSignal, approveUpdate, statusQuery } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { releaseWorkflowId } from '../../src/domain/release';
import { TollgateService } from '../../src/domain/search-attributes';
import type { ReleaseStatus } from '../../src/domain/status';
import { releaseWorkflow } from '../../src/workflows';
import { RUN_MAX_BYTES, RUN_MAX_EVENTS } from '../../src/workflows/rollover';
import { failing, healthy, releaseHarness, writePolicies, type HarnessOptions } from '../helpers/release-harness';
import { runHistories, startDevServer, startTimeSkipping } from '../helpers/temporal';

/**
 * Releases that outgrow one run continue as new, in any stage, carrying everything. CI runs shorter floods and
 * outages than RELIABILITY_FULL=1 (the 50,000 signals and 30 days); both cross the run bound many times.
 */
const FULL = process.env.RELIABILITY_FULL === '1';
const FLOOD = FULL ? 50_000 : 4_500;
const BROKEN_DAYS = FULL ? 30 : 0.5;
const DAY = 86_400_000;

const errors = { name: 'errors', template: 'error-ratio', max: 0.01 } as const;
const policy = (over: Partial<ServicePolicyInput> = {}): ServicePolicyInput => ({
  service: 'checkout',
  trafficCycle: { duration: '1h' },
  canary: { analysis: { interval: '1m', checks: [errors] } },
  production: { approval: true, waves: [{ percent: 100 }] },
  approvals: { fourEyes: true },
  ...over,
});

/** On the dev server time is real: a canary of seconds. */
const realTime = policy({
  trafficCycle: { duration: '2s' },
  canary: { analysis: { interval: '1s', checks: [errors] } },
});

interface Run {
  runId: string;
  events: number;
  bytes: number;
  closedAs: string;
}

/** Every run of the release, first to last, following continue-as-new. */
async function runsOf(env: TestWorkflowEnvironment, workflowId: string, firstRunId: string): Promise<Run[]> {
  return (await runHistories(env.client, workflowId, firstRunId)).map(({ runId, history }) => {
    const last = history.events?.at(-1);
    return {
      runId,
      events: history.events?.length ?? 0,
      bytes: Buffer.byteLength(JSON.stringify(history)),
      closedAs: last?.workflowExecutionContinuedAsNewEventAttributes ? 'continued-as-new' : String(last?.eventType),
    };
  });
}

/**
 * Floods run on the dev server: a run hands over only at the end of a workflow task, and how a server treats
 * signals that arrive while a run closes is the server's; the time-skipping server stalls on it for a workflow-task
 * timeout at a time. Outages and long bakes need skipped time.
 */
describe('continue-as-new', () => {
  let skipping: TestWorkflowEnvironment;
  let dev: TestWorkflowEnvironment;
  beforeAll(async () => {
    [skipping, dev] = await Promise.all([startTimeSkipping(), startDevServer()]);
  });
  afterAll(() => Promise.all([skipping?.teardown(), dev?.teardown()]));

  async function release<T>(
    env: TestWorkflowEnvironment,
    opts: Omit<HarnessOptions, 'policyDir'> & { policy?: ServicePolicyInput },
    drive: (handle: WorkflowHandle<typeof releaseWorkflow>) => Promise<T>,
  ) {
    const policyDir = writePolicies({ minimums: { productionApproval: false } }, [opts.policy ?? policy()]);
    const harness = await releaseHarness(env, { ...opts, policyDir });
    return harness.worker.runUntil(async () => {
      const handle = await env.client.workflow.start(releaseWorkflow, {
        taskQueue: harness.taskQueue,
        workflowId: releaseWorkflowId('checkout'),
        args: [{ service: 'checkout', version: '2.0.0', initiator: 'alice' }],
      });
      try {
        const value = await drive(handle);
        const result = await handle.result();
        const status = await handle.query(statusQuery);
        const runs = await runsOf(env, handle.workflowId, handle.firstExecutionRunId);
        const description = await handle.describe();
        return { value, result, status, runs, description, harness };
      } finally {
        await handle.terminate('test over').catch(() => undefined);
      }
    });
  }

  /** Until `ok` holds of the status, in real time (bounded: 20 s). */
  async function untilStatus(
    handle: WorkflowHandle<typeof releaseWorkflow>,
    ok: (s: ReleaseStatus) => boolean,
  ): Promise<ReleaseStatus> {
    for (let i = 0; i < 200; i++) {
      const s = await handle.query(statusQuery).catch(() => undefined);
      if (s && ok(s)) return s;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('status never matched');
  }

  /** Until the release has taken in `count` refusals (bounded: 10 s). */
  async function untilRefused(handle: WorkflowHandle<typeof releaseWorkflow>, count: number): Promise<void> {
    for (let i = 0; i < 500; i++) {
      const s = await handle.query(statusQuery);
      if (s.audit.filter((a) => !a.accepted).length + s.auditDropped >= count) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`the release never took in ${count} refused signals`);
  }

  /** No run may grow past the bound by more than the task that noticed it (a batch of signals). */
  const expectBounded = (runs: Run[]) => {
    for (const run of runs) {
      expect(run.events).toBeLessThan(RUN_MAX_EVENTS + 1_000);
      expect(run.bytes).toBeLessThan(RUN_MAX_BYTES + 8 * 1024 * 1024);
    }
  };

  it(`${FLOOD} refused signals at the production gate, then a valid approve is honoured and the release promotes`, async () => {
    const { result, status, runs, description } = await release(dev, { policy: realTime }, async (handle) => {
      await untilStatus(handle, (s) => s.gate?.name === 'production');
      for (let sent = 0; sent < FLOOD;) {
        // alice started the release: four-eyes refuses every one of these.
        const burst = Math.min(200, FLOOD - sent);
        await Promise.all(Array.from({ length: burst }, () => handle.signal(approveSignal, { by: 'alice' })));
        sent += burst;
        // Bursts as fast as the release takes them in, not one unbroken stream: a run hands over only at the end
        // of a workflow task, and Temporal refuses to close a run while signals it has not seen keep arriving.
        // A stream that never pauses is a namespace's rate limit to stop.
        await untilRefused(handle, sent);
      }
      const gate = await handle.query(statusQuery);
      expect(gate.gate?.name).toBe('production');
      expect(gate.audit.filter((a) => a.accepted).map((a) => a.action)).toEqual(['start']);
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'after the flood' }] });
    });
    console.log(`flood: ${runs.length} runs, events per run ${runs.map((r) => r.events).join(', ')}`);
    expect(result.outcome).toBe('promoted');
    expect(runs.length).toBeGreaterThan(FLOOD / RUN_MAX_EVENTS);
    expectBounded(runs);
    // Decisions always stay; refusals are counted.
    expect(status.audit.filter((a) => a.accepted).map((a) => a.action)).toEqual(['start', 'approve', 'promoted']);
    expect(status.audit.filter((a) => !a.accepted).length + status.auditDropped).toBe(FLOOD);
    expect(description.typedSearchAttributes.get(TollgateService)).toBe('checkout');
  });

  it('a flood of 1.9 MB payloads never grows a run past its bound', async () => {
    const big = 'x'.repeat(1_900_000);
    const { result, runs } = await release(dev, { policy: realTime }, async (handle) => {
      await untilStatus(handle, (s) => s.gate?.name === 'production');
      for (let i = 1; i <= 12; i++) {
        await handle.signal(approveSignal, { by: big });
        await untilRefused(handle, i);
      }
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] });
    });
    expect(result.outcome).toBe('promoted');
    expect(runs.length).toBeGreaterThan(3);
    expectBounded(runs);
  });

  it(`a target broken for ${BROKEN_DAYS} days, then fixed: the rollback completes, every step undone exactly once`, async () => {
    let fixedAt = 0;
    const undone: string[] = [];
    const { result, runs, status, harness } = await release(
      skipping,
      {
        analysis: [healthy(), failing('error ratio 0.2 > max 0.01')],
        undo: async (step, real) => {
          const scheduled = Context.current().info.scheduledTimestampMs;
          fixedAt ||= scheduled + BROKEN_DAYS * DAY;
          if (scheduled < fixedAt) throw new Error('load balancer API unavailable');
          const receipt = await real(step);
          undone.push(step.key.split('/').pop()!);
          return receipt;
        },
      },
      () => Promise.resolve(),
    );
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });
    expect(undone).toEqual(['canary', 'staging']);
    expect(harness.target.actions.map((a) => `${a.action} ${a.key.split('/').pop()}`)).toEqual([
      'apply staging',
      'apply canary',
      'undo canary',
      'undo staging',
    ]);
    expect(status.rollback?.failedAttempts).toBeGreaterThan((BROKEN_DAYS * DAY) / 61_000);
    expect(runs.length).toBeGreaterThan(1);
    expectBounded(runs);
  });

  it('a 30-day traffic cycle rolls over mid-bake and keeps its clock', async () => {
    const { result, runs } = await release(
      skipping,
      {
        policy: policy({
          trafficCycle: { duration: '30d' },
          production: { approval: false, waves: [{ percent: 100 }] },
        }),
        analysis: healthy(),
      },
      () => Promise.resolve(),
    );
    expect(result.outcome).toBe('promoted');
    const bakedDays = (Date.parse(result.endedAt) - Date.parse(result.startedAt)) / DAY;
    // Carried across runs: neither restarted (60 days) nor cut short.
    expect(bakedDays).toBeGreaterThanOrEqual(30);
    expect(bakedDays).toBeLessThan(31);
    expect(runs.length).toBeGreaterThan(1);
    expectBounded(runs);
    console.log(`30-day cycle: ${runs.length} runs, events per run ${runs.map((r) => r.events).join(', ')}`);
  });
});
