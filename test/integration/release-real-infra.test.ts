import type { LoadReport } from '../../demo/load';
import { abortUpdate, approveUpdate } from '../../src/domain/messages';
import { STABLE, fleetProblems, versionsServing } from '../helpers/fleet';
import { FLEET_ORG, fleetPolicy } from '../helpers/policies';
import { canaryBaking, waitForStatus } from '../helpers/release-handle';
import { SCRAPE_SECONDS, stackPerTest, type ReleaseStack } from '../helpers/release-stack';

/**
 * Real releases end to end: the Temporal dev server, an in-process worker with the real activities, a real HAProxy
 * fleet of demo-service instances, a real Prometheus scraping them through the fleet's file SD, and load through the
 * frontend the whole time. One scenario at a time; the dev server and Prometheus are shared, each test gets a fresh
 * fleet, load and worker.
 */

const CYCLE_MS = 20_000;
const INTERVAL_MS = 4_000;
const FAILURE_LIMIT = 3;
const INCONCLUSIVE_LIMIT = 5;
const WAVE_INTERVAL_MS = 3_000;

const ORG = {
  trafficCycle: { minDuration: '10s', minCanaryRequests: 100 },
  minimums: { ...FLEET_ORG.minimums, analysisChecks: 2, maxInconclusiveLimit: 10 },
};

const errorRatio = { name: 'error-ratio', template: 'error-ratio', max: 0.05 } as const;
const latencyAbsolute = { name: 'latency-p99', template: 'latency-p99', max: 0.3 } as const;
const CANARY_CHECKS = [
  errorRatio,
  { ...latencyAbsolute, baseline: { direction: 'increase', tolerance: 0.2, minSamples: 4 } },
  { name: 'requests', template: 'request-count', min: 5 },
] as const;
// Once a wave reaches 100% no stable population is left to compare with, so waves judge absolute levels only.
const waveAnalysis = {
  interval: `${WAVE_INTERVAL_MS}ms`,
  checks: [errorRatio, latencyAbsolute],
  failureLimit: 2,
  inconclusiveLimit: 3,
};

const policy = (service: string, canaryApproval = false) =>
  fleetPolicy(service, {
    cycleMs: CYCLE_MS,
    minCanaryRequests: 150,
    canaryApproval,
    analysis: {
      interval: `${INTERVAL_MS}ms`,
      failureLimit: FAILURE_LIMIT,
      inconclusiveLimit: INCONCLUSIVE_LIMIT,
      checks: CANARY_CHECKS.map((c) => ({ ...c })),
    },
    waveBakeMs: 6_000,
    waveAnalysis,
  });

const suite = stackPerTest();
const newStack = (name: string, canaryApproval = false) =>
  suite.stack(name, (service) => ({
    org: ORG,
    policy: policy(service, canaryApproval),
    load: { baseRps: 40, peakRps: 60, cycleMs: CYCLE_MS, maxDurationMs: 180_000 },
  }));

/** What serves behind the frontend right now, by the x-version header of real answers (errors as "500:<version>"). */
const sample = (s: ReleaseStack, n = 100) => versionsServing(s.fleet.frontendUrl, n, 4);

/** The fleet's own record, checked against HAProxy (every member on `version`, labelled stable, and UP), and users. */
async function expectFleetOn(s: ReleaseStack, version: string): Promise<void> {
  expect(await fleetProblems(s.fleet, version)).toEqual([]);
  expect(await sample(s)).toEqual({ [version]: 100 });
}

function expectNoFailedRequests(report: LoadReport): void {
  expect(report.sent).toBeGreaterThan(500);
  // The kinds first: a failure then says what it was (ECONNRESET, ETIMEDOUT, …), not just that there was one.
  expect(report.errors).toEqual({});
  expect(report.failed).toBe(0);
  expect(report.skipped).toBe(0);
}

const seconds = (ms: number) => Math.round(ms / 100) / 10;

/**
 * What the users behind the frontend got during a rollout: the share of requests answered 2xx and, apart from the
 * `faulty` version's own errors (catching those is the analysis' job), none answered badly or not at all because of
 * the rollout itself.
 */
function expectRolloutServedAll(what: string, report: LoadReport, rolloutMs: number, faulty?: string): void {
  expectNoFailedRequests(report);
  const faultyErrors = faulty === undefined ? 0 : (report.non2xxByVersion[faulty] ?? 0);
  expect(report.non2xxByVersion).toEqual(faultyErrors > 0 ? { [faulty!]: faultyErrors } : {});
  const ok = Object.entries(report.byStatus)
    .filter(([status]) => status.startsWith('2'))
    .reduce((sum, [, n]) => sum + n, 0);
  expect(ok + faultyErrors).toBe(report.sent);
  const percent = (n: number) => `${((n / report.sent) * 100).toFixed(2)}%`;
  console.log(
    `figure: ${what}: success rate ${percent(ok)} (${ok}/${report.sent} answered 2xx` +
      `, ${report.failed} failed, ${report.skipped} skipped)` +
      (faulty === undefined
        ? ''
        : `; ${faultyErrors} errors all from the faulty ${faulty}, so ${percent(ok + faultyErrors)} without them`) +
      `, over a ${seconds(rolloutMs)} s rollout at ~${Math.round(report.sent / (report.durationMs / 1000))} rps; ` +
      `served by version: ${JSON.stringify(report.byVersion)}`,
  );
}

test('a good version (1.1.0) is promoted through canary and both waves, without one failed request', async () => {
  const { stack: s, service } = await newStack('good');
  const {
    value: labels,
    result,
    status,
    rolloutMs,
  } = await s.release('1.1.0', async (handle) => {
    // Mid-bake, what Prometheus holds for the fleet: the labels the instances report themselves (honor_labels).
    await waitForStatus(handle, canaryBaking, { timeoutMs: 30_000 }, 'canary bake');
    // Bounded: until Prometheus has scraped every population. It applies discovery changes on a 5 s tick, so a fleet
    // bootstrapped, staged and canaried within one tick is discovered at once, and any may be scraped first.
    let labels = await seriesLabels(service);
    const seen = (track: string) => labels.some((l) => l.track === track);
    for (let i = 0; i < 60 && !['stable', 'staging', 'canary'].every(seen); i++) {
      await new Promise((r) => setTimeout(r, (SCRAPE_SECONDS * 1000) / 2));
      labels = await seriesLabels(service);
    }
    return labels;
  });

  expect(result).toMatchObject({ outcome: 'promoted', stableVersion: '1.1.0', stage: 'done' });
  expect(status.waves.map((w) => `${w.percent}% ${w.state}`)).toEqual(['50% done', '100% done']);
  expect(status.deployedSteps.map((k) => k.split('/').pop())).toEqual(['staging', 'canary', 'wave-1', 'wave-2']);
  expect(status.rollback).toBeUndefined();
  expect(await s.fleet.target.stableVersion(service)).toBe('1.1.0');
  await expectFleetOn(s, '1.1.0');

  // Prometheus saw the stable fleet, the staging instance and the canary under their own labels, with no exported_*
  // duplicates. Staging takes no load, yet its series exist: the demo service starts its counters at 0.
  expect(labels.every((l) => Object.keys(l).every((k) => !k.startsWith('exported_')))).toBe(true);
  const populations = new Set(labels.map((l) => `${l.version} ${l.track}`));
  expect(populations).toEqual(new Set([`${STABLE} stable`, '1.1.0 staging', '1.1.0 canary']));
  for (const l of labels) expect(l.instance).toMatch(new RegExp(`^${service}-\\d+$`));

  const report = await s.stopLoad();
  expect(report.byStatus).toEqual({ '200': report.sent });
  expect(report.byVersion['1.1.0']).toBeGreaterThan(0);
  expectRolloutServedAll('good rollout', report, rolloutMs);
}, 150_000);

test('a bad version (1.2.0-bad, 20% errors) is rolled back by the canary analysis within failureLimit rounds', async () => {
  const { stack: s } = await newStack('bad');
  const { result, status, rolloutMs } = await s.release('1.2.0-bad');

  expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary', stableVersion: STABLE });
  expect(result.reason).toMatch(/failed analysis rounds \(limit 3\) — error-ratio: mean 0\.\d+ > max 0\.05/);
  expect(status.analysis.failures).toBe(FAILURE_LIMIT);
  const errorCheck = status.analysis.checks.find((c) => c.check === 'error-ratio');
  expect(errorCheck).toMatchObject({ verdict: 'fail' });
  expect(errorCheck?.canary).toBeGreaterThan(0.1);
  expect(status.rollback).toMatchObject({ failedAttempts: 0 });
  expect(status.rollback?.undone.map((k) => k.split('/').pop())).toEqual(['canary', 'staging']);

  // Clocked from the first 5xx the load saw, which is when users first met the faulty version.
  const report = await s.stopLoad();
  expect(report.firstNon2xxAt).toBeDefined();
  const errorsToRollbackMs = Date.parse(status.rollback!.startedAt) - Date.parse(report.firstNon2xxAt!);
  console.log(
    `figure: bad canary, first 5xx → rollback start ${seconds(errorsToRollbackMs)} s = ` +
      `${(errorsToRollbackMs / INTERVAL_MS).toFixed(2)} analysis intervals (interval ${INTERVAL_MS / 1000} s, ` +
      `failureLimit ${FAILURE_LIMIT}, scrape ${SCRAPE_SECONDS} s; ${status.analysis.rounds} rounds)`,
  );
  // Every failed round waits a full interval, counted from the canary deploy's end, so the rounds after the first are
  // at least an interval apart. The first one's distance from the first 5xx is not a bound: a CI run on a loaded
  // machine saw 9.9 s (2.48 intervals) with exactly failureLimit rounds, not investigated further; quiet runs 11.9 s+.
  expect(errorsToRollbackMs).toBeGreaterThanOrEqual((FAILURE_LIMIT - 1) * INTERVAL_MS);
  // failureLimit rounds and no more: the first round waits for Prometheus to have the canary rather than spending a
  // round on "no data". The time bound is the design's: failureLimit intervals, plus that wait (at most one interval
  // by design; Prometheus discovers a new target on 5 s tickers, then needs two scrapes: 0–3 s in these runs), plus
  // the deploy's tail and the turnaround to the rollback (~0.2 s; 2 s allowed for a loaded machine). 11.9–15.1 s seen.
  expect(status.analysis.rounds).toBe(FAILURE_LIMIT);
  expect(errorsToRollbackMs).toBeLessThan((FAILURE_LIMIT + 1) * INTERVAL_MS + 2_000);

  await expectFleetOn(s, STABLE);
  expect(report.byStatus['500']).toBeGreaterThan(0);
  expect(Object.keys(report.byStatus).sort()).toEqual(['200', '500']);
  expectRolloutServedAll('bad rollout (rolled back)', report, rolloutMs, '1.2.0-bad');
}, 120_000);

test('a slow version (1.3.0-slow) under the absolute SLO is rolled back by the baseline comparison', async () => {
  const { stack: s } = await newStack('slow');
  const { result, status, rolloutMs } = await s.release('1.3.0-slow');

  expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });
  expect(result.reason).toMatch(/latency-p99: canary higher than baseline/);
  expect(result.reason).not.toMatch(/error-ratio:/);
  const byName = Object.fromEntries(status.analysis.checks.map((c) => [c.check, c]));
  expect(byName['error-ratio']?.verdict).toBe('pass');
  const latency = byName['latency-p99'];
  expect(latency).toMatchObject({ verdict: 'fail', threshold: { max: 0.3 } });
  expect(latency?.reason).toMatch(/^canary higher than baseline: canary median 0\.\d+ vs baseline/);
  expect(latency?.pValue).toBeLessThan(0.05);
  // Under the absolute SLO (the canary's median p99 is what is recorded), yet well above the baseline.
  expect(latency?.canary).toBeLessThan(0.3);
  expect(latency?.canary).toBeGreaterThan(1.2 * (latency?.baseline ?? Infinity));
  expect(latency?.samples?.canary).toBeGreaterThanOrEqual(4);
  console.log(
    `figure: slow canary p99 median ${latency?.canary?.toFixed(3)} s vs baseline ${latency?.baseline?.toFixed(3)} s, ` +
      `p=${latency?.pValue?.toFixed(4)}, rolled back after ${status.analysis.rounds} rounds`,
  );

  await expectFleetOn(s, STABLE);
  expectRolloutServedAll('slow rollout (rolled back)', await s.stopLoad(), rolloutMs);
}, 120_000);

test('with Prometheus gone mid-bake the release pauses for a human, and an abort rolls it back', async () => {
  const { stack: s } = await newStack('blind');
  const { value, result, rolloutMs } = await s.release('1.1.0', async (handle) => {
    await waitForStatus(handle, canaryBaking, { timeoutMs: 30_000 }, 'canary bake');
    await new Promise((r) => setTimeout(r, INTERVAL_MS / 2));
    await suite.infra().stopPrometheus();
    const paused = await waitForStatus(
      handle,
      (st) => st.state === 'awaiting-approval' && st.gate?.name === 'inconclusive',
      { timeoutMs: (INCONCLUSIVE_LIMIT + 3) * INTERVAL_MS },
      'held at the inconclusive-analysis gate',
    );
    const aborted = await handle.executeUpdate(abortUpdate, {
      args: [{ by: 'bob', reason: 'metrics are down; not releasing blind' }],
    });
    return { paused, aborted };
  });
  const { paused, aborted } = value;

  expect(paused.stage).toBe('canary');
  // A gate, not a pause: only an approve passes it, and no person's pause is involved.
  expect(paused.pause).toBeUndefined();
  expect(paused.analysis.inconclusive).toBeGreaterThanOrEqual(INCONCLUSIVE_LIMIT);
  for (const check of paused.analysis.checks) {
    expect(check.verdict).toBe('inconclusive');
    expect(check.reason).toMatch(/connection refused/);
  }
  expect(paused.gate?.message).toMatch(/inconclusive analysis rounds in a row \(limit 5\)/);
  expect(aborted.state).toBe('rolling-back');

  expect(result).toMatchObject({ outcome: 'aborted', stage: 'canary', stableVersion: STABLE });
  expect(result.reason).toBe('aborted by bob: metrics are down; not releasing blind');
  await expectFleetOn(s, STABLE);
  expectRolloutServedAll('blind rollout (aborted)', await s.stopLoad(), rolloutMs);
}, 120_000);

test('an HAProxy admin socket gone during the canary deploy fails the deploy after its retries, and rolls back clean', async () => {
  const { stack: s } = await newStack('nosock', true);
  const { result, status, history, rolloutMs } = await s.release('1.1.0', async (handle) => {
    // The canary gate holds the release right before the canary deploy.
    await waitForStatus(handle, (st) => st.gate?.name === 'canary', { timeoutMs: 30_000 }, 'canary gate');
    await s.hideSocket();
    await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] });
  });

  expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary', stableVersion: STABLE });
  expect(result.reason).toMatch(/HAProxy admin socket \S+haproxy\.sock does not exist/);
  // The canary step changed nothing, so undoing it (and staging) needed no socket: no failed undo attempt.
  expect(status.rollback).toMatchObject({ failedAttempts: 0 });
  expect(status.rollback?.undone.map((k) => k.split('/').pop())).toEqual(['canary', 'staging']);

  // The deploy activity ran all its attempts (the workflow's retry policy: 5) before the release gave up on it.
  const events = history.events ?? [];
  const failed = events.find((e) => e.activityTaskFailedEventAttributes)?.activityTaskFailedEventAttributes;
  expect(failed?.failure?.cause?.message ?? failed?.failure?.message).toMatch(/admin socket/);
  const startedOfFailed = events.find((e) => Number(e.eventId) === Number(failed?.startedEventId));
  expect(startedOfFailed?.activityTaskStartedEventAttributes?.attempt).toBe(5);

  const state = await s.fleet.target.readState();
  const canaryStep = Object.entries(state.steps).find(([key]) => key.endsWith('/canary'))?.[1];
  expect(canaryStep).toMatchObject({ status: 'undone', replaced: [] });
  expect(state.instances.find((i) => i.slot === null)).toMatchObject({ version: STABLE, track: 'staging' });

  // HAProxy never lost its data plane; with its socket back, it reports the stable fleet exactly as recorded.
  await s.restoreSocket();
  await expectFleetOn(s, STABLE);
  expectRolloutServedAll('rollout without an admin socket (rolled back)', await s.stopLoad(), rolloutMs);
}, 120_000);

/** Label sets of the service's request counters as stored in Prometheus. */
async function seriesLabels(service: string): Promise<Record<string, string>[]> {
  const url = new URL('/api/v1/series', suite.infra().prometheus().url);
  url.searchParams.set('match[]', `tollgate_demo_http_requests_total{service="${service}"}`);
  url.searchParams.set('start', String(Date.now() / 1000 - 60));
  const body = (await (await fetch(url)).json()) as { status: string; data: Record<string, string>[] };
  expect(body.status).toBe('success');
  return body.data;
}
