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
  /** Live instances taken over as they were, warm ones included (their slot put back in drain). */
  adopted: string[];
  restarted: string[];
  /**
   * Half-started instances from an interrupted step, stopped: re-applying the step starts them properly. Also warm
   * instances whose process is gone: nothing is serving there, so undo starts that version cold instead.
   */
  dropped: string[];
  /** Retirements an interrupted step left half done, finished. */
  retired: string[];
}

/** Who kept a warm instance: the step (its key) and its release, whose `retirePrevious` stops it. */
export interface Keeper {
  by: string;
  releaseId: string;
}

/** A fleet member to take out of rotation on undo, and the version it goes back to. */
export interface Reversal {
  current: Instance;
  target: string;
}

/**
 * Whether a step may keep the instance it is replacing warm. Warm instances hold their server slot, and every later
 * replacement needs a free one: so keep it only if a slot stays free after its successor takes one, or if it is the
 * fleet's last member on another version (nothing of this release needs a slot after it).
 */
export function canKeepWarm(freeSlots: number, outdatedMembers: number): boolean {
  return freeSlots >= 2 || (freeSlots >= 1 && outdatedMembers <= 1);
}

/**
 * The order in which undo reuses warm instances: those kept by the step being undone (the very processes it took out
 * of rotation), then by its release, then any other.
 */
export function warmPreference(keeper: Keeper): (a: Instance, b: Instance) => number {
  const rank = (i: Instance) => (i.kept?.by === keeper.by ? 0 : i.kept?.releaseId === keeper.releaseId ? 1 : 2);
  return (a, b) => rank(a) - rank(b);
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
   * Starts `version` in a free slot, enables it once HAProxy sees it UP, then drains and stops `old` — or, with a
   * `keep`er, drains it and leaves it running, warm. The new instance becomes a member in the same save that marks
   * `old` retiring (or warm): a worker killed between the two would otherwise leave both serving, one member too many
   * that no later step takes out (a retried step counts it as done).
   */
  async replace(
    state: FleetState,
    old: Instance | undefined,
    version: string,
    track: InstanceTrack,
    key: string,
    keep?: Keeper,
  ) {
    const slot = await this.freeSlot(state);
    const started = await this.start(state, { version, track, slot, key, replaces: old, keep });
    if (old && keep) await this.keepWarm(old, key);
    else if (old) await this.retire(state, old, key);
    return started;
  }

  /** Server slots no instance holds, ready for a new one (HAProxy has them in maintenance). */
  async freeSlots(state: FleetState): Promise<string[]> {
    const claimed = new Set(state.instances.map((i) => i.slot));
    const stats = await this.runtime.serverStats(this.cfg.backend);
    return stats.filter((s) => !claimed.has(s.name) && s.status.startsWith('MAINT')).map((s) => s.name);
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
      /** The instance this one takes over from: retiring (or warm, with a keeper) from the moment this one serves. */
      replaces?: Instance | undefined;
      keep?: Keeper | undefined;
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
    if (spec.replaces && spec.keep) {
      spec.replaces.status = 'warm';
      spec.replaces.kept = { ...spec.keep, since: new Date().toISOString() };
    } else if (spec.replaces) spec.replaces.status = 'retiring';
    await this.store.save(state);
    this.log.info({ ...describe(instance) }, 'instance serving');
    return instance;
  }

  /** Drain (no new requests, in-flight ones finish), disable, then SIGTERM: no request is cut. */
  retire(state: FleetState, instance: Instance, key: string): Promise<void> {
    return this.retireAll(state, [instance], key);
  }

  /** `retire` for several instances at once: they drain together, so ten take about as long as one. */
  async retireAll(state: FleetState, instances: readonly Instance[], key: string): Promise<void> {
    if (instances.length === 0) return;
    for (const instance of instances) instance.status = 'retiring';
    await this.store.save(state);
    const slotted = instances.filter((i): i is Instance & { slot: string } => i.slot !== null);
    await Promise.all(
      slotted.map(async (instance) => {
        await this.runtime.setServerState(this.cfg.backend, instance.slot, 'drain');
        await this.store.record({ action: 'drain', key, ...describe(instance) });
      }),
    );
    const busy = await this.waitDrained(slotted.map((i) => i.slot));
    for (const instance of slotted.filter((i) => busy.has(i.slot))) {
      this.log.warn({ ...describe(instance) }, 'drain timed out; disabling with requests in flight');
    }
    await Promise.all(
      slotted.map(async (instance) => {
        await this.runtime.setServerState(this.cfg.backend, instance.slot, 'maint');
        await this.store.record({ action: 'disable', key, ...describe(instance) });
      }),
    );
    await Promise.all(
      instances.map(async (instance) => {
        const hows = await Promise.all(
          (await pidsOf(instance)).map((pid) => stopProcess(pid, this.cfg.timeouts.stopMs)),
        );
        await this.store.record({ action: 'stop', key, ...describe(instance) });
        this.log.info({ ...describe(instance), how: hows[0] ?? 'absent' }, 'instance stopped');
      }),
    );
    state.instances = state.instances.filter((i) => !instances.includes(i));
    await this.store.save(state);
  }

  /**
   * Takes a warm instance (already marked so in the state) out of rotation without stopping it: drain, not maint, so
   * HAProxy keeps health-checking it and a switch back needs no wait for a first check. Waits for its in-flight
   * requests as retire does, so that once the step is done the old version really serves nothing.
   */
  async keepWarm(instance: Instance, key: string): Promise<void> {
    const slot = instance.slot;
    if (slot === null) return;
    await this.runtime.setServerState(this.cfg.backend, slot, 'drain');
    await this.store.record({ action: 'keep-warm', key, ...describe(instance) });
    if ((await this.waitDrained([slot])).size > 0) {
      this.log.warn({ ...describe(instance) }, 'drain timed out; the warm instance still finishes its requests');
    }
    this.log.info({ ...describe(instance), keptBy: instance.kept?.by }, 'instance kept warm');
  }

  /**
   * Undo by traffic switch: for each reversal, a warm instance of its target version (labelled stable: a label cannot
   * change without a restart) goes back into rotation and the current one retires. All warm slots are set ready first,
   * then every replaced instance drains at once, so the switch takes about one drain whatever its size. Returns the
   * switches made; reversals left without a usable warm instance are for the caller to undo cold.
   */
  async switchBack(
    state: FleetState,
    reversals: readonly Reversal[],
    keeper: Keeper,
  ): Promise<{ switched: (Reversal & { warm: Instance })[]; cold: Reversal[] }> {
    const key = keeper.by;
    const targets = new Set(reversals.map((r) => r.target));
    const eligible = state.instances.filter(
      (i) => i.status === 'warm' && i.track === 'stable' && i.slot !== null && targets.has(i.version),
    );
    if (eligible.length === 0) return { switched: [], cold: [...reversals] };
    const stats = new Map((await this.runtime.serverStats(this.cfg.backend)).map((st) => [st.name, st]));
    const usable = await Promise.all(eligible.map((i) => this.warmIsUsable(i, stats.get(i.slot ?? ''))));
    for (const dead of eligible.filter((_, n) => !usable[n])) {
      this.log.warn(
        { ...describe(dead) },
        'warm instance is gone or not healthy; dropped, undo starts its version cold',
      );
      await this.forget(state, dead, key);
    }
    const pool = eligible.filter((_, n) => usable[n]).sort(warmPreference(keeper));
    const picked: (Reversal & { warm: Instance })[] = [];
    const cold: Reversal[] = [];
    for (const reversal of reversals) {
      const index = pool.findIndex((i) => i.version === reversal.target);
      const warm = index < 0 ? undefined : pool.splice(index, 1)[0];
      if (warm) picked.push({ ...reversal, warm });
      else cold.push(reversal);
    }
    // Ready before the save: a worker killed in between leaves the instance warm in the state, and reconcile drains
    // its slot again. A slot that fails to come back UP is put back in drain and its reversal done cold.
    const ready = await Promise.all(picked.map(({ warm }) => this.ready(warm)));
    const switched = picked.filter((_, n) => ready[n]);
    cold.push(...picked.filter((_, n) => !ready[n]));
    if (switched.length === 0) return { switched, cold };
    for (const { warm, current } of switched) {
      warm.status = 'serving';
      delete warm.kept;
      current.status = 'retiring';
      await this.store.record({ action: 'switch-back', key, ...describe(warm) });
    }
    await this.store.save(state);
    await this.retireAll(
      state,
      switched.map((s) => s.current),
      key,
    );
    for (const { warm, current } of switched) {
      this.log.info({ ...describe(warm), replaced: current.id }, 'warm instance switched back into rotation');
    }
    return { switched, cold };
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

  /**
   * Every warm instance's slot in drain at its own address. Reconcile does it after a restart; every operation does it
   * too, since a step that failed between marking an instance warm and draining its slot leaves it in rotation.
   */
  async holdWarm(state: FleetState, key: string): Promise<void> {
    const warm = state.instances.filter((i) => i.status === 'warm' && i.slot !== null);
    if (warm.length === 0) return;
    const stats = new Map((await this.runtime.serverStats(this.cfg.backend)).map((st) => [st.name, st]));
    for (const instance of warm) {
      const slot = instance.slot ?? '';
      const stat = stats.get(slot);
      if (!stat) continue;
      if (stat.addr !== `${this.cfg.host}:${instance.port}`) {
        await this.runtime.setServerAddr(this.cfg.backend, slot, this.cfg.host, instance.port);
      }
      // DRAIN (or "DRAIN 1/2" while checks settle) is a drained slot; anything else may take requests.
      if (!stat.status.startsWith('DRAIN')) {
        await this.runtime.setServerState(this.cfg.backend, slot, 'drain');
        await this.store.record({ action: 'keep-warm', key, ...describe(instance) });
      }
    }
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
      } else if (instance.status === 'starting' || (instance.status === 'warm' && !alive)) {
        // A warm instance is never restarted: a cold start is what keeping it was meant to avoid, and undo does that.
        await this.forget(state, instance, key);
        report.dropped.push(instance.id);
      } else if (instance.status === 'warm') {
        await this.store.record({ action: 'adopt', key, ...describe(instance) });
        report.adopted.push(instance.id);
      } else if (alive) {
        const stat = instance.slot === null ? undefined : stats.get(instance.slot);
        if (stat && (stat.addr !== `${this.cfg.host}:${instance.port}` || !inRotation(stat))) {
          await this.enable(instance, key);
        }
        await this.store.record({ action: 'adopt', key, ...describe(instance) });
        report.adopted.push(instance.id);
      } else {
        await this.restart(state, instance, key);
        report.restarted.push(instance.id);
      }
    }
    await this.holdWarm(state, key);
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

  /** Can this warm instance take traffic again at once: its process ours and healthy, HAProxy seeing it UP? */
  private async warmIsUsable(instance: Instance, stat: ServerStat | undefined): Promise<boolean> {
    if (stat?.addr !== `${this.cfg.host}:${instance.port}`) return false;
    if (!(await isOurInstance(instance.pid, instance.id))) return false;
    return (await httpStatus(this.healthUrl(instance.port), 2_000)) === 200;
  }

  /** Puts a warm slot back in rotation; false (and the slot drained again) if HAProxy does not see it UP in time. */
  private async ready(instance: Instance): Promise<boolean> {
    const slot = instance.slot;
    if (slot === null) return false;
    await this.runtime.setServerState(this.cfg.backend, slot, 'ready');
    const up = await waitUntil(
      async () => (await this.slotStat(slot))?.status.startsWith('UP') ?? false,
      this.cfg.timeouts.upMs,
      50,
    );
    if (!up) {
      await this.runtime.setServerState(this.cfg.backend, slot, 'drain');
      this.log.warn({ ...describe(instance) }, 'warm instance did not come back UP; undoing cold instead');
    }
    return up;
  }

  /** Waits until none of `slots` has a request in flight, within the drain timeout; the slots still busy after it. */
  private async waitDrained(slots: readonly string[]): Promise<Set<string>> {
    // Nothing behind the frontend (the staging instance): no need for HAProxy, which may be the thing that is down.
    if (slots.length === 0) return new Set();
    let busy = new Set(slots);
    await waitUntil(
      async () => {
        const stats = new Map((await this.runtime.serverStats(this.cfg.backend)).map((st) => [st.name, st]));
        busy = new Set(slots.filter((slot) => stats.get(slot)?.currentSessions !== 0));
        return busy.size === 0;
      },
      this.cfg.timeouts.drainMs,
      50,
    );
    return busy;
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
    const [free] = await this.freeSlots(state);
    if (free === undefined) {
      const claimed = new Set(state.instances.map((i) => i.slot));
      const warm = state.instances.filter((i) => i.status === 'warm').length;
      throw new FleetCapacityError(
        `backend ${this.cfg.backend} has no free server slot (${claimed.size} in use` +
          `${warm > 0 ? `, ${warm} by warm instances that retirePrevious stops` : ''}): ` +
          'declare at least fleetSize + 1 "server <name> <addr> disabled" slots',
      );
    }
    return free;
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

/** Taking new requests: neither in maintenance nor drained. */
function inRotation(stat: ServerStat): boolean {
  return isEnabled(stat) && !stat.status.startsWith('DRAIN');
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
