import type { V1Container, V1Deployment, V1DeploymentSpec } from '@kubernetes/client-node';
import { z } from 'zod';

/**
 * What the Kubernetes target writes onto the objects it manages, and the pure arithmetic of a step: which replicas and
 * weights a step asks for, the Deployments it writes, and whether someone else changed one since Tollgate did.
 * Everything here is a function of its arguments, so the target's behaviour is unit-tested without a cluster.
 */

export const ANNOTATION = {
  /** The release in flight on this Deployment: its pre-release spec and the state of each step (the ledger). */
  release: 'tollgate.dev/release',
  /** The generation this Deployment has after Tollgate's last write: any other is someone else's change. */
  generation: 'tollgate.dev/generation',
  /** What Tollgate last wrote of the fields it manages, so a change by someone else can be named. */
  wrote: 'tollgate.dev/wrote',
  /** The step whose write this is. */
  step: 'tollgate.dev/step',
  /** The service's last known stable version (kept exactly; a label value cannot hold every version). */
  stableVersion: 'tollgate.dev/stable-version',
} as const;

/** The labels every pod Tollgate creates carries, so its metrics, logs and alerts say which track they come from. */
export const LABEL = { track: 'track', version: 'version' } as const;

export type PodTrack = 'staging' | 'canary' | 'stable';

/** How the service's traffic is split between stable and canary. */
export type TrafficMode = 'replicas' | 'gatewayAPI';

/** What one step asks of the cluster: pods on each Deployment, and (Gateway API) the canary's share of requests. */
export interface Exposure {
  canaryReplicas: number;
  stableReplicas: number;
  /** Percent of requests the HTTPRoute sends to the canary; undefined with `traffic: replicas`. */
  canaryWeight?: number;
}

const stepSchema = z.object({
  status: z.enum(['applied', 'undone']),
  exposure: z.object({
    canaryReplicas: z.number().int().min(0),
    stableReplicas: z.number().int().min(0),
    canaryWeight: z.number().min(0).max(100).optional(),
  }),
});

/** The `release` annotation: untrusted like anything read back from the cluster, so parsed, never cast. */
const ledgerSchema = z.object({
  releaseId: z.string(),
  /** The Deployment's spec before the release's first write: what undoing every step puts back, exactly. */
  before: z.record(z.string(), z.unknown()).optional(),
  /** The Deployment did not exist before the release (a staging Deployment Tollgate created). */
  created: z.boolean().optional(),
  /** The HTTPRoute's weights before the release (Gateway API). */
  weightsBefore: z.object({ stable: z.number().int().min(0), canary: z.number().int().min(0) }).optional(),
  steps: z.record(z.string(), stepSchema).default({}),
});
export type Ledger = z.infer<typeof ledgerSchema>;
export type LedgerStep = z.infer<typeof stepSchema>;

const wroteSchema = z.object({ replicas: z.number().optional(), image: z.string().optional() });

/** A Deployment's ledger, or why it cannot be read (someone edited the annotation: never guessed around). */
export function readLedger(deployment: V1Deployment): Ledger | undefined {
  const text = deployment.metadata?.annotations?.[ANNOTATION.release];
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`annotation ${ANNOTATION.release} of ${nameOf(deployment)} is not JSON`);
  }
  const parsed = ledgerSchema.safeParse(json);
  if (!parsed.success) throw new Error(`annotation ${ANNOTATION.release} of ${nameOf(deployment)} is not a ledger`);
  return parsed.data;
}

export const nameOf = (d: V1Deployment) => `Deployment ${d.metadata?.namespace ?? '?'}/${d.metadata?.name ?? '?'}`;

/** The pods and weights a step asks for: k canary pods of N (replicas), or any weight over a full stable (Gateway). */
export function exposureFor(
  step: { track: 'canary' | 'production'; canaryInstances?: number; percent?: number },
  options: { fleetSize: number; traffic: TrafficMode; canaryWeight?: number },
): Exposure {
  const n = options.fleetSize;
  if (step.track === 'canary') {
    const k = step.canaryInstances ?? 1;
    if (options.traffic === 'replicas') return { canaryReplicas: k, stableReplicas: n - k };
    return { canaryReplicas: k, stableReplicas: n, canaryWeight: options.canaryWeight ?? round((100 * k) / n) };
  }
  const percent = step.percent ?? 100;
  const k = Math.ceil((n * percent) / 100);
  if (options.traffic === 'replicas') return { canaryReplicas: k, stableReplicas: n - k };
  // The canary keeps at least the pods it baked with, and enough to carry its share were the split by pods.
  return { canaryReplicas: Math.max(1, k), stableReplicas: n, canaryWeight: percent };
}

const round = (x: number) => Math.round(x * 100) / 100;

/** What a `traffic: replicas` step with `keepPrevious` says: why it ran as it always does. */
export const NOT_KEPT_WARM =
  'previous version not kept warm: traffic: replicas moves requests by pods; use traffic: gatewayAPI to keep it warm';

/**
 * What a `keepPrevious` step says of the previous version. With the Gateway API the stable Deployment keeps all N pods
 * through every step and the route's weights carry the split, so it is warm by construction and undoing a step is a
 * weight change. With `replicas` every Ready pod behind the Service takes requests: a pod kept is a pod in rotation,
 * so there is no way to keep one out of it without editing the team's Service, and the step runs cold.
 */
export function previousWarmth(
  traffic: TrafficMode,
  exposure: Exposure,
  previous: { deployment: string; version: string | undefined },
): string {
  if (traffic === 'replicas') return NOT_KEPT_WARM;
  const weight = round(100 - (exposure.canaryWeight ?? 0));
  const version = previous.version ?? 'its pre-release version';
  return `${previous.deployment} keeps ${exposure.stableReplicas} pod(s) of ${version} warm (weight ${weight}%)`;
}

/** The widest exposure the release's still-applied steps hold (steps only widen it), or none. */
export function heldExposure(ledger: Ledger, without?: string): Exposure | undefined {
  let widest: Exposure | undefined;
  for (const [key, step] of Object.entries(ledger.steps)) {
    if (key === without || step.status !== 'applied') continue;
    const e = step.exposure;
    if (!widest || e.canaryReplicas > widest.canaryReplicas || (e.canaryWeight ?? 0) > (widest.canaryWeight ?? 0))
      widest = e;
  }
  return widest;
}

/** A Deployment of `version` on `track`, made from `base`'s spec: same pod spec, its own selector and labels. */
export function trackDeployment(
  base: V1DeploymentSpec,
  meta: { name: string; namespace: string },
  change: { container: string; image: string; version: string; track: PodTrack; replicas: number },
): V1Deployment {
  const spec = structuredClone(base);
  spec.replicas = change.replicas;
  spec.selector = {
    ...spec.selector,
    matchLabels: { ...spec.selector.matchLabels, [LABEL.track]: change.track },
  };
  retarget(spec, change);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: meta.name, namespace: meta.namespace, labels: { [LABEL.track]: change.track } },
    spec,
  };
}

/** Points `spec`'s container at `image` and labels its pods with the track and version. */
export function retarget(
  spec: V1DeploymentSpec,
  change: { container: string; image: string; version: string; track: PodTrack },
): void {
  const container = findContainer(spec, change.container);
  container.image = change.image;
  spec.template.metadata = {
    ...spec.template.metadata,
    labels: { ...spec.template.metadata?.labels, [LABEL.track]: change.track, [LABEL.version]: change.version },
  };
}

export function findContainer(spec: V1DeploymentSpec, name: string): V1Container {
  const container = spec.template.spec?.containers.find((c) => c.name === name);
  if (!container) {
    const names = spec.template.spec?.containers.map((c) => c.name).join(', ') ?? 'none';
    throw new Error(`has no container "${name}" (it has: ${names})`);
  }
  return container;
}

/** The fields Tollgate manages on a Deployment, as it is now. */
export function managedFields(d: V1Deployment, container: string): z.infer<typeof wroteSchema> {
  return {
    replicas: d.spec?.replicas ?? 1,
    image: d.spec?.template.spec?.containers.find((c) => c.name === container)?.image,
  };
}

/**
 * Someone else's change since Tollgate's last write, in words (`replicas 7 → 5`), or undefined when there is none.
 * The generation the API server bumps on every spec change is the test; the managed fields name what changed.
 */
export function driftOf(d: V1Deployment, container: string): string | undefined {
  const annotations = d.metadata?.annotations ?? {};
  const stamped = annotations[ANNOTATION.generation];
  if (stamped === undefined || String(d.metadata?.generation) === stamped) return undefined;
  const wrote = wroteSchema.safeParse(safeParse(annotations[ANNOTATION.wrote]));
  const now = managedFields(d, container);
  const changed: string[] = [];
  if (wrote.success) {
    if (wrote.data.replicas !== now.replicas) changed.push(`replicas ${wrote.data.replicas} → ${now.replicas}`);
    if (wrote.data.image !== now.image) changed.push(`image ${wrote.data.image} → ${now.image}`);
  }
  const what = changed.length > 0 ? changed.join(', ') : 'its spec';
  return `${nameOf(d)} was changed outside Tollgate (${what}; generation ${d.metadata?.generation}, Tollgate wrote ${stamped})`;
}

function safeParse(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * `d` with Tollgate's bookkeeping: the ledger, the step, what it wrote, and the generation the API server will give
 * it. The server bumps a Deployment's generation by one exactly when its spec or its annotations change (annotations
 * are copied to its ReplicaSets), so the generation can be stamped in the same write.
 */
export function stamped(
  d: V1Deployment,
  previous: V1Deployment | undefined,
  bookkeeping: { container: string; step: string; ledger?: Ledger | null },
): V1Deployment {
  const out = structuredClone(d);
  const annotations: Record<string, string> = { ...out.metadata?.annotations };
  annotations[ANNOTATION.wrote] = JSON.stringify(managedFields(out, bookkeeping.container));
  annotations[ANNOTATION.step] = bookkeeping.step;
  if (bookkeeping.ledger === null) delete annotations[ANNOTATION.release];
  else if (bookkeeping.ledger) annotations[ANNOTATION.release] = JSON.stringify(bookkeeping.ledger);
  const bumps = (generation: string | undefined) => {
    const next = { ...annotations, [ANNOTATION.generation]: generation };
    return (
      JSON.stringify(previous?.spec) !== JSON.stringify(out.spec) || !sameRecord(previous?.metadata?.annotations, next)
    );
  };
  const current = previous?.metadata?.generation ?? 0;
  // Stamping the unchanged generation is itself no change only when nothing else changed either.
  const generation = !previous ? 1 : bumps(String(current)) ? current + 1 : current;
  annotations[ANNOTATION.generation] = String(generation);
  out.metadata = { ...out.metadata, annotations };
  return out;
}

function sameRecord(a: Record<string, string> | undefined, b: Record<string, string | undefined>): boolean {
  const defined = (r: Record<string, string | undefined>) =>
    Object.entries(r)
      .filter(([, v]) => v !== undefined)
      .sort(([x], [y]) => x.localeCompare(y));
  return JSON.stringify(defined(a ?? {})) === JSON.stringify(defined(b));
}

/** A label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends): a version that is not one is refused. */
export const isLabelValue = (value: string) => /^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)$/.test(value);
