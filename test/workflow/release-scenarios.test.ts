import { WorkflowUpdateFailedError } from '@temporalio/client';
import {
  abortUpdate,
  approveUpdate,
  pauseUpdate,
  promoteUpdate,
  resumeUpdate,
  statusQuery,
} from '../../src/domain/messages';
import { checkoutPolicy } from '../helpers/policies';
import { canaryBaking, waitForStatus } from '../helpers/release-handle';
import { failing, healthy, inconclusive, rounds, runRelease, type AnalysisStep } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const hhmm = (hour: number) => `${String(hour % 24).padStart(2, '0')}:00`;
const startOfUtcDay = (ms: number) => Math.floor(ms / DAY) * DAY;

describe('release workflow scenarios (time-skipping)', () => {
  const server = timeSkippingForTests();
  const applied = (actions: { action: string; key: string }[]) =>
    actions.map((a) => `${a.action} ${a.key.split('/').pop()}`);

  it('rolls back on canary metric failures and completes with outcome rolled_back', async () => {
    const { result, status, target, notifications } = await runRelease(server.env, {
      analysis: [healthy(), failing('error ratio 0.2 > max 0.01')],
    });
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary', stableVersion: '1.0.0' });
    expect(result.reason).toContain('error ratio 0.2');
    expect(applied(target.actions)).toEqual(['apply staging', 'apply canary', 'undo canary', 'undo staging']);
    expect(status.rollback?.undone).toHaveLength(2);
    expect(await target.stableVersion('checkout')).toBe('1.0.0');
    expect(notifications.map((n) => `${n.event}:${n.track}`)).toEqual([
      'release-started:staging',
      'canary-started:canary',
      'check-failed:canary',
      'rolled-back:canary',
    ]);
  });

  it('rolls back at once on a critical (known) error', async () => {
    const { result, analyzeCalls, status } = await runRelease(server.env, {
      analysis: [failing('panic: nil pointer in 5xx logs', true)],
    });
    expect(result.outcome).toBe('rolled_back');
    expect(result).toMatchObject({ stage: 'canary', reason: 'panic: nil pointer in 5xx logs' });
    expect(analyzeCalls).toHaveLength(1);
    expect(status.analysis.rounds).toBe(1);
  });

  it('holds the bake for a human on inconclusive analysis and carries on when approved', async () => {
    const { result, status } = await runRelease(
      server.env,
      { analysis: [inconclusive('no data: Prometheus unreachable')] },
      async (handle) => {
        const held = await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', {
          env: server.env,
          step: '1m',
        });
        expect(held.state).toBe('awaiting-approval');
        expect(held.gate?.message).toContain('Prometheus unreachable');
        // A gate, not a pause: nobody paused the release, and resume is not the way past it.
        expect(held.pause).toBeUndefined();
        await server.env.sleep('30h'); // held: the bake clock must not run
        const still = await handle.query(statusQuery);
        expect(still.state).toBe('awaiting-approval');
        expect(still.bake!.elapsedMs).toBeLessThan(HOUR);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'metrics back' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(status.audit.map((a) => a.action)).toEqual(expect.arrayContaining(['gate', 'approve', 'promoted']));
  });

  it('asks once while inconclusive analysis waits 48 h for an answer, with history bounded; approve carries on', async () => {
    let verdict: 'pass' | 'inconclusive' = 'inconclusive';
    const { result, status, history, notifications } = await runRelease(
      server.env,
      { analysis: rounds(() => verdict) },
      async (handle) => {
        await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', { env: server.env, step: '1m' });
        await server.env.sleep('48h');
        const still = await handle.query(statusQuery);
        expect(still).toMatchObject({ state: 'awaiting-approval', gate: { name: 'inconclusive' } });
        verdict = 'pass';
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'metrics back' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(status.audit.filter((a) => a.action === 'gate')).toHaveLength(1);
    expect(notifications.filter((n) => n.event === 'awaiting-approval')).toHaveLength(1);
    const events = history.events?.length ?? 0;
    console.log(`history: 48 h of unanswered inconclusive analysis at 1-minute rounds → ${events} events`);
    expect(events).toBeLessThan(4096);
  });

  it('asks once while analysis cannot run for 48 h, with history bounded; abort still rolls back', async () => {
    const { result, status, history, notifications, target } = await runRelease(
      server.env,
      {
        analysis: () => {
          throw new Error('metrics provider misconfigured');
        },
      },
      async (handle) => {
        await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', { env: server.env, step: '1m' });
        await server.env.sleep('48h');
        const still = await handle.query(statusQuery);
        expect(still.gate?.message).toContain('analysis could not run: metrics provider misconfigured');
        await handle.executeUpdate(abortUpdate, { args: [{ by: 'bob', reason: 'cannot judge it' }] });
      },
    );
    expect(result).toMatchObject({ outcome: 'aborted', stage: 'canary' });
    expect(applied(target.actions)).toEqual(['apply staging', 'apply canary', 'undo canary', 'undo staging']);
    expect(status.audit.filter((a) => a.action === 'gate')).toHaveLength(1);
    expect(notifications.filter((n) => n.event === 'awaiting-approval')).toHaveLength(1);
    const events = history.events?.length ?? 0;
    console.log(`history: 48 h of analysis that cannot run, unanswered → ${events} events`);
    expect(events).toBeLessThan(4096);
  });

  it('still rolls back on a critical failure while paused on inconclusive analysis', async () => {
    let verdict: 'fail' | 'inconclusive' = 'inconclusive';
    const { result, target } = await runRelease(
      server.env,
      { analysis: rounds(() => verdict, true) },
      async (handle) => {
        await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', { env: server.env, step: '1m' });
        await server.env.sleep('12h');
        verdict = 'fail';
      },
    );
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });
    expect(result.reason).toContain('critical check failed');
    expect(applied(target.actions)).toEqual(['apply staging', 'apply canary', 'undo canary', 'undo staging']);
  });

  it('aborted while paused on inconclusive analysis, undoes everything', async () => {
    const { result, target } = await runRelease(server.env, { analysis: [inconclusive('no data')] }, async (handle) => {
      await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', { env: server.env, step: '1m' });
      await handle.executeUpdate(abortUpdate, { args: [{ by: 'bob', reason: 'cannot judge it' }] });
    });
    expect(result).toMatchObject({ outcome: 'aborted', stage: 'canary' });
    expect(applied(target.actions)).toEqual(['apply staging', 'apply canary', 'undo canary', 'undo staging']);
  });

  it.each([
    [
      'staging',
      (s: { stage: string; state: string }) => s.stage === 'staging' && s.state === 'baking',
      ['apply staging', 'undo staging'],
    ],
    [
      'canary',
      (s: { stage: string; state: string }) => s.stage === 'canary' && s.state === 'baking',
      ['apply staging', 'apply canary', 'undo canary', 'undo staging'],
    ],
    [
      'production',
      (s: { stage: string; state: string }) => s.stage === 'production' && s.state === 'baking',
      ['apply staging', 'apply canary', 'apply wave-1', 'undo wave-1', 'undo canary', 'undo staging'],
    ],
  ])('abort during %s undoes exactly what was deployed, in reverse', async (_stage, at, expected) => {
    const { result, target } = await runRelease(
      server.env,
      { policy: checkoutPolicy({ staging: { bake: '2h' } }) },
      async (handle) => {
        await waitForStatus(handle, at, { env: server.env, step: '20m' });
        const answer = await handle.executeUpdate(abortUpdate, { args: [{ by: 'carol', reason: 'customer reports' }] });
        expect(answer.state).toBe('rolling-back');
      },
    );
    expect(result.outcome).toBe('aborted');
    expect(result.reason).toBe('aborted by carol: customer reports');
    expect(applied(target.actions)).toEqual(expected);
  });

  it('pause freezes the bake clock, resume continues it, promote skips the rest', async () => {
    const { result, status } = await runRelease(server.env, {}, async (handle) => {
      await waitForStatus(handle, canaryBaking, { env: server.env, step: '10m' });
      await server.env.sleep('2h');
      // Sent as typed in a terminal: what is recorded is what was validated, trimmed.
      const paused = await handle.executeUpdate(pauseUpdate, {
        args: [{ by: '  dave ', reason: ' incident elsewhere  ' }],
      });
      expect(paused.pause).toMatchObject({ by: 'dave', reason: 'incident elsewhere' });
      expect(paused.audit.at(-1)).toMatchObject({ actor: 'dave', action: 'pause', detail: 'incident elsewhere' });
      await server.env.sleep('48h');
      const frozen = await handle.query(statusQuery);
      expect(frozen.state).toBe('paused');
      expect(frozen.bake!.elapsedMs).toBeGreaterThanOrEqual(2 * HOUR);
      expect(frozen.bake!.elapsedMs).toBeLessThan(3 * HOUR);
      await expect(handle.executeUpdate(promoteUpdate, { args: [{ by: 'dave', reason: 'hurry' }] })).rejects.toThrow(
        WorkflowUpdateFailedError,
      );
      await handle.executeUpdate(resumeUpdate, { args: [{ by: 'dave' }] });
      await server.env.sleep('3h');
      const resumed = await handle.query(statusQuery);
      // Progress is recomputed whenever the workflow wakes (at least every 5% of the cycle): the clock runs again.
      expect(resumed.bake!.elapsedMs).toBeGreaterThan(frozen.bake!.elapsedMs);
      expect(resumed.bake!.elapsedMs).toBeLessThanOrEqual(5 * HOUR);
      const promoted = await handle.executeUpdate(promoteUpdate, { args: [{ by: 'erin', reason: 'fix needed now' }] });
      expect(promoted.audit.at(-1)).toMatchObject({ action: 'promote', actor: 'erin', detail: 'fix needed now' });
    });
    expect(result.outcome).toBe('promoted');
    // 2h + 3h of canary, 48h paused, 2h of waves: well short of 24h of canary baking.
    expect(Date.parse(result.endedAt) - Date.parse(result.startedAt)).toBeLessThan(60 * HOUR);
    expect(status.audit.map((a) => a.action)).toEqual(['start', 'pause', 'resume', 'promote', 'promoted']);
  });

  it("queries the org's metric names: the policy's names reach every analysis stretch", async () => {
    const { result, analyzeCalls } = await runRelease(server.env, {
      org: { minimums: { productionApproval: false }, metrics: { requests: 'shop_requests_total' } },
    });
    expect(result.outcome).toBe('promoted');
    expect(analyzeCalls.length).toBeGreaterThan(0);
    for (const call of analyzeCalls) expect(call.metricNames?.requests).toBe('shop_requests_total');
  });

  it('never completes a bake on a stretch a worker shutdown cut short', async () => {
    // The second stretch is the one that would judge the completed cycle, but a shutdown cut it short.
    const cutShort: AnalysisStep = (input) => ({
      ...healthy()(input),
      counters: input.counters,
      reason: 'stretch cut short: worker shutting down',
      cutShort: true,
    });
    const { result, analyzeCalls } = await runRelease(server.env, {
      policy: checkoutPolicy({
        trafficCycle: { duration: '1h' },
        production: { approval: false, waves: [{ percent: 100 }] },
      }),
      analysis: [healthy(), cutShort, healthy()],
    });
    expect(result.outcome).toBe('promoted');
    // Canary: the cycle's stretch, the cut-short one, and the fresh report that completed the bake.
    expect(analyzeCalls).toHaveLength(3);
  });

  it('extends the bake until the canary has served the minimum requests', async () => {
    const { result, history } = await runRelease(
      server.env,
      {
        policy: checkoutPolicy({ trafficCycle: { duration: '1h', minCanaryRequests: 1000 } }),
        analysis: [healthy(300), healthy(0), healthy(0), healthy(700)],
      },
      async (handle) => {
        const waiting = await waitForStatus(handle, (s) => (s.bake?.elapsedMs ?? 0) >= HOUR, {
          env: server.env,
          step: '20m',
        });
        expect(waiting.stage).toBe('canary');
        expect(waiting.bake?.waitingFor).toEqual(['300/1000 requests']);
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(history.events?.length).toBeGreaterThan(0);
  });

  it('extends the bake until every peak window has been observed unpaused', async () => {
    // Lunch starts 2-3 hours after the server's clock: after the 1h cycle, always still ahead.
    const lunchStart = new Date(await server.env.currentTimeMs()).getUTCHours() + 3;
    const { result } = await runRelease(
      server.env,
      {
        policy: checkoutPolicy({
          trafficCycle: {
            duration: '1h',
            peakWindows: [{ name: 'lunch', start: hhmm(lunchStart), end: hhmm(lunchStart + 2) }],
          },
        }),
      },
      async (handle) => {
        const waiting = await waitForStatus(handle, (s) => (s.bake?.elapsedMs ?? 0) >= HOUR, {
          env: server.env,
          step: '20m',
        });
        expect(waiting.bake?.waitingFor).toEqual(['peak lunch']);
        expect(waiting.bake?.peakWindows).toEqual([{ window: 'lunch', seen: false }]);
      },
    );
    expect(result.outcome).toBe('promoted');
    const canaryBakeEnd = Date.parse(result.endedAt) - 2 * HOUR; // two 1h waves follow the canary
    expect(new Date(canaryBakeEnd).getUTCHours()).toBe((lunchStart + 2) % 24);
  });

  it('waits days for a weekday-only peak window with history bounded, then promotes once it is seen', async () => {
    // The only peak is on the weekday three days after the server's clock; time and requests are met after 1h.
    const peakStart = startOfUtcDay(await server.env.currentTimeMs()) + 3 * DAY + 10 * HOUR;
    const peakEnd = peakStart + 2 * HOUR;
    const day = DAY_NAMES[new Date(peakStart).getUTCDay()]!;
    const { result, history } = await runRelease(
      server.env,
      {
        policy: checkoutPolicy({
          trafficCycle: {
            duration: '1h',
            minCanaryRequests: 1000,
            peakWindows: [{ name: 'weekly', days: [day], start: '10:00', end: '12:00' }],
          },
          production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
        }),
        analysis: [healthy(1000)],
      },
      async (handle) => {
        const waiting = await waitForStatus(handle, (s) => (s.bake?.elapsedMs ?? 0) >= HOUR, {
          env: server.env,
          step: '20m',
        });
        expect(waiting.bake?.waitingFor).toEqual(['peak weekly']);
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(Date.parse(result.endedAt)).toBeGreaterThanOrEqual(peakEnd);
    expect(Date.parse(result.endedAt)).toBeLessThan(peakEnd + 10 * 60_000);
    const events = history.events?.length ?? 0;
    console.log(
      `history: waiting ${((peakEnd - Date.parse(result.startedAt)) / HOUR).toFixed(0)} h for a weekday peak at 1-minute analysis → ${events} events`,
    );
    expect(events).toBeLessThan(4096);
  });

  it('waits for a deployment window before production changes', async () => {
    // The only window opens on the weekday three days after the server's clock; production is ready after ~24h.
    const opens = startOfUtcDay(await server.env.currentTimeMs()) + 3 * DAY + 9 * HOUR;
    const day = DAY_NAMES[new Date(opens).getUTCDay()]!;
    const { result } = await runRelease(
      server.env,
      { policy: checkoutPolicy({ windows: { allowed: [{ days: [day], start: '09:00', end: '11:00' }] } }) },
      async (handle) => {
        const waiting = await waitForStatus(handle, (s) => s.state === 'waiting-for-window', {
          env: server.env,
          step: '2h',
        });
        expect(waiting.waitingForWindowUntil).toBe(new Date(opens).toISOString());
        expect(waiting.waves.map((w) => w.state)).toEqual(['waiting-for-window', 'pending']);
        expect(waiting.deployedSteps.map((k) => k.split('/').pop())).toEqual(['staging', 'canary']);
      },
    );
    expect(result.outcome).toBe('promoted');
    // Wave 1 at 09:00, its 1h bake, wave 2 at 10:00 (still inside the window), its 1h bake.
    expect(Date.parse(result.endedAt)).toBeGreaterThanOrEqual(opens + 2 * HOUR);
    expect(Date.parse(result.endedAt)).toBeLessThan(opens + 3 * HOUR);
  });

  it('cancelling the workflow during the canary bake rolls back in reverse, retrying a failed undo, and ends aborted', async () => {
    const { result, status, target, undoAttempts } = await runRelease(
      server.env,
      { undoFailures: 1 },
      async (handle) => {
        await waitForStatus(handle, canaryBaking, { env: server.env, step: '10m' });
        await handle.cancel();
      },
    );
    expect(result).toMatchObject({
      outcome: 'aborted',
      stage: 'canary',
      reason: 'workflow cancelled',
      stableVersion: '1.0.0',
    });
    expect(applied(target.actions)).toEqual(['apply staging', 'apply canary', 'undo canary', 'undo staging']);
    expect(undoAttempts.map((k) => k.split('/').pop())).toEqual(['canary', 'canary', 'staging']);
    expect(status.rollback).toMatchObject({
      failedAttempts: 1,
      undone: [expect.stringMatching(/canary$/), expect.stringMatching(/staging$/)],
    });
    expect(await target.stableVersion('checkout')).toBe('1.0.0');
  });

  it('retries an undo that fails twice, shows the retries in status, and completes the rollback', async () => {
    const { result, status, undoAttempts } = await runRelease(server.env, {
      analysis: [failing('error ratio 0.3 > max 0.01')],
      undoFailures: 2,
    });
    expect(result.outcome).toBe('rolled_back');
    expect(status.rollback).toMatchObject({
      failedAttempts: 2,
      undone: [expect.stringMatching(/canary$/), expect.stringMatching(/staging$/)],
    });
    expect(status.rollback?.lastError).toContain('load balancer API unavailable');
    expect(undoAttempts.map((k) => k.split('/').pop())).toEqual(['canary', 'canary', 'canary', 'staging']);
  });

  it.each([
    ['1-hour', '1h'],
    ['24-hour', '24h'],
    ['7-day', '7d'],
  ])('keeps a %s traffic cycle analysed every minute far below the history limits', async (label, duration) => {
    const { result, history } = await runRelease(server.env, {
      policy: checkoutPolicy({
        trafficCycle: { duration },
        production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
      }),
    });
    expect(result.outcome).toBe('promoted');
    const events = history.events?.length ?? 0;
    console.log(`history: ${label} traffic cycle at 1-minute analysis → ${events} events in one run`);
    expect(events).toBeLessThan(4096);
  });
});
