import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TollgateService, TollgateState, TollgateVersion } from '../../src/domain/search-attributes';
import type { ReleaseStatus } from '../../src/domain/status';
import { errorsCheck, writePolicies } from '../helpers/policies';
import { failing, releaseHarness } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';
import { tollgate, untilState } from '../helpers/cli';
import { eventually } from '../helpers/until';

describe('tollgate CLI against the dev server', () => {
  const server = devServerForTests();

  it('starts, refuses bad input and unauthorised approvals with one line, and watch exits with the outcome', async () => {
    const service = `cart-${randomUUID().slice(0, 6)}`;
    const policyDir = writePolicies({ minimums: { analysisChecks: 1 } }, [
      {
        service,
        trafficCycle: { duration: '30s' },
        canary: {
          approval: true,
          analysis: { interval: '1s', checks: [errorsCheck] },
        },
        approvals: { fourEyes: true },
      },
    ]);
    const { worker, taskQueue } = await releaseHarness(server.env, {
      policyDir,
      analysis: [failing('error ratio 0.2 > max 0.01')],
    });
    const conn = { TEMPORAL_ADDRESS: server.env.address, TOLLGATE_TASK_QUEUE: taskQueue, USER: 'alice' };
    await worker.runUntil(async () => {
      const bad = await tollgate(['start', service, '1.0 beta'], conn);
      expect(bad.code).toBe(2);
      expect(bad.err.trim().split('\n')).toEqual([
        expect.stringMatching(/^tollgate: invalid release request: version: /),
      ]);

      const started = await tollgate(['start', service, '2.0.0', '--reason', 'spring fixes', '--json'], conn);
      expect(started.code).toBe(0);
      expect(JSON.parse(started.out)).toMatchObject({ workflowId: `release-${service}` });

      const twice = await tollgate(['start', service, '2.0.1'], conn);
      expect(twice.code).toBe(1);
      expect(twice.err).toContain(`already has a release in flight: release-${service}`);

      await untilState(service, 'awaiting-approval', conn);
      const own = await tollgate(['approve', service, '--by', 'alice'], conn);
      expect(own.code).toBe(1);
      expect(own.err.trim()).toMatch(/^tollgate: rejected: four-eyes: alice started this release/);
      const noBy = await tollgate(['approve', service], conn);
      expect(noBy.code).toBe(2);
      expect(noBy.err).toContain('missing --by <name>');

      const ok = await tollgate(['approve', service, '--by', 'bob'], conn);
      expect(ok.code).toBe(0);
      // What it prints is where the release is after the approval, not the gate it just left.
      expect(ok.out).toMatch(/^stage: canary {3}state: (deploying|baking|rolling-back)/m);
      const watched = await tollgate(['watch', service, '--json', '--interval', '1'], conn);
      expect(watched.code).toBe(10); // rolled back
      expect(watched.out).toContain('"outcome":"rolled_back"');

      const history = await tollgate(['history', service], conn);
      expect(history.out).toMatch(/2\.0\.0\s+rolled_back/);
      const nothing = await tollgate(['approve', service, '--by', 'bob'], conn);
      expect(nothing.code).toBe(1);
      expect(nothing.err.trim()).toBe(`tollgate: release-${service} has ended (COMPLETED); nothing to approve`);
    });
  });

  it('refuses what the worker refuses, and steers a running release with every control', async () => {
    const service = `shop-${randomUUID().slice(0, 6)}`;
    const policyDir = writePolicies({ trafficCycle: { minDuration: '1h' } }, [
      {
        service,
        trafficCycle: { duration: '2h' },
        canary: { analysis: { interval: '1m', checks: [errorsCheck] } },
      },
    ]);
    const { worker, taskQueue, target } = await releaseHarness(server.env, { policyDir });
    const conn = { TEMPORAL_ADDRESS: server.env.address, TOLLGATE_TASK_QUEUE: taskQueue, USER: 'alice' };
    const loose = join(policyDir, 'loose.yaml');
    writeFileSync(loose, 'trafficCycle:\n  duration: 30m\n');
    const misspelt = join(policyDir, 'misspelt.yaml');
    writeFileSync(misspelt, 'trafficCycle:\n  duraton: 3h\n');

    await worker.runUntil(async () => {
      // The worker has no policy for this service: the release fails before anything is deployed, and start says so.
      const unknown = await tollgate(['start', 'no-such-service', '1.0.0'], conn);
      expect(unknown.code).toBe(2);
      expect(unknown.err.trim().split('\n')).toEqual([
        expect.stringMatching(/^tollgate: release-no-such-service failed: .*no-such-service/),
      ]);
      const below = await tollgate(['start', service, '2.0.0', '--policy', loose], conn);
      expect(below.code).toBe(2);
      expect(below.err.trim()).toMatch(/^tollgate: release-.* failed: .*trafficCycle\.duration/);
      // A field the schema does not know is caught before anything is sent, named with its path.
      const typo = await tollgate(['start', service, '2.0.0', '--policy', misspelt, '--json'], conn);
      expect(typo.code).toBe(2);
      const typoError = JSON.parse(typo.err) as { code: string; error: string };
      expect(typoError.code).toBe('invalid-input');
      expect(typoError.error).toMatch(/^invalid release request: policy\.trafficCycle: .*"duraton"/);
      expect(target.actions).toEqual([]);

      expect((await tollgate(['start', service, '2.0.0'], conn)).code).toBe(0);
      await untilState(service, 'baking', conn);
      const nothing = await tollgate(['approve', service, '--by', 'bob'], conn);
      expect(nothing.code).toBe(1);
      expect(nothing.err.trim()).toMatch(/^tollgate: rejected: .*nothing is awaiting approval/);

      const listed = await tollgate(['list', '--service', service, '--json'], conn);
      expect(JSON.parse(listed.out)).toEqual([expect.objectContaining({ service, version: '2.0.0', state: 'baking' })]);
      const paused = await tollgate(['pause', service, '--by', 'bob', '--reason', 'incident 42'], conn);
      expect(paused.code).toBe(0);
      expect(paused.out).toContain('>> paused by bob');
      const inState = await tollgate(['list', '--state', 'paused'], conn);
      expect(inState.out).toContain(service);
      const promoteWhilePaused = await tollgate(['promote', service, '--by', 'bob', '--reason', 'x'], conn);
      expect(promoteWhilePaused.code).toBe(1);
      expect(promoteWhilePaused.err).toContain('resume it before promoting');
      const resumed = await tollgate(['resume', service, '--by', 'bob', '--reason', 'incident over'], conn);
      expect(resumed.code).toBe(0);
      expect(resumed.out).toMatch(/^stage: canary {3}state: baking$/m);
      const resumedStatus = JSON.parse((await tollgate(['status', service, '--json'], conn)).out) as ReleaseStatus;
      expect(resumedStatus.pause).toBeUndefined();
      expect(resumedStatus.audit).toContainEqual(
        expect.objectContaining({ actor: 'bob', action: 'resume', accepted: true, detail: 'incident over' }),
      );
      const aborted = await tollgate(['abort', service, '--by', 'bob', '--reason', 'wrong build'], conn);
      expect(aborted.code).toBe(0);
      const watched = await tollgate(['watch', service, '--interval', '1'], conn);
      expect(watched.code).toBe(11);
      expect(watched.out).toContain('release aborted');
      expect(target.actions.map((a) => `${a.action} ${a.key.split('/').pop()}`)).toEqual([
        'apply staging',
        'apply canary',
        'undo canary',
        'undo staging',
      ]);

      // A release that ends without an outcome (terminated from the UI) ends `watch` too, with the reason.
      expect((await tollgate(['start', service, '2.0.1'], conn)).code).toBe(0);
      await server.env.client.workflow.getHandle(`release-${service}`).terminate('operator pulled the plug');
      const ended = await tollgate(['watch', service, '--interval', '1'], conn);
      expect(ended.code).toBe(12);
      expect(ended.out).toContain('release terminated: operator pulled the plug');
    });
  });

  it('start --supersede aborts the release in flight, waits for its rollback and starts the new one, each naming the other', async () => {
    const service = `basket-${randomUUID().slice(0, 6)}`;
    const policyDir = writePolicies({ minimums: { analysisChecks: 1, productionApproval: false } }, [
      {
        service,
        trafficCycle: { duration: '2h' },
        canary: { analysis: { interval: '1m', checks: [errorsCheck] } },
        production: { approval: false },
      },
    ]);
    const { worker, taskQueue, target } = await releaseHarness(server.env, { policyDir });
    const conn = { TEMPORAL_ADDRESS: server.env.address, TOLLGATE_TASK_QUEUE: taskQueue, USER: 'alice' };
    await worker.runUntil(async () => {
      // Nothing in flight: --supersede is a plain start.
      expect((await tollgate(['start', service, '2.0.0', '--supersede'], conn)).code).toBe(0);
      await untilState(service, 'baking', conn);
      const refused = await tollgate(['start', service, '2.0 1', '--supersede'], conn);
      expect(refused.code).toBe(2); // refused before anything is aborted
      expect(JSON.parse((await untilState(service, 'baking', conn)).out)).toMatchObject({ version: '2.0.0' });

      const superseding = await tollgate(['start', service, '2.0.1', '--supersede', '--reason', 'hotfix'], conn);
      expect(superseding.code).toBe(0);
      expect(superseding.out).toContain(`${service} 2.0.0: aborted — aborted by alice: superseded by 2.0.1: hotfix`);
      const now = JSON.parse((await tollgate(['status', service, '--json'], conn)).out) as ReleaseStatus;
      expect(now).toMatchObject({ version: '2.0.1', reason: 'supersedes 2.0.0 (aborted): hotfix' });
      expect(now.audit[0]).toMatchObject({
        actor: 'alice',
        action: 'start',
        detail: 'supersedes 2.0.0 (aborted): hotfix',
      });
      // The superseded release rolled back before the new one deployed anything.
      const actions = target.actions.map((a) => `${a.action} ${a.key.split('/').pop()}`);
      expect(actions.slice(0, 4)).toEqual(['apply staging', 'apply canary', 'undo canary', 'undo staging']);
      const history = await tollgate(['history', service], conn);
      expect(history.out).toMatch(/2\.0\.0\s+aborted/);
      await tollgate(['abort', service, '--by', 'bob', '--reason', 'test over'], conn);
    });
  });

  it('rollback: refused before the watch with the reason, then takes production back; watch exits 10', async () => {
    const service = `till-${randomUUID().slice(0, 6)}`;
    const policyDir = writePolicies({ minimums: { analysisChecks: 1, productionApproval: false } }, [
      {
        service,
        trafficCycle: { duration: '1s' },
        canary: { analysis: { interval: '1s', checks: [errorsCheck] } },
        production: {
          approval: false,
          waves: [{ percent: 100 }],
          watch: { duration: '1h', analysis: { interval: '1m', checks: [errorsCheck] } },
        },
      },
    ]);
    const { worker, taskQueue, target } = await releaseHarness(server.env, { policyDir });
    const conn = { TEMPORAL_ADDRESS: server.env.address, TOLLGATE_TASK_QUEUE: taskQueue, USER: 'alice' };
    await worker.runUntil(async () => {
      expect((await tollgate(['start', service, '2.0.0'], conn)).code).toBe(0);
      const watching = await untilState(service, 'watching', conn);
      expect(JSON.parse(watching.out)).toMatchObject({ watch: { keepPrevious: true } });
      const shown = await tollgate(['status', service], conn);
      expect(shown.out).toContain(`tollgate rollback ${service} --by <name> --reason <why>`);
      const noReason = await tollgate(['rollback', service, '--by', 'bob'], conn);
      expect(noReason.code).toBe(2);
      expect(noReason.err).toMatch(/reason/);
      const rolled = await tollgate(['rollback', service, '--by', 'bob', '--reason', 'totals wrong at 100%'], conn);
      expect(rolled.code).toBe(0);
      expect(rolled.out).toContain('rollback: accepted');
      const watched = await tollgate(['watch', service], conn);
      expect(watched.code).toBe(10);
      expect(watched.out).toContain('rolled_back_after_promotion');
      expect(target.actions.map((a) => `${a.action} ${a.key.split('/').pop()}`)).toEqual([
        'apply staging',
        'apply canary',
        'apply wave-1',
        'undo wave-1',
        'undo canary',
        'undo staging',
      ]);
      const after = await tollgate(['rollback', service, '--by', 'bob', '--reason', 'again'], conn);
      expect(after.code).not.toBe(0);
      expect(after.err).toMatch(/has ended/);
    });
  });

  it('prints nothing a release carries raw: search attributes, a terminate reason, versions in history', async () => {
    const service = `evil-${randomUUID().slice(0, 6)}`;
    const hostile = '\u001b[2J\u001b]52;c;cm0gLXJmIH4=\u0007\u009b8m\u202e';
    // Anyone can start a workflow with any search attributes; nobody polls this queue, so it just sits there.
    const handle = await server.env.client.workflow.start('releaseWorkflow', {
      taskQueue: `unpolled-${service}`,
      workflowId: `release-${service}`,
      args: [{}],
      typedSearchAttributes: [
        { key: TollgateService, value: service },
        { key: TollgateVersion, value: `1.0${hostile}` },
        { key: TollgateState, value: `baking\n${service}  9.9.9  RUNNING  approved` },
      ],
    });
    const conn = { TEMPORAL_ADDRESS: server.env.address };
    // Visibility catches up within a second or two on the dev server.
    const listed = await eventually(
      () => tollgate(['list', '--service', service], conn),
      (l) => l.out.includes(service),
      `tollgate list to show ${service}`,
      { everyMs: 200 },
    );
    expect(listed.out.trim().split('\n')).toHaveLength(2); // the header and one row: no forged row
    const listedJson = await tollgate(['list', '--service', service, '--json'], conn);
    await handle.terminate(`done\n2026-01-01T00:00:00Z  bob approve${hostile}`);
    const status = await tollgate(['status', service], conn);
    const watched = await tollgate(['watch', service], conn);
    const history = await tollgate(['history', service], conn);
    for (const shown of [listed, listedJson, status, watched, history]) {
      // eslint-disable-next-line no-control-regex
      expect(shown.out + shown.err).not.toMatch(/[\u001b\u0007\u009b\u202e]/u);
    }
    // Terminated before any task ran, it cannot answer a query: status comes from its description.
    expect(status.code).toBe(0);
    expect(status.out).toContain('1.0\\u{001b}[2J');
    expect(watched.code).toBe(12);
    expect(watched.out).toContain('release terminated: done\\u{000a}2026-01-01T00:00:00Z  bob approve\\u{001b}');
    expect(history.out).toContain('1.0\\u{001b}[2J');
  });

  it('names the address it could not reach and the release it could not find', async () => {
    const unreachable = await tollgate(['status', 'checkout'], { TEMPORAL_ADDRESS: '127.0.0.1:1' });
    expect(unreachable.code).toBe(1);
    expect(unreachable.err).toMatch(/^tollgate: cannot reach Temporal at 127\.0\.0\.1:1/);
    const unknown = await tollgate(['status', 'no-such-svc'], { TEMPORAL_ADDRESS: server.env.address });
    expect(unknown.code).toBe(1);
    expect(unknown.err.trim()).toBe(
      'tollgate: no release found for service no-such-svc (workflow release-no-such-svc)',
    );
    const badCommand = await tollgate(['frobnicate'], { TEMPORAL_ADDRESS: server.env.address });
    expect(badCommand.code).toBe(2);
    const help = await tollgate(['--help'], {});
    expect(help.out).toContain('examples:');
  });
});
