import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { parse, stringify } from 'yaml';
import { runLoad, type LoadReport } from '../demo/load';
import { createActivities } from '../src/activities';
import { PolicyStore } from '../src/config/policies';
import { connectionSettings } from '../src/config/connection';
import { loadReceiverConfig } from '../src/config/receiver-config';
import { ALERT_NAMES, ALERT_RULE_DEFAULTS } from '../src/domain/alert-rules';
import type { AlertSignal } from '../src/domain/alerts';
import { statusQuery } from '../src/domain/messages';
import type { ServicePolicyInput } from '../src/domain/policy';
import { releaseWorkflowId, type ReleaseResult } from '../src/domain/release';
import { PrometheusProvider } from '../src/providers/metrics/prometheus';
import { startFleet, type Fleet } from '../src/providers/targets/haproxy-fleet-bootstrap';
import type { DeployStep } from '../src/providers/targets/types';
import { startReceiver, type RunningReceiver } from '../src/receiver/main';
import { TemporalAlertSink, type AlertSink } from '../src/receiver/sink';
import { PROJECT_ROOT } from '../scripts/temporal-binaries';
import {
  FLEET_SIZE,
  STABLE,
  nextBasePort,
  quietLogger,
  removeDir,
  serviceCommand,
  tempStateDir,
} from '../test/helpers/fleet';
import { freePort } from '../scripts/ports';
import { FLEET_ORG, fleetPolicy, writePolicies } from '../test/helpers/policies';
import { Arrivals, sleepMs } from './fixtures';

/** The demo's catalogue in the source tree (test/helpers/fleet.ts's CATALOGUE is relative to its own, uncompiled, path). */
const CATALOGUE = join(PROJECT_ROOT, 'demo', 'versions.yaml');

/**
 * §8 part 1: a bad canary on a real HAProxy fleet of the demo service under load, caught by analysis alone or by its
 * alert (real Prometheus rules, Alertmanager, the receiver), mode by mode on one fleet. The clock starts at the load
 * generator's first non-2xx answer and stops when the first `undo` activity starts on the worker.
 */

export const FLEET_INTERVAL_MS = 4_000;
export const FLEET_FAILURE_LIMIT = 3;
export const FLEET_MAX_ERROR_RATIO = 0.05;
export const FLEET_BAD_VERSION = '1.2.0-bad';
/** Long enough that no trial's bake ends before its rollback; short enough to bound a trial that never rolls back. */
const CYCLE_MS = 60_000;
const LOAD = { baseRps: 40, peakRps: 60 };
const TRIAL_BOUND_MS = 60_000;
const SERVICE = 'alerts-bench';
const errorRatio = { name: 'error-ratio', template: 'error-ratio', max: FLEET_MAX_ERROR_RATIO } as const;
const KNOWN_ERROR = {
  name: 'canary-errors',
  matchers: [`alertname="${ALERT_NAMES.errorRatio}"`],
  action: 'rollback' as const,
};

export type FleetMode = 'analysis-only' | 'alert-driven';
export const FLEET_MODES: readonly FleetMode[] = ['analysis-only', 'alert-driven'];

export interface FleetTrial {
  mode: FleetMode;
  version: string;
  /** First non-2xx at the load generator → the first undo activity started on the worker. */
  errorToUndoMs: number;
  /** First non-2xx → Prometheus' first scrape of the canary instance (its first `up` sample), when it could be read. */
  errorToScrapedMs?: number;
  /** First non-2xx → Prometheus' alert active (its `activeAt`, a rule evaluation's time), when it could be read. */
  errorToFiringMs?: number;
  /** First non-2xx → the first webhook carrying the canary's firing alert at the receiver (both modes get it). */
  errorToWebhookMs?: number;
  /** That webhook at the receiver → the first undo started. */
  webhookToUndoMs?: number;
  /** What the release's result says rolled it back: `alert`, `analysis`, or the outcome and reason otherwise. */
  rolledBackBy: string;
  failedRounds: number;
  /** Non-2xx answers from anything but the bad canary (HAProxy's own, another version's): none expected. */
  otherNon2xx: number;
}

export interface FleetResult {
  intervalMs: number;
  failureLimit: number;
  maxErrorRatio: number;
  rateWindow: string;
  load: typeof LOAD;
  trials: FleetTrial[];
  failures: string[];
  wallMs: number;
}

/** What the section started for both parts: the dev server, the compiled demo service, Prometheus and its file SD. */
export interface AlertsInfra {
  env: TestWorkflowEnvironment;
  serviceJs: string;
  fileSdPath: string;
  prometheusUrl: string;
}

export interface FleetOptions {
  infra: AlertsInfra;
  /** The receiver's port, which Alertmanager's webhook URL already names. */
  receiverPort: number;
  token: string;
  releaseCode: string;
  /** Trials of each mode at most; fewer if the deadline comes first. */
  trialsPerMode: number;
  deadline: number;
  log: (line: string) => void;
}

/** A fresh bearer token for Alertmanager's webhook and the receiver. */
export const webhookToken = () => randomBytes(24).toString('base64url');

/**
 * The demo's catalogue plus `1.2.0-bad.<n>`, each behaving exactly as 1.2.0-bad: a version of its own per trial puts
 * each trial's alert in an Alertmanager group of its own (a fresh group is notified after group_wait, 0 s; a group
 * that already exists waits for its next group_interval) and keeps the last canary's series, still in the rate
 * windows for a few seconds after its rollback, out of the next trial's analysis and alerts.
 */
function writeCatalogue(dir: string, versions: string[]): string {
  const demo = parse(readFileSync(CATALOGUE, 'utf8')) as Record<string, unknown>;
  const bad = demo[FLEET_BAD_VERSION];
  if (bad === undefined) throw new Error(`${CATALOGUE} has no ${FLEET_BAD_VERSION}`);
  const path = join(dir, 'versions.yaml');
  writeFileSync(path, stringify({ ...demo, ...Object.fromEntries(versions.map((v) => [v, bad])) }));
  return path;
}

function policyFor(mode: FleetMode): ServicePolicyInput {
  const policy = fleetPolicy(SERVICE, {
    cycleMs: CYCLE_MS,
    analysis: {
      interval: `${FLEET_INTERVAL_MS}ms`,
      failureLimit: FLEET_FAILURE_LIMIT,
      inconclusiveLimit: 5,
      checks: [errorRatio],
    },
  });
  return mode === 'alert-driven' ? { ...policy, alerts: { rules: [KNOWN_ERROR] } } : policy;
}

/** The receiver's sink, timestamping each webhook's firing alerts by version as they are handed to Temporal. */
class TimedSink implements AlertSink {
  constructor(
    private readonly inner: AlertSink,
    private readonly arrivals: Arrivals,
  ) {}
  signal(service: string, payload: AlertSignal) {
    const at = Date.now();
    for (const alert of payload.alerts) {
      const version = alert.labels.version;
      if (alert.status === 'firing' && version !== undefined) this.arrivals.mark(`webhook:${version}`, at);
    }
    return this.inner.signal(service, payload);
  }
  close() {
    return this.inner.close();
  }
}

/** Prometheus' `activeAt` of the canary's error alert for `version`, if it is active now. */
async function firingSince(prometheusUrl: string, version: string): Promise<number | undefined> {
  const response = await fetch(`${prometheusUrl}/api/v1/alerts`, { signal: AbortSignal.timeout(2_000) });
  const body = (await response.json()) as {
    data?: { alerts?: { labels: Record<string, string>; state: string; activeAt: string }[] };
  };
  const alert = body.data?.alerts?.find(
    (a) => a.labels.alertname === ALERT_NAMES.errorRatio && a.labels.version === version && a.state === 'firing',
  );
  return alert ? Date.parse(alert.activeAt) : undefined;
}

/** The time of Prometheus' first scrape of `version`'s canary: the oldest raw `up` sample still in its TSDB. */
async function firstScrape(prometheusUrl: string, version: string): Promise<number | undefined> {
  const query = `up{service="${SERVICE}", version="${version}", track="canary"}[5m]`;
  const response = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(query)}`, {
    signal: AbortSignal.timeout(2_000),
  });
  const body = (await response.json()) as { data?: { result?: { values?: [number, string][] }[] } };
  const times = (body.data?.result ?? []).flatMap((r) => (r.values ?? []).map(([t]) => t * 1000));
  return times.length > 0 ? Math.min(...times) : undefined;
}

function rolledBackBy(result: ReleaseResult): string {
  const reason = result.reason ?? '';
  if (reason.includes(`alert ${ALERT_NAMES.errorRatio}`)) return 'alert';
  if (/failed analysis rounds/.test(reason)) return 'analysis';
  return `${result.outcome}: ${reason.slice(0, 120)}`;
}

export async function runFleetBench(o: FleetOptions): Promise<FleetResult> {
  const t0 = Date.now();
  const trials: FleetTrial[] = [];
  const failures: string[] = [];
  const total = 2 * o.trialsPerMode;
  const versions = Array.from({ length: total }, (_, n) => `${FLEET_BAD_VERSION}.${n + 1}`);
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    const stateDir = await tempStateDir('alerts');
    cleanups.push(() => removeDir(stateDir));
    const policyDir = writePolicies(FLEET_ORG, [policyFor('analysis-only')]);
    cleanups.push(() => removeDir(policyDir));
    const fleet: Fleet = await startFleet({
      service: SERVICE,
      version: STABLE,
      fleetSize: FLEET_SIZE,
      frontendPort: await freePort(),
      basePort: nextBasePort(),
      stagingPort: await freePort(),
      command: serviceCommand(o.infra.serviceJs, writeCatalogue(stateDir, versions)),
      stateDir,
      fileSdPath: o.infra.fileSdPath,
      retries: false,
      logger: quietLogger(),
    });
    cleanups.push(() => fleet.stop());

    const seen = new Arrivals();
    const config = loadReceiverConfig({
      TOLLGATE_RECEIVER_ADDRESS: `127.0.0.1:${o.receiverPort}`,
      TOLLGATE_RECEIVER_TOKEN: o.token,
      TEMPORAL_ADDRESS: o.infra.env.address,
      TOLLGATE_POLICY_DIR: policyDir,
    });
    const sink = new TimedSink(
      new TemporalAlertSink(connectionSettings(config), config.TOLLGATE_RECEIVER_SIGNAL_TIMEOUT),
      seen,
    );
    const receiver: RunningReceiver = await startReceiver(config, quietLogger(), sink);
    cleanups.push(() => receiver.stop());

    const prometheus = { url: o.infra.prometheusUrl };
    const real = createActivities({
      target: fleet.target,
      metrics: new PrometheusProvider({ url: prometheus.url, timeoutMs: 2_000 }),
      policies: new PolicyStore(policyDir),
      logger: quietLogger(),
      heartbeatEveryMs: 1_000,
    });
    const taskQueue = `bench-alerts-fleet-${randomUUID().slice(0, 8)}`;
    const worker = await Worker.create({
      connection: o.infra.env.nativeConnection,
      taskQueue,
      workflowBundle: { code: o.releaseCode },
      activities: {
        ...real,
        undo: (step: DeployStep) => {
          seen.mark(`undo:${Context.current().info.workflowExecution!.runId}`, Date.now());
          return real.undo(step);
        },
      },
      shutdownGraceTime: '5s',
    });
    const running = worker.run();
    cleanups.push(async () => {
      worker.shutdown();
      await running;
    });

    const runTrial = async (n: number): Promise<FleetTrial> => {
      const mode = FLEET_MODES[n % FLEET_MODES.length]!;
      const version = versions[n]!;
      writeFileSync(join(policyDir, 'services', `${SERVICE}.yaml`), stringify(policyFor(mode)));
      const controller = new AbortController();
      const load = runLoad({
        url: fleet.frontendUrl,
        durationMs: TRIAL_BOUND_MS + 10_000,
        cycleMs: CYCLE_MS,
        ...LOAD,
        maxRequests: Math.ceil((LOAD.peakRps * (TRIAL_BOUND_MS + 10_000)) / 1000),
        timeoutMs: 5_000,
        signal: controller.signal,
      });
      let report: LoadReport | undefined;
      try {
        const handle = await o.infra.env.client.workflow.start('releaseWorkflow', {
          taskQueue,
          workflowId: releaseWorkflowId(SERVICE),
          args: [{ service: SERVICE, version, initiator: 'bench', reason: 'alerts bench' }],
        });
        const undoAt = await seen.wait(`undo:${handle.firstExecutionRunId}`, TRIAL_BOUND_MS);
        const activeAt = await firingSince(prometheus.url, version).catch(() => undefined);
        const scrapedAt = await firstScrape(prometheus.url, version).catch(() => undefined);
        const result = await Promise.race([
          handle.result() as Promise<ReleaseResult>,
          sleepMs(TRIAL_BOUND_MS).then(() => Promise.reject(new Error('rollback not done within 60 s'))),
        ]);
        const status = await handle.query(statusQuery);
        controller.abort();
        report = await load;
        if (report.firstNon2xxAt === undefined) throw new Error(`${version}: the load generator saw no non-2xx`);
        const firstError = Date.parse(report.firstNon2xxAt);
        const webhookAt = await seen.wait(`webhook:${version}`, 0).catch(() => undefined);
        const otherNon2xx = Object.entries(report.non2xxByVersion)
          .filter(([v]) => v !== version)
          .reduce((sum, [, count]) => sum + count, 0);
        return {
          mode,
          version,
          errorToUndoMs: undoAt - firstError,
          ...(scrapedAt !== undefined && { errorToScrapedMs: Math.round(scrapedAt - firstError) }),
          ...(activeAt !== undefined && { errorToFiringMs: activeAt - firstError }),
          ...(webhookAt !== undefined && { errorToWebhookMs: webhookAt - firstError }),
          ...(webhookAt !== undefined && webhookAt <= undoAt && { webhookToUndoMs: undoAt - webhookAt }),
          rolledBackBy: rolledBackBy(result),
          failedRounds: status.analysis.failures,
          otherNon2xx,
        };
      } finally {
        controller.abort();
        await load.catch(() => undefined);
        await o.infra.env.client.workflow
          .getHandle(releaseWorkflowId(SERVICE))
          .terminate('bench over')
          .catch(() => undefined);
      }
    };

    // Modes alternate trial by trial, so both see the same fleet, Prometheus and machine load over the run. A trial
    // is started only if one of the slower mode (≈ 25 s) still fits before the deadline.
    for (let n = 0; n < total && Date.now() + 30_000 < o.deadline && failures.length < 3; n++) {
      try {
        trials.push(await runTrial(n));
      } catch (err) {
        failures.push(`trial ${n} (${FLEET_MODES[n % 2]}): ${err instanceof Error ? err.message : String(err)}`);
      }
      const last = trials.at(-1);
      o.log(
        `alerts/fleet: ${trials.length}/${total} trials` +
          (last ? ` (${last.mode}: ${last.errorToUndoMs} ms, by ${last.rolledBackBy})` : ''),
      );
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
  return {
    intervalMs: FLEET_INTERVAL_MS,
    failureLimit: FLEET_FAILURE_LIMIT,
    maxErrorRatio: FLEET_MAX_ERROR_RATIO,
    rateWindow: ALERT_RULE_DEFAULTS.rateWindow,
    load: LOAD,
    trials,
    failures,
    wallMs: Date.now() - t0,
  };
}
