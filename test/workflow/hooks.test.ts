import type { ServicePolicyInput } from '../../src/domain/policy';
import { execHook as exec, scriptedRunners } from '../helpers/hook-runners';
import { checkoutPolicy } from '../helpers/policies';
import { runRelease } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

/** One hook at every moment, one wave, no approvals: every hook moment comes up in a short release. */
function hookedPolicy(hooks: ServicePolicyInput['hooks']): ServicePolicyInput {
  return checkoutPolicy({
    trafficCycle: { duration: '1h' },
    production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
    hooks,
  });
}

const EVERY_MOMENT = [
  exec('schema-ready', 'before-staging'),
  exec('warm-caches', 'before-canary'),
  exec('smoke', 'after-deploy'),
  exec('load-test', 'after-deploy', { tracks: ['canary'] }),
  { name: 'change-board', at: 'before-production' as const, http: { url: 'https://cab.example.com/tollgate' } },
  exec('announce', 'after-promotion'),
  exec('page-owner', 'after-rollback'),
];

describe('stage hooks', () => {
  const server = timeSkippingForTests();

  it('runs each hook at its moment, in order, and records every run in status, the audit trail and the details', async () => {
    const { runners, calls, ran } = scriptedRunners();
    const {
      result,
      status,
      target,
      value: metadata,
    } = await runRelease(
      server.env,
      { policy: hookedPolicy(EVERY_MOMENT), external: runners },
      // The Web UI's details, read while a worker can still answer.
      async (handle) => {
        await handle.result();
        return handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(ran()).toEqual([
      'schema-ready@before-staging',
      'smoke@after-deploy staging',
      'warm-caches@before-canary',
      'smoke@after-deploy canary',
      'load-test@after-deploy canary',
      'change-board@before-production',
      'smoke@after-deploy wave-1',
      'announce@after-promotion',
    ]);
    expect(calls.find((c) => c.request.env.TOLLGATE_HOOK === 'change-board')?.via).toBe('http');
    // The step contract: the release and the step, as JSON and as variables, with a key a retry repeats.
    const canarySmoke = calls.find(
      (c) => c.request.env.TOLLGATE_TRACK === 'canary' && c.request.env.TOLLGATE_HOOK === 'smoke',
    )!;
    expect(canarySmoke.request.env).toMatchObject({
      TOLLGATE_SERVICE: 'checkout',
      TOLLGATE_VERSION: '2.0.0',
      TOLLGATE_STABLE_VERSION: '1.0.0',
      TOLLGATE_STAGE: 'canary',
      TOLLGATE_CANARY_INSTANCES: '1',
    });
    expect(canarySmoke.request.payload).toMatchObject({
      hook: 'smoke',
      at: 'after-deploy',
      step: { track: 'canary', canaryInstances: 1 },
    });
    expect((canarySmoke.request.payload.step as { key: string }).key).toMatch(/\/canary$/);
    expect(canarySmoke.request.key).toMatch(/\/hook\/smoke\/canary$/);
    expect(status.hooks?.map((h) => `${h.hook} ${h.outcome}`)).toHaveLength(8);
    expect(status.hooks?.every((h) => h.outcome === 'passed' && h.reason === 'passed in 0.0 s')).toBe(true);
    expect(status.audit.filter((e) => e.action === 'hook-passed')).toHaveLength(8);
    expect(target.actions.map((a) => a.action)).toEqual(['apply', 'apply', 'apply', 'mark-stable']);
    expect(metadata.currentDetails).toContain('- ✓ **announce** (after-promotion): passed — passed in 0.0 s');
  });

  it('a failed hook before staging stops the release with nothing to undo', async () => {
    const { runners, ran } = scriptedRunners({ 'schema-ready': 'failed' });
    const { result, status, target, undoAttempts } = await runRelease(server.env, {
      policy: hookedPolicy(EVERY_MOMENT),
      external: runners,
    });
    expect(result.outcome).toBe('rolled_back');
    expect(result.reason).toBe(
      "hook schema-ready (before-staging) failed: schema-ready said failed; last output: checking… | failed: the hook's own words",
    );
    expect(ran()).toEqual(['schema-ready@before-staging']); // no rollback hook: nothing was rolled back
    expect(target.actions).toEqual([]);
    expect(undoAttempts).toEqual([]);
    expect(status.hooks).toEqual([
      expect.objectContaining({ hook: 'schema-ready', at: 'before-staging', outcome: 'failed' }),
    ]);
    expect(status.audit.find((e) => e.action === 'hook-failed')?.detail).toMatch(/^schema-ready \(before-staging\): /);
  });

  it('a failed after-deploy hook on the canary rolls back both steps, then the rollback hooks run', async () => {
    const { runners, ran } = scriptedRunners({ 'load-test': 'timeout' });
    const { result, status, undoAttempts } = await runRelease(server.env, {
      policy: hookedPolicy(EVERY_MOMENT),
      external: runners,
    });
    expect(result.outcome).toBe('rolled_back');
    expect(result.reason).toMatch(/^hook load-test \(after-deploy\) failed: load-test said timeout/);
    expect(ran()).toEqual([
      'schema-ready@before-staging',
      'smoke@after-deploy staging',
      'warm-caches@before-canary',
      'smoke@after-deploy canary',
      'load-test@after-deploy canary',
      'page-owner@after-rollback',
    ]);
    expect(undoAttempts.map((k) => k.split('/').pop())).toEqual(['canary', 'staging']);
    expect(status.hooks?.at(-1)).toMatchObject({ hook: 'page-owner', at: 'after-rollback', outcome: 'passed' });
  });

  it('a failed hook before production rolls back before production is touched', async () => {
    const { runners } = scriptedRunners({ 'change-board': 'failed' });
    const { result, target } = await runRelease(server.env, { policy: hookedPolicy(EVERY_MOMENT), external: runners });
    expect(result.outcome).toBe('rolled_back');
    expect(target.actions.filter((a) => a.action === 'apply').map((a) => a.detail)).toEqual([
      'staging → 2.0.0',
      '1 canary instance(s) → 2.0.0',
    ]);
  });

  it('a hook that keeps asking to be tried again fails after its retries; one that asks once passes', async () => {
    let warmAttempts = 0;
    const { runners, calls } = scriptedRunners({
      'schema-ready': 'retry',
      'warm-caches': () => (++warmAttempts === 1 ? 'retry' : 'ok'),
    });
    const flaky = await runRelease(server.env, {
      policy: hookedPolicy([exec('warm-caches', 'before-canary')]),
      external: runners,
    });
    expect(flaky.result.outcome).toBe('promoted');
    expect(warmAttempts).toBe(2);
    calls.length = 0;
    const stuck = await runRelease(server.env, {
      policy: hookedPolicy([exec('schema-ready', 'before-staging')]),
      external: runners,
    });
    expect(stuck.result.outcome).toBe('rolled_back');
    expect(calls).toHaveLength(4);
    expect(stuck.result.reason).toMatch(/^hook schema-ready \(before-staging\) failed: schema-ready said retry/);
  });

  it('a failed hook after promotion is recorded and changes nothing', async () => {
    const { runners } = scriptedRunners({ announce: 'failed' });
    const { result, status } = await runRelease(server.env, {
      policy: hookedPolicy([exec('announce', 'after-promotion')]),
      external: runners,
    });
    expect(result.outcome).toBe('promoted');
    expect(status.hooks).toEqual([expect.objectContaining({ hook: 'announce', outcome: 'failed' })]);
  });
});
