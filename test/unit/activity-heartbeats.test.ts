import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import pino from 'pino';
import { createActivities } from '../../src/activities';
import type { AnalysisHeartbeat, AnalysisSegment, AnalyzeInput } from '../../src/activities/types';
import { PolicyStore } from '../../src/config/policies';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import type { DeploymentTarget, DeployReceipt, DeployStep } from '../../src/providers/targets/types';
import { until } from '../helpers/until';

/**
 * Deploy and undo run with a 20 s heartbeat timeout so that a worker that dies mid-step is noticed quickly; that
 * only holds if they keep heartbeating while a slow target (a long drain) works.
 */

const step: DeployStep = {
  key: 'r1/canary',
  releaseId: 'r1',
  service: 'checkout',
  version: '1.1.0',
  stableVersion: '1.0.0',
  track: 'canary',
  canaryInstances: 1,
};

const slowTarget = (ms: number): DeploymentTarget => {
  const receipt = (): Promise<DeployReceipt> =>
    new Promise((r) => setTimeout(() => r({ key: step.key, applied: true, changes: ['web-1 → 1.1.0'] }), ms));
  return {
    kind: 'slow',
    apply: receipt,
    undo: receipt,
    stableVersion: () => Promise.resolve('1.0.0'),
    markStable: () => Promise.resolve(),
  };
};

function activities(target: DeploymentTarget) {
  return createActivities({
    target,
    metrics: {} as MetricsProvider,
    policies: new PolicyStore('/nonexistent'),
    logger: pino({ level: 'silent' }),
    heartbeatEveryMs: 20,
  });
}

test.each(['deploy', 'undo'] as const)(
  '%s heartbeats for as long as the target works, and stops after',
  async (name) => {
    const env = new MockActivityEnvironment();
    let beats = 0;
    env.on('heartbeat', () => beats++);
    const receipt: DeployReceipt = await env.run((s: DeployStep) => activities(slowTarget(250))[name](s), step);
    expect(receipt.applied).toBe(true);
    // One at the start, then one per 20 ms for 250 ms; timers are coarse under load, so a loose lower bound.
    expect(beats).toBeGreaterThanOrEqual(5);
    const afterReturn = beats;
    await new Promise((r) => setTimeout(r, 100));
    expect(beats).toBe(afterReturn);
  },
);

test('a failing target step still stops the heartbeats and surfaces its error', async () => {
  const env = new MockActivityEnvironment();
  let beats = 0;
  env.on('heartbeat', () => beats++);
  const target: DeploymentTarget = {
    ...slowTarget(0),
    apply: () => new Promise((_, reject) => setTimeout(() => reject(new Error('admin socket timed out')), 60)),
  };
  await expect(env.run((s: DeployStep) => activities(target).deploy(s), step)).rejects.toThrow(
    'admin socket timed out',
  );
  const afterFailure = beats;
  await new Promise((r) => setTimeout(r, 100));
  expect(beats).toBe(afterFailure);
});

describe('an analysis stretch when its worker shuts down', () => {
  const input: AnalyzeInput = {
    context: {
      releaseId: 'r1',
      service: 'checkout',
      version: '1.1.0',
      stableVersion: '1.0.0',
      stage: 'canary',
      track: 'canary',
    },
    checks: [{ name: 'errors', template: 'error-ratio', max: 0.01, critical: false }],
    intervalMs: 40,
    maxRounds: 1_000,
    counters: { rounds: 7, failures: 1, inconclusive: 0, requests: 700 },
    failureLimit: 3,
    inconclusiveLimit: 3,
    requestsRequired: 0,
  };
  // Every query answers one healthy sample at once: an error ratio of 0, 10 requests per round.
  const metrics: MetricsProvider = {
    kind: 'instant',
    isOnline: () => Promise.resolve(true),
    query: () => Promise.resolve(0),
    queryRange: (query) => Promise.resolve([query.includes('increase') ? 10 : 0]),
  };
  const analyze = () => {
    const activities = createActivities({
      target: slowTarget(0),
      metrics,
      policies: new PolicyStore('/nonexistent'),
      logger: pino({ level: 'silent' }),
      heartbeatEveryMs: 10,
    });
    return (i: AnalyzeInput) => activities.analyze(i);
  };

  // A wait that times out leaves its stretch running (up to maxRounds intervals); stop it with the failed test.
  let stopAfter: MockActivityEnvironment | undefined;
  afterEach(() => {
    stopAfter?.cancel('CANCELLED');
    stopAfter = undefined;
  });

  it('reports the rounds it ran instead of failing, so the next worker does not repeat them', async () => {
    const env = new MockActivityEnvironment();
    let rounds = 0;
    env.on('heartbeat', (beat?: AnalysisHeartbeat) => void (beat && (rounds = beat.counters.rounds)));
    const running = env.run(analyze(), input);
    stopAfter = env;
    await until(() => rounds >= 9, 'the stretch to heartbeat round 9 (its second)');
    env.cancel('WORKER_SHUTDOWN');
    const segment = (await running) as AnalysisSegment;
    expect(segment.decision).toBe('healthy');
    expect(segment.reason).toBe('stretch cut short: worker shutting down');
    // What keeps the workflow from taking this stretch as the report that completes a bake.
    expect(segment.cutShort).toBe(true);
    expect(segment.counters.rounds).toBeGreaterThanOrEqual(9);
    expect(segment.counters).toMatchObject({ failures: 1, inconclusive: 0 });
    expect(segment.counters.requests).toBe(700 + 10 * (segment.counters.rounds - 7));
  });

  it('fails as usual when it ran no round yet, or was cancelled for another reason', async () => {
    const early = new MockActivityEnvironment();
    const before = early.run(analyze(), input);
    early.cancel('WORKER_SHUTDOWN');
    await expect(before).rejects.toBeInstanceOf(CancelledFailure);

    const cancelled = new MockActivityEnvironment();
    let rounds = 0;
    cancelled.on('heartbeat', (beat?: AnalysisHeartbeat) => void (beat && (rounds = beat.counters.rounds)));
    const running = cancelled.run(analyze(), input);
    stopAfter = cancelled;
    await until(() => rounds >= 8, 'the stretch to heartbeat round 8 (its first)');
    cancelled.cancel('CANCELLED');
    await expect(running).rejects.toBeInstanceOf(CancelledFailure);
  });

  it('marks only a stretch cut short: one that ran its rounds is a full report', async () => {
    const segment: AnalysisSegment = await new MockActivityEnvironment().run(analyze(), { ...input, maxRounds: 2 });
    expect(segment).toMatchObject({ decision: 'healthy', reason: 'healthy' });
    expect(segment.counters.rounds).toBe(9);
    expect(segment.cutShort).toBeUndefined();
  });
});
