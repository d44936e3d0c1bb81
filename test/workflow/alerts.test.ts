import fc from 'fast-check';
import { alertSignalSchema, type AlertSignal } from '../../src/domain/alerts';
import { alertSignal, approveSignal, statusQuery } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { checkoutPolicy } from '../helpers/policies';
import { recordHostileRows, SEED, type HostileRow } from '../helpers/reliability-report';
import { canaryBaking, tryStatus, waitForStatus, type ReleaseHandle } from '../helpers/release-handle';
import { runRelease } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

type AlertRules = NonNullable<ServicePolicyInput['alerts']>['rules'];

/** A short release (1 h canary, one wave) with the service's alert rules. */
const alerted = (rules: AlertRules, over: Partial<ServicePolicyInput> = {}): ServicePolicyInput =>
  checkoutPolicy({
    trafficCycle: { duration: '1h' },
    production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
    alerts: { rules },
    ...over,
  });

const ERRORS_RULE = { name: 'errors', matchers: ['alertname="TollgateErrorRatioHigh"'], action: 'rollback' as const };

/** One alert as the receiver signals it; the canary of 2.0.0 unless `labels` says otherwise. */
function alert(
  labels: Record<string, string> = {},
  over: Partial<AlertSignal['alerts'][number]> = {},
): AlertSignal['alerts'][number] {
  return {
    fingerprint: `fp-${labels.alertname ?? 'TollgateErrorRatioHigh'}-${labels.track ?? 'canary'}`,
    status: 'firing',
    labels: {
      alertname: 'TollgateErrorRatioHigh',
      service: 'checkout',
      version: '2.0.0',
      track: 'canary',
      severity: 'critical',
      ...labels,
    },
    annotations: { summary: 'checkout 2.0.0 on canary: 21% of requests fail' },
    startsAt: '2026-01-01T00:00:00Z',
    ...over,
  };
}

const send = (handle: ReleaseHandle, ...alerts: AlertSignal['alerts']) =>
  handle.signal(alertSignal, { alerts, receiver: 'tollgate' });

const applied = (actions: { action: string; key: string }[]) =>
  actions.map((a) => `${a.action} ${a.key.split('/').pop()}`);

describe('alerts in a release (time-skipping)', () => {
  const server = timeSkippingForTests();
  const bakingCanary = (handle: ReleaseHandle) => waitForStatus(handle, canaryBaking, { env: server.env, step: '1m' });
  const rows: HostileRow[] = [];
  afterAll(() => {
    if (rows.length > 0) recordHostileRows('alerts', rows);
  });

  it('a known-error canary alert rolls the release back at once, named in the reason, audit and notification', async () => {
    const { result, status, target, notifications, analyzeCalls } = await runRelease(
      server.env,
      { policy: alerted([ERRORS_RULE]) },
      async (handle) => {
        await bakingCanary(handle);
        await send(handle, alert());
      },
    );
    expect(result.outcome).toBe('rolled_back');
    expect(result.stage).toBe('canary');
    expect(result.reason).toContain('known error: alert TollgateErrorRatioHigh on the canary');
    expect(result.reason).toContain('21% of requests fail');
    expect(result.reason).toContain('severity="critical"');
    expect(applied(target.actions)).toEqual(['apply staging', 'apply canary', 'undo canary', 'undo staging']);
    // At once: no analysis stretch had to report first.
    expect(analyzeCalls.length).toBeLessThanOrEqual(1);
    expect(status.alerts).toEqual([
      expect.objectContaining({ name: 'TollgateErrorRatioHigh', track: 'canary', action: 'rollback', rule: 'errors' }),
    ]);
    expect(status.audit.find((e) => e.action === 'alert-firing')?.detail).toMatch(/→ rolling back \(rule errors\)$/);
    expect(notifications.at(-1)).toMatchObject({ event: 'rolled-back' });
    expect(notifications.at(-1)?.message).toContain('TollgateErrorRatioHigh');
  });

  it('a flood of repeats changes nothing after the first; a resolution is recorded once', async () => {
    const { result, status } = await runRelease(
      server.env,
      { policy: alerted([{ ...ERRORS_RULE, action: 'show' }]) },
      async (handle) => {
        await bakingCanary(handle);
        await send(handle, alert());
        const first = await handle.query(statusQuery);
        for (let batch = 0; batch < 5; batch++) {
          await Promise.all(Array.from({ length: 20 }, () => send(handle, alert(), alert())));
        }
        const flooded = await handle.query(statusQuery);
        expect(flooded.alerts).toEqual(first.alerts);
        expect(flooded.audit).toEqual(first.audit);
        const resolved = alert({}, { status: 'resolved' });
        await send(handle, resolved, resolved);
        await send(handle, resolved);
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(status.alerts).toEqual([]);
    expect(status.audit.filter((e) => e.action.startsWith('alert-')).map((e) => e.action)).toEqual([
      'alert-firing',
      'alert-resolved',
    ]);
  });

  it("a stable-track alert leaves the canary alone unless the rule lists the stable track; another canary's is ignored", async () => {
    const alone = await runRelease(server.env, { policy: alerted([ERRORS_RULE]) }, async (handle) => {
      await bakingCanary(handle);
      await send(
        handle,
        alert({ track: 'stable', version: '1.0.0' }),
        alert({ version: '1.9.0' }, { fingerprint: 'x' }),
      );
      const status = await handle.query(statusQuery);
      expect(status.alerts?.map((a) => `${a.track} ${a.action}`)).toEqual(['stable show']);
    });
    expect(alone.result.outcome).toBe('promoted');

    const listed = await runRelease(
      server.env,
      { policy: alerted([{ ...ERRORS_RULE, tracks: ['canary', 'stable'] }]) },
      async (handle) => {
        await bakingCanary(handle);
        await send(handle, alert({ track: 'stable', version: '1.0.0' }));
      },
    );
    expect(listed.result.outcome).toBe('rolled_back');
    expect(listed.result.reason).toContain('on the stable');
  });

  it('a fail-round alert counts as one failed analysis round, against the failure limit', async () => {
    const policy = alerted([{ name: 'latency', matchers: ['alertname=~"Tollgate.*High"'], action: 'fail-round' }], {
      canary: {
        analysis: { interval: '1m', failureLimit: 2, checks: [checkoutPolicy().canary!.analysis!.checks![0]!] },
      },
    });
    const { result, status } = await runRelease(server.env, { policy }, async (handle) => {
      await bakingCanary(handle);
      await send(handle, alert({ alertname: 'TollgateLatencyHigh' }));
      const once = await waitForStatus(handle, (s) => s.analysis.failures === 1, { env: server.env, step: '1s' });
      expect(once.state).toBe('baking');
      await send(handle, alert({ alertname: 'TollgateSaturationHigh' }));
    });
    expect(result.outcome).toBe('rolled_back');
    expect(result.reason).toMatch(/^2 failed analysis rounds \(limit 2\) — alert TollgateSaturationHigh/);
    expect(status.analysis.failures).toBe(2);
  });

  it('a fail-round alert that fires while nothing analyses counts in the next analysis', async () => {
    const rule = {
      name: 'stable-errors',
      matchers: ['alertname="TollgateErrorRatioHigh"'],
      action: 'fail-round' as const,
    };
    const policy = alerted([{ ...rule, tracks: ['stable'] }], {
      staging: { bake: '30m' },
      canary: {
        analysis: { interval: '1m', failureLimit: 3, checks: [checkoutPolicy().canary!.analysis!.checks![0]!] },
      },
    });
    const { result, status } = await runRelease(server.env, { policy }, async (handle) => {
      await waitForStatus(handle, (s) => s.stage === 'staging' && s.state === 'baking', {
        env: server.env,
        step: '1m',
      });
      await send(handle, alert({ track: 'stable', version: '1.0.0' }));
      const staged = await handle.query(statusQuery);
      expect(staged.audit.find((e) => e.action === 'alert-firing')?.detail).toContain('for the next analysis');
      const canary = await waitForStatus(handle, (s) => canaryBaking(s) && s.analysis.failures > 0, {
        env: server.env,
        step: '1m',
      });
      expect(canary.analysis.failures).toBe(1);
    });
    expect(result.outcome).toBe('promoted');
    expect(status.audit.filter((e) => e.action === 'alert-firing')).toHaveLength(1);
  });

  it("the org's minimum makes a critical canary alert roll back, whatever the service's rules say", async () => {
    const { result, status } = await runRelease(
      server.env,
      {
        policy: alerted([{ name: 'noisy', matchers: ['severity="critical"'], action: 'show' }]),
        org: { minimums: { productionApproval: false, criticalCanaryAlertsRollBack: true } },
      },
      async (handle) => {
        await bakingCanary(handle);
        await send(handle, alert({ alertname: 'PaymentsDown' }));
      },
    );
    expect(result.outcome).toBe('rolled_back');
    expect(status.alerts?.[0]).toMatchObject({ action: 'rollback', rule: 'org.critical-canary' });
  });

  it('a canary alert before the canary is deployed only shows; after promotion nothing is rolled back', async () => {
    const { result, status } = await runRelease(
      server.env,
      { policy: alerted([ERRORS_RULE], { staging: { bake: '30m' } }) },
      async (handle) => {
        await waitForStatus(handle, (s) => s.stage === 'staging' && s.state === 'baking', {
          env: server.env,
          step: '1m',
        });
        await send(handle, alert({}, { fingerprint: 'early' }));
        await handle.result();
        await send(handle, alert({}, { fingerprint: 'late' })).catch(() => undefined);
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(status.audit.find((e) => e.action === 'alert-firing')?.detail).toContain('no canary of this release yet');
  });

  it('no alert payload jams a release or moves it on: each is refused and audited, and a real one still acts', async () => {
    const handpicked: unknown[] = [
      null,
      'firing',
      { alerts: [] },
      { alerts: 'x' },
      { alerts: [alert({}, { fingerprint: 'a b' })] },
      { alerts: [{ ...alert(), labels: { 'bad-name': 'x' } }] },
      { alerts: [{ ...alert(), status: 'pending' }] },
      { alerts: Array.from({ length: 101 }, () => alert()) },
      { alerts: [alert({ service: 'x'.repeat(2000) })] },
      { alerts: [alert()], extra: true },
      JSON.parse('{"__proto__": {"alerts": []}}') as unknown,
    ];
    const generated = fc.sample(
      fc.oneof(
        fc.anything({ maxDepth: 3 }),
        fc.record({ alerts: fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 3 }) }),
      ),
      { numRuns: 120, seed: SEED },
    );
    const payloads = [...handpicked, ...generated].filter((p) => !alertSignalSchema.safeParse(p).success).slice(0, 80);
    let jams = 0;
    let bypasses = 0;
    const { result, status } = await runRelease(
      server.env,
      { policy: alerted([ERRORS_RULE], { production: { approval: true, waves: [{ percent: 100, bake: 0 }] } }) },
      async (handle) => {
        await bakingCanary(handle);
        for (const payload of payloads) await handle.signal(alertSignal, payload as never);
        const after = await tryStatus(handle, 10_000);
        if (after === undefined) jams++;
        // Nothing an alert carries approves, promotes or widens: the release still bakes its canary, ungated.
        if (after && (after.stage !== 'canary' || after.bake === undefined)) bypasses++;
        expect(after?.alerts ?? []).toEqual([]);
        expect(after?.audit.filter((e) => e.action === 'alert' && !e.accepted).length ?? 0).toBe(payloads.length);
        await handle.signal(approveSignal, { by: 'bob' });
        await send(handle, alert());
      },
    );
    rows.push({
      class: 'alert signal payloads (any JSON) against a baking canary',
      cases: payloads.length,
      jams,
      bypasses,
      loosenings: 0,
      seed: SEED,
      file: 'test/workflow/alerts.test.ts',
    });
    expect({ jams, bypasses }).toEqual({ jams: 0, bypasses: 0 });
    expect(result.outcome).toBe('rolled_back');
    expect(status.audit.some((e) => e.action === 'alert-firing')).toBe(true);
  });
});
