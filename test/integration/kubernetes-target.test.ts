import type { V1Deployment } from '@kubernetes/client-node';
import { ANNOTATION, readLedger } from '../../src/providers/targets/kubernetes-objects';
import type { KubernetesOptionsInput } from '../../src/providers/targets/kubernetes';
import type { DeployStep } from '../../src/providers/targets/types';
import {
  createRoute,
  createStable,
  kubernetesTarget,
  readDeployment,
  routeWeights,
  STAGING_NAMESPACE,
} from '../helpers/kubernetes';
import { shopForTests } from '../helpers/kubernetes-suite';
import { eventually } from '../helpers/until';

/**
 * The Kubernetes target against a real API server, controller-manager, scheduler and kwok (pods turn Ready, no
 * container runs), authenticated as the ServiceAccount bound to deploy/kubernetes/rbac.yaml — never as admin.
 */

jest.setTimeout(180_000);

const FLEET = 10;
const cluster = shopForTests({ gatewayApi: true });

const applyStable = (name: string, progressDeadlineSeconds?: number) =>
  createStable(cluster.shop.plane, name, {
    replicas: FLEET,
    ...(progressDeadlineSeconds !== undefined && { progressDeadlineSeconds }),
  });
const target = (name: string, extra: Partial<KubernetesOptionsInput> = {}) =>
  kubernetesTarget(cluster.shop.kubeconfig, name, FLEET, {
    timeouts: { readyMs: 60_000, pollMs: 100, podFailureMs: 3_000 },
    ...extra,
  });

const step = (
  service: string,
  release: string,
  name: string,
  over: Partial<DeployStep> & Pick<DeployStep, 'track' | 'version'>,
): DeployStep => ({
  key: `${release}/${name}`,
  releaseId: release,
  service,
  stableVersion: '1.0.0',
  ...over,
});

const read = (name: string, namespace?: string) => readDeployment(cluster.shop, name, namespace);

/** The type and message of the KubernetesStepError `attempt` fails with. */
async function failure(attempt: Promise<unknown>): Promise<{ type: string | undefined; message: string }> {
  const err = await attempt.then(
    () => new Error('expected the step to fail'),
    (e: unknown) => e as Error & { type?: string },
  );
  return { type: (err as { type?: string }).type, message: err.message };
}

const replicas = async (name: string) => (await read(name))?.spec?.replicas;
const imageOf = (d: V1Deployment | undefined) => d?.spec?.template.spec?.containers[0]?.image;

describe('traffic: replicas', () => {
  it('releases staging → canary → waves → stable with every pod labelled, then undoes a release exactly', async () => {
    await applyStable('checkout');
    const t = target('checkout');
    expect(await t.stableVersion('checkout')).toBe('1.0.0');
    const r = 'release-checkout/run-1';
    const at = (name: string, over: Partial<DeployStep>) =>
      step('checkout', r, name, { track: 'production', version: '1.1.0', ...over });

    const staged = await t.apply(at('staging', { track: 'staging' }));
    expect(staged.applied).toBe(true);
    const staging = await read('checkout', STAGING_NAMESPACE);
    expect(staging?.status?.availableReplicas).toBe(1);
    expect(staging?.spec?.template.metadata?.labels).toMatchObject({ track: 'staging', version: '1.1.0' });

    const requestsBefore = t.api.requests;
    expect((await t.apply(at('canary', { track: 'canary', canaryInstances: 2 }))).applied).toBe(true);
    const canarySteps = t.api.requests - requestsBefore;
    const canary = await read('checkout-canary');
    expect(canary?.status?.availableReplicas).toBe(2);
    expect(canary?.spec?.template.metadata?.labels).toMatchObject({
      app: 'checkout',
      track: 'canary',
      version: '1.1.0',
    });
    expect(imageOf(canary)).toBe('registry.example.com/checkout:1.1.0');
    expect(await replicas('checkout')).toBe(8);

    // A retry, on this worker or another, writes nothing: same generations, applied false.
    const generations = [(await read('checkout'))?.metadata?.generation, canary?.metadata?.generation];
    const again = await target('checkout').apply(at('canary', { track: 'canary', canaryInstances: 2 }));
    expect(again.applied).toBe(false);
    expect([
      (await read('checkout'))?.metadata?.generation,
      (await read('checkout-canary'))?.metadata?.generation,
    ]).toEqual(generations);

    await t.apply(at('wave-1', { percent: 50 }));
    expect([await replicas('checkout-canary'), await replicas('checkout')]).toEqual([5, 5]);
    await t.apply(at('wave-2', { percent: 100 }));
    expect([await replicas('checkout-canary'), await replicas('checkout')]).toEqual([10, 0]);

    await t.markStable('checkout', '1.1.0');
    const promoted = await read('checkout');
    expect(promoted?.status?.availableReplicas).toBe(FLEET);
    expect(imageOf(promoted)).toBe('registry.example.com/checkout:1.1.0');
    expect(promoted?.spec?.template.metadata?.labels).toMatchObject({ track: 'stable', version: '1.1.0' });
    expect(await read('checkout-canary')).toBeUndefined();
    expect(await t.stableVersion('checkout')).toBe('1.1.0');
    expect(canarySteps).toBeLessThan(60);

    // The next release, rolled back from its first wave: every undo returns to exactly the spec before it.
    const r2 = 'release-checkout/run-2';
    const at2 = (name: string, over: Partial<DeployStep>) =>
      step('checkout', r2, name, { track: 'production', version: '1.2.0', stableVersion: '1.1.0', ...over });
    const specBefore = (await read('checkout'))?.spec;
    await t.apply(at2('canary', { track: 'canary', canaryInstances: 1 }));
    await t.apply(at2('wave-1', { percent: 30 }));
    expect([await replicas('checkout-canary'), await replicas('checkout')]).toEqual([3, 7]);
    await t.undo(at2('wave-1', { percent: 30 }));
    expect([await replicas('checkout-canary'), await replicas('checkout')]).toEqual([1, 9]);
    await t.undo(at2('canary', { track: 'canary', canaryInstances: 1 }));
    expect(await read('checkout-canary')).toBeUndefined();
    const restored = await read('checkout');
    expect(restored?.spec).toEqual(specBefore);
    expect(restored?.status?.availableReplicas).toBe(FLEET);
    expect(readLedger(restored!)?.steps[`${r2}/canary`]?.status).toBe('undone');

    // A late attempt of an undone step must not redeploy the version that was rolled back.
    const late = await t.apply(at2('canary', { track: 'canary', canaryInstances: 1 }));
    expect(late.applied).toBe(false);
    expect(await read('checkout-canary')).toBeUndefined();
  });

  it('names a Deployment someone else changed mid-release and leaves it as they left it', async () => {
    await applyStable('payments');
    const t = target('payments');
    const r = 'release-payments/run-1';
    const at = (name: string, over: Partial<DeployStep>) =>
      step('payments', r, name, { track: 'production', version: '1.1.0', ...over });
    await t.apply(at('canary', { track: 'canary', canaryInstances: 2 }));
    await cluster.shop.plane.kubectl(['scale', '-n', 'shop', 'deployment/payments', '--replicas=6']);

    const drift = await failure(t.apply(at('wave-1', { percent: 50 })));
    expect(drift.type).toBe('KubernetesDrift');
    expect(drift.message).toMatch(/^Deployment shop\/payments was changed outside Tollgate \(replicas 8 → 6;/);
    expect(await replicas('payments-canary')).toBe(2); // the failed step changed nothing

    const undone = await t.undo(at('canary', { track: 'canary', canaryInstances: 2 }));
    expect(undone.changes.join('\n')).toContain('changed outside Tollgate (replicas 8 → 6');
    expect(await read('payments-canary')).toBeUndefined();
    expect(await replicas('payments')).toBe(6);
  });

  it('fails a canary whose pods never turn Ready with Kubernetes’ own reason, and undo takes it out', async () => {
    await applyStable('search', 8);
    const r = 'release-search/run-1';
    const canaryStep = step('search', r, 'canary', { track: 'canary', version: 'never-ready-2', canaryInstances: 1 });

    const stuck = await failure(target('search').apply(canaryStep));
    expect(stuck.type).toBe('KubernetesRolloutFailed');
    expect(stuck.message).toContain('container app: ImagePullBackOff');
    const patient = target('search', { timeouts: { readyMs: 60_000, pollMs: 200, podFailureMs: 120_000 } });
    const deadline = await failure(patient.apply({ ...canaryStep, key: `${r}/canary-again` }));
    expect(deadline.type).toBe('KubernetesRolloutFailed');
    expect(deadline.message).toContain('Deployment shop/search-canary: ProgressDeadlineExceeded');
    await patient.undo(canaryStep);
    await patient.undo({ ...canaryStep, key: `${r}/canary-again` });
    expect(await read('search-canary')).toBeUndefined();
    expect(await replicas('search')).toBe(FLEET);
  });

  it('rides out an API server restart in the middle of a step', async () => {
    await applyStable('cart');
    const t = target('cart');
    const applying = t.apply(
      step('cart', 'release-cart/run-1', 'canary', { track: 'canary', version: '1.1.0', canaryInstances: 3 }),
    );
    await eventually(
      () => read('cart-canary'),
      (d) => d !== undefined,
      'cart-canary created',
      { timeoutMs: 30_000 },
    );
    await cluster.shop.plane.restartApiServer({ downMs: 1_000 });
    expect((await applying).applied).toBe(true);
    expect((await read('cart-canary'))?.status?.availableReplicas).toBe(3);
    expect(await replicas('cart')).toBe(7);
  });
});

describe('traffic: gatewayAPI', () => {
  it('moves HTTPRoute weights exactly at each step, and puts them back on undo', async () => {
    await applyStable('ledger');
    await createRoute(cluster.shop.plane, 'ledger');
    const weights = () => routeWeights(cluster.shop, 'ledger');
    const t = target('ledger', {
      traffic: 'gatewayAPI',
      httpRoute: { name: 'ledger', stableBackend: 'ledger-stable', canaryBackend: 'ledger-canary' },
      canaryWeight: 2.5,
    });
    const r = 'release-ledger/run-1';
    const at = (name: string, over: Partial<DeployStep>) =>
      step('ledger', r, name, { track: 'production', version: '1.1.0', ...over });

    await t.apply(at('canary', { track: 'canary', canaryInstances: 1 }));
    expect(await weights()).toEqual([9_750, 250]);
    expect([await replicas('ledger-canary'), await replicas('ledger')]).toEqual([1, FLEET]);
    await t.apply(at('wave-1', { percent: 40 }));
    expect(await weights()).toEqual([6_000, 4_000]);
    expect([await replicas('ledger-canary'), await replicas('ledger')]).toEqual([4, FLEET]);

    await t.undo(at('wave-1', { percent: 40 }));
    expect(await weights()).toEqual([9_750, 250]);
    await t.undo(at('canary', { track: 'canary', canaryInstances: 1 }));
    expect(await weights()).toEqual([100, 0]);
    expect(await read('ledger-canary')).toBeUndefined();
    expect((await read('ledger'))?.metadata?.annotations?.[ANNOTATION.release]).toBeDefined();
  });
});
