import { join } from 'node:path';
import { z } from 'zod';
import { readStateFile, withFileLock, writeAtomic } from './state-file';
import type { DeploymentTarget, DeployReceipt, DeployStep } from './types';

export const DRY_RUN_KIND = 'dry-run';

export interface DryRunAction {
  at: string;
  action: 'apply' | 'undo' | 'mark-stable';
  key: string;
  service: string;
  version: string;
  detail: string;
}

export interface DryRunOptions {
  /**
   * Where the stable versions and applied step keys live, shared by every worker given the same directory. Without
   * one they live in this object only: each worker has its own idea of them, lost when it stops.
   */
  stateDir?: string;
  /** How long to wait for another worker's hold on the state file. */
  lockWaitMs?: number;
}

/** The state file cannot be read: corrupt, or written by an incompatible version. Never guessed around. */
export class DryRunStateError extends Error {
  override readonly name = 'DryRunStateError';
}

/**
 * Maps, not records: service names such as `constructor` or `__proto__` are valid. Steps: every key ever applied, and
 * whether it is still applied; a key never applies twice, even after undo, so a late retry cannot redeploy.
 */
interface DryRunState {
  stable: Map<string, string>;
  steps: Map<string, 'applied' | 'undone'>;
}

/** On disk as entry lists, for the same reason the state holds maps. */
const stateFileSchema = z.object({
  schemaVersion: z.literal(1),
  stable: z.array(z.tuple([z.string(), z.string()])),
  steps: z.array(z.tuple([z.string(), z.enum(['applied', 'undone'])])),
});

interface StateStore {
  read(): Promise<DryRunState>;
  /** Runs `change` on the current state and keeps what it leaves, as one step no other worker interleaves with. */
  update<T>(change: (state: DryRunState) => T): Promise<T>;
}

const emptyState = (): DryRunState => ({ stable: new Map(), steps: new Map() });

class MemoryStore implements StateStore {
  private readonly state = emptyState();
  read = () => Promise.resolve(this.state);
  update = <T>(change: (state: DryRunState) => T) => Promise.resolve(change(this.state));
}

class FileStore implements StateStore {
  private readonly path: string;
  private readonly lockPath: string;

  constructor(
    stateDir: string,
    private readonly lockWaitMs: number,
  ) {
    this.path = join(stateDir, 'dry-run.state.json');
    this.lockPath = join(stateDir, 'dry-run.lock');
  }

  async read(): Promise<DryRunState> {
    const saved = await readStateFile(this.path, stateFileSchema, (message) => new DryRunStateError(message));
    return saved ? { stable: new Map(saved.stable), steps: new Map(saved.steps) } : emptyState();
  }

  update<T>(change: (state: DryRunState) => T): Promise<T> {
    return withFileLock(this.lockPath, this.lockWaitMs, async () => {
      const state = await this.read();
      const before = serialise(state);
      const result = change(state);
      const after = serialise(state);
      if (after !== before) await writeAtomic(this.path, after);
      return result;
    });
  }
}

const serialise = (state: DryRunState) =>
  `${JSON.stringify({ schemaVersion: 1, stable: [...state.stable], steps: [...state.steps] }, null, 1)}\n`;

const describe = (step: DeployStep) =>
  step.track === 'canary'
    ? `${step.canaryInstances ?? 1} canary instance(s) → ${step.version}`
    : step.track === 'production'
      ? `${step.percent ?? 100}% of production → ${step.version}`
      : `staging → ${step.version}`;

/**
 * Records what a release would do and changes nothing: for rehearsing policies, and the target of tests and
 * benchmarks. Idempotent like a real target: a key applies once, undo only reverts what was applied — across every
 * worker sharing its state dir.
 */
export class DryRunTarget implements DeploymentTarget {
  readonly kind = DRY_RUN_KIND;
  /** What this instance did (not other workers sharing its state). */
  readonly actions: DryRunAction[] = [];
  private readonly initialStable: ReadonlyMap<string, string>;
  private readonly store: StateStore;

  /** `initialStable`: what each service runs before any release marks a version stable. */
  constructor(initialStable: Record<string, string> = {}, { stateDir, lockWaitMs = 10_000 }: DryRunOptions = {}) {
    this.initialStable = new Map(Object.entries(initialStable));
    this.store = stateDir === undefined ? new MemoryStore() : new FileStore(stateDir, lockWaitMs);
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

  async apply(step: DeployStep): Promise<DeployReceipt> {
    const applies = await this.store.update((s) => {
      if (s.steps.has(step.key)) return false;
      s.steps.set(step.key, 'applied');
      return true;
    });
    if (!applies) return { key: step.key, applied: false, changes: [] };
    const detail = describe(step);
    this.record('apply', step, detail);
    return { key: step.key, applied: true, changes: [detail] };
  }

  async undo(step: DeployStep): Promise<DeployReceipt> {
    const reverts = await this.store.update((s) => {
      if (s.steps.get(step.key) !== 'applied') return false;
      s.steps.set(step.key, 'undone');
      return true;
    });
    if (!reverts) return { key: step.key, applied: false, changes: [] };
    const detail = `${describe(step)} reverted to ${step.stableVersion ?? 'nothing'}`;
    this.record('undo', step, detail);
    return { key: step.key, applied: true, changes: [detail] };
  }

  async stableVersion(service: string): Promise<string | undefined> {
    return (await this.store.read()).stable.get(service) ?? this.initialStable.get(service);
  }

  async markStable(service: string, version: string): Promise<void> {
    await this.store.update((s) => void s.stable.set(service, version));
    this.record('mark-stable', { key: `${service}/stable`, service, version }, `${version} is stable`);
  }
}
