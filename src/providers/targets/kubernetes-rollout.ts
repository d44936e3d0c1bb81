import type { V1Deployment, V1Pod } from '@kubernetes/client-node';
import { oneLine } from '../../domain/text';
import { KubernetesApiError, type KubernetesApi } from './kubernetes-api';
import { nameOf } from './kubernetes-objects';

export type RolloutVerdict =
  { state: 'ready' } | { state: 'progressing'; reason: string } | { state: 'failed'; reason: string };

/**
 * Container states that do not clear by waiting a little: the image cannot be pulled, the container keeps crashing,
 * its config is missing. Kubernetes keeps retrying them, so only one that lasts fails the step (`podFailureMs`).
 */
const STUCK_REASONS = new Set([
  'ImagePullBackOff',
  'ErrImagePull',
  'InvalidImageName',
  'CrashLoopBackOff',
  'CreateContainerConfigError',
  'CreateContainerError',
]);

/** Where a Deployment's rollout stands, from its status alone: the Deployment controller's own words when it failed. */
export function rolloutVerdict(d: V1Deployment): RolloutVerdict {
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  for (const c of s.conditions ?? []) {
    if (c.type === 'Progressing' && c.status === 'False')
      return {
        state: 'failed',
        reason: `${nameOf(d)}: ${c.reason ?? 'not progressing'}: ${oneLine(c.message ?? '', 300)}`,
      };
    if (c.type === 'ReplicaFailure' && c.status === 'True')
      return {
        state: 'failed',
        reason: `${nameOf(d)}: ${c.reason ?? 'replica failure'}: ${oneLine(c.message ?? '', 300)}`,
      };
  }
  const observed = (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0);
  const updated = s.updatedReplicas ?? 0;
  const available = s.availableReplicas ?? 0;
  const total = s.replicas ?? 0;
  if (observed && updated === want && available === want && total === want) return { state: 'ready' };
  return {
    state: 'progressing',
    reason: observed
      ? `${nameOf(d)}: ${updated}/${want} updated, ${available}/${want} available, ${total} in all`
      : `${nameOf(d)}: the Deployment controller has not seen the change yet`,
  };
}

/** Pods whose containers are stuck, each with Kubernetes' reason and message. */
export function stuckPods(pods: V1Pod[]): string[] {
  const found: string[] = [];
  for (const pod of pods) {
    for (const status of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
      const waiting = status.state?.waiting;
      if (waiting?.reason && STUCK_REASONS.has(waiting.reason)) {
        const message = waiting.message ? `: ${oneLine(waiting.message, 200)}` : '';
        found.push(`pod ${pod.metadata?.name ?? '?'} container ${status.name}: ${waiting.reason}${message}`);
      }
    }
  }
  return found;
}

/** A rollout that cannot succeed: the step fails with Kubernetes' reason. */
export class RolloutFailedError extends Error {
  override readonly name = 'RolloutFailedError';
}

export interface RolloutWait {
  api: KubernetesApi;
  /** The longest a step waits for its pods to be Ready. */
  readyMs: number;
  /** The longest pause between two reads of the Deployment (the first come sooner). */
  pollMs: number;
  /** How long a container may stay stuck (ImagePullBackOff, CrashLoopBackOff...) before the step fails. */
  podFailureMs: number;
  /** Labels selecting the Deployment's pods, for their container states. */
  podSelector: string;
}

const POD_CHECK_EVERY_MS = 2_000;
const FIRST_POLL_MS = 50;

/**
 * Waits until the Deployment is ready: every replica updated and available, none of the old ones left. Fails at
 * once on the controller's own failure (progress deadline exceeded, quota), after `podFailureMs` of a stuck
 * container, and after `readyMs` in all. The API server going away for a moment (a restart) is waited out.
 */
export async function waitForRollout(namespace: string, name: string, wait: RolloutWait): Promise<void> {
  const started = Date.now();
  let last = `Deployment ${namespace}/${name}: not read yet`;
  let stuckSince: number | undefined;
  let podsCheckedAt = started;
  let polls = 0;
  for (;;) {
    try {
      const d = await wait.api.getDeployment(namespace, name);
      if (!d) throw new RolloutFailedError(`Deployment ${namespace}/${name} was deleted while it rolled out`);
      const verdict = rolloutVerdict(d);
      if (verdict.state === 'ready') return;
      if (verdict.state === 'failed') throw new RolloutFailedError(verdict.reason);
      last = verdict.reason;
      if (Date.now() - podsCheckedAt >= POD_CHECK_EVERY_MS) {
        podsCheckedAt = Date.now();
        const stuck = stuckPods(await wait.api.listPods(namespace, wait.podSelector));
        if (stuck.length === 0) stuckSince = undefined;
        else {
          stuckSince ??= podsCheckedAt;
          last = `${verdict.reason}; ${stuck.slice(0, 3).join('; ')}`;
          if (podsCheckedAt - stuckSince >= wait.podFailureMs) throw new RolloutFailedError(last);
        }
      }
    } catch (err) {
      // A refusal from an API server still starting is asked again by the client itself (kubernetes-api.ts).
      if (!transient(err)) throw err;
      last = (err as Error).message;
    }
    if (Date.now() - started >= wait.readyMs)
      throw new RolloutFailedError(`not ready after ${Math.round(wait.readyMs / 1000)} s: ${last}`);
    // Most rollouts settle in about a second: look again soon, then less and less often, up to pollMs.
    await new Promise((resolve) => setTimeout(resolve, Math.min(wait.pollMs, FIRST_POLL_MS * 1.5 ** polls++)));
  }
}

/** No answer, or the server's own trouble: worth asking again. A refusal (403, 404, 422) is not. */
export const transient = (err: unknown) =>
  err instanceof KubernetesApiError && (err.code === undefined || err.code === 429 || err.code >= 500);
