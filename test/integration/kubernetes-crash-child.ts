import pino from 'pino';
import { kubernetesApi, type KubernetesApi } from '../../src/providers/targets/kubernetes-api';
import { KubernetesTarget, type KubernetesOptions } from '../../src/providers/targets/kubernetes';
import type { DeployStep } from '../../src/providers/targets/types';

/**
 * A worker that dies in the middle of a Kubernetes step, run as its own process by kubernetes-crash.test.ts
 * (compiled with swc): it applies one step and SIGKILLs itself right after its `killAfterWrites`-th write to the
 * API server has been answered — the cluster holds that write, the worker never learns what came next.
 *
 * argv[2]: JSON { options: target options, step: DeployStep, killAfterWrites: number }.
 */

interface Input {
  options: KubernetesOptions;
  step: DeployStep;
  killAfterWrites: number;
}

const input = JSON.parse(process.argv[2] ?? '{}') as Input;
const api = kubernetesApi(input.options);
let writes = 0;
/** `write`, then death once the writes reach `killAfterWrites`: the answer arrived, nothing after it happens. */
async function thenMaybeDie<R>(write: Promise<R>): Promise<R> {
  const result = await write;
  if (++writes >= input.killAfterWrites) process.kill(process.pid, 'SIGKILL');
  return result;
}
const dying: KubernetesApi = {
  get server() {
    return api.server;
  },
  get requests() {
    return api.requests;
  },
  getDeployment: (namespace, name) => api.getDeployment(namespace, name),
  createDeployment: (namespace, body) => thenMaybeDie(api.createDeployment(namespace, body)),
  replaceDeployment: (namespace, body) => thenMaybeDie(api.replaceDeployment(namespace, body)),
  deleteDeployment: (namespace, name) => api.deleteDeployment(namespace, name),
  listPods: (namespace, selector) => api.listPods(namespace, selector),
  getRoute: (namespace, name) => api.getRoute(namespace, name),
  replaceRoute: (namespace, body) => thenMaybeDie(api.replaceRoute(namespace, body)),
};

new KubernetesTarget(input.options, { logger: pino({ level: 'error' }), api: dying })
  .apply(input.step)
  .then(() => process.exit(0))
  .catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
