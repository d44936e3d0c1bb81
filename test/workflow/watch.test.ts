import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { AnalyzeInput } from '../../src/activities/types';
import { abortUpdate, alertSignal, rollbackSignal, rollbackUpdate, statusQuery } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import type { ReleaseStatus } from '../../src/domain/status';
import { checkoutPolicy, errorsCheck } from '../helpers/policies';
import { canaryBaking, waitForStatus, type ReleaseHandle } from '../helpers/release-handle';
import { failing, healthy, runRelease } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

/** A 1 h canary, two waves, then production watched for 1 h with an SLO and a before/after check. */
const watched = (watch: Record<string, unknown> = {}, over: Partial<ServicePolicyInput> = {}): ServicePolicyInput =>
  checkoutPolicy({
    trafficCycle: { duration: '1h' },
    production: {
      approval: false,
      waves: [
        { percent: 50, bake: '10m' },
        { percent: 100, bake: '10m' },
      ],
      watch: {
        duration: '1h',
        analysis: {
          interval: '1m',
          checks: [
            errorsCheck,
            { name: 'latency-before-after', template: 'latency-p99', baseline: { tolerance: 0.2, minSamples: 5 } },
          ],
        },
        ...watch,
      },
    },
    ...over,
  });

const inWatch = (input: AnalyzeInput) => input.baselineEnd !== undefined;
const watching = (s: ReleaseStatus) => s.state === 'watching';
const applied = (actions: { action: string; key: string }[]) =>
  actions.map((a) => `${a.action} ${a.key.split('/').pop()}`);

describe('production watch after the last wave (time-skipping)', () => {
  const server = timeSkippingForTests();
  const untilWatching = (handle: ReleaseHandle) => waitForStatus(handle, watching, { env: server.env, step: '1m' });

  it('a clean window promotes; the watch compares with the pre-release window; the warm previous version is retired', async () => {
    const { result, status, target, analyzeCalls, retired, notifications } = await runRelease(server.env, {
      policy: watched(),
    });
    expect(result.outcome).toBe('promoted');
    expect(result.reason).toMatch(/watched clean for 1h/);
    const watchCalls = analyzeCalls.filter(inWatch);
    expect(watchCalls.length).toBeGreaterThan(0);
    // Before/after: the baseline ends where the release began; the new version is judged in production.
    for (const call of watchCalls) {
      expect(call.baselineEnd).toBe(result.startedAt);
      expect(call.context).toMatchObject({ stage: 'production', track: 'production', version: '2.0.0' });
      expect(call.checks.map((c) => c.name)).toEqual(['errors', 'latency-before-after']);
    }
    expect(analyzeCalls.filter((c) => !inWatch(c)).every((c) => c.baselineEnd === undefined)).toBe(true);
    // Every step that replaced the previous version kept it warm, and only a clean window retired it, before stable.
    expect(target.actions.filter((a) => a.action === 'apply' && !a.key.endsWith('/staging'))).toHaveLength(3);
    expect(retired.map((s) => s.key)).toEqual([`${status.releaseId}/retire-previous`]);
    expect(applied(target.actions)).toEqual([
      'apply staging',
      'apply canary',
      'apply wave-1',
      'apply wave-2',
      'mark-stable stable',
    ]);
    expect(status.watch).toMatchObject({ durationMs: 3_600_000, keepPrevious: true });
    expect(status.watch?.passedAt).toBeDefined();
    expect(notifications.map((n) => n.event)).toEqual(expect.arrayContaining(['watch-started', 'promoted']));
    expect(notifications.findIndex((n) => n.event === 'watch-started')).toBeLessThan(
      notifications.findIndex((n) => n.event === 'promoted'),
    );
  });

  it('the deploy steps ask the target to keep the previous version warm, only when the watch says so', async () => {
    const steps: { key: string; keepPrevious?: true }[] = [];
    const record = (kept: boolean) => ({
      policy: watched({ keepPrevious: kept }),
      deploy: (step: { key: string; keepPrevious?: true }, real: (s: never) => Promise<never>) => {
        steps.push(step);
        return real(step as never);
      },
    });
    const warm = await runRelease(server.env, record(true) as never);
    expect(steps.map((s) => [s.key.split('/').pop(), s.keepPrevious])).toEqual([
      ['staging', undefined],
      ['canary', true],
      ['wave-1', true],
      ['wave-2', true],
    ]);
    steps.length = 0;
    const cold = await runRelease(server.env, record(false) as never);
    expect(steps.every((s) => s.keepPrevious === undefined)).toBe(true);
    expect((warm as { retired: unknown[] }).retired).toHaveLength(1);
    expect((cold as { retired: unknown[] }).retired).toHaveLength(0);
    expect((cold as { result: { outcome: string } }).result.outcome).toBe('promoted');
  });

  it('a breach in the window rolls production back: rolled_back_after_promotion, leftovers retired, stable unchanged', async () => {
    const { result, status, target, retired, notifications } = await runRelease(server.env, {
      policy: watched(),
      analysis: (input) => (inWatch(input) ? failing('error ratio 0.2 > 0.01', true)(input) : healthy()(input)),
    });
    expect(result.outcome).toBe('rolled_back_after_promotion');
    expect(result.stage).toBe('production');
    expect(result.stableVersion).toBe('1.0.0');
    expect(result.reason).toContain('error ratio 0.2');
    expect(applied(target.actions)).toEqual([
      'apply staging',
      'apply canary',
      'apply wave-1',
      'apply wave-2',
      'undo wave-2',
      'undo wave-1',
      'undo canary',
      'undo staging',
    ]);
    // After every undo: whatever the switch back did not need is not left running.
    expect(retired).toHaveLength(1);
    expect(await target.stableVersion('checkout')).toBe('1.0.0');
    expect(status.waves.map((w) => w.state)).toEqual(['rolled-back', 'rolled-back']);
    expect(notifications.at(-1)).toMatchObject({ event: 'rolled-back-after-promotion' });
  });

  it('tollgate rollback: refused before the watch with the reason, accepted in it, by anyone, and audited', async () => {
    const { result, status } = await runRelease(server.env, { policy: watched() }, async (handle) => {
      await waitForStatus(handle, canaryBaking, { env: server.env, step: '1m' });
      const early = await handle
        .executeUpdate(rollbackUpdate, { args: [{ by: 'bob', reason: 'too early' }] })
        .catch((e: unknown) => e);
      expect(early).toBeInstanceOf(WorkflowUpdateFailedError);
      expect(String((early as Error).cause)).toMatch(/rollback applies while production is watched/);
      await untilWatching(handle);
      // The initiator may roll back: going back needs no second pair of eyes.
      const answer = await handle.executeUpdate(rollbackUpdate, { args: [{ by: 'alice', reason: 'totals wrong' }] });
      expect(answer.state).toBe('rolling-back');
    });
    expect(result.outcome).toBe('rolled_back_after_promotion');
    expect(result.reason).toBe('rolled back by alice: totals wrong');
    expect(status.rollback?.undone.map((k) => k.split('/').pop())).toEqual(['wave-2', 'wave-1', 'canary', 'staging']);
    expect(status.audit.filter((e) => e.action === 'rollback').map((e) => [e.actor, e.accepted])).toEqual([
      ['alice', true],
    ]);
  });

  it('a rollback signal in the window works as the update does; a malformed one is refused and changes nothing', async () => {
    const { result, status } = await runRelease(server.env, { policy: watched() }, async (handle) => {
      await untilWatching(handle);
      await handle.signal(rollbackSignal, { by: 'bob' } as never);
      await handle.signal(rollbackSignal, 42 as never);
      const still = await handle.query(statusQuery);
      expect(still.state).toBe('watching');
      await handle.signal(rollbackSignal, { by: 'bob', reason: 'pager' });
    });
    expect(result.outcome).toBe('rolled_back_after_promotion');
    expect(result.reason).toBe('rolled back by bob: pager');
    expect(status.audit.filter((e) => e.action === 'rollback').map((e) => e.accepted)).toEqual([false, false, true]);
  });

  it('an abort or a rollback alert in the window also ends rolled_back_after_promotion', async () => {
    const aborted = await runRelease(server.env, { policy: watched() }, async (handle) => {
      await untilWatching(handle);
      await handle.executeUpdate(abortUpdate, { args: [{ by: 'carol', reason: 'incident' }] });
    });
    expect(aborted.result.outcome).toBe('rolled_back_after_promotion');
    expect(aborted.result.reason).toBe('aborted by carol: incident');

    const alerted = await runRelease(
      server.env,
      {
        policy: watched(
          {},
          {
            alerts: {
              rules: [{ name: 'errors', matchers: ['alertname="TollgateErrorRatioHigh"'], action: 'rollback' }],
            },
          },
        ),
      },
      async (handle) => {
        await untilWatching(handle);
        await handle.signal(alertSignal, {
          receiver: 'tollgate',
          alerts: [
            {
              fingerprint: 'fp-1',
              status: 'firing',
              labels: { alertname: 'TollgateErrorRatioHigh', service: 'checkout', version: '2.0.0', track: 'canary' },
              annotations: { summary: '9% of requests fail at 100%' },
              startsAt: new Date().toISOString(),
            },
          ],
        });
      },
    );
    expect(alerted.result.outcome).toBe('rolled_back_after_promotion');
    expect(alerted.result.reason).toContain('TollgateErrorRatioHigh');
  });

  it('a promote in the window ends it early and promotes, with the approver rules of any promote', async () => {
    const { result, status } = await runRelease(
      server.env,
      { policy: watched({}, { approvals: { fourEyes: true } }) },
      async (handle) => {
        await untilWatching(handle);
        const own = await handle
          .executeUpdate('promote', { args: [{ by: 'alice', reason: 'mine' }] })
          .catch((e: unknown) => e);
        expect(String((own as Error).cause)).toMatch(/four-eyes/);
        await handle.executeUpdate('promote', { args: [{ by: 'bob', reason: 'incident over, ship it' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(status.watch?.passedAt).toBeDefined();
  });
});

describe('rollback window (time-skipping)', () => {
  const server = timeSkippingForTests();
  const windowed = (rollbackWindow: Record<string, unknown>) =>
    checkoutPolicy({
      trafficCycle: { duration: '6h' },
      production: { approval: false, waves: [{ percent: 100 }], rollbackWindow },
    });
  const daysAgo = (d: number) => new Date(Date.now() - d * 86_400_000).toISOString();
  const history = [
    { version: '3.0.0', promotedAt: daysAgo(1), releaseId: 'release-checkout/r3' },
    { version: '2.0.0', promotedAt: daysAgo(3), releaseId: 'release-checkout/r2' },
    { version: '1.0.0', promotedAt: daysAgo(10), releaseId: 'release-checkout/r1' },
  ];
  const canaryBakes = (calls: AnalyzeInput[]) => calls.filter((c) => c.context.stage === 'canary').length;

  it('a version stable one release ago skips the canary bake, recorded with its evidence', async () => {
    const { result, status, analyzeCalls, target } = await runRelease(server.env, {
      policy: windowed({ releases: 2, within: '7d' }),
      promoted: history,
    });
    expect(result.outcome).toBe('promoted');
    expect(canaryBakes(analyzeCalls)).toBe(0);
    expect(status.rollbackWindow).toMatchObject({ releaseId: 'release-checkout/r2', releasesAgo: 1 });
    const entry = status.audit.find((e) => e.action === 'rollback-window');
    expect(entry?.detail).toMatch(/2\.0\.0 was stable until .* 1 release\(s\) ago.*canary bake is skipped/);
    // Staging and the canary deploy still run.
    expect(applied(target.actions).slice(0, 2)).toEqual(['apply staging', 'apply canary']);
  });

  it('outside the window — too many releases ago, too long ago, never stable, unknown — the canary bakes', async () => {
    for (const [window, promoted] of [
      [{ releases: 1 }, [history[0], { ...history[1]!, version: '2.5.0', promotedAt: daysAgo(2) }, history[1]]],
      [{ within: '1d' }, [{ ...history[0]!, promotedAt: daysAgo(2) }, history[1]]],
      [{ releases: 5 }, [history[0]]],
      [{ releases: 5 }, { unknown: 'visibility unavailable' }],
    ] as const) {
      const { result, status, analyzeCalls } = await runRelease(server.env, {
        policy: windowed(window),
        promoted: promoted as never,
      });
      expect(result.outcome).toBe('promoted');
      expect(status.rollbackWindow).toBeUndefined();
      expect(canaryBakes(analyzeCalls)).toBeGreaterThan(0);
    }
  });
});
