import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { AppsV1Api, KubeConfig, type V1Deployment } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { startControlPlane, type ControlPlane } from '../../scripts/kubernetes-control-plane';
import { readLedger } from '../../src/providers/targets/kubernetes-objects';
import { KubernetesTarget, kubernetesOptionsSchema } from '../../src/providers/targets/kubernetes';
import type { DeployStep } from '../../src/providers/targets/types';
import { compileDemo, quietLogger, removeDir } from '../helpers/fleet';

/**
 * A worker SIGKILLed in the middle of a Kubernetes step (kubernetes-crash-child.ts, a process of its own), and the
 * step retried by a restarted worker, as Temporal would: the step is applied exactly once — no Deployment created
 * twice, no pod more than the step asks for, one ledger entry.
 */
jest.setTimeout(180_000);

const FLEET = 6;
let plane: ControlPlane;
let kubeconfig: string;
let apps: AppsV1Api;
let childJs: string;
let buildDir: string;

beforeAll(async () => {
  const [started, build] = await Promise.all([
    startControlPlane(),
    compileDemo(['test/integration/kubernetes-crash-child.ts']),
  ]);
  plane = started;
  buildDir = build.dir;
  childJs = build.js('test/integration/kubernetes-crash-child.ts');
  kubeconfig = await plane.setUpTargetNamespace('shop');
  const admin = new KubeConfig();
  admin.loadFromFile(plane.adminKubeconfig);
  apps = admin.makeApiClient(AppsV1Api);
}, 180_000);

afterAll(async () => {
  await plane?.stop();
  if (buildDir) await removeDir(buildDir);
});

const read = async (name: string): Promise<V1Deployment | undefined> =>
  apps.readNamespacedDeployment({ name, namespace: 'shop' }).catch(() => undefined);

async function createStable(name: string): Promise<void> {
  const labels = { app: name, track: 'stable' };
  await plane.kubectl(['apply', '-n', 'shop', '-f', '-'], {
    input: stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name },
      spec: {
        replicas: FLEET,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: { containers: [{ name: 'app', image: `registry.example.com/${name}:1.0.0` }] },
        },
      },
    }),
  });
}

const options = (name: string) =>
  kubernetesOptionsSchema.parse({
    service: name,
    namespace: 'shop',
    deployment: name,
    container: 'app',
    image: `registry.example.com/${name}:{version}`,
    fleetSize: FLEET,
    staging: { namespace: 'shop-staging' },
    kubeconfig,
    timeouts: { readyMs: 60_000, pollMs: 100 },
  });

const canaryStep = (name: string): DeployStep => ({
  key: `release-${name}/run-1/canary`,
  releaseId: `release-${name}/run-1`,
  service: name,
  version: '1.1.0',
  stableVersion: '1.0.0',
  track: 'canary',
  canaryInstances: 2,
});

/** Runs the step in a child that SIGKILLs itself after its n-th write; resolves to how it ended. */
async function dieAfterWrites(name: string, killAfterWrites: number): Promise<string> {
  const input = JSON.stringify({ options: options(name), step: canaryStep(name), killAfterWrites });
  try {
    await promisify(execFile)(process.execPath, [childJs, input], { timeout: 90_000 });
    return 'exited';
  } catch (err) {
    return (err as { signal?: string }).signal ?? `failed: ${(err as Error).message}`;
  }
}

describe.each([
  ['after creating the canary, before shrinking the stable Deployment', 1, true],
  ['after shrinking the stable Deployment (the ledger written), before its pods settled', 2, false],
])('a worker SIGKILLed %s', (_when, killAfterWrites, appliedByRetry) => {
  it('is finished by the retry, applied exactly once', async () => {
    const name = `crash-${killAfterWrites}`;
    await createStable(name);
    expect(await dieAfterWrites(name, killAfterWrites)).toBe('SIGKILL');

    const retry = await new KubernetesTarget(options(name), { logger: quietLogger() }).apply(canaryStep(name));
    expect(retry.applied).toBe(appliedByRetry);
    const canary = await read(`${name}-canary`);
    const stable = await read(name);
    // Created once: a second create would have failed, a re-creation would have restarted the generation count.
    expect(canary?.metadata?.generation).toBe(1);
    expect(canary?.status?.availableReplicas).toBe(2);
    expect(stable?.spec?.replicas).toBe(FLEET - 2);
    expect(stable?.status?.availableReplicas).toBe(FLEET - 2);
    expect(Object.keys(readLedger(stable!)?.steps ?? {})).toEqual([canaryStep(name).key]);

    const again = await new KubernetesTarget(options(name), { logger: quietLogger() }).apply(canaryStep(name));
    expect(again.applied).toBe(false);
    expect((await read(name))?.metadata?.generation).toBe(stable?.metadata?.generation);
  });
});
