import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readLedger } from '../../src/providers/targets/kubernetes-objects';
import { KubernetesTarget, kubernetesOptionsSchema } from '../../src/providers/targets/kubernetes';
import type { DeployStep } from '../../src/providers/targets/types';
import { compileDemo, quietLogger, removeDir } from '../helpers/fleet';
import { createStable, readDeployment, targetOptions } from '../helpers/kubernetes';
import { shopForTests } from '../helpers/kubernetes-suite';

/**
 * A worker SIGKILLed in the middle of a Kubernetes step (kubernetes-crash-child.ts, a process of its own), and the
 * step retried by a restarted worker, as Temporal would: the step is applied exactly once — no Deployment created
 * twice, no pod more than the step asks for, one ledger entry.
 */
jest.setTimeout(180_000);

const FLEET = 6;
const cluster = shopForTests();
let childJs: string;
let buildDir: string;

beforeAll(async () => {
  const build = await compileDemo(['test/integration/kubernetes-crash-child.ts']);
  buildDir = build.dir;
  childJs = build.js('test/integration/kubernetes-crash-child.ts');
});

afterAll(async () => {
  if (buildDir) await removeDir(buildDir);
});

const read = (name: string) => readDeployment(cluster.shop, name);
const options = (name: string) =>
  kubernetesOptionsSchema.parse(
    targetOptions(cluster.shop.kubeconfig, name, FLEET, { timeouts: { readyMs: 60_000, pollMs: 100 } }),
  );

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
    await createStable(cluster.shop.plane, name, { replicas: FLEET });
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
