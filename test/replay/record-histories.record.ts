// Records the histories that `replay.test.ts` replays on every run. Not matched by the default test run:
//
//   npx jest --testMatch '**/record-histories.record.ts'
//
// It overwrites test/histories/<scenario>.json. When workflow code changes behind `patched()`, first rename the
// current files (e.g. `git mv happy-waves-approval.json happy-waves-approval.before-<change>.json`) and keep them:
// releases started on the old code are still in flight somewhere, and their histories must keep replaying.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { temporal } from '@temporalio/proto';
import {
  abortUpdate,
  alertSignal,
  approveSignal,
  approveUpdate,
  pauseUpdate,
  promoteUpdate,
  resumeSignal,
  rollbackUpdate,
} from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { START_RUN } from '../../src/domain/signing-policy';
import { signDecision, signerFromKeyFile } from '../../src/client/signer';
import { execHook, scriptedRunners } from '../helpers/hook-runners';
import { checkoutPolicy, errorsCheck } from '../helpers/policies';
import { canaryBaking, waitForStatus, type Drive } from '../helpers/release-handle';
import { failing, healthy, inconclusive, runRelease, type ReleaseOptions } from '../helpers/release-harness';
import { devServerForTests, timeSkippingForTests } from '../helpers/temporal';

const HISTORY_DIR = join(__dirname, '..', 'histories');

/** Short cycles keep the recorded files small; the code paths are the same as for a 7-day cycle. */
const policy = (overrides: Partial<ServicePolicyInput> = {}): ServicePolicyInput =>
  checkoutPolicy({
    trafficCycle: { duration: '1h' },
    production: {
      approval: false,
      waves: [
        { percent: 50, bake: '30m' },
        { percent: 100, bake: '30m' },
      ],
    },
    ...overrides,
  });

const write = (name: string, history: temporal.api.history.v1.IHistory) => {
  mkdirSync(HISTORY_DIR, { recursive: true });
  writeFileSync(join(HISTORY_DIR, `${name}.json`), `${historyToJSON(history)}\n`);
  console.log(`${name}: ${history.events?.length ?? 0} events`);
};

describe('record release histories for replay', () => {
  const server = timeSkippingForTests();

  /** Records the release's history as test/histories/<name>.json, and returns its result. */
  async function record(name: string, opts: ReleaseOptions, drive?: Drive<void>) {
    const { result, history } = await runRelease(
      server.env,
      { policy: policy(), ...opts, reason: `replay fixture: ${name}` },
      drive,
    );
    write(name, history);
    return result;
  }

  it('happy path: waves and a four-eyes production approval', async () => {
    const result = await record(
      'happy-waves-approval',
      {
        org: { minimums: { productionApproval: true } },
        policy: policy({
          approvals: { fourEyes: true },
          production: {
            approval: true,
            waves: [
              { percent: 25, bake: '20m' },
              { percent: 50, bake: '20m' },
              { percent: 100, bake: '20m' },
            ],
          },
        }),
      },
      async (handle) => {
        await waitForStatus(handle, (s) => s.gate?.name === 'production', { env: server.env, step: '10m' });
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'canary clean' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('rollback after a failed analysis stretch', async () => {
    const result = await record('rollback-on-failure', {
      policy: policy({ trafficCycle: { duration: '4h' } }),
      analysis: [healthy(), failing('error ratio 0.2 > max 0.01')],
    });
    expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });
  });

  it('abort during the canary bake', async () => {
    const result = await record('abort-during-canary', {}, async (handle) => {
      await waitForStatus(handle, canaryBaking, { env: server.env, step: '10m' });
      await handle.executeUpdate(abortUpdate, { args: [{ by: 'carol', reason: 'customer reports' }] });
    });
    expect(result).toMatchObject({ outcome: 'aborted', stage: 'canary' });
  });

  it('pause (update), resume (signal), promote', async () => {
    const result = await record(
      'pause-resume-promote',
      { policy: policy({ trafficCycle: { duration: '4h' } }) },
      async (handle) => {
        await waitForStatus(handle, canaryBaking, { env: server.env, step: '10m' });
        await server.env.sleep('1h');
        await handle.executeUpdate(pauseUpdate, { args: [{ by: 'dave', reason: 'incident elsewhere' }] });
        await server.env.sleep('6h');
        await handle.signal(resumeSignal, { by: 'dave' });
        await waitForStatus(handle, (s) => s.state === 'baking', { env: server.env, step: '1m' });
        await server.env.sleep('30m');
        await handle.executeUpdate(promoteUpdate, { args: [{ by: 'erin', reason: 'fix needed now' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('inconclusive analysis, then approved by a person', async () => {
    const result = await record(
      'inconclusive-approve',
      { analysis: [inconclusive('no data: Prometheus unreachable')] },
      async (handle) => {
        await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', { env: server.env, step: '1m' });
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'metrics back' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('inconclusive analysis while a person has paused: the gate is approved, the pause lifted apart', async () => {
    const result = await record(
      'inconclusive-gate-and-pause',
      { analysis: [inconclusive('no data: Prometheus unreachable')] },
      async (handle) => {
        await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', { env: server.env, step: '1m' });
        await handle.signal(resumeSignal, { by: 'alice' }); // refused: nothing is paused
        await handle.executeUpdate(pauseUpdate, { args: [{ by: 'carol', reason: 'INCIDENT-42' }] });
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'metrics back' }] });
        await server.env.sleep('2h');
        await handle.signal(resumeSignal, { by: 'carol' });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('waits for a deployment window before production', async () => {
    const result = await record(
      'deployment-window-wait',
      { policy: policy({ windows: { allowed: [{ days: ['tue', 'wed', 'thu'], start: '09:00', end: '11:00' }] } }) },
      async (handle) => {
        await waitForStatus(handle, (s) => s.state === 'waiting-for-window', { env: server.env, step: '30m' });
      },
    );
    expect(result.outcome).toBe('promoted');
  });

  it('retries failing undos until the rollback completes', async () => {
    const result = await record('undo-retries', {
      analysis: [failing('error ratio 0.3 > max 0.01')],
      undoFailures: 2,
    });
    expect(result.outcome).toBe('rolled_back');
  });

  it('stage hooks at every moment, then promoted', async () => {
    const result = await record('hooks-promoted', {
      policy: policy({
        hooks: [
          execHook('schema-ready', 'before-staging'),
          execHook('smoke', 'after-deploy'),
          { name: 'change-board', at: 'before-production', http: { url: 'https://cab.example.com/tollgate' } },
          execHook('announce', 'after-promotion'),
        ],
      }),
      external: scriptedRunners().runners,
    });
    expect(result.outcome).toBe('promoted');
  });

  it('a failed after-deploy hook on the canary rolls back, then the rollback hook runs', async () => {
    const result = await record('hooks-rollback', {
      policy: policy({
        hooks: [
          execHook('load-test', 'after-deploy', { tracks: ['canary'] }),
          execHook('page-owner', 'after-rollback'),
        ],
      }),
      external: scriptedRunners({ 'load-test': 'failed' }).runners,
    });
    expect(result.outcome).toBe('rolled_back');
  });

  const canaryAlert = (alertname: string, status: 'firing' | 'resolved' = 'firing') => ({
    alerts: [
      {
        fingerprint: `fp-${alertname}`,
        status,
        labels: { alertname, service: 'checkout', version: '2.0.0', track: 'canary', severity: 'critical' },
        annotations: { summary: `${alertname} on the canary` },
        startsAt: '2026-01-01T00:00:00Z',
      },
    ],
    receiver: 'tollgate',
  });

  it('a known-error canary alert rolls back at once', async () => {
    const result = await record(
      'alert-rollback',
      {
        policy: policy({
          alerts: { rules: [{ name: 'errors', matchers: ['alertname="TollgateErrorRatioHigh"'], action: 'rollback' }] },
        }),
      },
      async (handle) => {
        await waitForStatus(handle, canaryBaking, { env: server.env, step: '1m' });
        await handle.signal(alertSignal, canaryAlert('TollgateErrorRatioHigh'));
      },
    );
    expect(result.outcome).toBe('rolled_back');
  });

  it('a fail-round alert, its repeat and its resolution, a shown alert, then promoted', async () => {
    const result = await record(
      'alert-fail-round-promoted',
      {
        policy: policy({
          alerts: { rules: [{ name: 'latency', matchers: ['alertname="TollgateLatencyHigh"'], action: 'fail-round' }] },
        }),
      },
      async (handle) => {
        await waitForStatus(handle, canaryBaking, { env: server.env, step: '1m' });
        await handle.signal(alertSignal, canaryAlert('TollgateLatencyHigh'));
        await handle.signal(alertSignal, canaryAlert('TollgateLatencyHigh'));
        await handle.signal(alertSignal, canaryAlert('Watchdog'));
        await handle.signal(alertSignal, canaryAlert('TollgateLatencyHigh', 'resolved'));
      },
    );
    expect(result.outcome).toBe('promoted');
  });
});

describe('record releases whose production is watched', () => {
  const server = timeSkippingForTests();
  const watched = policy({
    production: {
      approval: false,
      waves: [
        { percent: 50, bake: '30m' },
        { percent: 100, bake: '30m' },
      ],
      watch: { duration: '1h', analysis: { interval: '5m', checks: [errorsCheck] } },
      rollbackWindow: { releases: 2 },
    },
  });
  const recordWatched = async (name: string, opts: ReleaseOptions, drive?: Drive<void>) => {
    const { result, history } = await runRelease(
      server.env,
      { policy: watched, ...opts, reason: `replay fixture: ${name}` },
      drive,
    );
    write(name, history);
    return result;
  };

  it('a clean watch retires the warm previous version and promotes', async () => {
    expect((await recordWatched('watch-promoted', {})).outcome).toBe('promoted');
  });

  it('tollgate rollback in the watch takes production back', async () => {
    const result = await recordWatched('watch-rollback', {}, async (handle) => {
      await waitForStatus(handle, (s) => s.state === 'watching', { env: server.env, step: '5m' });
      await handle.executeUpdate(rollbackUpdate, { args: [{ by: 'bob', reason: 'totals wrong at 100%' }] });
    });
    expect(result.outcome).toBe('rolled_back_after_promotion');
  });

  it('a version stable one release ago skips the canary bake', async () => {
    const now = Date.now();
    const result = await recordWatched('rollback-window-skip', {
      promoted: [
        { version: '3.0.0', promotedAt: new Date(now - 86_400_000).toISOString(), releaseId: 'release-checkout/r3' },
        {
          version: '2.0.0',
          promotedAt: new Date(now - 3 * 86_400_000).toISOString(),
          releaseId: 'release-checkout/r2',
        },
      ],
    });
    expect(result.outcome).toBe('promoted');
  });
  it('signed approvals: a signed start, refusals before the policy and of an unsigned approval, signed approvals', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-record-'));
    const key = (name: string) => {
      const path = join(dir, `${name}.pem`);
      writeFileSync(path, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
      return signerFromKeyFile(path);
    };
    const [alice, bob] = [key('alice'), key('bob')];
    const signers = [
      { name: 'alice', keys: [await alice.publicKey()] },
      { name: 'bob', keys: [await bob.publicKey()] },
    ];
    const at = async () => new Date(await server.env.currentTimeMs());
    const workflowId = 'release-checkout';
    const start = { workflowId, runId: START_RUN, action: 'start', target: '2.0.0', by: 'alice' };
    const { result, history } = await runRelease(
      server.env,
      {
        org: { minimums: { productionApproval: true, requireSignedApprovals: true } },
        policy: policy({
          approvals: { fourEyes: true, signers, signing: { require: ['start', 'approve', 'promote', 'resume'] } },
          production: { approval: true, waves: [{ percent: 100, bake: '20m' }] },
        }),
        request: { signed: await signDecision(alice, start, await at()) },
        reason: 'replay fixture: signed-approvals',
      },
      async (handle) => {
        // Before the policy is resolved: refused, whatever it is.
        await handle.signal(resumeSignal, { by: 'bob' });
        await waitForStatus(handle, (s) => s.gate?.name === 'production', { env: server.env, step: '10m' });
        await handle.signal(approveSignal, { by: 'bob', comment: 'unsigned' });
        const runId = (await handle.describe()).runId;
        const approve = { workflowId, runId, action: 'approve', target: 'production', by: 'bob' };
        const signed = await signDecision(bob, approve, await at());
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'canary clean', signed }] });
      },
    );
    rmSync(dir, { recursive: true, force: true });
    write('signed-approvals', history);
    expect(result.outcome).toBe('promoted');
  });
});

describe('record a release that continued as new (dev server suggesting it at 150 events)', () => {
  const dev = devServerForTests({
    extraArgs: ['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=150'],
  });

  it('rolls over at the production gate under refused approvals, then is approved and promotes', async () => {
    const { result, runs } = await runRelease(
      dev.env,
      {
        policy: policy({
          trafficCycle: { duration: '2s' },
          canary: { analysis: { interval: '1s', checks: [errorsCheck] } },
          production: { approval: true, waves: [{ percent: 100 }] },
          approvals: { fourEyes: true },
        }),
        reason: 'replay fixture: continued',
      },
      async (handle) => {
        const rolledOver = async () => (await handle.describe()).runId !== handle.firstExecutionRunId;
        await waitForStatus(handle, (s) => s.gate?.name === 'production', { timeoutMs: 10_000 });
        // alice started the release: four-eyes refuses her approvals, each one an event in history.
        for (let i = 0; i < 40 && !(await rolledOver()); i++) {
          await Promise.all(Array.from({ length: 10 }, () => handle.signal(approveSignal, { by: 'alice' })));
          await new Promise((r) => setTimeout(r, 200));
        }
        expect(await rolledOver()).toBe(true);
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', comment: 'after the rollover' }] });
      },
    );
    expect(result.outcome).toBe('promoted');
    expect(runs.length).toBeGreaterThan(1);
    for (const [i, { history }] of runs.entries()) write(`continued-as-new.run-${i + 1}`, history);
  });
});
