import { rollbackUpdate } from '../../src/domain/messages';
import { NOT_KEPT_WARM } from '../../src/providers/targets/kubernetes-objects';
import type { DeployReceipt, DeployStep } from '../../src/providers/targets/types';
import { TollgateClient } from '../../src/client/tollgate-client';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { checkoutPolicy, errorsCheck, writePolicies } from '../helpers/policies';
import {
  createRoute,
  createStable,
  kubernetesTarget,
  readDeployment,
  routeWeights,
  STAGING_NAMESPACE,
} from '../helpers/kubernetes';
import { shopForTests } from '../helpers/kubernetes-suite';
import { canaryBaking, waitForStatus } from '../helpers/release-handle';
import { failing, healthy, releaseHarness, runRelease } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';
import type { KubernetesOptionsInput, KubernetesTarget } from '../../src/providers/targets/kubernetes';

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

describe('production watched after the last wave', () => {
  /** A 1 h cycle, waves of 10 min, then production watched for 1 h with the previous version kept warm (the default). */
  const watched = (service: string, waves: number[]) =>
    checkoutPolicy({
      service,
      trafficCycle: { duration: '1h' },
      canary: { poolSize: 1, analysis: { interval: '1m', checks: [errorsCheck] } },
      production: {
        approval: false,
        waves: waves.map((percent) => ({ percent, bake: '10m' })),
        watch: { duration: '1h', analysis: { interval: '1m', checks: [errorsCheck] } },
      },
    });
  const breachInWatch = (input: { baselineEnd?: string }) => input.baselineEnd !== undefined;
  const gateway = (service: string) =>
    target(service, {
      traffic: 'gatewayAPI',
      httpRoute: { name: service, stableBackend: `${service}-stable`, canaryBackend: `${service}-canary` },
    });
  const untilWatching = () => ({ env: server.env, step: '1m' }) as const;

  /**
   * Every deploy and undo goes through to the target; its receipt is kept by step (`apply wave-2`), and right after
   * it the stable Deployment's pods are counted (the fewer of those it asks for and those Ready) and, with a route,
   * its weights read. What stands after the last wave is what the watch saw: a breach in its first round ends the
   * `watching` state before a status poll could catch it.
   */
  function recorded(service: string, { route = false } = {}) {
    const receipts: Record<string, string[]> = {};
    const after: Record<string, { stablePods: number; weights?: number[] }> = {};
    const record = async (action: string, step: DeployStep, receipt: DeployReceipt) => {
      const name = `${action} ${step.key.split('/').pop()}`;
      receipts[name] = receipt.changes;
      const stable = await read(service);
      after[name] = {
        stablePods: Math.min(stable?.spec?.replicas ?? 0, stable?.status?.readyReplicas ?? 0),
        ...(route && { weights: await routeWeights(cluster.shop, service) }),
      };
      return receipt;
    };
    type Real = (step: DeployStep) => Promise<DeployReceipt>;
    return {
      receipts,
      after,
      stablePods: () => Object.values(after).map((a) => a.stablePods),
      deploy: async (step: DeployStep, real: Real) => record('apply', step, await real(step)),
      undo: async (step: DeployStep, real: Real) => record('undo', step, await real(step)),
    };
  }
  const stableUids = async (k8s: KubernetesTarget, service: string) =>
    (await k8s.api.listPods('shop', `app=${service},track=stable`)).map((p) => p.metadata!.uid!).sort();
  const stableImage = async (service: string) => (await read(service))?.spec?.template.spec?.containers[0]?.image;

  it('gatewayAPI: a breach in the watch rolls back by weights alone; the stable pods served throughout', async () => {
    await applyStable('orders');
    await createRoute(cluster.shop.plane, 'orders');
    const k8s = gateway('orders');
    const specBefore = (await read('orders'))?.spec;
    const podsBefore = await stableUids(k8s, 'orders');
    const record = recorded('orders', { route: true });
    const retire = jest.spyOn(k8s, 'retirePrevious');
    const { result } = await runRelease(server.env, {
      target: k8s,
      policy: watched('orders', [50, 100]),
      analysis: (input) => (breachInWatch(input) ? failing('error ratio 0.2 > 0.01', true)(input) : healthy()(input)),
      deploy: record.deploy,
      undo: record.undo,
    });
    expect(result).toMatchObject({ outcome: 'rolled_back_after_promotion', stableVersion: '1.0.0' });
    expect(result.reason).toContain('error ratio 0.2');
    // While watched, the new version had every request and the previous one all its pods, Ready.
    expect(record.after['apply wave-2']).toEqual({ stablePods: FLEET, weights: [0, 10_000] });
    expect(record.receipts['apply canary']).toContain(
      'Deployment shop/orders keeps 4 pod(s) of 1.0.0 warm (weight 75%)',
    );
    expect(record.receipts['apply wave-2']).toContain(
      'Deployment shop/orders keeps 4 pod(s) of 1.0.0 warm (weight 0%)',
    );
    expect(Object.keys(record.receipts)).toEqual([
      'apply staging',
      'apply canary',
      'apply wave-1',
      'apply wave-2',
      'undo wave-2',
      'undo wave-1',
      'undo canary',
      'undo staging',
    ]);
    expect(record.stablePods().every((n) => n >= FLEET)).toBe(true);
    // Undone by weights: the same stable pods as before the release, its spec as it was.
    expect(await stableUids(k8s, 'orders')).toEqual(podsBefore);
    expect((await read('orders'))?.spec).toEqual(specBefore);
    expect(await stableImage('orders')).toBe('registry.example.com/orders:1.0.0');
    expect(await routeWeights(cluster.shop, 'orders')).toEqual([100, 0]);
    expect(await read('orders-canary')).toBeUndefined();
    // The rollback then retires what was kept: the undo switched back to it, nothing is left to stop.
    expect(retire).toHaveBeenCalledTimes(1);
    await expect(retire.mock.results[0]?.value).resolves.toMatchObject({
      applied: false,
      changes: [expect.stringMatching(/kept 1\.0\.0 warm on its own pods; no step of this release stands/)],
    });
  });

  it('gatewayAPI: a clean watch promotes; nothing to retire, the stable Deployment is rolled onto the new version', async () => {
    await applyStable('invoices');
    await createRoute(cluster.shop.plane, 'invoices');
    const k8s = gateway('invoices');
    const retire = jest.spyOn(k8s, 'retirePrevious');
    const { result, retired } = await runRelease(server.env, {
      target: k8s,
      policy: watched('invoices', [50, 100]),
    });
    expect(result).toMatchObject({ outcome: 'promoted', stableVersion: '2.0.0' });
    expect(retired).toHaveLength(1);
    await expect(retire.mock.results[0]?.value).resolves.toMatchObject({
      applied: false,
      changes: [expect.stringMatching(/^nothing to stop: Deployment shop\/invoices kept 1\.0\.0 warm on its own pods/)],
    });
    const stable = await read('invoices');
    expect(stable?.spec?.template.spec?.containers[0]?.image).toBe('registry.example.com/invoices:2.0.0');
    expect(stable?.spec?.template.metadata?.labels).toMatchObject({ track: 'stable', version: '2.0.0' });
    expect(stable?.status?.availableReplicas).toBe(FLEET);
    expect(await routeWeights(cluster.shop, 'invoices')).toEqual([10_000, 0]);
    expect(await read('invoices-canary')).toBeUndefined();
    await expect(k8s.stableVersion('invoices')).resolves.toBe('2.0.0');
  });

  it('gatewayAPI: tollgate rollback in the watch takes production back to the warm stable pods', async () => {
    await applyStable('refunds');
    await createRoute(cluster.shop.plane, 'refunds');
    const k8s = gateway('refunds');
    const podsBefore = await stableUids(k8s, 'refunds');
    const { result, status } = await runRelease(
      server.env,
      { target: k8s, policy: watched('refunds', [50, 100]) },
      async (handle) => {
        await waitForStatus(handle, (s) => s.state === 'watching', untilWatching());
        const answer = await handle.executeUpdate(rollbackUpdate, { args: [{ by: 'bob', reason: 'totals wrong' }] });
        expect(answer.state).toBe('rolling-back');
      },
    );
    expect(result).toMatchObject({ outcome: 'rolled_back_after_promotion', stableVersion: '1.0.0' });
    expect(result.reason).toBe('rolled back by bob: totals wrong');
    expect(status.rollback?.undone.map((k) => k.split('/').pop())).toEqual(['wave-2', 'wave-1', 'canary', 'staging']);
    expect(await stableUids(k8s, 'refunds')).toEqual(podsBefore);
    expect(await stableImage('refunds')).toBe('registry.example.com/refunds:1.0.0');
    expect(await routeWeights(cluster.shop, 'refunds')).toEqual([100, 0]);
    expect(await read('refunds-canary')).toBeUndefined();
  });

  it('replicas: the watch works cold; every step says the previous version was not kept warm', async () => {
    await applyStable('basket');
    const specBefore = (await read('basket'))?.spec;
    const record = recorded('basket');
    const { result } = await runRelease(server.env, {
      target: target('basket'),
      policy: watched('basket', [50, 100]),
      analysis: (input) => (breachInWatch(input) ? failing('error ratio 0.2 > 0.01', true)(input) : healthy()(input)),
      deploy: record.deploy,
      undo: record.undo,
    });
    expect(result).toMatchObject({ outcome: 'rolled_back_after_promotion', stableVersion: '1.0.0' });
    for (const step of ['apply canary', 'apply wave-1', 'apply wave-2'])
      expect(record.receipts[step]).toContain(NOT_KEPT_WARM);
    expect(record.receipts['apply staging']).not.toContain(NOT_KEPT_WARM);
    // Cold: none of the stable pods is left while watched; the rollback starts them anew, as many as before.
    expect(record.stablePods()).toEqual([FLEET, FLEET - 1, FLEET - 2, 0, FLEET - 2, FLEET - 1, FLEET, FLEET]);
    const stable = await read('basket');
    expect(stable?.spec).toEqual(specBefore);
    expect(stable?.status?.availableReplicas).toBe(FLEET);
    expect(await read('basket-canary')).toBeUndefined();
  });
});

describe('rollback window and supersede on Kubernetes', () => {
  const hourCanary = (service: string, extra: Partial<ServicePolicyInput['production']> = {}) =>
    checkoutPolicy({
      service,
      trafficCycle: { duration: '6h' },
      canary: { poolSize: 1, analysis: { interval: '1m', checks: [errorsCheck] } },
      production: { approval: false, waves: [{ percent: 100 }], ...extra },
    });

  it('a version stable one release ago skips its canary bake, and still goes out through canary and production', async () => {
    await applyStable('wallet');
    const { result, status, analyzeCalls } = await runRelease(server.env, {
      target: target('wallet'),
      policy: hourCanary('wallet', { rollbackWindow: { releases: 1 } }),
      promoted: [
        {
          version: '1.0.0',
          promotedAt: new Date(Date.now() - 3_600_000).toISOString(),
          releaseId: 'release-wallet/r3',
        },
        {
          version: '2.0.0',
          promotedAt: new Date(Date.now() - 86_400_000).toISOString(),
          releaseId: 'release-wallet/r2',
        },
      ],
    });
    expect(result).toMatchObject({ outcome: 'promoted', stableVersion: '2.0.0' });
    expect(status.rollbackWindow).toMatchObject({ releaseId: 'release-wallet/r2', releasesAgo: 1 });
    expect(analyzeCalls.filter((c) => c.context.stage === 'canary')).toHaveLength(0);
    expect(status.deployedSteps.map((k) => k.split('/').pop())).toEqual(['staging', 'canary', 'wave-1']);
    expect((await read('wallet'))?.spec?.template.spec?.containers[0]?.image).toBe('registry.example.com/wallet:2.0.0');
    expect(await read('wallet-canary')).toBeUndefined();
  });

  it('start --supersede aborts the canary in flight (its Deployment removed, stable as it was) and starts the next', async () => {
    await applyStable('coupon');
    const specBefore = (await read('coupon'))?.spec;
    const policyDir = writePolicies({ minimums: { productionApproval: false } }, [hourCanary('coupon')]);
    const { worker, taskQueue } = await releaseHarness(server.env, { target: target('coupon'), policyDir });
    const tollgate = new TollgateClient(server.env.client, taskQueue);
    await worker.runUntil(async () => {
      const first = await tollgate.start({ service: 'coupon', version: '2.0.0', initiator: 'alice' });
      await waitForStatus(first, canaryBaking, { env: server.env, step: '10m' });
      expect((await read('coupon-canary'))?.spec?.replicas).toBe(1);
      const { handle: second, ended } = await tollgate.supersede({
        service: 'coupon',
        version: '2.0.1',
        initiator: 'alice',
        reason: 'hotfix',
      });
      expect(ended).toMatchObject({ outcome: 'aborted', reason: 'aborted by alice: superseded by 2.0.1: hotfix' });
      await waitForStatus(second, canaryBaking, { env: server.env, step: '10m' });
      const canary = await read('coupon-canary');
      expect(canary?.spec?.template.spec?.containers[0]?.image).toBe('registry.example.com/coupon:2.0.1');
      expect((await read('coupon'))?.spec?.replicas).toBe(FLEET - 1);
      const status = await tollgate.status('coupon');
      expect(status.audit[0]).toMatchObject({ action: 'start', detail: 'supersedes 2.0.0 (aborted): hotfix' });
      await tollgate.abort('coupon', { by: 'alice', reason: 'test over' });
      expect((await second.result()).outcome).toBe('aborted');
    });
    expect((await read('coupon'))?.spec).toEqual(specBefore);
    expect(await read('coupon-canary')).toBeUndefined();
  });
});
