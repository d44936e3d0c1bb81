import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createTarget } from '../../src/providers';
import { tollgate, untilState } from '../helpers/cli';
import { createStable, imageOf, readDeployment, targetOptions } from '../helpers/kubernetes';
import { shopForTests } from '../helpers/kubernetes-suite';
import { FLEET_ORG, writePolicies } from '../helpers/policies';
import { releaseHarness, silentLogger } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';

/**
 * What a Kubernetes user does, on the dev server: a targets file naming a Deployment and a kubeconfig for the
 * least-privilege ServiceAccount, then `tollgate start`, `approve` and `watch` — and the Deployment is released.
 */
jest.setTimeout(240_000);

const cluster = shopForTests();
const server = devServerForTests();

it('releases a Deployment from the CLI: start, approve the canary (four-eyes), watch it to promoted', async () => {
  const service = 'checkout';
  await createStable(cluster.shop.plane, service, { replicas: 4 });
  const policyDir = writePolicies({ ...FLEET_ORG, minimums: { ...FLEET_ORG.minimums, fourEyes: true } }, [
    {
      service,
      trafficCycle: { duration: '2s' },
      canary: { poolSize: 1, approval: true, analysis: { interval: '1s', checks: [] } },
      approvals: { fourEyes: true },
      production: { approval: false, waves: [{ percent: 50 }, { percent: 100 }] },
    },
  ]);
  const targetsFile = join(policyDir, 'targets.yaml');
  writeFileSync(
    targetsFile,
    stringify({
      services: {
        [service]: { kind: 'kubernetes', ...targetOptions(cluster.shop.kubeconfig, service, 4), service: undefined },
      },
    }),
  );
  const target = await createTarget(targetsFile, silentLogger);
  const { worker, taskQueue } = await releaseHarness(server.env, { policyDir, target });
  const conn = { TEMPORAL_ADDRESS: server.env.address, TOLLGATE_TASK_QUEUE: taskQueue, USER: 'alice' };
  await worker.runUntil(async () => {
    const started = await tollgate(['start', service, '1.5.0', '--reason', 'spring fixes'], conn);
    expect(started.err).toBe('');
    expect(started.code).toBe(0);
    await untilState(service, 'awaiting-approval', conn);
    const status = await tollgate(['status', service, '--json'], conn);
    expect(JSON.parse(status.out)).toMatchObject({ stableVersion: '1.0.0', target: { kind: 'kubernetes' } });
    expect((await tollgate(['approve', service, '--by', 'bob'], conn)).code).toBe(0);

    const watched = await tollgate(['watch', service, '--json', '--interval', '1'], conn);
    expect(watched.code).toBe(0);
    expect(watched.out).toContain('"outcome":"promoted"');
  });
  const stable = await readDeployment(cluster.shop, service);
  expect(stable?.spec?.template.spec?.containers[0]?.image).toBe(imageOf(service, '1.5.0'));
  expect(stable?.spec?.replicas).toBe(4);
  expect(await readDeployment(cluster.shop, `${service}-canary`)).toBeUndefined();
  expect((await tollgate(['history', service], conn)).out).toMatch(/1\.5\.0\s+promoted/);
});
