import { AppsV1Api, CustomObjectsApi, KubeConfig, type V1Deployment } from '@kubernetes/client-node';
import pino from 'pino';
import { stringify } from 'yaml';
import type { ControlPlane } from '../../scripts/kubernetes-control-plane';
import { KubernetesTarget, type KubernetesOptionsInput } from '../../src/providers/targets/kubernetes';

/**
 * What every Kubernetes suite (and the bench) sets up on a real control plane: the production namespace `shop` and
 * the staging namespace `shop-staging`, both reachable by the target's least-privilege ServiceAccount; a team's
 * stable Deployment; an HTTPRoute; and the target over them.
 */

export const NAMESPACE = 'shop';
export const STAGING_NAMESPACE = 'shop-staging';

export interface Shop {
  plane: ControlPlane;
  /** The kubeconfig of the ServiceAccount bound to deploy/kubernetes/rbac.yaml: what the target runs as. */
  kubeconfig: string;
  /** Admin clients, for set-up and for reading what the target did. */
  apps: AppsV1Api;
  custom: CustomObjectsApi;
}

/** Both namespaces, the Role in each, and the production ServiceAccount bound to it in staging too (README). */
export async function openShop(plane: ControlPlane): Promise<Shop> {
  const kubeconfig = await plane.setUpTargetNamespace(NAMESPACE);
  await plane.setUpTargetNamespace(STAGING_NAMESPACE);
  await plane.kubectl([
    ...['create', 'rolebinding', 'tollgate-target-from-shop', '-n', STAGING_NAMESPACE],
    ...['--role=tollgate-target', `--serviceaccount=${NAMESPACE}:tollgate`],
  ]);
  const admin = new KubeConfig();
  admin.loadFromFile(plane.adminKubeconfig);
  return { plane, kubeconfig, apps: admin.makeApiClient(AppsV1Api), custom: admin.makeApiClient(CustomObjectsApi) };
}

export const imageOf = (service: string, version: string) => `registry.example.com/${service}:${version}`;

/** A team's stable Deployment as they would `kubectl apply` it (pods labelled `track: stable`), rolled out. */
export async function createStable(
  plane: ControlPlane,
  service: string,
  { replicas, progressDeadlineSeconds }: { replicas: number; progressDeadlineSeconds?: number },
): Promise<void> {
  const labels = { app: service, track: 'stable' };
  await plane.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], {
    input: stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: service },
      spec: {
        replicas,
        ...(progressDeadlineSeconds !== undefined && { progressDeadlineSeconds }),
        selector: { matchLabels: labels },
        template: {
          metadata: { labels: { ...labels, version: '1.0.0' } },
          spec: { containers: [{ name: 'app', image: imageOf(service, '1.0.0') }] },
        },
      },
    }),
  });
  await plane.kubectl(['rollout', 'status', '-n', NAMESPACE, `deployment/${service}`, '--timeout=120s']);
}

/** An HTTPRoute sending everything to `<service>-stable` and nothing to `<service>-canary`, as its owner applies it. */
export async function createRoute(plane: ControlPlane, service: string): Promise<void> {
  await plane.kubectl(['apply', '-n', NAMESPACE, '-f', '-'], {
    input: stringify({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: service },
      spec: {
        parentRefs: [{ name: 'edge' }],
        rules: [
          {
            backendRefs: [
              { name: `${service}-stable`, port: 80, weight: 100 },
              { name: `${service}-canary`, port: 80, weight: 0 },
            ],
          },
        ],
      },
    }),
  });
}

/** The route's backendRef weights, stable first. */
export async function routeWeights(shop: Shop, service: string): Promise<number[]> {
  const route = (await shop.custom.getNamespacedCustomObject({
    group: 'gateway.networking.k8s.io',
    version: 'v1',
    namespace: NAMESPACE,
    plural: 'httproutes',
    name: service,
  })) as { spec: { rules: Array<{ backendRefs: Array<{ weight: number }> }> } };
  return route.spec.rules[0]!.backendRefs.map((b) => b.weight);
}

/** The target options for `service` in the shop, as a targets file entry would give them. */
export const targetOptions = (
  kubeconfig: string,
  service: string,
  fleetSize: number,
  extra: Partial<KubernetesOptionsInput> = {},
): KubernetesOptionsInput => ({
  service,
  namespace: NAMESPACE,
  deployment: service,
  container: 'app',
  image: imageOf(service, '{version}'),
  fleetSize,
  staging: { namespace: STAGING_NAMESPACE },
  kubeconfig,
  ...extra,
});

export const kubernetesTarget = (
  kubeconfig: string,
  service: string,
  fleetSize: number,
  extra: Partial<KubernetesOptionsInput> = {},
) => new KubernetesTarget(targetOptions(kubeconfig, service, fleetSize, extra), { logger: pino({ level: 'silent' }) });

/** A Deployment in the shop as it is now, or undefined when there is none. */
export const readDeployment = (shop: Shop, name: string, namespace = NAMESPACE): Promise<V1Deployment | undefined> =>
  shop.apps.readNamespacedDeployment({ name, namespace }).catch(() => undefined);
