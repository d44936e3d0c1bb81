import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { stringify } from 'yaml';
import { devServerArgs, waitForPort } from '../../scripts/dev-server';
import { requireBinary, TEMPORAL_CLI } from '../../scripts/temporal-binaries';
import { abortSignal } from '../../src/domain/messages';
import { workflowBundlerOptions } from '../../src/worker';
import { workflowBundle } from '../helpers/bundles';
import { startCluster, type Cluster } from '../helpers/temporal-cluster';
import { NEXT, compileDemo, removeDir, startDemoFleet, tempStateDir, type DemoFleet } from '../helpers/fleet';
import { freePort } from '../../scripts/ports';
import { FLEET_ORG, fleetPolicy, writePolicies, type FleetPolicyOptions } from '../helpers/policies';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { canaryBaking, startRelease, waitForStatus, type ReleaseHandle } from '../helpers/release-handle';

/**
 * Shared machinery of the reliability suite: a dev server on SQLite that a test can kill and start again (or the real
 * cluster, whose services it can kill one by one), the real worker as child processes — this tree's build or the one
 * before its last workflow change — HAProxy fleets of the demo service, and the checks every release must pass. Every
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

/** A build of the worker: its compiled entry point and the workflow bundle it runs. */
export interface Build {
  /** `current`, or the commit it was built from. */
  name: string;
  workerJs: string;
  bundlePath: string;
}

let current: Build | undefined;

/**
 * The worker's own source (src/worker.ts and everything it imports), compiled by swc into test-results/ — the same
 * code `npm run build` compiles, without touching the shared dist/ that others build — run with the workflow bundle
 * jest's global setup made from src/workflows, and NODE_ENV=production so it refuses to bundle on its own.
 */
export async function currentBuild(): Promise<Build> {
  current ??= {
    name: 'current',
    workerJs: (await compileDemo(['src/worker.ts'])).js('src/worker.ts'),
    bundlePath: workflowBundle('release').codePath,
  };
  return current;
}

/**
 * The build before the newest change to the workflow code: src/ at the parent of the last commit that touched
 * src/workflows, extracted into test-results/ (so node_modules resolves as usual), its worker compiled and its
 * workflows bundled as the shipped bundle is. What a rolling deploy of this tree replaces, and the histories it
 * recorded are what this tree's workflow code must replay.
 */
export async function previousBuild(): Promise<Build> {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
  const changed = git('rev-list', '-1', 'HEAD', '--', 'src/workflows');
  let rev: string;
  try {
    rev = git('rev-parse', '--short=12', `${changed}^`);
  } catch (err) {
    throw new Error(
      `the previous build is src/ at the parent of ${changed.slice(0, 12)}, the last change to src/workflows, ` +
        'which this clone lacks (a shallow clone?): `git fetch --unshallow`',
      { cause: err },
    );
  }
  const srcDir = join('test-results', 'builds', rev);
  if (!existsSync(join(ROOT, srcDir, 'src', 'worker.ts'))) {
    mkdirSync(join(ROOT, srcDir), { recursive: true });
    execFileSync('sh', ['-c', `git archive ${rev} src | tar -x -C ${srcDir}`], { cwd: ROOT });
  }
  const entry = join(srcDir, 'src', 'worker.ts');
  const workerJs = (await compileDemo([entry])).js(entry);
  const bundlePath = join(ROOT, srcDir, 'release-bundle.js');
  if (!existsSync(bundlePath)) {
    const workflowsPath = join(ROOT, srcDir, 'src', 'workflows', 'index.ts');
    const noop = () => undefined;
    const logger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error };
    const { code } = await bundleWorkflowCode({ workflowsPath, logger, ...workflowBundlerOptions() });
    writeFileSync(bundlePath, code);
  }
  return { name: rev, workerJs, bundlePath };
}

export interface WorkerEnv {
  address: string;
  taskQueue: string;
  targetsFile: string;
  policyDir: string;
  logDir: string;
}

/** `extraEnv` goes over the defaults, e.g. real metrics settings in place of TOLLGATE_METRICS=none. */
export async function spawnWorker(
  e: WorkerEnv,
  name = 'worker',
  extraEnv: NodeJS.ProcessEnv = {},
  build?: Build,
): Promise<Proc> {
  const { workerJs, bundlePath } = build ?? (await currentBuild());
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TEMPORAL_ADDRESS: e.address,
    TOLLGATE_TASK_QUEUE: e.taskQueue,
    TOLLGATE_TARGETS_FILE: e.targetsFile,
    TOLLGATE_POLICY_DIR: e.policyDir,
    TOLLGATE_METRICS: 'none',
    TOLLGATE_METRICS_ADDRESS: 'off',
    TOLLGATE_WORKFLOW_BUNDLE: bundlePath,
    TOLLGATE_SHUTDOWN_GRACE: '2s',
    TOLLGATE_LOG_LEVEL: 'info',
    NODE_ENV: 'production',
    ...extraEnv,
  };
  const proc = launch(process.execPath, [workerJs], env, join(e.logDir, `${name}.log`));
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
  pace: FleetPolicyOptions | ((service: string) => FleetPolicyOptions),
  extra: Partial<ServicePolicyInput> = {},
): { targetsFile: string; policyDir: string } {
  const paceOf = typeof pace === 'function' ? pace : () => pace;
  const policyDir = writePolicies(
    FLEET_ORG,
    services.map((s) => ({ ...fleetPolicy(s.name, paceOf(s.name)), ...extra })),
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
 * A demo fleet per name in `services`, a worker process of `build` per name in `workers`, all on one task queue of
 * their own, and a release of NEXT of each service on them, just started. If it fails half-way, `stopAll()` stops
 * what it had started.
 */
export async function startReleases(
  stack: ReliabilityStack,
  services: string[],
  pace: FleetPolicyOptions,
  workers: string[],
  build?: Build,
): Promise<{ env: WorkerEnv; runs: BakingRelease[] }> {
  const fleets = await startServices(services);
  const env = stack.workerEnv(`reliability-${services[0]}`, workerFiles(stack.dir, fleets, pace));
  const procs = await Promise.all(workers.map((name) => spawnWorker(env, name, {}, build)));
  const client = await stack.server.client();
  const runs = await Promise.all(
    fleets.map(async (service) => ({
      service,
      workers: procs,
      handle: await releaseNext(client, env.taskQueue, service.name),
    })),
  );
  return { env, runs };
}

/** One service's release, as `startReleases`, once it is in the canary bake (bounded: 30 s). */
export async function releaseInCanaryBake(
  stack: ReliabilityStack,
  service: string,
  cycleMs: number,
  workers: string[],
): Promise<BakingRelease> {
  const { runs } = await startReleases(stack, [service], { cycleMs }, workers);
  const run = runs[0]!;
  await waitForStatus(run.handle, canaryBaking, { timeoutMs: 30_000, everyMs: 100 }, 'the canary bake');
  return run;
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

/** What the suite needs of a Temporal server, the dev server or a cluster: where it is, and a client that answers. */
export interface TemporalEndpoint {
  readonly address: string;
  client(): Promise<Client>;
  close(): Promise<void>;
}

export interface ReliabilityStack<S extends TemporalEndpoint = TemporalEndpoint> {
  readonly dir: string;
  readonly server: S;
  readonly rows: Row[];
  /** A worker's settings on this stack's server, logging into its dir. */
  workerEnv(taskQueue: string, files: { targetsFile: string; policyDir: string }): WorkerEnv;
}

/**
 * Per test file: a state dir, a dev server on its own SQLite file and the compiled worker, set up before the
 * tests; afterwards the file's rows go into RELIABILITY.md and every process it started is stopped.
 */
export const reliabilityStack = (name: string): ReliabilityStack<DevServer> => stackOn(name, devServer, 60_000);

/** A real Temporal cluster behind a reliability stack: its services can be killed and restarted one by one. */
export interface ClusterServer extends TemporalEndpoint {
  readonly cluster: Cluster;
}

/** As `reliabilityStack`, on the real cluster of `npm run cluster` (PostgreSQL, four services; no Web UI). */
export const clusterReliabilityStack = (name: string): ReliabilityStack<ClusterServer> =>
  stackOn(name, clusterServer, 150_000);

async function clusterServer(dir: string): Promise<ClusterServer> {
  const cluster = await startCluster({ stateDir: join(dir, 'cluster'), ui: false });
  const connection = await Connection.connect({ address: cluster.address });
  return {
    address: cluster.address,
    cluster,
    client: async () => {
      await cluster.ready(60_000);
      return new Client({ connection, namespace: cluster.namespace });
    },
    close: async () => {
      await connection.close().catch(() => undefined);
      await cluster.stop();
    },
  };
}

function stackOn<S extends TemporalEndpoint>(
  name: string,
  up: (dir: string) => Promise<S>,
  upBoundMs: number,
): ReliabilityStack<S> {
  let dir = '';
  let server: S | undefined;
  const rows: Row[] = [];
  beforeAll(async () => {
    dir = await tempStateDir(name);
    [server] = await Promise.all([up(dir), currentBuild()]);
  }, upBoundMs);
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
