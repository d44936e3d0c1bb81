import type { LoadReport } from '../../demo/load';
import { TollgateError } from '../../src/client/errors';
import { TollgateClient } from '../../src/client/tollgate-client';
import type { ServicePolicyInput } from '../../src/domain/policy';
import type { ReleaseStatus } from '../../src/domain/status';
import { isAlive } from '../../src/providers/targets/fleet-process';
import type { Action, FleetState, Instance } from '../../src/providers/targets/haproxy-fleet-state';
import { FLEET_SIZE, NEXT, STABLE, fleetProblems, versionsServing } from '../helpers/fleet';
import { FLEET_ORG, fleetPolicy } from '../helpers/policies';
import { canaryBaking, waitForStatus } from '../helpers/release-handle';
import { stackPerTest, type ReleaseStack } from '../helpers/release-stack';

/**
 * Production watched after the last wave, end to end: the Temporal dev server, an in-process worker with the real
 * activities, a real HAProxy fleet of the demo service (HAProxy's retries off) under load through its frontend, and
 * a real Prometheus scraping it. The previous version is kept warm (the watch's default), so a rollback in the watch
 * is a traffic switch back to the very processes that served before the release.
 */

const CYCLE_MS = 8_000;
const BAD = '1.2.0-bad';

/** The canary and the waves judge latency only: a version that fails one request in five passes them. */
const latency = { name: 'latency-p99', template: 'latency-p99', max: 0.3 } as const;
const analysis = { interval: '2s', failureLimit: 3, inconclusiveLimit: 5, checks: [latency] };
/** The watch judges the service's error SLO. */
const errorSlo = { name: 'error-slo', template: 'error-ratio', max: 0.05 } as const;

function policy(service: string, watchMs: number): ServicePolicyInput {
  const base = fleetPolicy(service, { cycleMs: CYCLE_MS, analysis, waveBakeMs: 2_000, waveAnalysis: analysis });
  return {
    ...base,
    production: {
      ...base.production,
      watch: {
        duration: `${watchMs}ms`,
        analysis: { interval: '2s', failureLimit: 2, inconclusiveLimit: 5, checks: [errorSlo] },
      },
    },
  };
}

const suite = stackPerTest();
const newStack = (name: string, watchMs: number) =>
  suite.stack(name, (service) => ({
    org: FLEET_ORG,
    policy: policy(service, watchMs),
    load: { baseRps: 40, peakRps: 60, cycleMs: CYCLE_MS, maxDurationMs: 150_000 },
  }));

const watching = (s: ReleaseStatus) => s.state === 'watching';
const members = (state: FleetState) => state.instances.filter((i) => i.slot !== null && i.status === 'serving');
const pids = (instances: Instance[]) => instances.map((i) => `${i.id}:${i.pid}`).sort();

/** The fleet's actions log from the moment the watch began: what the rollback (or the promotion) did. */
async function actionsSince(s: ReleaseStack, iso: string): Promise<Action[]> {
  return (await s.fleet.target.readActions()).filter((a) => Date.parse(a.at) >= Date.parse(iso));
}

const count = (actions: Action[], name: Action['action']) => actions.filter((a) => a.action === name).length;

/**
 * A rollback in the watch, as users and the fleet saw it: every answer through the frontend from the previous
 * version, served by the same processes as before the release, switched back without one instance process started
 * behind the frontend (the staging instance, outside it, is started again on the previous version as in any undo).
 */
async function expectWarmSwitchBack(s: ReleaseStack, status: ReleaseStatus, before: Instance[]): Promise<void> {
  expect(status.rollback?.undone.map((k) => k.split('/').pop())).toEqual(['wave-2', 'wave-1', 'canary', 'staging']);
  expect(await versionsServing(s.fleet.frontendUrl, 100)).toEqual({ [STABLE]: 100 });
  expect(await fleetProblems(s.fleet, STABLE)).toEqual([]);
  const after = await s.fleet.target.readState();
  expect(pids(members(after))).toEqual(pids(before));
  expect(after.instances.filter((i) => i.status === 'warm')).toEqual([]);

  const since = await actionsSince(s, status.watch!.startedAt);
  const starts = since.filter((a) => a.action === 'start');
  expect(starts.filter((a) => a.slot !== null)).toEqual([]);
  expect(starts.map((a) => `${a.track} ${a.version}`)).toEqual([`staging ${STABLE}`]);
  expect(count(since, 'switch-back')).toBe(FLEET_SIZE);
  expect(count(since, 'retire-previous')).toBe(0);
  const rollbackMs = Date.parse(status.rollback!.finishedAt!) - Date.parse(status.rollback!.startedAt);
  console.log(
    `figure: watch rollback by warm switch: ${FLEET_SIZE} instances back in ${(rollbackMs / 1000).toFixed(1)} s ` +
      `(rollback start → finished, staging included); ${count(since, 'switch-back')} switch-backs, 0 fleet starts`,
  );
}

/** Nobody was refused or cut off by the release or its rollback; only `faulty`'s own errors were answered non-2xx. */
function expectNoFailedRequests(report: LoadReport, faulty?: string): void {
  expect(report.sent).toBeGreaterThan(500);
  expect(report.errors).toEqual({});
  expect({ failed: report.failed, skipped: report.skipped }).toEqual({ failed: 0, skipped: 0 });
  const faultyErrors = faulty === undefined ? 0 : (report.non2xxByVersion[faulty] ?? 0);
  expect(report.non2xxByVersion).toEqual(faultyErrors > 0 ? { [faulty!]: faultyErrors } : {});
}

test('a version that passes the canary but breaches the watch SLO is rolled back by a warm switch', async () => {
  const { stack: s } = await newStack('breach', 30_000);
  const before = members(await s.fleet.target.readState());
  const { result, status } = await s.release(BAD);

  expect(result).toMatchObject({ outcome: 'rolled_back_after_promotion', stage: 'production', stableVersion: STABLE });
  expect(result.reason).toMatch(/error-slo: mean 0\.\d+ > max 0\.05/);
  // The canary and both waves passed, on latency: the watch began, and only its SLO caught the errors.
  expect(status.watch).toMatchObject({ keepPrevious: true });
  expect(status.waves.map((w) => `${w.percent}% ${w.state}`)).toEqual(['50% rolled-back', '100% rolled-back']);
  expect(status.watch?.passedAt).toBeUndefined();
  const slo = status.analysis.checks.find((c) => c.check === 'error-slo');
  expect(slo).toMatchObject({ verdict: 'fail' });
  expect(slo?.canary).toBeGreaterThan(0.05);
  await expectWarmSwitchBack(s, status, before);

  const report = await s.stopLoad();
  expect(report.non2xxByVersion[BAD]).toBeGreaterThan(0);
  expectNoFailedRequests(report, BAD);
}, 120_000);

test('TollgateClient.rollback in the watch of a good version takes production back by a warm switch', async () => {
  const { stack: s, service } = await newStack('manual', 60_000);
  const tollgate = new TollgateClient(suite.infra().env.client, s.taskQueue);
  const before = members(await s.fleet.target.readState());
  const { value, result, status } = await s.release(NEXT, async (handle) => {
    await waitForStatus(handle, canaryBaking, { timeoutMs: 30_000 }, 'canary bake');
    // Before the watch, rollback is refused (abort is the control there) and changes nothing.
    const early = tollgate.rollback(service, { by: 'bob', reason: 'too early' });
    await expect(early).rejects.toThrow(TollgateError);
    await expect(early).rejects.toThrow(/rollback applies while production is watched/);
    await waitForStatus(handle, watching, { timeoutMs: 60_000 }, 'watching');
    expect(await versionsServing(s.fleet.frontendUrl, 40)).toEqual({ [NEXT]: 40 });
    return tollgate.rollback(service, { by: 'bob', reason: 'checkout conversions dropped' });
  });

  expect(value.state).toBe('rolling-back');
  expect(result).toMatchObject({
    outcome: 'rolled_back_after_promotion',
    stage: 'production',
    stableVersion: STABLE,
    reason: 'rolled back by bob: checkout conversions dropped',
  });
  expect(status.audit.filter((e) => e.action === 'rollback').map((e) => e.accepted)).toEqual([true]);
  await expectWarmSwitchBack(s, status, before);

  const report = await s.stopLoad();
  expect(report.byStatus).toEqual({ '200': report.sent });
  expectNoFailedRequests(report);
}, 120_000);

test('a clean short watch promotes, stops the warm previous version and relabels the fleet stable', async () => {
  const { stack: s } = await newStack('clean', 5_000);
  const {
    value: warm,
    result,
    status,
  } = await s.release(NEXT, async (handle) => {
    await waitForStatus(handle, watching, { timeoutMs: 60_000 }, 'watching');
    return (await s.fleet.target.readState()).instances.filter((i) => i.status === 'warm');
  });

  expect(result).toMatchObject({ outcome: 'promoted', stage: 'done', stableVersion: NEXT });
  expect(result.reason).toMatch(/watched clean for \d+s/);
  expect(status.watch?.passedAt).toBeDefined();
  expect(warm.map((i) => `${i.version} ${i.track}`)).toEqual(Array(FLEET_SIZE).fill(`${STABLE} stable`));
  for (const i of warm) expect(await isAlive(i.pid)).toBe(false);

  const since = await actionsSince(s, status.watch!.startedAt);
  expect(count(since, 'retire-previous')).toBe(1);
  expect(since.filter((a) => a.action === 'stop' && a.version === STABLE).map((a) => a.instance)).toEqual(
    expect.arrayContaining(warm.map((i) => i.id)),
  );
  expect(count(since, 'switch-back')).toBe(0);
  expect(await s.fleet.target.stableVersion(s.fleet.target.options.service)).toBe(NEXT);
  expect(await fleetProblems(s.fleet, NEXT)).toEqual([]);
  expect((await s.fleet.target.readState()).instances.filter((i) => i.status === 'warm')).toEqual([]);
  expect(await versionsServing(s.fleet.frontendUrl, 100)).toEqual({ [NEXT]: 100 });

  const report = await s.stopLoad();
  expect(report.byStatus).toEqual({ '200': report.sent });
  expectNoFailedRequests(report);
}, 120_000);
