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

  it('refuses malformed requests and messages before anything starts or changes', async () => {
    const tollgate = new TollgateClient(server.env.client, 'unused-queue');
    await expect(tollgate.start({ service: 'Bad Service', version: '1', initiator: 'a' })).rejects.toThrow(/service:/);
    await expect(tollgate.start({ service: 'ok', version: '1 .0', initiator: 'a' })).rejects.toThrow(/version:/);
    await expect(tollgate.abort('ok', { by: 'a', reason: '' })).rejects.toThrow(/reason: a reason is required/);
    await expect(tollgate.status('no-such-service')).rejects.toThrow(/no release found for service no-such-service/);
    expect(await tollgate.list({ service: 'ok' })).toEqual([]);
  });
});
