import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { devServerArgs, waitForPort } from '../../scripts/dev-server';
import { requireBinary, TEMPORAL_CLI } from '../../scripts/temporal-binaries';
import { abortSignal } from '../../src/domain/messages';
import { workflowBundle } from '../helpers/bundles';
import { NEXT, compileDemo, freePort, removeDir, startDemoFleet, tempStateDir, type DemoFleet } from '../helpers/fleet';
import { FLEET_ORG, fleetPolicy, writePolicies } from '../helpers/policies';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { canaryBaking, startRelease, waitForStatus, type ReleaseHandle } from '../helpers/release-handle';

/**
 * Shared machinery of the reliability suite: a dev server on SQLite that a test can kill and start again, the real
 * worker as child processes, HAProxy fleets of the demo service, and the checks every release must pass. Every
 * process started here is registered and stopped by `stopAll()`, whatever happened.
 */

export const ROOT = resolve(__dirname, '..', '..');
export { FULL, SEED, recordRows, type Row } from '../helpers/reliability-report';
import { recordRows, type Row } from '../helpers/reliability-report';
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const T0 = Date.now();
/** Progress on stderr as it happens (jest holds console output until a test ends). */
export const progress = (msg: string) =>
  process.stderr.write(`[reliability +${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);

/** mulberry32: small, seeded, good enough to pick kill points reproducibly. */
export function prng(seed: number): { next(): number; int(lo: number, hi: number): number } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

// ---- processes ----

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface Proc {
  child: ChildProcess;
  pid: number;
  /** Sends `signal` and resolves once the process has exited (and was reaped); SIGKILL after `graceMs`. */
  stop(signal: NodeJS.Signals, graceMs?: number): Promise<void>;
  exited(): boolean;
}

function launch(cmd: string, args: string[], env: NodeJS.ProcessEnv, logPath: string): Proc {
  const fd = openSync(logPath, 'a');
  const child = spawn(cmd, args, { env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  live.add(child);
  let done = false;
  const exit = new Promise<void>((res) =>
    child.once('exit', () => {
      done = true;
      live.delete(child);
      res();
    }),
  );
  return {
    child,
    pid: child.pid ?? -1,
    exited: () => done,
    stop: async (signal, graceMs = 10_000) => {
      if (done) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
}

const fleets = new Set<Service>();

/** Every worker, server and fleet this process started: for afterAll, whatever state a test left them in. */
export async function stopAll(): Promise<void> {
  await stopServices([...fleets]);
  await Promise.all(
    [...live].map(
      (c) =>
        new Promise<void>((res) => (c.exitCode !== null ? res() : (c.once('exit', () => res()), c.kill('SIGKILL')))),
    ),
  );
}

// ---- the dev server, restartable on the same SQLite file and ports ----

export interface DevServer {
  address: string;
  dbFile: string;
  proc(): Proc;
  start(): Promise<void>;
  stop(signal: NodeJS.Signals): Promise<void>;
  client(): Promise<Client>;
  close(): Promise<void>;
}

export async function devServer(dir: string): Promise<DevServer> {
  const port = await freePort();
  const uiPort = await freePort();
  const dbFile = join(dir, 'temporal.db');
  const bin = requireBinary(TEMPORAL_CLI);
  let current: Proc | undefined;
  let connection: Connection | undefined;
  const start = async () => {
    current = launch(bin, devServerArgs({ port, uiPort, dbFile }), process.env, join(dir, 'dev-server.log'));
    await waitForPort(port, 30_000);
  };
  const client = async () => {
    connection ??= await Connection.connect({ address: `127.0.0.1:${port}` });
    const c = new Client({ connection });
    // The frontend accepts connections before the namespace is served: wait for a real answer (bounded).
    for (let i = 0; i < 100; i++) {
      try {
        await c.workflow.count();
        return c;
      } catch {
        await sleep(200);
      }
    }
    throw new Error('dev server never answered');
  };
  await start();
  return {
    address: `127.0.0.1:${port}`,
    dbFile,
    proc: () => current!,
    start,
    stop: async (signal) => current?.stop(signal),
    client,
    close: async () => {
      await connection?.close().catch(() => undefined);
      await current?.stop('SIGTERM', 5_000);
    },
  };
}

// ---- the real worker, as child processes ----

let workerJs: string | undefined;

/**
 * The worker's own source (src/worker.ts and everything it imports), compiled by swc into test-results/ — the same
 * code `npm run build` compiles, without touching the shared dist/ that others build — run with the workflow bundle
 * jest's global setup made from src/workflows, and NODE_ENV=production so it refuses to bundle on its own.
 */
export async function compiledWorker(): Promise<string> {
  if (!workerJs) workerJs = (await compileDemo(['src/worker.ts'])).js('src/worker.ts');
  return workerJs;
}

export interface WorkerEnv {
  address: string;
  taskQueue: string;
  targetsFile: string;
  policyDir: string;
  logDir: string;
}

/** `extraEnv` goes over the defaults, e.g. real metrics settings in place of TOLLGATE_METRICS=none. */
export async function spawnWorker(e: WorkerEnv, name = 'worker', extraEnv: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TEMPORAL_ADDRESS: e.address,
    TOLLGATE_TASK_QUEUE: e.taskQueue,
    TOLLGATE_TARGETS_FILE: e.targetsFile,
    TOLLGATE_POLICY_DIR: e.policyDir,
    TOLLGATE_METRICS: 'none',
    TOLLGATE_METRICS_ADDRESS: 'off',
    TOLLGATE_WORKFLOW_BUNDLE: workflowBundle('release').codePath,
    TOLLGATE_SHUTDOWN_GRACE: '2s',
    TOLLGATE_LOG_LEVEL: 'info',
    NODE_ENV: 'production',
    ...extraEnv,
  };
  const proc = launch(process.execPath, [await compiledWorker()], env, join(e.logDir, `${name}.log`));
  // The worker is ready once it logged "worker started"; bounded wait.
  for (let i = 0; i < 150 && !proc.exited(); i++) {
    const log = readFileSync(join(e.logDir, `${name}.log`), 'utf8');
    if (log.split('\n').some((l) => l.includes('"worker started"') && l.includes(`"pid":${proc.pid}`))) return proc;
    await sleep(100);
  }
  if (proc.exited()) throw new Error(`worker exited at start; see ${join(e.logDir, `${name}.log`)}`);
  return proc;
}

// ---- fleets and policies ----

export interface Service {
  name: string;
  fleet: DemoFleet;
}

let serviceJs: Promise<string> | undefined;

/** A demo fleet per name, registered for `stopAll()`. */
export async function startServices(names: string[]): Promise<Service[]> {
  serviceJs ??= compileDemo(['demo/service.ts']).then((d) => d.js('demo/service.ts'));
  const js = await serviceJs;
  const out: Service[] = [];
  try {
    for (const name of names) {
      const fleet = await startDemoFleet({ service: name, serviceJs: js });
      out.push({ name, fleet });
      fleets.add(out.at(-1)!);
    }
  } catch (err) {
    await stopServices(out);
    throw err;
  }
  return out;
}

export async function stopServices(services: Service[]): Promise<void> {
  for (const s of services) {
    fleets.delete(s);
    await s.fleet.stop().catch(() => undefined);
  }
}

/**
 * The worker's view of the same fleets: the targets file, and a policy directory of fast, deterministic releases:
 * no analysis checks (the worker runs TOLLGATE_METRICS=none), so every bake is pure timer time — what this suite
 * measures is crash recovery, not the judge.
 */
export function workerFiles(
  dir: string,
  services: Service[],
  cycleMs: number,
  waveBakeMs: (service: string) => number = () => 2_000,
  extra: Partial<ServicePolicyInput> = {},
): { targetsFile: string; policyDir: string } {
  const policyDir = writePolicies(
    FLEET_ORG,
    services.map((s) => ({ ...fleetPolicy(s.name, { cycleMs, waveBakeMs: waveBakeMs(s.name) }), ...extra })),
  );
  const targetsFile = join(dir, `targets-${services[0]?.name ?? 'none'}.yaml`);
  const entries = services.map((s) => [s.name, { kind: 'haproxy-fleet', ...s.fleet.target.options }] as const);
  writeFileSync(targetsFile, stringify({ services: Object.fromEntries(entries) }));
  return { targetsFile, policyDir };
}

// ---- releases ----

/** A release of NEXT, started by the suite. */
export const releaseNext = (client: Client, taskQueue: string, service: string, reason = 'crash suite') =>
  startRelease(client, taskQueue, { service, version: NEXT, initiator: 'reliability', reason });

export const abort = (handle: ReleaseHandle) =>
  handle.signal(abortSignal, { by: 'reliability', reason: 'abort to exercise the rollback' });

export interface BakingRelease {
  service: Service;
  workers: Proc[];
  handle: ReleaseHandle;
}

/**
 * A demo fleet for `service`, a worker process per name in `workers` on a task queue of the fleet's own, and a
 * release of NEXT on them, once it is in the canary bake (bounded: 30 s). If it fails half-way, `stopAll()` stops
 * what it had started.
 */
export async function releaseInCanaryBake(
  stack: ReliabilityStack,
  service: string,
  cycleMs: number,
  workers: string[],
): Promise<BakingRelease> {
  const [fleet] = await startServices([service]);
  const env = stack.workerEnv(`reliability-${service}`, workerFiles(stack.dir, [fleet!], cycleMs));
  const procs = await Promise.all(workers.map((name) => spawnWorker(env, name)));
  const handle = await releaseNext(await stack.server.client(), env.taskQueue, service);
  await waitForStatus(handle, canaryBaking, { timeoutMs: 30_000, everyMs: 100 }, 'the canary bake');
  return { service: fleet!, workers: procs, handle };
}

/** Step keys (and mark-stable) the action log shows applied, or undone, more than once. */
export async function doubleApplications(service: Service): Promise<string[]> {
  const counts = new Map<string, number>();
  for (const a of await service.fleet.target.readActions()) {
    if (a.action !== 'step-applied' && a.action !== 'step-undone' && a.action !== 'mark-stable') continue;
    const k = `${a.action} ${a.key}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].filter(([, n]) => n > 1).map(([k, n]) => `${k} ×${n}`);
}

export interface ReliabilityStack {
  readonly dir: string;
  readonly server: DevServer;
  readonly rows: Row[];
  /** A worker's settings on this stack's server, logging into its dir. */
  workerEnv(taskQueue: string, files: { targetsFile: string; policyDir: string }): WorkerEnv;
}

/**
 * Per test file: a state dir, a dev server on its own SQLite file and the compiled worker, set up before the
 * tests; afterwards the file's rows go into RELIABILITY.md and every process it started is stopped.
 */
export function reliabilityStack(name: string): ReliabilityStack {
  let dir = '';
  let server: DevServer | undefined;
  const rows: Row[] = [];
  beforeAll(async () => {
    dir = await tempStateDir(name);
    [server] = await Promise.all([devServer(dir), compiledWorker()]);
  }, 60_000);
  afterAll(async () => {
    if (rows.length > 0) recordRows(name, rows);
    await stopAll();
    await server?.close();
    if (!process.env.RELIABILITY_KEEP) await removeDir(dir);
  }, 60_000);
  return {
    get dir() {
      return dir;
    },
    get server() {
      if (!server) throw new Error('the reliability stack is not up (beforeAll failed?)');
      return server;
    },
    rows,
    workerEnv(taskQueue, files) {
      return { address: this.server.address, taskQueue, ...files, logDir: dir };
    },
  };
}
