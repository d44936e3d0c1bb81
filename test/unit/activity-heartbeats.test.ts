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
// Every query answers one sample at once: an error ratio of `errorRatio`, 10 requests per round.
const instantMetrics = (errorRatio = 0): MetricsProvider => ({
  kind: 'instant',
  isOnline: () => Promise.resolve(true),
  query: () => Promise.resolve(errorRatio),
  queryRange: (query) => Promise.resolve([query.includes('increase') ? 10 : errorRatio]),
});

/** `analyze` of activities whose stretches heartbeat a new round at most every `analysisHeartbeatMs`. */
function analyzer(metrics: MetricsProvider, analysisHeartbeatMs?: number) {
  const activities = createActivities({
    target: slowTarget(0),
    metrics,
    policies: new PolicyStore('/nonexistent'),
    logger: pino({ level: 'silent' }),
    ...(analysisHeartbeatMs !== undefined && { analysisHeartbeatMs }),
  });
  return (i: AnalyzeInput) => activities.analyze(i);
}

describe('an analysis stretch when its worker shuts down', () => {
  const analyze = () => analyzer(instantMetrics(), 0);

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

/**
 * Every heartbeat that reaches the server is a billable action. A stretch sends one when liveness needs it (80% of its
 * heartbeat timeout without one) or when a round `status` has not seen is due to be shown — every round with 0, never
 * with Infinity — and none for the round that ends it (its result reports that).
 */
describe('when an analysis stretch heartbeats', () => {
  interface Beat {
    at: number;
    rounds: number;
  }
  async function runStretch(
    opts: { spacingMs: number; heartbeatTimeoutMs: number; errorRatio?: number },
    stretch: Partial<AnalyzeInput>,
  ) {
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: opts.heartbeatTimeoutMs });
    const beats: Beat[] = [];
    env.on('heartbeat', (beat: AnalysisHeartbeat) => beats.push({ at: Date.now(), rounds: beat.counters.rounds }));
    const startedAt = Date.now();
    const segment: AnalysisSegment = await env.run(analyzer(instantMetrics(opts.errorRatio), opts.spacingMs), {
      ...input,
      ...stretch,
    });
    // From the start (which the server's heartbeat timeout runs from) to the first heartbeat, and between each.
    const times = [startedAt, ...beats.map((b) => b.at)];
    const gaps = times.slice(1).map((at, i) => at - (times[i] ?? at));
    return { segment, beats, gaps, elapsedMs: Date.now() - startedAt };
  }

  it('spaced by liveness: one per 80% of the heartbeat timeout, each with the latest round, not one per round', async () => {
    const { segment, beats, gaps } = await runStretch(
      { spacingMs: Number.POSITIVE_INFINITY, heartbeatTimeoutMs: 500 },
      { intervalMs: 25, maxRounds: 64 },
    );
    expect(segment.counters.rounds).toBe(7 + 64);
    // 64 rounds of 25 ms: 1.6 s, one heartbeat per 400 ms.
    expect(beats.length).toBeGreaterThanOrEqual(2);
    expect(beats.length).toBeLessThanOrEqual(4);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(399);
    const rounds = beats.map((b) => b.rounds);
    expect(rounds).toEqual([...rounds].sort((a, b) => a - b));
    expect(new Set(rounds).size).toBe(rounds.length);
  });

  it('every round: one heartbeat per round that does not end the stretch, and nothing else', async () => {
    const { segment, beats } = await runStretch(
      { spacingMs: 0, heartbeatTimeoutMs: 600_000 },
      { intervalMs: 20, maxRounds: 30 },
    );
    expect(segment.counters.rounds).toBe(37);
    // Rounds 8 … 36 heartbeat as they land; the 30th (37) is in the result.
    expect(beats.map((b) => b.rounds)).toEqual(Array.from({ length: 29 }, (_, i) => 8 + i));
  });

  it('keeps alive between rounds further apart than the heartbeat timeout allows', async () => {
    const { beats, gaps } = await runStretch(
      { spacingMs: 0, heartbeatTimeoutMs: 1_000 },
      { intervalMs: 1_200, maxRounds: 2 },
    );
    // At 800 ms (alive, round 7 still), 1,200 ms (round 8) and 2,000 ms (alive); round 9 ends the stretch.
    expect(beats.map((b) => b.rounds)).toEqual([7, 8, 8]);
    expect(Math.max(...gaps)).toBeLessThan(1_000);
  });

  it.each([
    ['critical', true, 1],
    ['failed', false, 3],
  ])(
    'a %s round returns at once, however far apart heartbeats are: the workflow rolls back on the result',
    async (decision, critical, rounds) => {
      const { segment, beats, elapsedMs } = await runStretch(
        { spacingMs: Number.POSITIVE_INFINITY, heartbeatTimeoutMs: 600_000, errorRatio: 0.5 },
        {
          intervalMs: 30,
          maxRounds: 1_000,
          counters: { rounds: 7, failures: 0, inconclusive: 0, requests: 700 },
          checks: [{ name: 'errors', template: 'error-ratio', max: 0.01, critical }],
        },
      );
      expect(segment.decision).toBe(decision);
      expect(segment.counters.rounds).toBe(7 + rounds);
      expect(elapsedMs).toBeLessThan(30 * rounds + 1_000);
      expect(beats).toEqual([]);
    },
  );
});
