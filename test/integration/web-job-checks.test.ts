import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { PolicyStore } from '../../src/config/policies';
import { approveUpdate, statusQuery } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import { DryRunTarget } from '../../src/providers/targets/dry-run';
import { json, startMetricsApi, type MetricsApi } from '../fixtures/checks/metrics-api';
import { workflowBundle } from '../helpers/bundles';
import { quietLogger, removeDir } from '../helpers/fleet';
import { FLEET_ORG, fleetPolicy, writePolicies } from '../helpers/policies';
import { startRelease, waitForStatus, type Drive } from '../helpers/release-handle';
import { devServerForTests, taskQueueForTest } from '../helpers/temporal';

/**
 * The judge's rules hold for web and job checks as they do for Prometheus: whole releases on the real dev server,
 * with the real activities (analysis included) over a dry-run target, a real loopback HTTP server as the metrics
 * API and real scripts as job checks. No Prometheus at all: every verdict comes from the other providers.
 */

const INTERVAL = '1s';
const PROBE = resolve(__dirname, '../fixtures/checks/probe.sh');
const patience = { timeoutMs: 60_000, everyMs: 200 };

/** No Prometheus: nothing to count requests with, which only matters to minCanaryRequests (0 here). */
const noPrometheus: MetricsProvider = {
  kind: 'none',
  isOnline: () => Promise.resolve(false),
  query: () => Promise.resolve(undefined),
  queryRange: () => Promise.resolve([]),
};

const webCheck = (url: string, critical = false) => ({
  name: 'api-errors',
  provider: { web: { url: `${url}/errors?service={service}&version={version}&track={track}`, jsonPath: '$.value' } },
  max: 0.01,
  critical,
});

type Analysis = NonNullable<NonNullable<ServicePolicyInput['canary']>['analysis']>;

const policyFor = (service: string, analysis: Analysis, extra: Partial<ServicePolicyInput> = {}) => ({
  ...fleetPolicy(service, { cycleMs: 6_000, analysis: { interval: INTERVAL, ...analysis }, waveBakeMs: 500 }),
  ...extra,
});

describe('web and job checks, judged in whole releases (dev server, real activities)', () => {
  const server = devServerForTests();
  let api: MetricsApi | undefined;
  let policyDir: string | undefined;
  afterEach(async () => {
    await api?.close();
    api = undefined;
    if (policyDir) await removeDir(policyDir);
    policyDir = undefined;
  });

  /** The error rate the metrics API answers with for the canary, per request; the stable population is always fine. */
  async function metricsApi(canaryValue: (round: number) => number | 'down') {
    let canaryRounds = 0;
    api = await startMetricsApi((request, response) => {
      if (request.query.get('track') !== 'canary') return json({ value: 0 })(request, response);
      const value = canaryValue(++canaryRounds);
      if (value === 'down') return json({ error: 'metrics backend unavailable' }, 503)(request, response);
      return json({ value })(request, response);
    });
    return { url: api.url, canaryRounds: () => canaryRounds };
  }

  async function release<T>(policy: ServicePolicyInput, drive: Drive<T> = () => Promise.resolve(undefined as T)) {
    policyDir = writePolicies(FLEET_ORG, [policy]);
    const target = new DryRunTarget({ [policy.service]: '1.0.0' });
    const taskQueue = taskQueueForTest();
    const worker = await Worker.create({
      connection: server.env.nativeConnection,
      taskQueue,
      workflowBundle: workflowBundle('release'),
      activities: createActivities({
        target,
        metrics: noPrometheus,
        policies: new PolicyStore(policyDir),
        logger: quietLogger(),
        heartbeatEveryMs: 1_000,
      }),
    });
    return worker.runUntil(async () => {
      const handle = await startRelease(server.env.client, taskQueue, {
        service: policy.service,
        version: '2.0.0',
        initiator: 'alice',
      });
      try {
        const value = await drive(handle);
        const result = await handle.result();
        return { value, result, status: await handle.query(statusQuery), target };
      } finally {
        await handle.terminate('test over').catch(() => undefined);
      }
    });
  }

  const newService = () => `web-${randomUUID().slice(0, 8)}`;
  const applied = (target: DryRunTarget) => target.actions.map((a) => `${a.action} ${a.key.split('/').pop()}`);

  it('a critical web check that fails rolls back at once, on the first round', async () => {
    const { url, canaryRounds } = await metricsApi(() => 0.5);
    const service = newService();
    const { result, status, target } = await release(
      policyFor(service, { checks: [webCheck(url, true)], failureLimit: 5 }),
    );
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary', stableVersion: '1.0.0' });
    expect(result.reason).toContain('critical check failed — api-errors: mean 0.5 > max 0.01');
    expect(status.analysis).toMatchObject({ rounds: 1, failures: 1 });
    expect(canaryRounds()).toBe(1);
    expect(applied(target)).toEqual(['apply staging', 'apply canary', 'undo canary', 'undo staging']);
  });

  it('failureLimit counts failed web rounds, not only consecutive ones', async () => {
    // Fail, pass, fail: the second failure reaches the limit of 2 though a healthy round came between.
    const { url } = await metricsApi((round) => (round % 2 === 1 ? 0.2 : 0.001));
    const service = newService();
    const { result, status } = await release(
      policyFor(service, { checks: [webCheck(url)], failureLimit: 2, inconclusiveLimit: 5 }),
    );
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });
    expect(result.reason).toContain('2 failed analysis rounds (limit 2) — api-errors: mean 0.2 > max 0.01');
    expect(status.analysis).toMatchObject({ rounds: 3, failures: 2 });
  });

  it('inconclusiveLimit holds the release for a person while the metrics API is down; approved, it carries on', async () => {
    let down = true;
    const { url } = await metricsApi(() => (down ? 'down' : 0.001));
    const service = newService();
    const { result, status } = await release(
      policyFor(service, { checks: [webCheck(url)], failureLimit: 2, inconclusiveLimit: 2 }),
      async (handle) => {
        const held = await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', patience, 'the gate');
        expect(held.state).toBe('awaiting-approval');
        expect(held.stage).toBe('canary');
        expect(held.gate?.message).toContain('2 inconclusive analysis rounds in a row (limit 2)');
        expect(held.gate?.message).toMatch(/api-errors: query failed: HTTP 503 from http:\/\/127\.0\.0\.1:\d+/);
        expect(held.analysis.checks[0]).toMatchObject({ check: 'api-errors', verdict: 'inconclusive' });
        down = false;
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'metrics API back' }] });
      },
    );
    expect(result).toMatchObject({ outcome: 'promoted', stableVersion: '2.0.0' });
    expect(status.analysis.checks.find((c) => c.check === 'api-errors')?.verdict).toBe('pass');
  });

  it('a failing job check rolls back by failureLimit, with the command output as the reason', async () => {
    const service = newService();
    const job = { name: 'synthetic', provider: { job: { command: [PROBE, '1'], timeout: '10s' } } };
    const { result, status } = await release(policyFor(service, { checks: [job], failureLimit: 2 }));
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });
    expect(result.reason).toContain('2 failed analysis rounds (limit 2) — synthetic: exited with status 1');
    expect(result.reason).toContain('checkout probe: POST /pay 502');
    expect(status.analysis.failures).toBe(2);
  });

  it('smoke checks in staging run on every provider: a failing job smoke check stops the release there', async () => {
    const { url } = await metricsApi(() => 0.001);
    const service = newService();
    const { result, target } = await release(
      policyFor(
        service,
        { checks: [] },
        {
          staging: {
            bake: '0s',
            smokeChecks: [
              webCheck(url),
              { name: 'smoke-cart', provider: { job: { command: [PROBE, '0'], timeout: '10s' } } },
              { name: 'smoke-pay', provider: { job: { command: [PROBE, '4'], timeout: '10s' } } },
            ],
          },
        },
      ),
    );
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'staging' });
    expect(result.reason).toContain('smoke checks failed: smoke-pay (exited with status 4');
    expect(result.reason).not.toContain('api-errors');
    expect(result.reason).not.toContain('smoke-cart');
    expect(applied(target)).toEqual(['apply staging', 'undo staging']);
    expect(api!.requests.map((r) => r.query.get('track'))).toEqual(['staging']);
  });

  it('passing web and job checks promote the release', async () => {
    const { url } = await metricsApi(() => 0.001);
    const service = newService();
    const checks = [webCheck(url), { name: 'synthetic', provider: { job: { command: [PROBE, '0'], timeout: '10s' } } }];
    const { result, status } = await release(policyFor(service, { checks }));
    expect(result).toMatchObject({ outcome: 'promoted', stableVersion: '2.0.0' });
    expect(status.analysis.checks.map((c) => `${c.check}:${c.verdict}`)).toEqual(
      expect.arrayContaining(['api-errors:pass', 'synthetic:pass']),
    );
  });
});
