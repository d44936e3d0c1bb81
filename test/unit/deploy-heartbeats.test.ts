import { MockActivityEnvironment } from '@temporalio/testing';
import pino from 'pino';
import { createActivities } from '../../src/activities';
import { PolicyStore } from '../../src/config/policies';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import type { DeploymentTarget, DeployReceipt, DeployStep } from '../../src/providers/targets/types';

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
