import type { DeploymentTarget, DeployReceipt, DeployStep } from './types';

export interface DryRunAction {
  at: string;
  action: 'apply' | 'undo' | 'mark-stable';
  key: string;
  service: string;
  version: string;
  detail: string;
}

const describe = (step: DeployStep) =>
  step.track === 'canary'
    ? `${step.canaryInstances ?? 1} canary instance(s) → ${step.version}`
    : step.track === 'production'
      ? `${step.percent ?? 100}% of production → ${step.version}`
      : `staging → ${step.version}`;

/**
 * Records what a release would do and changes nothing: for rehearsing policies, and the target of tests and
 * benchmarks. Idempotent like a real target: a key applies once, undo only reverts what was applied.
 */
export class DryRunTarget implements DeploymentTarget {
  readonly kind = 'dry-run';
  readonly actions: DryRunAction[] = [];
  /** Every key ever applied: a key never applies twice, even after undo, so a late retry cannot redeploy. */
  private readonly seen = new Set<string>();
  private readonly applied = new Set<string>();
  private readonly stable = new Map<string, string>();

  constructor(initialStable: Record<string, string> = {}) {
    for (const [service, version] of Object.entries(initialStable)) this.stable.set(service, version);
  }

  private record(
    action: DryRunAction['action'],
    step: Pick<DeployStep, 'key' | 'service' | 'version'>,
    detail: string,
  ) {
    this.actions.push({
      at: new Date().toISOString(),
      action,
      key: step.key,
      service: step.service,
      version: step.version,
      detail,
    });
  }

  apply(step: DeployStep): Promise<DeployReceipt> {
    if (this.seen.has(step.key)) return Promise.resolve({ key: step.key, applied: false, changes: [] });
    this.seen.add(step.key);
    this.applied.add(step.key);
    const detail = describe(step);
    this.record('apply', step, detail);
    return Promise.resolve({ key: step.key, applied: true, changes: [detail] });
  }

  undo(step: DeployStep): Promise<DeployReceipt> {
    if (!this.applied.delete(step.key)) return Promise.resolve({ key: step.key, applied: false, changes: [] });
    const detail = `${describe(step)} reverted to ${step.stableVersion ?? 'nothing'}`;
    this.record('undo', step, detail);
    return Promise.resolve({ key: step.key, applied: true, changes: [detail] });
  }

  stableVersion(service: string): Promise<string | undefined> {
    return Promise.resolve(this.stable.get(service));
  }

  markStable(service: string, version: string): Promise<void> {
    this.stable.set(service, version);
    this.record('mark-stable', { key: `${service}/stable`, service, version }, `${version} is stable`);
    return Promise.resolve();
  }
}
