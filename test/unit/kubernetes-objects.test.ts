import type { V1Deployment } from '@kubernetes/client-node';
import fc from 'fast-check';
import {
  ANNOTATION,
  driftOf,
  exposureFor,
  heldExposure,
  NOT_KEPT_WARM,
  previousWarmth,
  readLedger,
  stamped,
  trackDeployment,
  type Ledger,
} from '../../src/providers/targets/kubernetes-objects';
import { rolloutVerdict, stuckPods } from '../../src/providers/targets/kubernetes-rollout';
import { kubernetesOptionsSchema } from '../../src/providers/targets/kubernetes';
import { describeZodError } from '../../src/domain/zod-errors';

const stable = (over: Partial<V1Deployment> = {}): V1Deployment => ({
  metadata: { name: 'checkout', namespace: 'shop', generation: 4, annotations: {} },
  spec: {
    replicas: 10,
    selector: { matchLabels: { app: 'checkout', track: 'stable' } },
    template: {
      metadata: { labels: { app: 'checkout', track: 'stable', version: '1.0.0' } },
      spec: { containers: [{ name: 'app', image: 'registry.example.com/checkout:1.0.0' }] },
    },
  },
  ...over,
});

describe('exposureFor', () => {
  const replicas = { fleetSize: 10, traffic: 'replicas' as const };
  const gateway = { fleetSize: 10, traffic: 'gatewayAPI' as const };

  it('splits a fleet of N pods by pods: the stable Deployment shrinks by what the canary takes', () => {
    expect(exposureFor({ track: 'canary', canaryInstances: 2 }, replicas)).toEqual({
      canaryReplicas: 2,
      stableReplicas: 8,
    });
    expect(exposureFor({ track: 'production', percent: 33 }, replicas)).toEqual({
      canaryReplicas: 4,
      stableReplicas: 6,
    });
    expect(exposureFor({ track: 'production', percent: 100 }, replicas)).toEqual({
      canaryReplicas: 10,
      stableReplicas: 0,
    });
  });

  it('splits by route weight with the Gateway API: any percentage, the stable Deployment keeps all N pods', () => {
    expect(exposureFor({ track: 'canary', canaryInstances: 1 }, { ...gateway, canaryWeight: 2.5 })).toEqual({
      canaryReplicas: 1,
      stableReplicas: 10,
      canaryWeight: 2.5,
    });
    expect(exposureFor({ track: 'canary', canaryInstances: 1 }, gateway).canaryWeight).toBe(10);
    expect(exposureFor({ track: 'production', percent: 30 }, gateway)).toEqual({
      canaryReplicas: 3,
      stableReplicas: 10,
      canaryWeight: 30,
    });
  });
});

describe('previousWarmth', () => {
  const previous = { deployment: 'Deployment shop/checkout', version: '1.0.0' };
  const gateway = { fleetSize: 4, traffic: 'gatewayAPI' as const };

  it('with the Gateway API, names the stable pods kept and the weight left to them at every step', () => {
    const at = (percent: number) =>
      previousWarmth('gatewayAPI', exposureFor({ track: 'production', percent }, gateway), previous);
    expect(at(100)).toBe('Deployment shop/checkout keeps 4 pod(s) of 1.0.0 warm (weight 0%)');
    expect(at(50)).toBe('Deployment shop/checkout keeps 4 pod(s) of 1.0.0 warm (weight 50%)');
    const canary = exposureFor({ track: 'canary', canaryInstances: 1 }, { ...gateway, canaryWeight: 2.5 });
    expect(previousWarmth('gatewayAPI', canary, { ...previous, version: undefined })).toBe(
      'Deployment shop/checkout keeps 4 pod(s) of its pre-release version warm (weight 97.5%)',
    );
  });

  it('with replicas, says the step ran cold and what would keep it warm', () => {
    const exposure = exposureFor({ track: 'production', percent: 100 }, { fleetSize: 4, traffic: 'replicas' });
    expect(previousWarmth('replicas', exposure, previous)).toBe(NOT_KEPT_WARM);
    expect(NOT_KEPT_WARM).toMatch(/not kept warm.*use traffic: gatewayAPI/);
  });
});

describe('heldExposure', () => {
  const ledger: Ledger = {
    releaseId: 'release-checkout/r1',
    steps: {
      'r1/canary': { status: 'applied', exposure: { canaryReplicas: 1, stableReplicas: 9 } },
      'r1/wave-1': { status: 'applied', exposure: { canaryReplicas: 5, stableReplicas: 5 } },
      'r1/wave-2': { status: 'undone', exposure: { canaryReplicas: 10, stableReplicas: 0 } },
    },
  };

  it('is the widest step still applied; undone steps and the one being undone do not count', () => {
    expect(heldExposure(ledger)).toEqual({ canaryReplicas: 5, stableReplicas: 5 });
    expect(heldExposure(ledger, 'r1/wave-1')).toEqual({ canaryReplicas: 1, stableReplicas: 9 });
    expect(heldExposure({ ...ledger, steps: {} })).toBeUndefined();
  });
});

describe('trackDeployment', () => {
  it('copies the pod spec, selects its own track, labels track and version, and leaves the base untouched', () => {
    const base = stable().spec!;
    const canary = trackDeployment(
      base,
      { name: 'checkout-canary', namespace: 'shop' },
      {
        container: 'app',
        image: 'registry.example.com/checkout:1.1.0',
        version: '1.1.0',
        track: 'canary',
        replicas: 2,
      },
    );
    expect(canary.spec!.replicas).toBe(2);
    expect(canary.spec!.selector.matchLabels).toEqual({ app: 'checkout', track: 'canary' });
    expect(canary.spec!.template.metadata!.labels).toEqual({ app: 'checkout', track: 'canary', version: '1.1.0' });
    expect(canary.spec!.template.spec!.containers[0]!.image).toBe('registry.example.com/checkout:1.1.0');
    expect(base.template.spec!.containers[0]!.image).toBe('registry.example.com/checkout:1.0.0');
    expect(base.selector.matchLabels!.track).toBe('stable');
  });
});

describe('stamped and driftOf', () => {
  it('predicts the generation the API server gives a write: one more exactly when spec or annotations change', () => {
    const before = stable();
    const scaled = structuredClone(before);
    scaled.spec!.replicas = 8;
    expect(stamped(scaled, before, { container: 'app', step: 'r1/canary' }).metadata!.annotations).toMatchObject({
      [ANNOTATION.generation]: '5',
      [ANNOTATION.step]: 'r1/canary',
      [ANNOTATION.wrote]: JSON.stringify({ replicas: 8, image: 'registry.example.com/checkout:1.0.0' }),
    });
    // Annotations count too: the server bumps the generation for them (it copies them to the ReplicaSets).
    const bookkeeping = stamped(structuredClone(before), before, { container: 'app', step: 'r1/canary' });
    expect(bookkeeping.metadata!.annotations![ANNOTATION.generation]).toBe('5');
    const written = stamped(scaled, before, { container: 'app', step: 'r1/canary' });
    written.metadata!.generation = 5;
    expect(stamped(structuredClone(written), written, { container: 'app', step: 'r1/canary' })).toEqual(written);
    expect(
      stamped(before, undefined, { container: 'app', step: 'x' }).metadata!.annotations![ANNOTATION.generation],
    ).toBe('1');
  });

  it("names someone else's change by field, and sees none while the generation is Tollgate's", () => {
    const written = stamped(stable(), undefined, { container: 'app', step: 'r1/canary' });
    written.metadata!.generation = 1;
    expect(driftOf(written, 'app')).toBeUndefined();
    const scaledByHand = structuredClone(written);
    scaledByHand.metadata!.generation = 2;
    scaledByHand.spec!.replicas = 5;
    expect(driftOf(scaledByHand, 'app')).toBe(
      'Deployment shop/checkout was changed outside Tollgate (replicas 10 → 5; generation 2, Tollgate wrote 1)',
    );
    const envChanged = structuredClone(written);
    envChanged.metadata!.generation = 2;
    expect(driftOf(envChanged, 'app')).toContain('(its spec; generation 2, Tollgate wrote 1)');
    expect(driftOf(stable(), 'app')).toBeUndefined();
  });
});

describe('readLedger', () => {
  const withAnnotation = (text: string) =>
    stable({ metadata: { name: 'checkout', namespace: 'shop', annotations: { [ANNOTATION.release]: text } } });

  it('reads a ledger back', () => {
    const ledger = {
      releaseId: 'r1',
      steps: { 'r1/canary': { status: 'applied', exposure: { canaryReplicas: 1, stableReplicas: 9 } } },
    };
    expect(readLedger(withAnnotation(JSON.stringify(ledger)))).toEqual(ledger);
    expect(readLedger(stable())).toBeUndefined();
  });

  it('never guesses around an annotation someone edited: any text is a ledger or a named error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        try {
          const ledger = readLedger(withAnnotation(text));
          expect(typeof ledger?.releaseId).toBe('string');
        } catch (err) {
          expect((err as Error).message).toMatch(
            /^annotation tollgate\.dev\/release of Deployment shop\/checkout is not/,
          );
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('rolloutVerdict and stuckPods', () => {
  const withStatus = (status: V1Deployment['status'], generation = 4) =>
    stable({ metadata: { name: 'checkout', namespace: 'shop', generation }, status });

  it('is ready only when every replica is updated and available and no old pod is left', () => {
    expect(
      rolloutVerdict(withStatus({ observedGeneration: 4, replicas: 10, updatedReplicas: 10, availableReplicas: 10 })),
    ).toEqual({ state: 'ready' });
    expect(
      rolloutVerdict(withStatus({ observedGeneration: 4, replicas: 12, updatedReplicas: 10, availableReplicas: 10 })),
    ).toMatchObject({
      state: 'progressing',
      reason: 'Deployment shop/checkout: 10/10 updated, 10/10 available, 12 in all',
    });
    expect(
      rolloutVerdict(withStatus({ observedGeneration: 3, replicas: 10, updatedReplicas: 10, availableReplicas: 10 })),
    ).toMatchObject({ state: 'progressing' });
  });

  it("fails with the Deployment controller's own reason and message", () => {
    const deadline = withStatus({
      observedGeneration: 4,
      conditions: [
        {
          type: 'Progressing',
          status: 'False',
          reason: 'ProgressDeadlineExceeded',
          message: 'ReplicaSet "checkout-canary-5d8" has timed out progressing.',
        },
      ],
    });
    expect(rolloutVerdict(deadline)).toEqual({
      state: 'failed',
      reason:
        'Deployment shop/checkout: ProgressDeadlineExceeded: ReplicaSet "checkout-canary-5d8" has timed out progressing.',
    });
    const quota = withStatus({
      conditions: [{ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: 'exceeded quota: pods' }],
    });
    expect(rolloutVerdict(quota)).toEqual({
      state: 'failed',
      reason: 'Deployment shop/checkout: FailedCreate: exceeded quota: pods',
    });
  });

  it('names pods whose containers are stuck, and only those', () => {
    expect(
      stuckPods([
        {
          metadata: { name: 'checkout-canary-1' },
          status: {
            containerStatuses: [
              {
                name: 'app',
                image: 'x',
                imageID: '',
                ready: false,
                restartCount: 0,
                state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "x"' } },
              },
            ],
          },
        },
        {
          metadata: { name: 'checkout-canary-2' },
          status: {
            containerStatuses: [
              {
                name: 'app',
                image: 'x',
                imageID: '',
                ready: false,
                restartCount: 0,
                state: { waiting: { reason: 'ContainerCreating' } },
              },
            ],
          },
        },
      ]),
    ).toEqual(['pod checkout-canary-1 container app: ImagePullBackOff: Back-off pulling image "x"']);
  });
});

describe('kubernetes target options', () => {
  const valid = {
    service: 'checkout',
    namespace: 'shop',
    deployment: 'checkout',
    container: 'app',
    image: 'registry.example.com/checkout:{version}',
    fleetSize: 10,
    staging: { namespace: 'shop-staging' },
  };
  const refusal = (input: object) => {
    const parsed = kubernetesOptionsSchema.safeParse(input);
    return parsed.success ? 'accepted' : describeZodError(parsed.error);
  };

  it('refuses what can never work, naming the field', () => {
    expect(refusal(valid)).toBe('accepted');
    expect(refusal({ ...valid, traffic: 'gatewayAPI' })).toContain('httpRoute');
    expect(refusal({ ...valid, staging: {} })).toContain('staging');
    expect(refusal({ ...valid, image: 'registry.example.com/checkout:latest' })).toContain('image');
    expect(refusal({ ...valid, namespace: 'Shop' })).toContain('namespace');
    expect(refusal({ ...valid, replicas: 3 })).toContain('replicas');
  });
});
