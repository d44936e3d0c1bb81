import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client, Connection, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { stringify } from 'yaml';
import { devServerArgs, waitForPort } from '../../scripts/dev-server';
import { requireBinary, TEMPORAL_CLI } from '../../scripts/temporal-binaries';
import { abortSignal, statusQuery } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { releaseWorkflowId, type ReleaseResult } from '../../src/domain/release';
import type { ReleaseStatus } from '../../src/domain/status';
import { commandLineOf } from '../../src/providers/targets/fleet-process';
import { HaproxyRuntime } from '../../src/providers/targets/haproxy-runtime';
import { startFleet, type Fleet } from '../../src/providers/targets/haproxy-fleet-bootstrap';
import type { releaseWorkflow } from '../../src/workflows';
import { workflowBundle } from '../helpers/bundles';
import { compileDemo, freePort, quietLogger, removeDir, serviceCommand, tempStateDir } from '../helpers/fleet';
import { writePolicies } from '../helpers/release-harness';

/**
 * Shared machinery of the reliability suite: a dev server on SQLite that a test can kill and start again, the real
 * worker as child processes, HAProxy fleets of the demo service, and the checks every release must pass. Every
 * process started here is registered and stopped by `stopAll()`, whatever happened.
 */

export const ROOT = resolve(__dirname, '..', '..');
export { FULL, SEED, recordRows, type Row } from '../helpers/reliability-report';
import { recordRows, type Row } from '../helpers/reliability-report';
export const STABLE = '1.0.0';
export const NEXT = '1.1.0';
export const FLEET_SIZE = 4;
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

/**
 * Fast, deterministic releases: no analysis checks (the org minimum is 0 and the worker runs TOLLGATE_METRICS=none),
 * so every bake is pure timer time — what this suite measures is crash recovery, not the judge.
 */
export const ORG = {
  trafficCycle: { minDuration: '1s', minCanaryRequests: 0 },
  minimums: {
    analysisChecks: 0,
    maxAnalysisInterval: '10s',
    maxFailureLimit: 5,
    maxInconclusiveLimit: 5,
    productionApproval: false,
    fourEyes: false,
  },
};

export function policy(service: string, cycleMs: number, waveBakeMs = 2_000): ServicePolicyInput {
  return {
    service,
    trafficCycle: { duration: `${cycleMs}ms`, minCanaryRequests: 0 },
    staging: { bake: '0s' },
    canary: { poolSize: 1, approval: false, analysis: { interval: '5s', checks: [] } },
    production: {
      approval: false,
      waves: [
        { percent: 50, bake: `${waveBakeMs}ms` },
        { percent: 100, bake: `${waveBakeMs}ms` },
      ],
    },
  };
}

export interface Service {
  name: string;
  fleet: Fleet;
  stateDir: string;
}

let serviceJs: Promise<string> | undefined;
let nextBlock = Math.floor(Math.random() * 50);

export async function startServices(names: string[]): Promise<Service[]> {
  serviceJs ??= compileDemo(['demo/service.ts']).then((d) => d.js('demo/service.ts'));
  const js = await serviceJs;
  const out: Service[] = [];
  try {
    for (const name of names) {
      const stateDir = await tempStateDir('rl');
      // Blocks of 200 ports (the target's default range), distinct within this process.
      nextBlock = (nextBlock + 1) % 55;
      const fleet = await startFleet({
        service: name,
        version: STABLE,
        fleetSize: FLEET_SIZE,
        frontendPort: await freePort(),
        basePort: 20_000 + nextBlock * 200,
        stagingPort: await freePort(),
        command: serviceCommand(js),
        stateDir,
        logger: quietLogger(),
      });
      out.push({ name, fleet, stateDir });
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
    await removeDir(s.stateDir);
  }
}

/** The worker's view of the same fleets: the targets file and the policy directory. */
export function workerFiles(
  dir: string,
  services: Service[],
  cycleMs: number,
  waveBakeMs: (service: string) => number = () => 2_000,
): { targetsFile: string; policyDir: string } {
  const policyDir = writePolicies(
    ORG,
    services.map((s) => policy(s.name, cycleMs, waveBakeMs(s.name))),
  );
  const targetsFile = join(dir, `targets-${services[0]?.name ?? 'none'}.yaml`);
  const entries = services.map((s) => [s.name, { kind: 'haproxy-fleet', ...s.fleet.target.options }] as const);
  writeFileSync(targetsFile, stringify({ services: Object.fromEntries(entries) }));
  return { targetsFile, policyDir };
}

// ---- releases ----

export type ReleaseHandle = WorkflowHandleWithFirstExecutionRunId<typeof releaseWorkflow>;

export function startRelease(client: Client, taskQueue: string, service: string): Promise<ReleaseHandle> {
  return client.workflow.start<typeof releaseWorkflow>('releaseWorkflow', {
    workflowId: releaseWorkflowId(service),
    taskQueue,
    args: [{ service, version: NEXT, initiator: 'reliability', reason: 'crash suite' }],
  });
}

/**
 * Waits for the result (bounded); `undefined` when there is none in time. The timer is cleared either way: one left
 * running kept jest alive for minutes after the crash suite.
 */
export async function resultWithin(handle: ReleaseHandle, timeoutMs: number): Promise<ReleaseResult | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      handle.result(),
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Status, or undefined when no worker answers within `ms` (a query needs a live worker). */
export async function tryStatus(handle: ReleaseHandle, ms = 3_000): Promise<ReleaseStatus | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      handle.query(statusQuery),
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms))),
    ]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

export const abort = (handle: ReleaseHandle) =>
  handle.signal(abortSignal, { by: 'reliability', reason: 'abort to exercise the rollback' });

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

/** Live processes of `service`'s instances (by their `--instance <service>-N` argument) that the state does not know. */
function strayInstances(service: string, known: Set<string>): string[] {
  const strays: string[] = [];
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    const argv = commandLineOf(Number(entry)) ?? [];
    const id = argv[argv.indexOf('--instance') + 1];
    if (argv.includes('--instance') && id?.startsWith(`${service}-`) && !known.has(id))
      strays.push(`${id} (pid ${entry})`);
  }
  return strays;
}

/**
 * Problems with the fleet's end state: every member on `version`, labelled stable, serving, and UP in HAProxy, and
 * no instance process running that the fleet's state does not know (one a crash left behind).
 */
export async function fleetProblems(service: Service, version: string): Promise<string[]> {
  const problems: string[] = [];
  const state = await service.fleet.target.readState();
  const known = new Set(state.instances.map((i) => i.id));
  for (const stray of strayInstances(service.name, known)) problems.push(`stray instance ${stray}`);
  const members = state.instances.filter((i) => i.slot !== null);
  const wrong = members.filter((i) => `${i.version} ${i.track} ${i.status}` !== `${version} stable serving`);
  if (members.length !== FLEET_SIZE) problems.push(`${members.length} members, expected ${FLEET_SIZE}`);
  for (const i of wrong) problems.push(`${i.id}: ${i.version} ${i.track} ${i.status}`);
  if (state.stableVersion !== version) problems.push(`stable version ${state.stableVersion}, expected ${version}`);
  const stats = await new HaproxyRuntime(service.fleet.socketPath).serverStats(service.fleet.backend);
  const up = stats
    .filter((s) => s.status.startsWith('UP'))
    .map((s) => s.addr)
    .sort();
  const expected = members.map((i) => `127.0.0.1:${i.port}`).sort();
  if (JSON.stringify(up) !== JSON.stringify(expected)) {
    problems.push(`HAProxy UP ${JSON.stringify(up)}, expected ${JSON.stringify(expected)}`);
  }
  return problems;
}

export interface ReliabilityStack {
  readonly dir: string;
  readonly server: DevServer;
  readonly rows: Row[];
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
  };
}
