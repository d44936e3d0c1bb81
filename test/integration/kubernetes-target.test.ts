import type { V1Deployment } from '@kubernetes/client-node';
import { ANNOTATION, NOT_KEPT_WARM, readLedger } from '../../src/providers/targets/kubernetes-objects';
import type { KubernetesOptionsInput, KubernetesTarget } from '../../src/providers/targets/kubernetes';
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
/** The UIDs of the service's pods on `track` (every track: undefined): a pod started anew has a new one. */
const podUids = async (t: KubernetesTarget, service: string, track?: string) =>
  (await t.api.listPods('shop', `app=${service}${track ? `,track=${track}` : ''}`)).map((p) => p.metadata!.uid!).sort();
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

  it('runs keepPrevious steps cold and says so; retiring the previous version has nothing to stop', async () => {
    await applyStable('basket');
    const t = target('basket');
    const at = (name: string, over: Partial<DeployStep>) =>
      step('basket', 'release-basket/run-1', name, {
        track: 'production',
        version: '1.1.0',
        keepPrevious: true,
        ...over,
      });
    const canary = await t.apply(at('canary', { track: 'canary', canaryInstances: 2 }));
    expect(canary.changes).toContain(NOT_KEPT_WARM);
    expect([await replicas('basket-canary'), await replicas('basket')]).toEqual([2, 8]);
    const full = await t.apply(at('wave-1', { percent: 100 }));
    expect(full.changes).toContain(NOT_KEPT_WARM);
    expect([await replicas('basket-canary'), await replicas('basket')]).toEqual([FLEET, 0]);

    const generation = (await read('basket'))?.metadata?.generation;
    const retired = await t.retirePrevious(at('retire-previous', { percent: 100 }));
    expect(retired).toEqual({
      key: 'release-basket/run-1/retire-previous',
      applied: false,
      changes: ['nothing to stop: the previous version was not kept warm (traffic: replicas moves requests by pods)'],
    });
    expect((await read('basket'))?.metadata?.generation).toBe(generation);
    await t.markStable('basket', '1.1.0');
    expect(imageOf(await read('basket'))).toBe('registry.example.com/basket:1.1.0');
    expect(await read('basket-canary')).toBeUndefined();
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

  describe('keepPrevious', () => {
    const gateway = (service: string) =>
      target(service, {
        traffic: 'gatewayAPI',
        httpRoute: { name: service, stableBackend: `${service}-stable`, canaryBackend: `${service}-canary` },
      });
    const at = (service: string, name: string, over: Partial<DeployStep>) =>
      step(service, `release-${service}/run-1`, name, {
        track: 'production',
        version: '1.1.0',
        keepPrevious: true,
        ...over,
      });

    it('keeps every stable pod warm; undoing the 100% step moves weights and shrinks the canary, starting no pod', async () => {
      await applyStable('orders');
      await createRoute(cluster.shop.plane, 'orders');
      const t = gateway('orders');
      const weights = () => routeWeights(cluster.shop, 'orders');
      const specBefore = (await read('orders'))?.spec;
      const stablePods = await podUids(t, 'orders', 'stable');
      expect(stablePods).toHaveLength(FLEET);

      const canary = await t.apply(at('orders', 'canary', { track: 'canary', canaryInstances: 1 }));
      expect(canary.changes).toContain('Deployment shop/orders keeps 10 pod(s) of 1.0.0 warm (weight 90%)');
      await t.apply(at('orders', 'wave-1', { percent: 50 }));
      const full = await t.apply(at('orders', 'wave-2', { percent: 100 }));
      expect(full.changes).toContain('Deployment shop/orders keeps 10 pod(s) of 1.0.0 warm (weight 0%)');
      expect(await weights()).toEqual([0, 10_000]);
      expect((await read('orders'))?.status?.availableReplicas).toBe(FLEET);

      // Undo: the route goes back to 50%, the canary to 5 pods; no pod of either track is new.
      const podsAtFull = await podUids(t, 'orders');
      await t.undo(at('orders', 'wave-2', { percent: 100 }));
      expect(await weights()).toEqual([5_000, 5_000]);
      expect(await replicas('orders-canary')).toBe(5);
      expect(podsAtFull).toEqual(expect.arrayContaining(await podUids(t, 'orders')));
      expect(await podUids(t, 'orders', 'stable')).toEqual(stablePods);
      expect((await read('orders'))?.spec).toEqual(specBefore);

      await t.undo(at('orders', 'wave-1', { percent: 50 }));
      await t.undo(at('orders', 'canary', { track: 'canary', canaryInstances: 1 }));
      expect(await weights()).toEqual([100, 0]);
      expect(await read('orders-canary')).toBeUndefined();
      expect(await podUids(t, 'orders', 'stable')).toEqual(stablePods);
      expect((await read('orders'))?.spec).toEqual(specBefore);

      // After the rollback the release retires what it kept: the undo already switched back to it, so nothing.
      const generation = (await read('orders'))?.metadata?.generation;
      expect((await t.retirePrevious(at('orders', 'retire-previous', { percent: 100 }))).changes).toEqual([
        'nothing to stop: Deployment shop/orders kept 1.0.0 warm on its own pods; ' +
          'no step of this release stands, they serve as before it',
      ]);
      expect((await read('orders'))?.metadata?.generation).toBe(generation);
    });

    it('retires nothing: the warm pods are the stable Deployment’s own, which promotion rolls onto the new version', async () => {
      await applyStable('invoices');
      await createRoute(cluster.shop.plane, 'invoices');
      const t = gateway('invoices');
      const weights = () => routeWeights(cluster.shop, 'invoices');
      await t.apply(at('invoices', 'canary', { track: 'canary', canaryInstances: 1 }));
      await t.apply(at('invoices', 'wave-1', { percent: 100 }));
      const generations = [
        (await read('invoices'))?.metadata?.generation,
        (await read('invoices-canary'))?.metadata?.generation,
      ];

      const retire = at('invoices', 'retire-previous', { percent: 100 });
      const retired = await t.retirePrevious(retire);
      expect(retired).toEqual({
        key: 'release-invoices/run-1/retire-previous',
        applied: false,
        changes: [
          'nothing to stop: Deployment shop/invoices kept 1.0.0 warm on its own pods; ' +
            'promotion rolls them onto 1.1.0 and removes the canary',
        ],
      });
      expect(await t.retirePrevious(retire)).toEqual(retired);
      expect([
        (await read('invoices'))?.metadata?.generation,
        (await read('invoices-canary'))?.metadata?.generation,
      ]).toEqual(generations);
      expect(await weights()).toEqual([0, 10_000]);

      await t.markStable('invoices', '1.1.0');
      const promoted = await read('invoices');
      expect(imageOf(promoted)).toBe('registry.example.com/invoices:1.1.0');
      expect(promoted?.status?.availableReplicas).toBe(FLEET);
      expect(await weights()).toEqual([10_000, 0]);
      expect(await read('invoices-canary')).toBeUndefined();
    });
  });
});
