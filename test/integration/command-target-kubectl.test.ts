import { join, resolve } from 'node:path';
import { kubernetesBinDir } from '../../scripts/kubernetes-control-plane';
import { CommandTarget } from '../../src/providers/targets/command';
import { quietLogger, removeDir, tempStateDir } from '../helpers/fleet';
import { createStable, imageOf, NAMESPACE, readDeployment, STAGING_NAMESPACE } from '../helpers/kubernetes';
import { shopForTests } from '../helpers/kubernetes-suite';
import { FLEET_ORG, fleetPolicy } from '../helpers/policies';
import { canaryBaking, waitForStatus } from '../helpers/release-handle';
import { runRelease } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';

/**
 * examples/command-targets/kubectl.sh as a `kind: command` target: whole releases through the workflow on the dev
 * server, every step a run of the script, every kubectl call against a real API server (kwok turns pods Ready) as a
 * ServiceAccount bound to the example's own Role (examples/command-targets/kubectl-rbac.yaml) — never as admin.
 */
jest.setTimeout(240_000);

const EXAMPLE = resolve(__dirname, '..', '..', 'examples', 'command-targets');
const FLEET = 4;
const cluster = shopForTests();
const server = devServerForTests();
let kubeconfig: string;
let stateDir: string;

beforeAll(async () => {
  const { plane } = cluster.shop;
  for (const namespace of [NAMESPACE, STAGING_NAMESPACE])
    await plane.kubectl(['apply', '-n', namespace, '-f', join(EXAMPLE, 'kubectl-rbac.yaml')]);
  await plane.kubectl([
    ...['create', 'rolebinding', 'tollgate-kubectl-from-shop', '-n', STAGING_NAMESPACE],
    ...['--role=tollgate-kubectl', `--serviceaccount=${NAMESPACE}:tollgate-kubectl`],
  ]);
  kubeconfig = await plane.kubeconfigFor(NAMESPACE, 'tollgate-kubectl');
  stateDir = await tempStateDir('kubectl');
}, 60_000);
afterAll(() => stateDir && removeDir(stateDir));

const target = (service: string) =>
  new CommandTarget(
    {
      command: [
        join(EXAMPLE, 'kubectl.sh'),
        ...['--namespace', NAMESPACE, '--staging-namespace', STAGING_NAMESPACE],
        ...['--container', 'app', '--image', imageOf(service, '{version}'), '--fleet-size', String(FLEET)],
        ...['--kubeconfig', kubeconfig, '--kubectl', join(kubernetesBinDir(), 'kubectl'), '--rollout-timeout', '20s'],
        ...['--', `--cache-dir=${join(stateDir, 'kubectl-cache')}`],
      ],
      stateDir: join(stateDir, service),
      timeout: 90_000,
    },
    { logger: quietLogger() },
  );

const read = (name: string, namespace?: string) => readDeployment(cluster.shop, name, namespace);
const imageOfDeployment = async (name: string, namespace?: string) =>
  (await read(name, namespace))?.spec?.template.spec?.containers[0]?.image;
const replicas = async (name: string) => (await read(name))?.spec?.replicas ?? 0;

const policy = (service: string) => fleetPolicy(service, { cycleMs: 2_000, waveBakeMs: 1_000 });

it('releases a Deployment staging → canary → 50% → 100% → stable with kubectl alone', async () => {
  await createStable(cluster.shop.plane, 'checkout', { replicas: FLEET });
  const kubectl = target('checkout');
  await expect(kubectl.stableVersion('checkout')).resolves.toBe('1.0.0');
  const seen: Record<string, number[]> = {};
  const pace = { timeoutMs: 120_000 };
  const { result, status } = await runRelease(
    server.env,
    { target: kubectl, policy: policy('checkout'), org: FLEET_ORG },
    async (handle) => {
      await waitForStatus(handle, canaryBaking, pace, 'canary baking');
      seen.canary = [await replicas('checkout-canary'), await replicas('checkout')];
      await waitForStatus(handle, (s) => s.waves[0]?.state === 'baking', pace, 'wave 1 baking');
      seen.wave1 = [await replicas('checkout-canary'), await replicas('checkout')];
    },
  );
  expect(result).toMatchObject({ outcome: 'promoted', version: '2.0.0', stableVersion: '2.0.0' });
  expect(status.rollback).toBeUndefined();
  // The canary of one pod beside the whole stable fleet, then half of the fleet each.
  expect(seen).toEqual({ canary: [1, FLEET], wave1: [2, 2] });
  const stable = await read('checkout');
  expect(stable?.spec?.template.spec?.containers[0]?.image).toBe(imageOf('checkout', '2.0.0'));
  expect(stable?.spec?.template.metadata?.labels).toMatchObject({ track: 'stable', version: '2.0.0' });
  expect(stable?.spec?.replicas).toBe(FLEET);
  expect(stable?.status?.availableReplicas).toBe(FLEET);
  expect(await read('checkout-canary')).toBeUndefined();
  expect(await imageOfDeployment('checkout', STAGING_NAMESPACE)).toBe(imageOf('checkout', '2.0.0'));
  await expect(kubectl.stableVersion('checkout')).resolves.toBe('2.0.0');
});

it('rolls back a canary whose pods never turn Ready, with the script’s last lines in status', async () => {
  await createStable(cluster.shop.plane, 'search', { replicas: FLEET });
  const { result, status } = await runRelease(server.env, {
    target: target('search'),
    policy: policy('search'),
    org: FLEET_ORG,
    version: 'never-ready-2',
  });
  expect(result.outcome).toBe('rolled_back');
  expect(status.rollback?.reason).toMatch(/deploy: exited with status 1; last lines: .*timed out waiting/);
  expect(status.rollback?.undone).toHaveLength(2);
  expect(await read('search-canary')).toBeUndefined();
  const stable = await read('search');
  expect(stable?.spec?.template.spec?.containers[0]?.image).toBe(imageOf('search', '1.0.0'));
  expect(stable?.spec?.replicas).toBe(FLEET);
  expect(stable?.status?.availableReplicas).toBe(FLEET);
  // Staging went back to the stable version too.
  expect(await imageOfDeployment('search', STAGING_NAMESPACE)).toBe(imageOf('search', '1.0.0'));
});
