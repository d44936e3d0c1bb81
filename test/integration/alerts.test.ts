import { randomBytes, randomUUID } from 'node:crypto';
import { loadReceiverConfig } from '../../src/config/receiver-config';
import { renderAlertRules } from '../../src/domain/alert-rules';
import { statusQuery } from '../../src/domain/messages';
import { startReceiver, type RunningReceiver } from '../../src/receiver/main';
import { startAlertmanager, type RunningAlertmanager } from '../helpers/alertmanager';
import { STABLE, fleetProblems, quietLogger } from '../helpers/fleet';
import { freePort } from '../../scripts/ports';
import { FLEET_ORG, fleetPolicy } from '../helpers/policies';
import { canaryBaking, waitForStatus } from '../helpers/release-handle';
import { startSharedInfra, startStack, type ReleaseStack, type SharedInfra } from '../helpers/release-stack';

/**
 * A team's alert, end to end: a real HAProxy fleet of the demo service under load, a real Prometheus scraping it
 * every second and evaluating Tollgate's rule templates, a real Alertmanager, `tollgate receiver` (in process, on
 * the real Temporal dev server) and the release's worker. Alertmanager's webhook carries a bearer token.
 */

const INTERVAL_MS = 4_000;
/** High on purpose: analysis alone would need five failed rounds (20 s); the alert must come first. */
const FAILURE_LIMIT = 5;
const errorRatio = { name: 'error-ratio', template: 'error-ratio', max: 0.05 } as const;
const KNOWN_ERRORS = [{ name: 'canary-errors', matchers: ['alertname="TollgateErrorRatioHigh"'], action: 'rollback' }];

const token = randomBytes(24).toString('base64url');
let infra: SharedInfra;
let alertmanager: RunningAlertmanager;
let receiver: RunningReceiver;
let webhookUrl: string;
let stack: ReleaseStack | undefined;

beforeAll(async () => {
  // Alertmanager needs the receiver's URL, the receiver Temporal's address, Prometheus Alertmanager's: so a port first.
  const port = await freePort();
  webhookUrl = `http://127.0.0.1:${port}/alertmanager`;
  alertmanager = await startAlertmanager({
    webhookUrl,
    bearerToken: token,
    groupWait: '0s',
    groupInterval: '1s',
    repeatInterval: '2s',
  });
  infra = await startSharedInfra({
    rules: renderAlertRules(),
    evaluationIntervalSeconds: 1,
    alertmanagerUrl: alertmanager.url,
  });
  receiver = await startReceiver(
    loadReceiverConfig({
      TOLLGATE_RECEIVER_ADDRESS: `127.0.0.1:${port}`,
      TOLLGATE_RECEIVER_TOKEN: token,
      TEMPORAL_ADDRESS: infra.env.address,
    }),
    quietLogger(),
  );
}, 90_000);

afterEach(async () => {
  await stack?.teardown();
  stack = undefined;
}, 60_000);

afterAll(async () => {
  await receiver?.stop();
  await infra?.close();
  await alertmanager?.stop();
}, 60_000);

async function newStack(name: string, cycleMs: number): Promise<{ stack: ReleaseStack; service: string }> {
  const service = `${name}-${randomUUID().slice(0, 6)}`;
  const policy = {
    ...fleetPolicy(service, {
      cycleMs,
      analysis: {
        interval: `${INTERVAL_MS}ms`,
        failureLimit: FAILURE_LIMIT,
        inconclusiveLimit: 5,
        checks: [errorRatio],
      },
    }),
    alerts: { rules: KNOWN_ERRORS },
  };
  stack = await startStack(infra, {
    service,
    org: FLEET_ORG,
    policy: policy as never,
    load: { baseRps: 40, peakRps: 60, cycleMs, maxDurationMs: 180_000 },
  });
  return { stack, service };
}

const post = (body: unknown, headers: Record<string, string>) =>
  fetch(webhookUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });

test('a bad canary (1.2.0-bad) is rolled back by its TollgateErrorRatioHigh alert, before analysis would have', async () => {
  const { stack: s, service } = await newStack('alerted', 60_000);
  const { result, status } = await s.release('1.2.0-bad');

  expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary', stableVersion: STABLE });
  expect(result.reason).toMatch(/^known error: alert TollgateErrorRatioHigh on the canary: .+ of requests failed/);
  expect(result.reason).toContain(`service="${service}"`);
  expect(result.reason).toContain('version="1.2.0-bad"');
  expect(status.analysis.failures).toBeLessThan(FAILURE_LIMIT);
  expect(status.alerts?.[0]).toMatchObject({
    name: 'TollgateErrorRatioHigh',
    track: 'canary',
    severity: 'critical',
    action: 'rollback',
    rule: 'canary-errors',
  });
  expect(status.audit.filter((e) => e.action === 'alert-firing')).toHaveLength(1);
  expect(status.rollback?.undone.map((k) => k.split('/').pop())).toEqual(['canary', 'staging']);
  expect(await fleetProblems(s.fleet, STABLE)).toEqual([]);

  const report = await s.stopLoad();
  expect(report.firstNon2xxAt).toBeDefined();
  const errorsToRollbackMs = Date.parse(status.rollback!.startedAt) - Date.parse(report.firstNon2xxAt!);
  console.log(
    `figure: bad canary, first 5xx → rollback start by alert ${(errorsToRollbackMs / 1000).toFixed(1)} s ` +
      `(scrape 1 s, rule evaluation 1 s, rate window 10 s, group_wait 0 s; analysis alone: ${FAILURE_LIMIT} × ` +
      `${INTERVAL_MS / 1000} s)`,
  );
  expect(errorsToRollbackMs).toBeLessThan(FAILURE_LIMIT * INTERVAL_MS);
}, 150_000);

test('a stable-track alert, and a flood of its repeats, leave the canary alone; no credentials, no signal', async () => {
  const { stack: s, service } = await newStack('stable-alert', 25_000);
  const { result, status } = await s.release('1.1.0', async (handle) => {
    await waitForStatus(handle, canaryBaking, { timeoutMs: 30_000 });
    const labels = {
      alertname: 'TollgateErrorRatioHigh',
      service,
      version: STABLE,
      track: 'stable',
      severity: 'critical',
    };
    const firing = { labels, annotations: { summary: 'the stable fleet fails 6% of requests' } };
    await alertmanager.postAlerts([firing]);
    const seen = await waitForStatus(handle, (st) => (st.alerts?.length ?? 0) > 0, { timeoutMs: 15_000 });
    expect(seen.alerts).toEqual([expect.objectContaining({ track: 'stable', action: 'show' })]);

    // The same alert again and again, through Alertmanager (re-posted, re-notified every 2 s) and straight to the
    // receiver as Alertmanager would re-send it: each answered, none changing anything.
    const [held] = (await alertmanager.alerts()).filter((a) => a.labels.service === service);
    const webhook = {
      version: '4',
      status: 'firing',
      receiver: 'tollgate',
      groupKey: 'flood',
      truncatedAlerts: 0,
      groupLabels: {},
      commonLabels: labels,
      commonAnnotations: {},
      externalURL: alertmanager.url,
      alerts: [
        {
          status: 'firing',
          labels: held!.labels,
          annotations: held!.annotations,
          startsAt: held!.startsAt,
          endsAt: '0001-01-01T00:00:00Z',
          fingerprint: held!.fingerprint,
        },
      ],
    };
    for (let i = 0; i < 10; i++) await alertmanager.postAlerts([firing]);
    const answers = await Promise.all(
      Array.from({ length: 30 }, () => post(webhook, { authorization: `Bearer ${token}` }).then((r) => r.status)),
    );
    expect(new Set(answers)).toEqual(new Set([200]));

    // Refused without the token, or with another: 401, and nothing reaches the release.
    const canaryLabels = { ...labels, version: '1.1.0', track: 'canary', alertname: 'Forged' };
    const forged = { ...webhook, alerts: [{ ...webhook.alerts[0]!, labels: canaryLabels, fingerprint: 'f0f0' }] };
    expect((await post(forged, {})).status).toBe(401);
    expect((await post(forged, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect(
      (await post(forged, { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` })).status,
    ).toBe(401);

    await new Promise((r) => setTimeout(r, 4_000)); // two of Alertmanager's repeat intervals
    const after = await handle.query(statusQuery);
    expect(after.alerts).toEqual(seen.alerts);
    expect(after.audit.filter((e) => e.action.startsWith('alert'))).toEqual(
      seen.audit.filter((e) => e.action.startsWith('alert')),
    );
    expect(after.stage).toBe('canary');
    expect(after.rollback).toBeUndefined();
  });
  expect(result.outcome).toBe('promoted');
  expect(status.audit.filter((e) => e.action === 'alert-firing')).toHaveLength(1);
  expect(status.audit.some((e) => e.detail?.includes('Forged'))).toBe(false);
  await s.stopLoad();
}, 150_000);
