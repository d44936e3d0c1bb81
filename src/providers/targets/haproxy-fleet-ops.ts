import { join } from 'node:path';
import type { Logger } from '../../logger';
import {
  httpStatus,
  isOurInstance,
  portIsFree,
  processTable,
  renderCommand,
  spawnInstance,
  stopProcess,
  waitHealthy,
  waitUntil,
} from './fleet-process';
import type { FleetState, FleetStateStore, Instance, InstanceTrack } from './haproxy-fleet-state';
import type { HaproxyRuntime, ServerStat } from './haproxy-runtime';

/** The fleet cannot take the change: no free server slot, no free port. */
export class FleetCapacityError extends Error {
  override readonly name = 'FleetCapacityError';
}

export interface FleetTimeouts {
  /** Instance process up and answering its health check. */
  startMs: number;
  /** HAProxy's own health check marks a freshly enabled server UP. */
  upMs: number;
  /** A draining server's in-flight requests finish; past it the server is disabled anyway (its process still drains on SIGTERM). */
  drainMs: number;
  /** SIGTERM to exit, before SIGKILL. */
  stopMs: number;
}

export interface FleetOpsConfig {
  service: string;
  backend: string;
  host: string;
  basePort: number;
  portRange: number;
  stagingPort: number;
  healthPath: string;
  command: readonly string[];
  cwd: string | undefined;
  env: NodeJS.ProcessEnv | undefined;
  stateDir: string;
  timeouts: FleetTimeouts;
}

export interface ReconcileReport {
  adopted: string[];
  restarted: string[];
  /** Half-started instances from an interrupted step, stopped: re-applying the step starts them properly. */
  dropped: string[];
  /** Retirements an interrupted step left half done, finished. */
  retired: string[];
}

/**
 * The mechanics of a fleet behind HAProxy: start an instance and put it in a slot, drain and stop one,
 * and bring the fleet back in line with the state file. Each change is saved before the next one starts,
 * so a worker that dies half-way leaves a state that `reconcile` can finish from.
 */
export class FleetOps {
  constructor(
    private readonly cfg: FleetOpsConfig,
    private readonly runtime: HaproxyRuntime,
    private readonly store: FleetStateStore,
    private readonly log: Logger,
  ) {}

  /** Fleet members behind the frontend, in slot order. */
  fleet(state: FleetState): Instance[] {
    return state.instances
      .filter((i) => i.slot !== null && i.status === 'serving')
      .sort((a, b) => (a.slot ?? '').localeCompare(b.slot ?? '', 'en', { numeric: true }));
  }

  staging(state: FleetState): Instance | undefined {
    return state.instances.find((i) => i.slot === null);
  }

  /**
   * Starts `version` in a free slot, enables it once HAProxy sees it UP, then drains and stops `old`. The new instance
   * becomes a member in the same save that marks `old` retiring: a worker killed between the two would otherwise leave
   * both serving, one member too many that no later step takes out (a retried step counts it as done).
   */
  async replace(state: FleetState, old: Instance | undefined, version: string, track: InstanceTrack, key: string) {
    const slot = await this.freeSlot(state);
    const started = await this.start(state, { version, track, slot, key, replaces: old });
    if (old) await this.retire(state, old, key);
    return started;
  }

  /** The staging instance lives on its own fixed port, so it is stopped before its successor starts. */
  async replaceStaging(state: FleetState, version: string, key: string): Promise<Instance> {
    const old = this.staging(state);
    if (old) await this.retire(state, old, key);
    return this.start(state, { version, track: 'staging', slot: null, key, port: this.cfg.stagingPort });
  }

  async start(
    state: FleetState,
    spec: {
      version: string;
      track: InstanceTrack;
      slot: string | null;
      key: string;
      id?: string;
      port?: number;
      /** The instance this one takes over from: retiring from the moment this one serves. */
      replaces?: Instance | undefined;
    },
  ): Promise<Instance> {
    const id = spec.id ?? `${this.cfg.service}-${state.nextInstance++}`;
    const port = spec.port ?? (await this.allocatePort(state));
    const argv = renderCommand(this.cfg.command, {
      service: this.cfg.service,
      version: spec.version,
      port: String(port),
      instance: id,
      track: spec.track,
    });
    const instance: Instance = {
      id,
      version: spec.version,
      track: spec.track,
      port,
      pid: 0,
      slot: spec.slot,
      status: 'starting',
      startedAt: new Date().toISOString(),
    };
    // Saved before the process exists: a worker killed right after the spawn leaves a `starting` entry, which
    // reconcile stops (finding the process by its id), never a process nobody knows of.
    state.instances.push(instance);
    await this.store.save(state);
    try {
      const spawned = spawnInstance(argv, {
        logDir: join(this.cfg.stateDir, 'logs'),
        id,
        cwd: this.cfg.cwd,
        env: this.cfg.env,
      });
      instance.pid = spawned.pid;
      await this.store.save(state);
      await this.store.record({ action: 'start', key: spec.key, ...describe(instance) });
      await waitHealthy(spawned, this.healthUrl(port), this.cfg.timeouts.startMs);
      if (instance.slot !== null) await this.enable(instance, spec.key);
    } catch (err) {
      await this.forget(state, instance, spec.key);
      throw err;
    }
    instance.status = 'serving';
    if (spec.replaces) spec.replaces.status = 'retiring';
    await this.store.save(state);
    this.log.info({ ...describe(instance) }, 'instance serving');
    return instance;
  }

  /** Drain (no new requests, in-flight ones finish), disable, then SIGTERM: no request is cut. */
  async retire(state: FleetState, instance: Instance, key: string): Promise<void> {
    instance.status = 'retiring';
    await this.store.save(state);
    if (instance.slot !== null) {
      const slot = instance.slot;
      await this.runtime.setServerState(this.cfg.backend, slot, 'drain');
      await this.store.record({ action: 'drain', key, ...describe(instance) });
      const drained = await waitUntil(
        async () => (await this.slotStat(slot))?.currentSessions === 0,
        this.cfg.timeouts.drainMs,
        50,
      );
      if (!drained) this.log.warn({ ...describe(instance) }, 'drain timed out; disabling with requests in flight');
      await this.runtime.setServerState(this.cfg.backend, slot, 'maint');
      await this.store.record({ action: 'disable', key, ...describe(instance) });
    }
    const hows = await Promise.all((await pidsOf(instance)).map((pid) => stopProcess(pid, this.cfg.timeouts.stopMs)));
    const how = hows[0] ?? 'absent';
    await this.store.record({ action: 'stop', key, ...describe(instance) });
    state.instances = state.instances.filter((i) => i !== instance);
    await this.store.save(state);
    this.log.info({ ...describe(instance), how }, 'instance stopped');
  }

  /**
   * Every process the state knows of, stopped; HAProxy slots are left as they are (used on teardown). The records
   * stay: a fleet started again on this state restarts each instance with its version, track and slot.
   */
  async stopAll(state: FleetState): Promise<void> {
    const table = await processTable();
    const pids = (await Promise.all(state.instances.map((i) => pidsOf(i, table)))).flat();
    await Promise.all(pids.map((pid) => stopProcess(pid, this.cfg.timeouts.stopMs)));
  }

  /** Re-adopts live instances, restarts dead ones in place, finishes interrupted retirements. */
  async reconcile(state: FleetState): Promise<ReconcileReport> {
    const key = 'reconcile';
    const report: ReconcileReport = { adopted: [], restarted: [], dropped: [], retired: [] };
    const stats = new Map((await this.runtime.serverStats(this.cfg.backend)).map((s) => [s.name, s]));
    for (const instance of [...state.instances]) {
      const alive =
        (await isOurInstance(instance.pid, instance.id)) &&
        (await httpStatus(this.healthUrl(instance.port), 2_000)) === 200;
      if (instance.status === 'retiring') {
        await this.retire(state, instance, key);
        report.retired.push(instance.id);
      } else if (instance.status === 'starting') {
        await this.forget(state, instance, key);
        report.dropped.push(instance.id);
      } else if (alive) {
        const stat = instance.slot === null ? undefined : stats.get(instance.slot);
        if (stat && (stat.addr !== `${this.cfg.host}:${instance.port}` || !isEnabled(stat))) {
          await this.enable(instance, key);
        }
        await this.store.record({ action: 'adopt', key, ...describe(instance) });
        report.adopted.push(instance.id);
      } else {
        await this.restart(state, instance, key);
        report.restarted.push(instance.id);
      }
    }
    // A slot taking traffic that no instance claims would be an invisible fleet member: take it out.
    const claimed = new Set(state.instances.map((i) => i.slot));
    for (const stat of stats.values()) {
      if (!claimed.has(stat.name) && isEnabled(stat)) {
        await this.runtime.setServerState(this.cfg.backend, stat.name, 'maint');
        await this.store.record({ action: 'disable', key, slot: stat.name });
      }
    }
    this.log.info({ ...report }, 'fleet reconciled');
    return report;
  }

  /**
   * A dead instance comes back under its own id, version and slot, on a fresh port. One whose process still runs but
   * did not answer its health check (hung, or slow on a loaded machine) is stopped first: its successor takes its id,
   * so nothing would ever own it again.
   */
  private async restart(state: FleetState, dead: Instance, key: string): Promise<void> {
    this.log.warn({ ...describe(dead) }, 'instance is gone or not healthy; restarting it');
    for (const pid of await pidsOf(dead)) await stopProcess(pid, this.cfg.timeouts.stopMs);
    state.instances = state.instances.filter((i) => i !== dead);
    await this.store.record({ action: 'stop', key, ...describe(dead) });
    const port = dead.slot === null ? this.cfg.stagingPort : undefined;
    await this.start(state, { version: dead.version, track: dead.track, slot: dead.slot, key, id: dead.id, port });
  }

  private async enable(instance: Instance, key: string): Promise<void> {
    const slot = instance.slot;
    if (slot === null) return;
    await this.runtime.setServerAddr(this.cfg.backend, slot, this.cfg.host, instance.port);
    await this.runtime.setServerState(this.cfg.backend, slot, 'ready');
    const up = await waitUntil(
      async () => {
        const status = (await this.slotStat(slot))?.status ?? '';
        return status.startsWith('UP') || status === 'no check';
      },
      this.cfg.timeouts.upMs,
      50,
    );
    if (!up) {
      await this.runtime.setServerState(this.cfg.backend, slot, 'maint');
      throw new FleetCapacityError(
        `HAProxy did not see ${instance.id} UP in ${slot} within ${this.cfg.timeouts.upMs} ms`,
      );
    }
    await this.store.record({ action: 'enable', key, ...describe(instance) });
  }

  /** Stops a half-started instance and takes it out of the state (and out of HAProxy if it got in). */
  private async forget(state: FleetState, instance: Instance, key: string): Promise<void> {
    if (instance.slot !== null) {
      const stat = await this.slotStat(instance.slot);
      if (stat && isEnabled(stat)) await this.runtime.setServerState(this.cfg.backend, instance.slot, 'maint');
    }
    for (const pid of await pidsOf(instance)) await stopProcess(pid, this.cfg.timeouts.stopMs);
    await this.store.record({ action: 'stop', key, ...describe(instance) });
    state.instances = state.instances.filter((i) => i !== instance);
    await this.store.save(state);
  }

  private async freeSlot(state: FleetState): Promise<string> {
    const claimed = new Set(state.instances.map((i) => i.slot));
    const stats = await this.runtime.serverStats(this.cfg.backend);
    const free = stats.find((s) => !claimed.has(s.name) && s.status.startsWith('MAINT'));
    if (!free) {
      throw new FleetCapacityError(
        `backend ${this.cfg.backend} has no free server slot (${stats.length} slots, ${claimed.size} in use): ` +
          'declare at least fleetSize + 1 "server <name> <addr> disabled" slots',
      );
    }
    return free.name;
  }

  private async allocatePort(state: FleetState): Promise<number> {
    const { basePort, portRange, host } = this.cfg;
    const used = new Set([...state.instances.map((i) => i.port), this.cfg.stagingPort]);
    const start = Math.max(0, state.nextPort - basePort) % portRange;
    for (let i = 0; i < portRange; i++) {
      const port = basePort + ((start + i) % portRange);
      if (!used.has(port) && (await portIsFree(host, port))) {
        state.nextPort = basePort + ((port - basePort + 1) % portRange);
        return port;
      }
    }
    throw new FleetCapacityError(`no free port in ${basePort}..${basePort + portRange - 1}`);
  }

  private async slotStat(slot: string): Promise<ServerStat | undefined> {
    return (await this.runtime.serverStats(this.cfg.backend)).find((s) => s.name === slot);
  }

  private healthUrl(port: number): string {
    return `http://${this.cfg.host}:${port}${this.cfg.healthPath}`;
  }
}

function isEnabled(stat: ServerStat): boolean {
  return !stat.status.startsWith('MAINT');
}

/**
 * The instance's processes, found by its id and port — never by the recorded PID alone: after a crash or a long
 * time the kernel may have given that PID to another process (pid_max is often 32,768), and a PID is not saved yet
 * while an instance starts. Without /proc, the recorded PID is all there is.
 */
async function pidsOf(instance: Instance, table?: Map<number, string[]>): Promise<number[]> {
  const processes = table ?? (await processTable());
  if (!processes) return instance.pid > 0 ? [instance.pid] : [];
  return [...processes]
    .filter(([, argv]) => argv.includes(instance.id) && argv.includes(String(instance.port)))
    .map(([pid]) => pid);
}

function describe(i: Instance) {
  return { instance: i.id, version: i.version, track: i.track, slot: i.slot, port: i.port, pid: i.pid };
}
