import type { Track } from '../../domain/release';

/** One change to a fleet, named so that applying it twice is a no-op. */
export interface DeployStep {
  /** `<releaseId>/<step>`, unique per release and step: the idempotency key. */
  key: string;
  releaseId: string;
  service: string;
  version: string;
  /** What `undo` puts back: the last known stable version (undefined for a service's first release). */
  stableVersion: string | undefined;
  track: Track;
  /** canary: instances in the canary pool; production: share of the fleet on `version` once the step is done. */
  canaryInstances?: number;
  percent?: number;
  /**
   * Canary and production steps of a release whose production is watched: the previous version's instances this
   * step takes out of rotation keep running, warm, so undoing the step is a traffic switch rather than a cold start.
   * `retirePrevious` stops them once the watch has passed. A target that cannot keep them does the step cold and
   * says so in the receipt.
   */
  keepPrevious?: true;
}

export interface DeployReceipt {
  key: string;
  /** False when the step had already been applied (a retried or replayed deploy). */
  applied: boolean;
  /** Human-readable summary, e.g. "web-3 → 1.4.2 (canary)". */
  changes: string[];
}

/** How the activity running a step can stop it: cancelled, the target gives up (a command's process group is killed). */
export interface StepOptions {
  signal?: AbortSignal;
}

/** Where releases land. Small on purpose (Argo Rollouts' SetWeight/VerifyWeight spirit). */
export interface DeploymentTarget {
  readonly kind: string;
  apply(step: DeployStep, options?: StepOptions): Promise<DeployReceipt>;
  /** Reverts what `apply(step)` did, back to `step.stableVersion`; safe to call again, or for a step never applied. */
  undo(step: DeployStep, options?: StepOptions): Promise<DeployReceipt>;
  /** The version the service's production fleet treats as stable, if the target knows one. */
  stableVersion(service: string): Promise<string | undefined>;
  /** Called once a release is promoted: `version` becomes the service's last known stable version. */
  markStable(service: string, version: string): Promise<void>;
  /**
   * Stops what this release's `keepPrevious` steps kept warm (`step.key` is `<releaseId>/retire-previous`): called
   * once production has been watched clean, and after a rollback for whatever the switch back did not need. Safe to
   * call again, and when nothing was kept. A target that never keeps anything leaves it out.
   */
  retirePrevious?(step: DeployStep, options?: StepOptions): Promise<DeployReceipt>;
  /**
   * Only for a target that sends each service to another one: the target serving `service`, so a release can say
   * where it really deploys (e.g. that it changes nothing, on dry-run). Throws when no target serves it.
   */
  targetFor?(service: string): DeploymentTarget;
}
