import { ApplicationFailure } from '@temporalio/common';
import type { V1Deployment, V1DeploymentSpec } from '@kubernetes/client-node';
import { z } from 'zod';
import { serviceNameSchema } from '../../domain/release';
import type { Logger } from '../../logger';
import { KubernetesApiError, kubernetesApi, type HttpRoute, type KubernetesApi } from './kubernetes-api';
import {
  ANNOTATION,
  LABEL,
  driftOf,
  exposureFor,
  findContainer,
  heldExposure,
  isLabelValue,
  nameOf,
  previousWarmth,
  readLedger,
  retarget,
  stamped,
  trackDeployment,
  type Exposure,
  type Ledger,
  type PodTrack,
} from './kubernetes-objects';
import { RolloutFailedError, waitForRollout } from './kubernetes-rollout';
import type { DeployReceipt, DeploymentTarget, DeployStep } from './types';

/**
 * A service on Kubernetes: a stable Deployment the team already runs, a canary Deployment Tollgate makes from it
 * (`<deployment>-canary`, same pod spec, the new image), and traffic split by pods behind one Service
 * (`traffic: replicas`: k canary pods of N are k/N of the requests, the stable one shrinks by k) or by an HTTPRoute's
 * weights (`traffic: gatewayAPI`). Every pod it creates is labelled `track` (staging, canary, stable) and `version`.
 *
 * Each step writes what it asks for (so a retry, on any worker, writes nothing new), keeps a ledger of the release's
 * steps and the stable Deployment's pre-release spec on that Deployment (annotation `tollgate.dev/release`), and waits
 * until the pods are Ready. Undoing the last step puts that spec back exactly. A Deployment someone else changed
 * during the release is named and left alone: a step fails, an undo still takes the canary out.
 */

const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'expected a Kubernetes name: lower-case letters, digits and "-"');
/** Leaves room for the `-canary` suffix. */
const deploymentName = dnsLabel.refine((n) => n.length <= 56, 'at most 56 characters (Tollgate appends "-canary")');

export const kubernetesOptionsSchema = z
  .strictObject({
    service: serviceNameSchema,
    namespace: dnsLabel,
    /** The stable Deployment: the team's own, which must exist. */
    deployment: deploymentName,
    /** The container whose image a release changes. */
    container: dnsLabel,
    image: z.string().min(1).includes('{version}', { message: 'the image template must contain {version}' }),
    /** Pods serving production: N, shared between stable and canary. */
    fleetSize: z.number().int().min(1).max(1000),
    traffic: z.enum(['replicas', 'gatewayAPI']).default('replicas'),
    /** `traffic: gatewayAPI`: the HTTPRoute and the backendRefs (Services) of each track. */
    httpRoute: z.strictObject({ name: dnsLabel, stableBackend: dnsLabel, canaryBackend: dnsLabel }).optional(),
    /** `traffic: gatewayAPI`: the canary's share of requests; without it, its share of pods. */
    canaryWeight: z.number().gt(0).lt(100).optional(),
    staging: z
      .strictObject({
        namespace: dnsLabel.optional(),
        deployment: deploymentName.optional(),
        replicas: z.number().int().min(1).max(100).default(1),
      })
      .prefault({}),
    kubeconfig: z.string().min(1).optional(),
    context: z.string().min(1).optional(),
    inCluster: z.boolean().optional(),
    timeouts: z
      .strictObject({
        readyMs: z.number().int().positive().max(540_000).default(300_000),
        pollMs: z.number().int().positive().default(1_000),
        podFailureMs: z.number().int().nonnegative().default(30_000),
      })
      .prefault({}),
  })
  .superRefine((o, ctx) => {
    if (o.traffic === 'gatewayAPI' && !o.httpRoute)
      ctx.addIssue({ code: 'custom', path: ['httpRoute'], message: 'traffic: gatewayAPI needs an httpRoute' });
    if (o.traffic === 'replicas' && o.fleetSize < 2)
      ctx.addIssue({ code: 'custom', path: ['fleetSize'], message: 'traffic: replicas needs at least 2 pods' });
    if ((o.staging.namespace ?? o.namespace) === o.namespace && (o.staging.deployment ?? o.deployment) === o.deployment)
      ctx.addIssue({
        code: 'custom',
        path: ['staging'],
        message: 'staging needs its own namespace or Deployment, not the production one',
      });
  });
export type KubernetesOptions = z.output<typeof kubernetesOptionsSchema>;
/** What a targets file entry (or a caller) gives: defaults left out. */
export type KubernetesOptionsInput = z.input<typeof kubernetesOptionsSchema>;

/** A step that cannot succeed as the cluster stands: retrying cannot help, so Temporal does not; the release rolls back. */
export class KubernetesStepError extends ApplicationFailure {
  override readonly name = 'KubernetesStepError';
  constructor(message: string, type = 'KubernetesStepError') {
    super(message, type, true);
  }
}

export class KubernetesTarget implements DeploymentTarget {
  readonly kind = 'kubernetes';
  readonly options: KubernetesOptions;
  readonly api: KubernetesApi;
  private readonly log: Logger;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(input: KubernetesOptionsInput, deps: { logger: Logger; api?: KubernetesApi }) {
    this.options = kubernetesOptionsSchema.parse(input);
    this.api = deps.api ?? kubernetesApi(this.options);
    this.log = deps.logger.child({ target: this.kind, service: this.options.service });
  }

  private readCanary(): Promise<V1Deployment | undefined> {
    return this.api.getDeployment(this.options.namespace, this.canaryName);
  }

  private get canaryName() {
    return `${this.options.deployment}-canary`;
  }

  apply(step: DeployStep): Promise<DeployReceipt> {
    this.checkService(step.service);
    return this.exclusive(() =>
      failStep(() => (step.track === 'staging' ? this.applyStaging(step) : this.applyExposure(step))),
    );
  }

  undo(step: DeployStep): Promise<DeployReceipt> {
    this.checkService(step.service);
    return this.exclusive(() => (step.track === 'staging' ? this.undoStaging(step) : this.undoExposure(step)));
  }

  async stableVersion(service: string): Promise<string | undefined> {
    if (service !== this.options.service) return undefined;
    const stable = await this.api.getDeployment(this.options.namespace, this.options.deployment);
    if (!stable?.spec) return undefined;
    const recorded = stable.metadata?.annotations?.[ANNOTATION.stableVersion];
    if (recorded) return recorded;
    // Before Tollgate's first release: the version the image template reads off the running image.
    const image = stable.spec.template.spec?.containers.find((c) => c.name === this.options.container)?.image;
    const [before, after] = this.options.image.split('{version}') as [string, string];
    if (!image?.startsWith(before) || !image.endsWith(after)) return undefined;
    return image.slice(before.length, image.length - after.length) || undefined;
  }

  /** Promotion: the stable Deployment runs `version` on all N pods, the route sends it everything, the canary goes. */
  markStable(service: string, version: string): Promise<void> {
    this.checkService(service);
    return this.exclusive(() =>
      failStep(async () => {
        const stable = await this.readStable();
        const drift = driftOf(stable, this.options.container);
        if (drift) throw new KubernetesStepError(drift, 'KubernetesDrift');
        const next = structuredClone(stable);
        next.spec!.replicas = this.options.fleetSize;
        retarget(next.spec!, this.change(version, 'stable'));
        next.metadata!.annotations = { ...next.metadata!.annotations, [ANNOTATION.stableVersion]: version };
        await this.write(stable, next, `mark-stable:${version}`, null);
        if (this.options.httpRoute) await this.setWeights(percentWeights(0));
        await this.removeCanary(await this.readCanary());
      }),
    );
  }

  /**
   * Nothing to stop in either traffic mode. With the Gateway API the previous version's warm pods are the stable
   * Deployment's own. After a clean watch `markStable`, called right after, rolls them onto the new version and removes
   * the canary, so scaling them down in between would gain nothing and leave the route's stable backend empty until
   * then; after a rollback the undo has already switched back to them and removed the canary. With `replicas` nothing
   * was kept. Only reads: the ledger tells the two cases apart, for the receipt.
   */
  async retirePrevious(step: DeployStep): Promise<DeployReceipt> {
    this.checkService(step.service);
    const receipt = (line: string) => ({ key: step.key, applied: false, changes: [`nothing to stop: ${line}`] });
    if (this.options.traffic === 'replicas')
      return receipt('the previous version was not kept warm (traffic: replicas moves requests by pods)');
    const stable = await this.api.getDeployment(this.options.namespace, this.options.deployment);
    if (!stable) return receipt(`${this.stableLabel()} is gone`);
    const kept = `${this.stableLabel()} kept ${step.stableVersion ?? 'its pre-release version'} warm on its own pods`;
    let ledger: Ledger | undefined;
    try {
      ledger = readLedger(stable);
    } catch {
      // An edited ledger cannot say which case this is; what there is to stop is the same in both.
      return receipt(kept);
    }
    const standing = ledger?.releaseId === step.releaseId && heldExposure(ledger) !== undefined;
    return receipt(
      standing
        ? `${kept}; promotion rolls them onto ${step.version} and removes the canary`
        : `${kept}; no step of this release stands, they serve as before it`,
    );
  }

  private async applyExposure(step: DeployStep): Promise<DeployReceipt> {
    const stable = await this.readStable();
    const ledger = await this.ledgerFor(stable, step.releaseId);
    const entry = ledger.steps[step.key];
    if (entry?.status === 'undone')
      return { key: step.key, applied: false, changes: ['undone before; not applied again'] };
    const exposure =
      entry?.exposure ??
      exposureFor(
        { track: step.track as 'canary' | 'production', ...pick(step) },
        {
          fleetSize: this.options.fleetSize,
          traffic: this.options.traffic,
          ...(this.options.canaryWeight !== undefined && { canaryWeight: this.options.canaryWeight }),
        },
      );
    if (exposure.canaryReplicas > this.options.fleetSize)
      throw new KubernetesStepError(
        `step ${step.key} asks for more than the ${this.options.fleetSize} pods of the fleet`,
      );
    ledger.steps[step.key] = { status: 'applied', exposure };
    const changes = await this.converge(stable, ledger, exposure, step, { strict: true });
    if (step.keepPrevious)
      changes.push(
        previousWarmth(this.options.traffic, exposure, {
          deployment: this.stableLabel(),
          version: step.stableVersion,
        }),
      );
    return { key: step.key, applied: entry === undefined, changes };
  }

  private async undoExposure(step: DeployStep): Promise<DeployReceipt> {
    const stable = await this.api.getDeployment(this.options.namespace, this.options.deployment);
    if (!stable) {
      await this.removeCanary(await this.readCanary());
      return { key: step.key, applied: false, changes: [`${this.stableLabel()} is gone; removed the canary`] };
    }
    const ledger = await this.ledgerFor(stable, step.releaseId);
    const was = ledger.steps[step.key];
    ledger.steps[step.key] = { status: 'undone', exposure: was?.exposure ?? { canaryReplicas: 0, stableReplicas: 0 } };
    // Steps are undone latest first: the cluster goes back to what the release's earlier steps still hold.
    const changes = await this.converge(stable, ledger, heldExposure(ledger), step, { strict: false });
    return { key: step.key, applied: was?.status === 'applied' || changes.length > 0, changes };
  }

  /**
   * Brings canary, route and stable to `exposure` (none: the pre-release state), never below N serving pods: widening
   * starts the canary's pods first, narrowing gives the stable Deployment its pods back first. `strict`: a Deployment
   * someone else changed fails the step; otherwise (undo) it is left alone and named, and the canary still goes.
   */
  private async converge(
    stable: V1Deployment,
    ledger: Ledger,
    exposure: Exposure | undefined,
    step: DeployStep,
    { strict }: { strict: boolean },
  ): Promise<string[]> {
    const changes: string[] = [];
    const canary = await this.readCanary();
    // A canary left by an earlier release that never finished is Tollgate's to replace, not someone else's change.
    const canaryDrift = canary?.metadata?.annotations?.[ANNOTATION.step]?.startsWith(`${step.releaseId}/`)
      ? driftOf(canary, this.options.container)
      : undefined;
    const stableDrift = this.driftIn(stable, step.releaseId);
    if (strict && (canaryDrift || stableDrift))
      throw new KubernetesStepError((canaryDrift || stableDrift)!, 'KubernetesDrift');
    const before = (ledger.before ?? stable.spec) as V1DeploymentSpec;
    const nextStable = structuredClone(stable);
    if (exposure) nextStable.spec!.replicas = exposure.stableReplicas;
    else nextStable.spec = structuredClone(before);
    const writeStable = async () => {
      if (stableDrift) {
        changes.push(`${stableDrift}: left as it is`);
        await this.writeLedger(stable, ledger);
      } else if (await this.write(stable, nextStable, step.key, ledger)) {
        changes.push(`${this.stableLabel()}: ${nextStable.spec!.replicas ?? 1} pod(s)`);
      }
    };
    const widening = (exposure?.canaryReplicas ?? 0) >= (canary?.spec?.replicas ?? 0);
    if (widening && exposure) {
      changes.push(...(await this.writeCanary(canary, before, exposure.canaryReplicas, step)));
      if (exposure.canaryWeight !== undefined)
        changes.push(await this.setWeights(percentWeights(exposure.canaryWeight)));
      await writeStable();
      return changes;
    }
    await writeStable();
    if (this.options.httpRoute) {
      const weights =
        exposure?.canaryWeight !== undefined ? percentWeights(exposure.canaryWeight) : ledger.weightsBefore;
      changes.push(await this.setWeights(weights ?? percentWeights(0)));
    }
    if (exposure && !canaryDrift)
      changes.push(...(await this.writeCanary(canary, before, exposure.canaryReplicas, step)));
    else if (canary) {
      await this.removeCanary(canary);
      changes.push(`${nameOf(canary)} removed`);
    }
    return changes;
  }

  /** Creates or resizes the canary Deployment on the step's version and waits for its pods. */
  private async writeCanary(
    canary: V1Deployment | undefined,
    base: V1DeploymentSpec,
    replicas: number,
    step: DeployStep,
  ): Promise<string[]> {
    const meta = { name: this.canaryName, namespace: this.options.namespace };
    let next: V1Deployment;
    if (canary) {
      next = structuredClone(canary);
      next.spec!.replicas = replicas;
      retarget(next.spec!, this.change(step.version, 'canary'));
    } else {
      next = trackDeployment(base, meta, { ...this.change(step.version, 'canary'), replicas });
    }
    const wrote = await this.write(canary, next, step.key);
    return wrote ? [`Deployment ${meta.namespace}/${meta.name}: ${replicas} pod(s) of ${step.version} (canary)`] : [];
  }

  private async applyStaging(step: DeployStep): Promise<DeployReceipt> {
    const { namespace, name } = this.stagingRef();
    const current = await this.api.getDeployment(namespace, name);
    const ledger: Ledger = (current && this.ledgerOf(current)) ?? { releaseId: step.releaseId, steps: {} };
    if (ledger.releaseId !== step.releaseId)
      Object.assign(ledger, { releaseId: step.releaseId, steps: {}, created: undefined });
    if (!current) ledger.created = true;
    if (ledger.steps[step.key]?.status === 'undone')
      return { key: step.key, applied: false, changes: ['undone before; not applied again'] };
    const applied = ledger.steps[step.key] !== undefined;
    ledger.steps[step.key] = { status: 'applied', exposure: { canaryReplicas: 0, stableReplicas: 0 } };
    let next: V1Deployment;
    if (current) {
      const drift = this.driftIn(current, step.releaseId);
      if (drift) throw new KubernetesStepError(drift, 'KubernetesDrift');
      ledger.before ??= current.spec as unknown as Record<string, unknown>;
      next = structuredClone(current);
      next.spec!.replicas = this.options.staging.replicas;
      retarget(next.spec!, this.change(step.version, 'staging'));
    } else {
      const base = (await this.readStable()).spec!;
      next = trackDeployment(
        base,
        { namespace, name },
        {
          ...this.change(step.version, 'staging'),
          replicas: this.options.staging.replicas,
        },
      );
    }
    await this.write(current, next, step.key, ledger);
    return {
      key: step.key,
      applied: !applied,
      changes: [`Deployment ${namespace}/${name} → ${step.version} (staging)`],
    };
  }

  private async undoStaging(step: DeployStep): Promise<DeployReceipt> {
    const { namespace, name } = this.stagingRef();
    const current = await this.api.getDeployment(namespace, name);
    const ledger = current && this.ledgerOf(current);
    if (!current || ledger?.releaseId !== step.releaseId || ledger.steps[step.key]?.status !== 'applied')
      return { key: step.key, applied: false, changes: [] };
    if (ledger.created) {
      await this.api.deleteDeployment(namespace, name);
      return { key: step.key, applied: true, changes: [`${nameOf(current)} removed`] };
    }
    ledger.steps[step.key]!.status = 'undone';
    const drift = this.driftIn(current, step.releaseId);
    if (drift) {
      await this.writeLedger(current, ledger);
      return { key: step.key, applied: true, changes: [`${drift}: left as it is`] };
    }
    const next = structuredClone(current);
    next.spec = structuredClone(ledger.before as unknown as V1DeploymentSpec);
    await this.write(current, next, step.key, ledger);
    return { key: step.key, applied: true, changes: [`${nameOf(current)}: its spec before the release`] };
  }

  /**
   * Writes `next` if it differs from `current` (a create when there is none), with Tollgate's bookkeeping, then
   * waits for its pods. A write based on a stale read is refused by the API server (the resourceVersion), never merged.
   * `ledger`: the release's ledger to keep on it; null removes it. Returns whether anything was written.
   */
  private async write(
    current: V1Deployment | undefined,
    next: V1Deployment,
    step: string,
    ledger?: Ledger | null,
  ): Promise<boolean> {
    const namespace = next.metadata!.namespace ?? this.options.namespace;
    const name = next.metadata!.name!;
    const body = stamped(next, current, {
      container: this.options.container,
      step,
      ...(ledger !== undefined && { ledger }),
    });
    const wrote = !current || JSON.stringify(body) !== JSON.stringify(current);
    if (wrote) {
      const written = current ? await this.replace(namespace, body) : await this.api.createDeployment(namespace, body);
      this.log.info(
        { deployment: `${namespace}/${name}`, generation: written.metadata?.generation, step },
        'wrote Deployment',
      );
    }
    await this.waitReady(namespace, name, next.spec!);
    return wrote;
  }

  /** Someone else's change stays untouched and still counts as theirs (no new stamp): only the ledger moves. */
  private async writeLedger(current: V1Deployment, ledger: Ledger): Promise<void> {
    const body = structuredClone(current);
    body.metadata!.annotations = { ...current.metadata?.annotations, [ANNOTATION.release]: JSON.stringify(ledger) };
    await this.replace(body.metadata!.namespace ?? this.options.namespace, body);
  }

  /**
   * The controller writes a Deployment's status while it rolls out, which moves its resourceVersion: on a conflict
   * the write goes again on the fresh object, but only if its spec (generation) is still the one the step read. A
   * rollout in progress can move it again between the read and the write, so a few conflicts in a row are expected.
   */
  private async replace(namespace: string, body: V1Deployment): Promise<V1Deployment> {
    const read = Number(body.metadata!.annotations?.[ANNOTATION.generation] ?? 0);
    let attempt = body;
    for (let conflicts = 0; ; conflicts++) {
      try {
        return await this.api.replaceDeployment(namespace, attempt);
      } catch (err) {
        if (!(err instanceof KubernetesApiError && err.code === 409) || conflicts >= CONFLICT_RETRIES) throw err;
      }
      const fresh = await this.api.getDeployment(namespace, body.metadata!.name!);
      if (!fresh || (fresh.metadata?.generation ?? 0) + 1 < read)
        throw new KubernetesStepError(`${nameOf(body)} changed while the step ran`, 'KubernetesDrift');
      attempt = { ...body, metadata: { ...body.metadata, resourceVersion: fresh.metadata?.resourceVersion } };
    }
  }

  private waitReady(namespace: string, name: string, spec: V1DeploymentSpec): Promise<void> {
    const podSelector = labelSelector(spec.selector.matchLabels ?? {});
    return waitForRollout(namespace, name, { api: this.api, ...this.options.timeouts, podSelector });
  }

  /** Sets the backendRef weights of every rule of the HTTPRoute that has both tracks' backends. */
  private async setWeights(weights: Weights): Promise<string> {
    const { namespace, httpRoute } = this.options;
    const ref = httpRoute!;
    const route = await this.api.getRoute(namespace, ref.name);
    const pairs = backendPairs(route, ref);
    if (pairs.length === 0)
      throw new KubernetesStepError(
        `HTTPRoute ${namespace}/${ref.name} has no rule with both backendRefs ${ref.stableBackend} and ${ref.canaryBackend}`,
      );
    for (const [stable, canary] of pairs) {
      stable.weight = weights.stable;
      canary.weight = weights.canary;
    }
    await this.api.replaceRoute(namespace, route);
    const share = (100 * weights.canary) / (weights.stable + weights.canary || 1);
    return `HTTPRoute ${namespace}/${ref.name}: ${Math.round(share * 100) / 100}% to ${ref.canaryBackend}`;
  }

  /** The route's weights as they are (the ledger's pre-release state, put back exactly by a full undo). */
  private async routeWeights(): Promise<Weights> {
    const { namespace, httpRoute } = this.options;
    const pair = backendPairs(await this.api.getRoute(namespace, httpRoute!.name), httpRoute!)[0];
    // An unset weight is 1 (Gateway API's default).
    return pair ? { stable: pair[0].weight ?? 1, canary: pair[1].weight ?? 1 } : percentWeights(0);
  }

  /** Deletes the canary Deployment and waits until none of its pods serves. */
  private async removeCanary(canary: V1Deployment | undefined): Promise<void> {
    const { namespace } = this.options;
    if (!canary) return;
    await this.api.deleteDeployment(namespace, this.canaryName);
    const selector = labelSelector(canary.spec?.selector.matchLabels ?? { [LABEL.track]: 'canary' });
    const deadline = Date.now() + this.options.timeouts.readyMs;
    while ((await this.api.listPods(namespace, selector)).length > 0) {
      if (Date.now() > deadline)
        throw new RolloutFailedError(`pods of ${nameOf(canary)} still running after its deletion`);
      await new Promise((resolve) => setTimeout(resolve, this.options.timeouts.pollMs));
    }
  }

  /** This release's ledger on the stable Deployment, or a new one holding the spec and weights before its first step. */
  private async ledgerFor(stable: V1Deployment, releaseId: string): Promise<Ledger> {
    const ledger = this.ledgerOf(stable);
    if (ledger?.releaseId === releaseId) return ledger;
    return {
      releaseId,
      before: structuredClone(stable.spec) as unknown as Record<string, unknown>,
      ...(this.options.httpRoute && { weightsBefore: await this.routeWeights() }),
      steps: {},
    };
  }

  private ledgerOf(d: V1Deployment): Ledger | undefined {
    try {
      return readLedger(d);
    } catch (err) {
      throw new KubernetesStepError((err as Error).message);
    }
  }

  /** Someone else's change, but only once this release has written the Deployment: before that, its state is the start. */
  private driftIn(d: V1Deployment, releaseId: string): string | undefined {
    return this.ledgerOf(d)?.releaseId === releaseId ? driftOf(d, this.options.container) : undefined;
  }

  private async readStable(): Promise<V1Deployment> {
    const stable = await this.api.getDeployment(this.options.namespace, this.options.deployment);
    if (!stable?.spec) throw new KubernetesStepError(`${this.stableLabel()} not found: create it before a release`);
    try {
      findContainer(stable.spec, this.options.container);
    } catch (err) {
      throw new KubernetesStepError(`${this.stableLabel()} ${(err as Error).message}`);
    }
    return stable;
  }

  private change(version: string, track: PodTrack) {
    if (!isLabelValue(version))
      throw new KubernetesStepError(
        `version ${version} cannot be a Kubernetes label value (letters, digits, ".", "_", "-")`,
      );
    return {
      container: this.options.container,
      image: this.options.image.replaceAll('{version}', version),
      version,
      track,
    };
  }

  private stagingRef() {
    const { staging, namespace, deployment } = this.options;
    return { namespace: staging.namespace ?? namespace, name: staging.deployment ?? deployment };
  }

  private stableLabel() {
    return `Deployment ${this.options.namespace}/${this.options.deployment}`;
  }

  private checkService(service: string): void {
    if (service !== this.options.service)
      throw new KubernetesStepError(`this kubernetes target deploys ${this.options.service}, not ${service}`);
  }

  /** One step at a time per service in this worker; across workers, the resourceVersion on every write. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** Status-only writes by the controller that a write may meet in a row before the step fails (and is retried). */
const CONFLICT_RETRIES = 5;

/** A rollout that failed for good fails the step without retries: the release rolls back with Kubernetes' reason. */
async function failStep<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof RolloutFailedError) throw new KubernetesStepError(err.message, 'KubernetesRolloutFailed');
    // Forbidden, invalid, not found: the API server's answer will not change by asking again.
    if (err instanceof KubernetesApiError && err.code !== undefined && err.code < 500 && ![409, 429].includes(err.code))
      throw new KubernetesStepError(err.message, 'KubernetesRefused');
    throw err;
  }
}

interface Weights {
  stable: number;
  canary: number;
}

/** Weights are integers: a share in hundredths of a percent keeps any percentage the policy can name exact. */
const percentWeights = (canaryPercent: number): Weights => {
  const canary = Math.round(canaryPercent * 100);
  return { stable: 10_000 - canary, canary };
};

type BackendRef = NonNullable<NonNullable<HttpRoute['spec']['rules']>[number]['backendRefs']>[number];

function backendPairs(
  route: HttpRoute,
  ref: { stableBackend: string; canaryBackend: string },
): [BackendRef, BackendRef][] {
  const pairs: [BackendRef, BackendRef][] = [];
  for (const rule of route.spec.rules ?? []) {
    const stable = rule.backendRefs?.find((b) => b.name === ref.stableBackend);
    const canary = rule.backendRefs?.find((b) => b.name === ref.canaryBackend);
    if (stable && canary) pairs.push([stable, canary]);
  }
  return pairs;
}

const labelSelector = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

const pick = (step: DeployStep) => ({
  ...(step.canaryInstances !== undefined && { canaryInstances: step.canaryInstances }),
  ...(step.percent !== undefined && { percent: step.percent }),
});
