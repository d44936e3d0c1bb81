import { checkoutPolicy, errorsCheck } from '../helpers/policies';
import {
  createRoute,
  createStable,
  kubernetesTarget,
  readDeployment,
  routeWeights,
  STAGING_NAMESPACE,
} from '../helpers/kubernetes';
import { shopForTests } from '../helpers/kubernetes-suite';
import { waitForStatus } from '../helpers/release-handle';
import { runRelease } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';
import type { KubernetesOptionsInput } from '../../src/providers/targets/kubernetes';

/**
 * The whole release on the time-skipping server with the real Kubernetes target against a real API server: the
 * bake's timers are skipped, every Kubernetes call is real (as the least-privilege ServiceAccount).
 */
jest.setTimeout(240_000);

const FLEET = 4;
const cluster = shopForTests({ gatewayApi: true });
const server = timeSkippingForTests();

const read = (name: string, namespace?: string) => readDeployment(cluster.shop, name, namespace);
const applyStable = (service: string) =>
  createStable(cluster.shop.plane, service, { replicas: FLEET, progressDeadlineSeconds: 8 });
const target = (service: string, extra: Partial<KubernetesOptionsInput> = {}) =>
  kubernetesTarget(cluster.shop.kubeconfig, service, FLEET, {
    timeouts: { readyMs: 60_000, pollMs: 200, podFailureMs: 3_000 },
    ...extra,
  });

const policy = (service: string, waves: number[]) =>
  checkoutPolicy({
    service,
    canary: { poolSize: 1, analysis: { interval: '1m', checks: [errorsCheck] } },
    production: { approval: false, waves: waves.map((percent) => ({ percent, bake: '1h' })) },
  });

it('releases a Deployment staging → canary → waves → stable, every pod labelled by track and version', async () => {
  await applyStable('checkout');
  const k8s = target('checkout');
  const seen: number[][] = [];
  const { result } = await runRelease(
    server.env,
    { target: k8s, policy: policy('checkout', [50, 100]) },
    async (handle) => {
      for (const wave of [0, 1]) {
        await waitForStatus(handle, (s) => s.waves[wave]?.state === 'baking', { env: server.env, step: '10m' });
        seen.push([
          (await read('checkout-canary'))?.spec?.replicas ?? 0,
          (await read('checkout'))?.spec?.replicas ?? 0,
        ]);
      }
    },
  );
  expect(result).toMatchObject({ outcome: 'promoted', version: '2.0.0', stableVersion: '2.0.0' });
  expect(seen).toEqual([
    [2, 2],
    [4, 0],
  ]);
  const stable = await read('checkout');
  expect(stable?.spec?.template.spec?.containers[0]?.image).toBe('registry.example.com/checkout:2.0.0');
  expect(stable?.spec?.template.metadata?.labels).toMatchObject({ track: 'stable', version: '2.0.0' });
  expect(stable?.status?.availableReplicas).toBe(FLEET);
  expect(await read('checkout-canary')).toBeUndefined();
  expect((await read('checkout', STAGING_NAMESPACE))?.spec?.template.metadata?.labels).toMatchObject({
    track: 'staging',
    version: '2.0.0',
  });
  await expect(k8s.stableVersion('checkout')).resolves.toBe('2.0.0');
});

it("rolls back a canary whose pods never turn Ready, with Kubernetes' reason in status", async () => {
  await applyStable('search');
  const specBefore = (await read('search'))?.spec;
  const { result, status } = await runRelease(server.env, {
    target: target('search'),
    policy: policy('search', [100]),
    version: 'never-ready-2',
  });
  expect(result.outcome).toBe('rolled_back');
  expect(status.rollback?.reason).toContain('ImagePullBackOff');
  expect(await read('search-canary')).toBeUndefined();
  expect((await read('search'))?.spec).toEqual(specBefore);
});

it('moves the HTTPRoute weights at each wave (gatewayAPI) and sends everything to the new stable at the end', async () => {
  await applyStable('ledger');
  await createRoute(cluster.shop.plane, 'ledger');
  const weights = () => routeWeights(cluster.shop, 'ledger');
  const seen: number[][] = [];
  const gateway = target('ledger', {
    traffic: 'gatewayAPI',
    httpRoute: { name: 'ledger', stableBackend: 'ledger-stable', canaryBackend: 'ledger-canary' },
    canaryWeight: 5,
  });
  const { result } = await runRelease(
    server.env,
    { target: gateway, policy: policy('ledger', [25, 100]) },
    async (handle) => {
      await waitForStatus(handle, (s) => s.stage === 'canary' && s.state === 'baking', {
        env: server.env,
        step: '10m',
      });
      seen.push(await weights());
      for (const wave of [0, 1]) {
        await waitForStatus(handle, (s) => s.waves[wave]?.state === 'baking', { env: server.env, step: '10m' });
        seen.push(await weights());
      }
    },
  );
  expect(result.outcome).toBe('promoted');
  expect(seen).toEqual([
    [9_500, 500],
    [7_500, 2_500],
    [0, 10_000],
  ]);
  expect(await weights()).toEqual([10_000, 0]);
  expect(await read('ledger-canary')).toBeUndefined();
});
