import {
  ApiException,
  AppsV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Deployment,
} from '@kubernetes/client-node';
import {
  NEVER_READY_IMAGE_MARKER,
  startControlPlane,
  TARGET_SERVICE_ACCOUNT,
  type ControlPlane,
} from '../../scripts/kubernetes-control-plane';

// The control plane the Kubernetes target's tests run against, tested on its own: RBAC really enforced for the
// target's ServiceAccount, kwok's pods Ready (or, on purpose, never), the API server restartable, HTTPRoutes served.

let plane: ControlPlane;

beforeAll(async () => {
  plane = await startControlPlane({ gatewayApi: true });
}, 240_000);

afterAll(async () => {
  await plane?.stop();
}, 60_000);

/** The control plane's logs alongside a failure: most failures here are a component's, not the test's. */
function withLogs(body: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body();
    } catch (error) {
      console.error(await plane.logTail(30));
      throw error;
    }
  };
}

/** Polls `probe` until it returns a value; every wait is bounded and says what it waited for. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error instanceof Error ? error : new Error(String(error));
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Clients authenticated as the target's ServiceAccount in `namespace`, never as admin. */
async function asTarget(namespace: string) {
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromFile(await plane.setUpTargetNamespace(namespace));
  return {
    apps: kubeconfig.makeApiClient(AppsV1Api),
    core: kubeconfig.makeApiClient(CoreV1Api),
    custom: kubeconfig.makeApiClient(CustomObjectsApi),
    authentication: kubeconfig.makeApiClient(AuthenticationV1Api),
  };
}

function deployment(name: string, image: string, replicas: number, progressDeadlineSeconds?: number): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas,
      ...(progressDeadlineSeconds !== undefined && { progressDeadlineSeconds }),
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'app', image }] },
      },
    },
  };
}

/** Read, change, write back whole (with its resourceVersion): the only kind of write the target's Role allows. */
async function update(apps: AppsV1Api, namespace: string, name: string, change: (d: V1Deployment) => unknown) {
  const current = await apps.readNamespacedDeployment({ namespace, name });
  change(current);
  await apps.replaceNamespacedDeployment({ namespace, name, body: current });
}

/** The HTTP status a refused call failed with (ApiException), or 0 when it did not fail. */
async function statusOf(call: () => Promise<unknown>): Promise<number> {
  try {
    await call();
    return 0;
  } catch (error) {
    if (error instanceof ApiException) return error.code;
    throw error;
  }
}

test(
  'the target ServiceAccount creates a 3-replica Deployment and sees it available',
  withLogs(async () => {
    const namespace = 'rollout';
    const { apps, core, authentication } = await asTarget(namespace);

    const review = await authentication.createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    expect(review.status?.userInfo?.username).toBe(`system:serviceaccount:${namespace}:${TARGET_SERVICE_ACCOUNT}`);
    expect(review.status?.userInfo?.groups).not.toContain('system:masters');

    await apps.createNamespacedDeployment({ namespace, body: deployment('checkout', 'checkout:1.0.0', 3) });
    const available = await eventually('3 available replicas', async () => {
      const current = await apps.readNamespacedDeployment({ namespace, name: 'checkout' });
      return current.status?.availableReplicas === 3 ? current : undefined;
    });
    expect(available.status?.readyReplicas).toBe(3);

    const pods = await core.listNamespacedPod({ namespace, labelSelector: 'app=checkout' });
    expect(pods.items).toHaveLength(3);
    for (const pod of pods.items) {
      expect(pod.spec?.nodeName).toBeTruthy();
      expect(pod.status?.phase).toBe('Running');
      expect(pod.status?.containerStatuses?.[0]?.state?.running).toBeDefined();
    }
  }),
  90_000,
);

test(
  'the target ServiceAccount is forbidden secrets, other namespaces and anything cluster-wide',
  withLogs(async () => {
    const namespace = 'least-privilege';
    const { apps, core } = await asTarget(namespace);

    expect(await statusOf(() => core.listNamespacedSecret({ namespace }))).toBe(403);
    expect(await statusOf(() => core.listNamespacedConfigMap({ namespace }))).toBe(403);
    expect(await statusOf(() => core.listNamespace())).toBe(403);
    expect(await statusOf(() => core.listNode())).toBe(403);
    expect(await statusOf(() => apps.listDeploymentForAllNamespaces())).toBe(403);
    expect(await statusOf(() => core.listPodForAllNamespaces())).toBe(403);
    const elsewhere = deployment('intruder', 'checkout:1.0.0', 1);
    expect(await statusOf(() => apps.createNamespacedDeployment({ namespace: 'default', body: elsewhere }))).toBe(403);
    expect(await statusOf(() => core.deleteNamespacedPod({ namespace, name: 'any' }))).toBe(403);
    // What the Role does grant, for contrast: the same client is not simply broken (a read of nothing: 404).
    expect(await statusOf(() => apps.readNamespacedDeployment({ namespace, name: 'none' }))).toBe(404);
    expect(await statusOf(() => apps.listNamespacedDeployment({ namespace }))).toBe(403);
  }),
  60_000,
);

test(
  `a rollout to an image with "${NEVER_READY_IMAGE_MARKER}" waits in ImagePullBackOff and exceeds its progress deadline`,
  withLogs(async () => {
    const namespace = 'never-ready';
    const { apps, core } = await asTarget(namespace);
    await apps.createNamespacedDeployment({ namespace, body: deployment('checkout', 'checkout:1.0.0', 2, 5) });
    await eventually('the stable version available', async () => {
      const current = await apps.readNamespacedDeployment({ namespace, name: 'checkout' });
      return current.status?.availableReplicas === 2 ? current : undefined;
    });

    const broken = `registry.example.com/checkout${NEVER_READY_IMAGE_MARKER}`;
    await update(apps, namespace, 'checkout', (d) => (d.spec!.template.spec!.containers[0]!.image = broken));

    const waiting = await eventually('a new pod waiting in ImagePullBackOff', async () => {
      const pods = await core.listNamespacedPod({ namespace, labelSelector: 'app=checkout' });
      const pod = pods.items.find((p) => p.spec?.containers[0]?.image === broken);
      return pod?.status?.containerStatuses?.[0]?.state?.waiting;
    });
    expect(waiting.reason).toBe('ImagePullBackOff');
    expect(waiting.message).toContain(broken);

    const stalled = await eventually('Progressing=False', async () => {
      const current = await apps.readNamespacedDeployment({ namespace, name: 'checkout' });
      const progressing = current.status?.conditions?.find((c) => c.type === 'Progressing');
      return progressing?.status === 'False' ? { current, progressing } : undefined;
    });
    expect(stalled.progressing.reason).toBe('ProgressDeadlineExceeded');
    // The old pods kept serving: a stalled rollout is not an outage, which is what a rollback returns to.
    expect(stalled.current.status?.availableReplicas).toBe(2);
    const pods = await core.listNamespacedPod({ namespace, labelSelector: 'app=checkout' });
    const notReady = pods.items.filter((p) => p.status?.conditions?.find((c) => c.type === 'Ready')?.status !== 'True');
    expect(notReady.map((p) => p.spec?.containers[0]?.image)).toEqual([broken]);
  }),
  90_000,
);

test(
  'the API server restarts on the same address with its state, and the controllers carry on',
  withLogs(async () => {
    const namespace = 'restart';
    const { apps } = await asTarget(namespace);
    const created = await apps.createNamespacedDeployment({
      namespace,
      body: deployment('checkout', 'checkout:1.0.0', 1),
    });

    const restart = plane.restartApiServer({ downMs: 2_000 });
    // It really went away: a read while it is down fails.
    await eventually('a read to fail while the API server is down', async () => {
      const failed = await apps.readNamespacedDeployment({ namespace, name: 'checkout' }).then(
        () => false,
        () => true,
      );
      return failed || undefined;
    });
    await restart;

    const read = await apps.readNamespacedDeployment({ namespace, name: 'checkout' });
    expect(read.metadata?.uid).toBe(created.metadata?.uid);
    // A change after the restart still rolls out: the controller-manager reconnected its watches.
    await update(apps, namespace, 'checkout', (d) => (d.spec!.replicas = 3));
    await eventually(
      '3 available replicas after the restart',
      async () => {
        const current = await apps.readNamespacedDeployment({ namespace, name: 'checkout' });
        return current.status?.availableReplicas === 3 || undefined;
      },
      60_000,
    );
  }),
  120_000,
);

test(
  'an HTTPRoute: the target ServiceAccount cannot create it, but sets its backendRef weights and reads them back',
  withLogs(async () => {
    const namespace = 'gateway';
    const { custom } = await asTarget(namespace);
    const routeApi = { group: 'gateway.networking.k8s.io', version: 'v1', namespace, plural: 'httproutes' };
    const route = (stable: number, canary: number) => ({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'checkout' },
      spec: {
        parentRefs: [{ name: 'public' }],
        rules: [
          {
            backendRefs: [
              { name: 'checkout-stable', port: 80, weight: stable },
              { name: 'checkout-canary', port: 80, weight: canary },
            ],
          },
        ],
      },
    });

    // The route belongs to whoever owns the Gateway; Tollgate only moves its weights.
    expect(await statusOf(() => custom.createNamespacedCustomObject({ ...routeApi, body: route(100, 0) }))).toBe(403);
    await plane.kubectl(['apply', '-n', namespace, '-f', '-'], { input: JSON.stringify(route(100, 0)) });

    const current = (await custom.getNamespacedCustomObject({ ...routeApi, name: 'checkout' })) as ReturnType<
      typeof route
    >;
    await custom.replaceNamespacedCustomObject({
      ...routeApi,
      name: 'checkout',
      body: { ...current, spec: route(90, 10).spec },
    });
    const read = (await custom.getNamespacedCustomObject({ ...routeApi, name: 'checkout' })) as ReturnType<
      typeof route
    >;
    expect(read.spec.rules[0]?.backendRefs.map((ref) => [ref.name, ref.weight])).toEqual([
      ['checkout-stable', 90],
      ['checkout-canary', 10],
    ]);
    expect(await statusOf(() => custom.deleteNamespacedCustomObject({ ...routeApi, name: 'checkout' }))).toBe(403);
  }),
  60_000,
);
