import { randomUUID } from 'node:crypto';
import { TollgateClient } from '../../src/client/tollgate-client';
import { TollgateError } from '../../src/client/errors';
import { approveSignal } from '../../src/domain/messages';
import { TollgateService, TollgateStage, TollgateState, TollgateVersion } from '../../src/domain/search-attributes';
import { writePolicies } from '../helpers/policies';
import { waitForStatus } from '../helpers/release-handle';
import { releaseHarness } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';
import { eventually } from '../helpers/until';

const patience = { timeoutMs: 20_000, everyMs: 200 };

describe('release workflow on the real dev server', () => {
  const server = devServerForTests();

  it('starts through TollgateClient, refuses a second release, enforces four-eyes, and moves its search attributes', async () => {
    const service = `shop-${randomUUID().slice(0, 8)}`;
    const policyDir = writePolicies({ minimums: { analysisChecks: 0 } }, [
      {
        service,
        trafficCycle: { duration: '1s' },
        production: { approval: true, waves: [{ percent: 100, bake: 0 }] },
        approvals: { fourEyes: true },
      },
    ]);
    const { worker, taskQueue } = await releaseHarness(server.env, { policyDir, stable: { [service]: '3.1.0' } });
    const tollgate = new TollgateClient(server.env.client, taskQueue);
    await worker.runUntil(async () => {
      const handle = await tollgate.start({
        service,
        version: '3.2.0',
        initiator: 'alice',
        reason: 'spring sale fixes',
      });
      expect(handle.workflowId).toBe(`release-${service}`);

      const second = tollgate.start({ service, version: '3.3.0', initiator: 'bob' });
      await expect(second).rejects.toThrow(TollgateError);
      await expect(second).rejects.toThrow(`release-${service}`);

      const gated = await eventually(
        () => tollgate.status(service),
        (s) => s.state === 'awaiting-approval',
        'the production gate',
        patience,
      );
      expect(gated).toMatchObject({ stage: 'production', stableVersion: '3.1.0', gate: { name: 'production' } });

      // Four-eyes: the initiator's update is rejected and changes nothing.
      await expect(tollgate.approve(service, { by: 'Alice' })).rejects.toThrow(/four-eyes/);
      // …and the same through a signal is recorded as rejected in the audit trail.
      await handle.signal(approveSignal, { by: 'alice' });
      const afterSignal = await waitForStatus(
        handle,
        (s) => s.audit.some((a) => a.action === 'approve' && !a.accepted),
        { timeoutMs: 20_000 },
        'the refused approval in the audit trail',
      );
      expect(afterSignal.state).toBe('awaiting-approval');
      expect(afterSignal.audit.find((a) => a.action === 'approve')?.detail).toMatch(/four-eyes/);

      const described = await handle.describe();
      expect(described.typedSearchAttributes.get(TollgateService)).toBe(service);
      expect(described.typedSearchAttributes.get(TollgateVersion)).toBe('3.2.0');
      expect(described.typedSearchAttributes.get(TollgateStage)).toBe('production');
      expect(described.typedSearchAttributes.get(TollgateState)).toBe('awaiting-approval');
      expect(await described.staticSummary()).toBe(`${service} 3.2.0: staging → canary → production`);
      const listed = await eventually(
        () => tollgate.list({ service, state: 'awaiting-approval' }),
        (l) => l.length === 1,
        'the release listed as awaiting approval',
        patience,
      );
      expect(listed[0]).toMatchObject({ service, version: '3.2.0', status: 'RUNNING' });

      const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
      expect(metadata.currentDetails).toContain('awaiting approval (production)');

      const approved = await tollgate.approve(service, { by: 'bob', comment: 'looks good' });
      expect(approved.gate).toBeUndefined();
      const result = await handle.result();
      expect(result).toMatchObject({ outcome: 'promoted', stableVersion: '3.2.0' });
      const done = await handle.describe();
      expect(done.typedSearchAttributes.get(TollgateState)).toBe('done');
      await expect(tollgate.approve(service, { by: 'bob' })).rejects.toThrow(TollgateError);
    });
  });

  it('the rollback window reads promoted releases from visibility: a version stable one release ago skips its canary bake', async () => {
    const service = `shop-${randomUUID().slice(0, 8)}`;
    const policyDir = writePolicies({ minimums: { analysisChecks: 0, productionApproval: false } }, [
      {
        service,
        trafficCycle: { duration: '1s' },
        production: { approval: false, waves: [{ percent: 100 }], rollbackWindow: { releases: 1, within: '1d' } },
      },
    ]);
    const { worker, taskQueue } = await releaseHarness(server.env, { policyDir, stable: { [service]: '1.0.0' } });
    const tollgate = new TollgateClient(server.env.client, taskQueue);
    // A request may lengthen the cycle (it only tightens): an hour's canary bake that only the window can skip.
    const hourLong = { trafficCycle: { duration: '1h' } };
    await worker.runUntil(async () => {
      for (const version of ['2.0.0', '3.0.0']) {
        const handle = await tollgate.start({ service, version, initiator: 'alice' });
        expect((await handle.result()).outcome).toBe('promoted');
      }
      await eventually(
        () => server.env.client.workflow.count(`WorkflowId = 'release-${service}' AND TollgateStage = 'done'`),
        (c) => c.count === 2,
        'both promotions in visibility',
        patience,
      );
      const again = await tollgate.start({ service, version: '2.0.0', initiator: 'alice', policy: hourLong });
      const result = await again.result();
      expect(result.outcome).toBe('promoted');
      const status = await tollgate.status(service);
      expect(status.rollbackWindow).toMatchObject({ releasesAgo: 1 });
      expect(status.audit.find((e) => e.action === 'rollback-window')?.detail).toMatch(
        /2\.0\.0 was stable until .*canary bake is skipped/,
      );

      // Never stable here: the hour-long bake is not skipped.
      const fresh = await tollgate.start({ service, version: '2.5.0', initiator: 'alice', policy: hourLong });
      const baking = await eventually(
        () => tollgate.status(service),
        (s) => s.stage === 'canary' && s.state === 'baking',
        'the canary of a version never stable baking',
        patience,
      );
      expect(baking.rollbackWindow).toBeUndefined();
      await tollgate.abort(service, { by: 'alice', reason: 'test over' });
      expect((await fresh.result()).outcome).toBe('aborted');
    });
  });

  it('refuses malformed requests and messages before anything starts or changes', async () => {
    const tollgate = new TollgateClient(server.env.client, 'unused-queue');
    await expect(tollgate.start({ service: 'Bad Service', version: '1', initiator: 'a' })).rejects.toThrow(/service:/);
    await expect(tollgate.start({ service: 'ok', version: '1 .0', initiator: 'a' })).rejects.toThrow(/version:/);
    await expect(tollgate.abort('ok', { by: 'a', reason: '' })).rejects.toThrow(/reason: a reason is required/);
    await expect(tollgate.status('no-such-service')).rejects.toThrow(/no release found for service no-such-service/);
    expect(await tollgate.list({ service: 'ok' })).toEqual([]);
  });
});
