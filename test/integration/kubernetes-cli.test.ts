import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { startControlPlane, type ControlPlane } from '../../scripts/kubernetes-control-plane';
import { createTarget } from '../../src/providers';
import { tollgate, untilState } from '../helpers/cli';
import { FLEET_ORG, writePolicies } from '../helpers/policies';
import { releaseHarness, silentLogger } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';

/**
 * What a Kubernetes user does, on the dev server: a targets file naming a Deployment and a kubeconfig for the
 * least-privilege ServiceAccount, then `tollgate start`, `approve` and `watch` — and the Deployment is released.
 */
jest.setTimeout(240_000);

let plane: ControlPlane;
let kubeconfig: string;

beforeAll(async () => {
  plane = await startControlPlane();
  kubeconfig = await plane.setUpTargetNamespace('shop');
  await plane.setUpTargetNamespace('shop-staging');
  await plane.kubectl([
    ...['create', 'rolebinding', 'tollgate-target-from-shop', '-n', 'shop-staging'],
    ...['--role=tollgate-target', '--serviceaccount=shop:tollgate'],
  ]);
}, 240_000);

afterAll(async () => {
  await plane?.stop();
});

const server = devServerForTests();

it('releases a Deployment from the CLI: start, approve the canary (four-eyes), watch it to promoted', async () => {
  const service = 'checkout';
  await plane.kubectl(['apply', '-n', 'shop', '-f', '-'], {
    input: stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: service },
      spec: {
        replicas: 4,
        selector: { matchLabels: { app: service, track: 'stable' } },
        template: {
          metadata: { labels: { app: service, track: 'stable' } },
          spec: { containers: [{ name: 'app', image: 'registry.example.com/checkout:1.4.1' }] },
        },
      },
    }),
  });
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
        [service]: {
          kind: 'kubernetes',
          namespace: 'shop',
          deployment: service,
          container: 'app',
          image: 'registry.example.com/checkout:{version}',
          fleetSize: 4,
          staging: { namespace: 'shop-staging' },
          kubeconfig,
        },
      },
    }),
  );
  const target = await createTarget(targetsFile, silentLogger);
  const { worker, taskQueue } = await releaseHarness(server.env, { policyDir, target });
  const conn = { TEMPORAL_ADDRESS: server.env.address, TOLLGATE_TASK_QUEUE: taskQueue, USER: 'alice' };
  const apps = (() => {
    const admin = new KubeConfig();
    admin.loadFromFile(plane.adminKubeconfig);
    return admin.makeApiClient(AppsV1Api);
  })();

  await worker.runUntil(async () => {
    const started = await tollgate(['start', service, '1.5.0', '--reason', 'spring fixes'], conn);
    expect(started.err).toBe('');
    expect(started.code).toBe(0);
    await untilState(service, 'awaiting-approval', conn);
    const status = await tollgate(['status', service, '--json'], conn);
    expect(JSON.parse(status.out)).toMatchObject({ stableVersion: '1.4.1', target: { kind: 'kubernetes' } });
    expect((await tollgate(['approve', service, '--by', 'bob'], conn)).code).toBe(0);

    const watched = await tollgate(['watch', service, '--json', '--interval', '1'], conn);
    expect(watched.code).toBe(0);
    expect(watched.out).toContain('"outcome":"promoted"');
  });
  const stable = await apps.readNamespacedDeployment({ namespace: 'shop', name: service });
  expect(stable.spec?.template.spec?.containers[0]?.image).toBe('registry.example.com/checkout:1.5.0');
  expect(stable.spec?.replicas).toBe(4);
  await expect(apps.readNamespacedDeployment({ namespace: 'shop', name: `${service}-canary` })).rejects.toThrow();
  expect((await tollgate(['history', service], conn)).out).toMatch(/1\.5\.0\s+promoted/);
});
