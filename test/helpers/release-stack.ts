import { randomUUID } from 'node:crypto';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { runLoad, type LoadReport } from '../../demo/load';
import { createActivities } from '../../src/activities';
import { PolicyStore } from '../../src/config/policies';
import { statusQuery } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import type { ReleaseResult } from '../../src/domain/release';
import type { ReleaseStatus } from '../../src/domain/status';
import { PrometheusProvider } from '../../src/providers/metrics/prometheus';
import { workflowBundle } from './bundles';
import { compileDemo, quietLogger, removeDir, startDemoFleet, tempStateDir, type DemoFleet } from './fleet';
import { writePolicies } from './policies';
import { startPrometheus, type PrometheusOptions, type RunningPrometheus } from './prometheus';
import { brief, resultWithin, startRelease, tryStatus, type Drive } from './release-handle';
import { taskQueueForTest } from './temporal';
import { startDevServer } from './temporal-servers';

/**
 * Everything a real release runs on, for integration tests: the Temporal dev server and one Prometheus shared by
 * every test of a file, and per test a fresh HAProxy fleet of demo-service instances, load through its frontend,
 * policy files and an in-process worker with the real activities. Every process started here is stopped by
 * `teardown()`, whether the test passed or not.
 */

export const SCRAPE_SECONDS = 1;
/** Under the suites' 120 s test timeouts, so a release that never ends fails with where it stands, not jest's timeout. */
const RELEASE_END_MS = 100_000;

export interface SharedInfra {
  env: TestWorkflowEnvironment;
  serviceJs: string;
  /** The file SD file the shared Prometheus watches; the fleet of the running test writes it. */
  fileSdPath: string;
  prometheus(): RunningPrometheus;
  /** Starts Prometheus again if a test stopped it (a fresh TSDB: the next fleet is fresh too). */
  ensurePrometheus(): Promise<RunningPrometheus>;
  stopPrometheus(): Promise<void>;
  close(): Promise<void>;
}

/** `prometheus`: more for the shared Prometheus (rules, an Alertmanager) beside the fleet's file SD. */
export async function startSharedInfra(prometheusOptions: Partial<PrometheusOptions> = {}): Promise<SharedInfra> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };
  try {
    const sdDir = await tempStateDir('sd');
    cleanups.push(() => removeDir(sdDir));
    const fileSdPath = join(sdDir, 'targets.json');
    const [env, demo] = await Promise.all([startDevServer(), compileDemo(['demo/service.ts'])]);
    cleanups.push(() => env.teardown());
    cleanups.push(() => removeDir(demo.dir));
    let prometheus: RunningPrometheus | undefined;
    let running = false;
    const launch = async () => {
      prometheus = await startPrometheus({
        scrapeIntervalSeconds: SCRAPE_SECONDS,
        fileSdPath,
        honorLabels: true,
        ...prometheusOptions,
      });
      running = true;
      return prometheus;
    };
    const stopPrometheus = async () => {
      if (prometheus && running) {
        running = false;
        await prometheus.stop();
      }
    };
    cleanups.push(stopPrometheus);
    await launch();
    return {
      env,
      serviceJs: demo.js('demo/service.ts'),
      fileSdPath,
      prometheus: () => {
        if (!prometheus || !running) throw new Error('prometheus is not running');
        return prometheus;
      },
      ensurePrometheus: () => (prometheus && running ? Promise.resolve(prometheus) : launch()),
      stopPrometheus,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface StackOptions {
  service: string;
  org: Record<string, unknown>;
  policy: ServicePolicyInput;
  load: { baseRps: number; peakRps: number; cycleMs: number; maxDurationMs: number };
}

export interface RolledOut<T> {
  value: T;
  result: ReleaseResult;
  status: ReleaseStatus;
  history: temporal.api.history.v1.IHistory;
  rolloutMs: number;
}

export interface ReleaseStack {
  fleet: DemoFleet;
  taskQueue: string;
  /**
   * Releases `version` with the worker running: `drive` acts on the release while it runs; then its result, its
   * status and its history, and how long the whole rollout took.
   */
  release<T = void>(version: string, drive?: Drive<T>): Promise<RolledOut<T>>;
  /** Stops the load generator and returns what it saw (idempotent). */
  stopLoad(): Promise<LoadReport>;
  /** The HAProxy admin socket disappears (renamed away) until `restoreSocket`; HAProxy keeps serving traffic. */
  hideSocket(): Promise<void>;
  restoreSocket(): Promise<void>;
  teardown(): Promise<void>;
}

export async function startStack(infra: SharedInfra, o: StackOptions): Promise<ReleaseStack> {
  const logger = quietLogger();
  const cleanups: Array<() => Promise<unknown>> = [];
  const teardown = async () => {
    const errors: unknown[] = [];
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw errors[0];
  };
  try {
    const prometheus = await infra.ensurePrometheus();
    const policyDir = writePolicies(o.org, [o.policy]);
    cleanups.push(() => removeDir(policyDir));
    const fleet = await startDemoFleet({
      service: o.service,
      serviceJs: infra.serviceJs,
      fileSd: infra.fileSdPath,
      // Without HAProxy's retries, zero failed requests proves the drains, not HAProxy's second chances.
      retries: false,
    });
    cleanups.push(() => fleet.stop());

    let hidden = false;
    const hiddenPath = `${fleet.socketPath}.hidden`;
    const restoreSocket = async () => {
      if (!hidden) return;
      await rename(hiddenPath, fleet.socketPath);
      hidden = false;
    };
    // Before fleet.stop(): the instances' retirement needs no socket, but HAProxy should find its own on the way out.
    cleanups.push(restoreSocket);

    const controller = new AbortController();
    const load = runLoad({
      url: fleet.frontendUrl,
      durationMs: o.load.maxDurationMs,
      cycleMs: o.load.cycleMs,
      baseRps: o.load.baseRps,
      peakRps: o.load.peakRps,
      maxRequests: Math.ceil((o.load.peakRps * o.load.maxDurationMs) / 1000),
      timeoutMs: 5_000,
      signal: controller.signal,
    });
    const stopLoad = () => {
      controller.abort();
      return load;
    };
    cleanups.push(stopLoad);

    const taskQueue = taskQueueForTest();
    const activities = createActivities({
      target: fleet.target,
      metrics: new PrometheusProvider({ url: prometheus.url, timeoutMs: 2_000 }),
      policies: new PolicyStore(policyDir),
      logger,
      heartbeatEveryMs: 1_000,
    });
    const worker = await Worker.create({
      connection: infra.env.nativeConnection,
      taskQueue,
      workflowBundle: workflowBundle('release'),
      activities,
      shutdownGraceTime: '5s',
    });

    return {
      fleet,
      taskQueue,
      release: async <T>(version: string, drive: Drive<T> = () => Promise.resolve(undefined as T)) => {
        const started = Date.now();
        const rolledOut = await worker.runUntil(async () => {
          const handle = await startRelease(infra.env.client, taskQueue, {
            service: o.service,
            version,
            initiator: 'alice',
            reason: 'integration test',
          });
          const value = await drive(handle);
          const result = await resultWithin(handle, RELEASE_END_MS);
          if (!result) {
            const where = brief(await tryStatus(handle));
            throw new Error(`the release of ${version} did not end within ${RELEASE_END_MS / 1000} s: ${where}`);
          }
          return { value, result, status: await handle.query(statusQuery), history: await handle.fetchHistory() };
        });
        return { ...rolledOut, rolloutMs: Date.now() - started };
      },
      stopLoad,
      hideSocket: async () => {
        await rename(fleet.socketPath, hiddenPath);
        hidden = true;
      },
      restoreSocket,
      teardown,
    };
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}

/**
 * A test file's lifecycle on shared infrastructure: the dev server and Prometheus started once for the file, one
 * stack (fleet, load, worker) per test, torn down after it whether it passed or not. `stack(name, …)` names the
 * service `<name>-<random>`.
 */
export function stackPerTest() {
  let infra: SharedInfra | undefined;
  let current: ReleaseStack | undefined;
  beforeAll(async () => {
    infra = await startSharedInfra();
  }, 60_000);
  afterEach(async () => {
    await current?.teardown();
    current = undefined;
  }, 60_000);
  afterAll(async () => {
    await infra?.close();
  }, 30_000);
  return {
    infra: (): SharedInfra => infra!,
    async stack(
      name: string,
      options: (service: string) => Omit<StackOptions, 'service'>,
    ): Promise<{ stack: ReleaseStack; service: string }> {
      const service = `${name}-${randomUUID().slice(0, 6)}`;
      current = await startStack(infra!, { service, ...options(service) });
      return { stack: current, service };
    },
  };
}
