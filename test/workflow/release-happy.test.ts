import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { approveUpdate, statusQuery } from '../../src/domain/messages';
import { errorsCheck, writePolicies } from '../helpers/policies';
import { startRelease, waitForStatus } from '../helpers/release-handle';
import { healthy, releaseHarness } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

const HOUR = 3_600_000;

describe('release workflow: happy path', () => {
  const server = timeSkippingForTests();

  it('bakes the canary for a 24-hour traffic cycle, then promotes through three waves in seconds', async () => {
    const policyDir = writePolicies({ minimums: { analysisChecks: 1 } }, [
      {
        service: 'checkout',
        trafficCycle: { duration: '24h' },
        canary: { analysis: { interval: '1m', checks: [errorsCheck] } },
        production: {
          waves: [
            { percent: 25, bake: '1h' },
            { percent: 50, bake: '1h' },
            { percent: 100, bake: '1h' },
          ],
        },
      },
    ]);
    const { worker, taskQueue, target, analyzeCalls, notifications } = await releaseHarness(server.env, {
      policyDir,
      analysis: [healthy()],
    });
    const wallStart = Date.now();
    const history = await worker.runUntil(async () => {
      const handle = await startRelease(server.env.client, taskQueue, {
        service: 'checkout',
        version: '1.1.0',
        initiator: 'alice',
      });
      const gate = await waitForStatus(handle, (s) => s.state === 'awaiting-approval', { env: server.env, step: '1h' });
      expect(gate.stage).toBe('production');
      expect(gate.gate?.name).toBe('production');
      const approved = await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] });
      expect(approved.gate).toBeUndefined();
      const result = await handle.result();
      expect(result).toMatchObject({
        outcome: 'promoted',
        service: 'checkout',
        version: '1.1.0',
        stableVersion: '1.1.0',
        stage: 'done',
      });
      const final = await handle.query(statusQuery);
      expect(final.waves.map((w) => w.state)).toEqual(['done', 'done', 'done']);
      expect(Date.parse(result.endedAt) - Date.parse(result.startedAt)).toBeGreaterThanOrEqual(27 * HOUR);
      return handle.fetchHistory();
    });
    expect(Date.now() - wallStart).toBeLessThan(60_000);
    expect(target.actions.map((a) => `${a.action} ${a.detail}`)).toEqual([
      'apply staging → 1.1.0',
      'apply 1 canary instance(s) → 1.1.0',
      'apply 25% of production → 1.1.0',
      'apply 50% of production → 1.1.0',
      'apply 100% of production → 1.1.0',
      'mark-stable 1.1.0 is stable',
    ]);
    expect(analyzeCalls[0]?.maxRounds).toBe(120);
    // Canary events are labelled canary; approval is asked for production, once.
    expect(notifications.map((n) => `${n.event}:${n.stage}:${n.track}`)).toEqual([
      'release-started:staging:staging',
      'canary-started:canary:canary',
      'awaiting-approval:production:production',
      'promoted:done:production',
    ]);

    // The Temporal UI names every activity and timer by its summary: none may be left as a bare type or duration.
    const summary = (e: temporal.api.history.v1.IHistoryEvent) =>
      e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary) : undefined;
    const scheduled = (history.events ?? []).filter(
      (e) => e.activityTaskScheduledEventAttributes || e.timerStartedEventAttributes,
    );
    const unnamed = scheduled
      .filter((e) => !summary(e))
      .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? `timer ${e.eventId?.toString()}`);
    expect(unnamed).toEqual([]);
    const timers = scheduled.filter((e) => e.timerStartedEventAttributes).map(summary);
    expect(timers).toContainEqual(expect.stringMatching(/^bake canary: cycle ends \d{4}-/));
    expect(timers).toContainEqual(expect.stringMatching(/^bake production wave 3: /));
  });
});
