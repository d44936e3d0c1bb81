import { AppsV1Api, CustomObjectsApi, KubeConfig, type V1Deployment } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { startControlPlane, type ControlPlane } from '../../scripts/kubernetes-control-plane';
import { KubernetesTarget, type KubernetesOptions } from '../../src/providers/targets/kubernetes';
import { checkoutPolicy, errorsCheck } from '../helpers/policies';
import { waitForStatus } from '../helpers/release-handle';
import { runRelease, silentLogger } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

/**
 * The whole release on the time-skipping server with the real Kubernetes target against a real API server: the
 * bake's timers are skipped, every Kubernetes call is real (as the least-privilege ServiceAccount).
 */
jest.setTimeout(240_000);

const FLEET = 4;
let plane: ControlPlane;
let kubeconfig: string;
let apps: AppsV1Api;
let custom: CustomObjectsApi;

beforeAll(async () => {
  plane = await startControlPlane({ gatewayApi: true });
  kubeconfig = await plane.setUpTargetNamespace('shop');
  await plane.setUpTargetNamespace('shop-staging');
  await plane.kubectl([
    ...['create', 'rolebinding', 'tollgate-target-from-shop', '-n', 'shop-staging'],
    ...['--role=tollgate-target', '--serviceaccount=shop:tollgate'],
  ]);
  const admin = new KubeConfig();
  admin.loadFromFile(plane.adminKubeconfig);
  apps = admin.makeApiClient(AppsV1Api);
  custom = admin.makeApiClient(CustomObjectsApi);
}, 240_000);

afterAll(async () => {
  await plane?.stop();
});

const server = timeSkippingForTests();

const read = (name: string, namespace = 'shop'): Promise<V1Deployment | undefined> =>
  apps.readNamespacedDeployment({ name, namespace }).catch(() => undefined);

async function createStable(service: string): Promise<void> {
  const labels = { app: service, track: 'stable' };
  await plane.kubectl(['apply', '-n', 'shop', '-f', '-'], {
    input: stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: service },
      spec: {
        replicas: FLEET,
        progressDeadlineSeconds: 8,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels: { ...labels, version: '1.0.0' } },
          spec: { containers: [{ name: 'app', image: `registry.example.com/${service}:1.0.0` }] },
        },
      },
    }),
  });
  await plane.kubectl(['rollout', 'status', '-n', 'shop', `deployment/${service}`, '--timeout=60s']);
}

function target(service: string, extra: Partial<KubernetesOptions> = {}): KubernetesTarget {
  return new KubernetesTarget(
    {
      service,
      namespace: 'shop',
      deployment: service,
      container: 'app',
      image: `registry.example.com/${service}:{version}`,
      fleetSize: FLEET,
      staging: { namespace: 'shop-staging' },
      kubeconfig,
      timeouts: { readyMs: 60_000, pollMs: 200, podFailureMs: 3_000 },
      ...extra,
    },
    { logger: silentLogger },
  );
}

const policy = (service: string, waves: number[]) =>
  checkoutPolicy({
    service,
    canary: { poolSize: 1, analysis: { interval: '1m', checks: [errorsCheck] } },
    production: { approval: false, waves: waves.map((percent) => ({ percent, bake: '1h' })) },
  });

it('releases a Deployment staging → canary → waves → stable, every pod labelled by track and version', async () => {
  await createStable('checkout');
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
  expect((await read('checkout', 'shop-staging'))?.spec?.template.metadata?.labels).toMatchObject({
    track: 'staging',
    version: '2.0.0',
  });
  await expect(k8s.stableVersion('checkout')).resolves.toBe('2.0.0');
});

it("rolls back a canary whose pods never turn Ready, with Kubernetes' reason in status", async () => {
  await createStable('search');
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
  await createStable('ledger');
  await plane.kubectl(['apply', '-n', 'shop', '-f', '-'], {
    input: stringify({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'ledger' },
      spec: {
        parentRefs: [{ name: 'edge' }],
        rules: [
          {
            backendRefs: [
              { name: 'ledger-stable', port: 80, weight: 100 },
              { name: 'ledger-canary', port: 80, weight: 0 },
            ],
          },
        ],
      },
    }),
  });
  const weights = async () => {
    const route = (await custom.getNamespacedCustomObject({
      group: 'gateway.networking.k8s.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'httproutes',
      name: 'ledger',
    })) as { spec: { rules: Array<{ backendRefs: Array<{ weight: number }> }> } };
    return route.spec.rules[0]!.backendRefs.map((b) => b.weight);
  };
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
