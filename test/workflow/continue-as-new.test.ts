import { Context } from '@temporalio/activity';
import type { temporal } from '@temporalio/proto';
import { approveSignal, approveUpdate, statusQuery } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { TollgateService } from '../../src/domain/search-attributes';
import { RUN_MAX_BYTES, RUN_MAX_EVENTS } from '../../src/workflows/rollover';
import { checkoutPolicy, errorsCheck } from '../helpers/policies';
import { waitForStatus, type Drive, type ReleaseHandle } from '../helpers/release-handle';
import { failing, healthy, runRelease, type ReleaseOptions } from '../helpers/release-harness';
import { devServerForTests, timeSkippingForTests, type ServerForTests } from '../helpers/temporal';

/**
 * Releases that outgrow one run continue as new, in any stage, carrying everything. CI runs shorter floods and
 * outages than RELIABILITY_FULL=1 (the 50,000 signals and 30 days); both cross the run bound many times.
 */
const FULL = process.env.RELIABILITY_FULL === '1';
const FLOOD = FULL ? 50_000 : 4_500;
const BROKEN_DAYS = FULL ? 30 : 0.5;
const DAY = 86_400_000;

const policy = (over: Partial<ServicePolicyInput> = {}): ServicePolicyInput =>
  checkoutPolicy({
    trafficCycle: { duration: '1h' },
    production: { approval: true, waves: [{ percent: 100 }] },
    approvals: { fourEyes: true },
    ...over,
  });

/** On the dev server time is real: a canary of seconds. */
const realTime = policy({
  trafficCycle: { duration: '2s' },
  canary: { analysis: { interval: '1s', checks: [errorsCheck] } },
});

interface Run {
  runId: string;
  events: number;
  bytes: number;
  closedAs: string;
}

/** What each run of the release came to. */
const sizes = (runs: { runId: string; history: temporal.api.history.v1.IHistory }[]): Run[] =>
  runs.map(({ runId, history }) => {
    const last = history.events?.at(-1);
    return {
      runId,
      events: history.events?.length ?? 0,
      bytes: Buffer.byteLength(JSON.stringify(history)),
      closedAs: last?.workflowExecutionContinuedAsNewEventAttributes ? 'continued-as-new' : String(last?.eventType),
    };
  });

/**
 * Floods run on the dev server: a run hands over only at the end of a workflow task, and how a server treats
 * signals that arrive while a run closes is the server's; the time-skipping server stalls on it for a workflow-task
 * timeout at a time. Outages and long bakes need skipped time.
 */
describe('continue-as-new', () => {
  const skipping = timeSkippingForTests();
  const dev = devServerForTests();

  /** The release to its end, with what each of its runs came to. */
  const release = async (server: ServerForTests, opts: ReleaseOptions, drive?: Drive<void>) => {
    const outcome = await runRelease(server.env, { policy: policy(), ...opts }, drive);
    return { ...outcome, runs: sizes(outcome.runs), description: await outcome.handle.describe() };
  };

  /** Until the release has taken in `count` refusals (a burst takes seconds on a loaded machine). */
  const untilRefused = (handle: ReleaseHandle, count: number) =>
    waitForStatus(handle, (s) => s.audit.filter((a) => !a.accepted).length + s.auditDropped >= count, {
      timeoutMs: 30_000,
      everyMs: 20,
    });

  /** No run may grow past the bound by more than the task that noticed it (a batch of signals). */
  const expectBounded = (runs: Run[]) => {
    for (const run of runs) {
      expect(run.events).toBeLessThan(RUN_MAX_EVENTS + 1_000);
      expect(run.bytes).toBeLessThan(RUN_MAX_BYTES + 8 * 1024 * 1024);
    }
  };

  it(`${FLOOD} refused signals at the production gate, then a valid approve is honoured and the release promotes`, async () => {
    const { result, status, runs, description } = await release(dev, { policy: realTime }, async (handle) => {
      await waitForStatus(handle, (s) => s.gate?.name === 'production', { timeoutMs: 20_000 });
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
      await waitForStatus(handle, (s) => s.gate?.name === 'production', { timeoutMs: 20_000 });
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
    const { result, runs, status, target } = await release(skipping, {
      analysis: [healthy(), failing('error ratio 0.2 > max 0.01')],
      undo: async (step, real) => {
        const scheduled = Context.current().info.scheduledTimestampMs;
        fixedAt ||= scheduled + BROKEN_DAYS * DAY;
        if (scheduled < fixedAt) throw new Error('load balancer API unavailable');
        const receipt = await real(step);
        undone.push(step.key.split('/').pop()!);
        return receipt;
      },
    });
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });
    expect(undone).toEqual(['canary', 'staging']);
    expect(target.actions.map((a) => `${a.action} ${a.key.split('/').pop()}`)).toEqual([
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
    const { result, runs } = await release(skipping, {
      policy: policy({
        trafficCycle: { duration: '30d' },
        production: { approval: false, waves: [{ percent: 100 }] },
      }),
      analysis: healthy(),
    });
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
