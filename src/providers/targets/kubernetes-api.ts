import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { redactUrlCredentials } from '../../domain/redact';
import { oneLine } from '../../domain/text';

/** The parts of a Gateway API HTTPRoute the target reads and writes; the rest passes through untouched. */
export interface HttpRoute {
  apiVersion?: string;
  kind?: string;
  metadata: { name?: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  spec: {
    rules?: Array<{ backendRefs?: Array<{ name: string; weight?: number; [key: string]: unknown }> }>;
    [key: string]: unknown;
  };
}

/** How the target reaches its cluster: what `@kubernetes/client-node` loads. */
export interface KubernetesConnection {
  /** A kubeconfig file; without it `KUBECONFIG`, then ~/.kube/config. */
  kubeconfig?: string;
  /** A context in that kubeconfig; without it, its current context. */
  context?: string;
  /** The pod's service account, for a worker running in the cluster. */
  inCluster?: boolean;
}

/**
 * Everything the Kubernetes target asks of the API server: six calls, all namespaced (the RBAC Role in
 * deploy/kubernetes/ grants exactly these). Writes are PUTs carrying the object's resourceVersion, so a write based on
 * a stale read is refused (409) instead of overwriting someone else's change.
 */
export interface KubernetesApi {
  readonly server: string;
  /** Requests sent so far (the benchmark's "API requests per step"). */
  readonly requests: number;
  getDeployment(namespace: string, name: string): Promise<V1Deployment | undefined>;
  createDeployment(namespace: string, body: V1Deployment): Promise<V1Deployment>;
  replaceDeployment(namespace: string, body: V1Deployment): Promise<V1Deployment>;
  deleteDeployment(namespace: string, name: string): Promise<void>;
  listPods(namespace: string, labelSelector: string): Promise<V1Pod[]>;
  getRoute(namespace: string, name: string): Promise<HttpRoute>;
  replaceRoute(namespace: string, body: HttpRoute): Promise<HttpRoute>;
}

/** A request the API server refused or never answered, named by what was asked and why, in one line. */
export class KubernetesApiError extends Error {
  override readonly name = 'KubernetesApiError';
  constructor(
    readonly what: string,
    /** The HTTP status, or undefined when no answer came. */
    readonly code: number | undefined,
    reason: string,
  ) {
    super(`${what}: ${reason}`);
  }
}

/** How long a refusal is asked again after the API server has answered this client before, and how often. */
const AUTHORIZER_WARMUP_MS = 10_000;
const AUTHORIZER_RETRY_MS = 250;

const ROUTE = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes' } as const;

/** The API server's own reason (a Status object's message), not client-node's dump of headers and body. */
function reasonOf(err: unknown): { code: number | undefined; reason: string } {
  if (err instanceof ApiException) {
    const body = (typeof err.body === 'string' ? safeJson(err.body) : err.body) as { message?: unknown } | undefined;
    const message = typeof body?.message === 'string' ? body.message : `HTTP ${err.code}`;
    return { code: err.code, reason: oneLine(message, 300) };
  }
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  const detail = typeof code === 'string' ? code : typeof message === 'string' ? message : String(err);
  return { code: undefined, reason: `no answer from the API server: ${oneLine(redactUrlCredentials(detail), 300)}` };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}

export function loadKubeConfig(connection: KubernetesConnection): KubeConfig {
  const config = new KubeConfig();
  if (connection.inCluster) config.loadFromCluster();
  else if (connection.kubeconfig) config.loadFromFile(connection.kubeconfig);
  else config.loadFromDefault();
  if (connection.context) config.setCurrentContext(connection.context);
  return config;
}

export function kubernetesApi(connection: KubernetesConnection): KubernetesApi {
  const config = loadKubeConfig(connection);
  const apps = config.makeApiClient(AppsV1Api);
  const core = config.makeApiClient(CoreV1Api);
  const custom = config.makeApiClient(CustomObjectsApi);
  let requests = 0;
  let answeredOnce = false;
  async function call<T>(what: string, request: () => Promise<T>): Promise<T> {
    const refusedUntil = Date.now() + AUTHORIZER_WARMUP_MS;
    for (;;) {
      requests++;
      try {
        const answer = await request();
        answeredOnce = true;
        return answer;
      } catch (err) {
        const { code, reason } = reasonOf(err);
        // An API server that has just (re)started serves before its authorizer has synced, and refuses what it
        // allowed a moment ago: a refusal from a server that has answered this client before is asked again, briefly.
        const warmingUp = answeredOnce && (code === 401 || code === 403) && Date.now() < refusedUntil;
        if (!warmingUp) throw new KubernetesApiError(what, code, reason);
        await new Promise((resolve) => setTimeout(resolve, AUTHORIZER_RETRY_MS));
      }
    }
  }
  const deployment = (namespace: string, name: string | undefined) => `Deployment ${namespace}/${name ?? '?'}`;
  return {
    server: config.getCurrentCluster()?.server ?? '(unknown)',
    get requests() {
      return requests;
    },
    async getDeployment(namespace, name) {
      try {
        return await call(`read ${deployment(namespace, name)}`, () =>
          apps.readNamespacedDeployment({ namespace, name }),
        );
      } catch (err) {
        if (err instanceof KubernetesApiError && err.code === 404) return undefined;
        throw err;
      }
    },
    createDeployment: (namespace, body) =>
      call(`create ${deployment(namespace, body.metadata?.name)}`, () =>
        apps.createNamespacedDeployment({ namespace, body }),
      ),
    replaceDeployment: (namespace, body) =>
      call(`update ${deployment(namespace, body.metadata?.name)}`, () =>
        apps.replaceNamespacedDeployment({ namespace, name: body.metadata!.name!, body }),
      ),
    async deleteDeployment(namespace, name) {
      try {
        await call(`delete ${deployment(namespace, name)}`, () =>
          apps.deleteNamespacedDeployment({ namespace, name, propagationPolicy: 'Background' }),
        );
      } catch (err) {
        if (!(err instanceof KubernetesApiError && err.code === 404)) throw err;
      }
    },
    listPods: async (namespace, labelSelector) =>
      (
        await call(`list pods in ${namespace} (${labelSelector})`, () =>
          core.listNamespacedPod({ namespace, labelSelector }),
        )
      ).items,
    getRoute: (namespace, name) =>
      call(
        `read HTTPRoute ${namespace}/${name}`,
        () => custom.getNamespacedCustomObject({ ...ROUTE, namespace, name }) as Promise<HttpRoute>,
      ),
    replaceRoute: (namespace, body) =>
      call(
        `update HTTPRoute ${namespace}/${body.metadata.name ?? '?'}`,
        () =>
          custom.replaceNamespacedCustomObject({
            ...ROUTE,
            namespace,
            name: body.metadata.name!,
            body,
          }) as Promise<HttpRoute>,
      ),
  };
}
