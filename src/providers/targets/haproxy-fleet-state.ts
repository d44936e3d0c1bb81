import { randomUUID } from 'node:crypto';
import { appendFile, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { isAlive } from './fleet-process';
import { readStateFile, writeAtomic } from './state-file';

/**
 * What the fleet target remembers between calls and across worker restarts: the instances it runs
 * (PID, port, HAProxy slot), the steps it applied, and the service's stable version. One JSON file,
 * replaced atomically; every change to the fleet is also appended to a JSONL action log.
 */

export const INSTANCE_TRACKS = ['stable', 'canary', 'staging'] as const;
export type InstanceTrack = (typeof INSTANCE_TRACKS)[number];

const instanceSchema = z.object({
  id: z.string(),
  version: z.string(),
  track: z.enum(INSTANCE_TRACKS),
  port: z.number().int(),
  pid: z.number().int(),
  /** The HAProxy server slot; null for the staging instance, which is not behind the production frontend. */
  slot: z.string().nullable(),
  /**
   * starting: spawned, not yet enabled; serving: enabled (or staging, up); retiring: drained, about to stop;
   * warm: out of rotation but running, its slot in HAProxy's drain state (still health-checked), so undoing the step
   * that replaced it is a switch back rather than a cold start.
   */
  status: z.enum(['starting', 'serving', 'retiring', 'warm']),
  startedAt: z.string(),
  /** Only on a warm instance: the step that kept it, and its release, whose `retirePrevious` stops it. */
  kept: z.object({ by: z.string(), releaseId: z.string(), since: z.string() }).optional(),
});
export type Instance = z.infer<typeof instanceSchema>;

const stepRecordSchema = z.object({
  version: z.string(),
  status: z.enum(['in-progress', 'applied', 'undone']),
  startedAt: z.string(),
  /**
   * Each instance this step started on `version`, and what the one it replaced ran (null: nothing ran
   * there, e.g. the first staging instance). Undo reads this to know how much to put back.
   */
  replaced: z.array(z.object({ instance: z.string(), staging: z.boolean(), fromVersion: z.string().nullable() })),
  /** Fleet instances on `version` once the step is done; what undoing a later step comes back to. */
  size: z.number().int().min(0).optional(),
  changes: z.array(z.string()),
});
export type StepRecord = z.infer<typeof stepRecordSchema>;

const stateSchema = z.object({
  schemaVersion: z.literal(1),
  service: z.string(),
  stableVersion: z.string().optional(),
  nextInstance: z.number().int().positive(),
  nextPort: z.number().int().positive(),
  instances: z.array(instanceSchema),
  steps: z.record(z.string(), stepRecordSchema),
});
export type FleetState = z.infer<typeof stateSchema>;

export type ActionName =
  | 'start'
  | 'enable'
  | 'drain'
  | 'disable'
  | 'stop'
  | 'adopt'
  | 'step-applied'
  | 'step-undone'
  | 'mark-stable'
  /** An instance taken out of rotation and left running (slot drained); `switch-back` puts it in rotation again. */
  | 'keep-warm'
  | 'switch-back'
  | 'retire-previous';
export interface Action {
  action: ActionName;
  /** The step key the action belongs to ("reconcile" or "mark-stable:<version>" for the target's own work). */
  key: string;
  instance?: string;
  version?: string;
  track?: InstanceTrack;
  slot?: string | null;
  port?: number;
  pid?: number;
}

/** The state file cannot be read: corrupt, or written by an incompatible version. Never guessed around. */
export class FleetStateError extends Error {
  override readonly name = 'FleetStateError';
}

/** Another process holds the fleet lock for longer than we are willing to wait. */
export class FleetBusyError extends Error {
  override readonly name = 'FleetBusyError';
}

export interface FileSdTarget {
  targets: string[];
  labels: { service: string; version: string; instance: string; track: InstanceTrack };
}

export class FleetStateStore {
  readonly statePath: string;
  readonly actionLogPath: string;
  private readonly lockPath: string;

  constructor(
    readonly stateDir: string,
    private readonly service: string,
    private readonly basePort: number,
    private readonly fileSdPath: string | undefined,
    private readonly host: string,
  ) {
    this.statePath = join(stateDir, `${service}.state.json`);
    this.actionLogPath = join(stateDir, `${service}.actions.jsonl`);
    this.lockPath = join(stateDir, `${service}.lock`);
  }

  async load(): Promise<FleetState> {
    const saved = await readStateFile(this.statePath, stateSchema, (message) => new FleetStateError(message));
    if (!saved) return this.empty();
    if (saved.service !== this.service) {
      throw new FleetStateError(`${this.statePath} belongs to service ${saved.service}, not ${this.service}`);
    }
    return saved;
  }

  /** Writes the state, then the Prometheus file_sd list derived from it, each by rename so readers never see half a file. */
  async save(state: FleetState): Promise<void> {
    await writeAtomic(this.statePath, `${JSON.stringify(state, null, 2)}\n`);
    if (this.fileSdPath)
      await writeAtomic(this.fileSdPath, `${JSON.stringify(fileSdTargets(state, this.host), null, 2)}\n`);
  }

  async record(action: Action): Promise<void> {
    await mkdir(this.stateDir, { recursive: true });
    await appendFile(this.actionLogPath, `${JSON.stringify({ at: new Date().toISOString(), ...action })}\n`);
  }

  async readActions(): Promise<(Action & { at: string })[]> {
    try {
      const text = await readFile(this.actionLogPath, 'utf8');
      return text
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as Action & { at: string });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /**
   * Cross-process lock (a retried activity may run on a second worker while the first attempt is still
   * going). A lock whose owner died is taken over; the wait is bounded.
   */
  async withLock<T>(fn: () => Promise<T>, waitMs: number): Promise<T> {
    await mkdir(this.stateDir, { recursive: true });
    const token = `${process.pid} ${randomUUID()}`;
    const deadline = Date.now() + waitMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await open(this.lockPath, 'wx');
        await handle.writeFile(token);
        await handle.close();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = Number((await readFile(this.lockPath, 'utf8').catch(() => '')).split(' ')[0]);
        if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && !(await isAlive(owner))) {
          await unlink(this.lockPath).catch(() => undefined);
          continue;
        }
        if (Date.now() > deadline || attempt > 10_000) {
          throw new FleetBusyError(`fleet ${this.service} is locked by process ${owner} (${this.lockPath})`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    try {
      return await fn();
    } finally {
      const current = await readFile(this.lockPath, 'utf8').catch(() => '');
      if (current === token) await unlink(this.lockPath).catch(() => undefined);
    }
  }

  private empty(): FleetState {
    return {
      schemaVersion: 1,
      service: this.service,
      nextInstance: 1,
      nextPort: this.basePort,
      instances: [],
      steps: {},
    };
  }
}

/** The instances Prometheus should scrape: everything that has a process, labelled as its process labels itself. */
export function fileSdTargets(state: FleetState, host: string): FileSdTarget[] {
  return state.instances
    .filter((i) => i.status !== 'starting')
    .map((i) => ({
      targets: [`${host}:${i.port}`],
      labels: { service: state.service, version: i.version, instance: i.id, track: i.track },
    }));
}
