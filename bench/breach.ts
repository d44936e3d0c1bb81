import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { checkQueries } from '../src/domain/check-templates';
import { REQUESTS_TOTAL } from '../src/domain/metric-names';
import { checkSchema, type ServicePolicyInput } from '../src/domain/policy';
import { releaseWorkflowId } from '../src/domain/release';
import { PrometheusProvider } from '../src/providers/metrics/prometheus';
import { PROMETHEUS_BINARY, startPrometheus, type RunningPrometheus } from '../test/helpers/prometheus';
import { BreachExporter } from './breach-exporter';
import { StepWorker } from './breach-worker-handle';
import { Arrivals, benchService, benchServices, SERVICE, sleepMs, writePolicies } from './fixtures';

/**
 * Breach → rollback over a real Prometheus: canary versions served by a scrape target the bench controls, analysed
 * by the real `analyze` activity through the project's Prometheus provider. Once a canary's analysis has passed a
 * round, the bench turns its error share up at a recorded moment (the flip), polls Prometheus' query API with the
 * check's own query until it shows the breach, and waits for the first undo to start on the worker.
 */

export const BREACH_INTERVAL_MS = 2_000;
export const BREACH_SCRAPE_MS = 1_000;
/** Alternated trial by trial: the service policy's limit, and a request tightening it to one failed round. */
export const BREACH_FAILURE_LIMITS = [3, 1] as const;
const STABLE = '1.0.0';
const HEALTHY_SHARE = 0.002;
const BREACH_SHARE = 0.2;
const check = checkSchema.parse({ name: 'errors', template: 'error-ratio', max: 0.01 });
const MAX = check.max!;
const VISIBLE_POLL_MS = 25;

export interface BreachTrial {
  failureLimit: number;
  /** Flip → the first instant query answering with the breach (the answer's arrival). */
  flipToVisibleMs: number;
  /** Visible in Prometheus → the first undo activity started on the worker. */
  visibleToRollbackMs: number;
  flipToRollbackMs: number;
  /** The round whose failure decided (its query was sent) → the first undo started. */
  decisionToRollbackMs: number;
  /** Analysis rounds from the flip to the rollback: all of them, those that failed, those that found no data. */
  rounds: number;
  failedRounds: number;
  noDataRounds: number;
}

export interface BreachResult {
  intervalMs: number;
  scrapeMs: number;
  /** The rate window of the check's query (the analysis interval, as the templates build it). */
  rateWindow: string;
  query: string;
  prometheus: string;
  lanes: number;
  trials: BreachTrial[];
  failures: string[];
  wallMs: number;
}

export interface BreachOptions {
  env: TestWorkflowEnvironment;
  bundlePath: string;
  trials: number;
  /** Releases in flight at once (their flips fall at random moments, so they rarely coincide). */
  lanes: number;
  deadline: number;
  log: (line: string) => void;
}

function breachPolicy(): ServicePolicyInput {
  return {
    service: SERVICE,
    trafficCycle: { duration: '1h' },
    canary: {
      analysis: {
        interval: `${BREACH_INTERVAL_MS / 1000}s`,
        failureLimit: BREACH_FAILURE_LIMITS[0],
        inconclusiveLimit: 10,
        checks: [check],
      },
    },
    production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
  };
}

const queryFor = (service: string, version: string) =>
  checkQueries(check, {
    service,
    version,
    stableVersion: STABLE,
    track: 'canary',
    stepSeconds: BREACH_INTERVAL_MS / 1000,
  }).canary;

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

function prometheusVersion(): string {
  try {
    const out = execFileSync(PROMETHEUS_BINARY, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    const version = /version (\S+)/.exec(out)?.[1];
    return version ? `${version}, ${PROMETHEUS_BINARY}` : PROMETHEUS_BINARY;
  } catch {
    return `${PROMETHEUS_BINARY} (version unknown)`;
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, deadline: number, everyMs: number) {
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not by the deadline`);
    await sleepMs(everyMs);
  }
}

export async function runBreachBench(opts: BreachOptions): Promise<BreachResult> {
  const t0 = Date.now();
  const taskQueue = `bench-breach-${randomUUID().slice(0, 8)}`;
  const trials: BreachTrial[] = [];
  const failures: string[] = [];
  let exporter: BreachExporter | undefined;
  let prometheus: RunningPrometheus | undefined;
  let worker: StepWorker | undefined;
  try {
    // A service per trial, so releases in flight at once each run as their own `release-<service>`.
    const services = benchServices(opts.trials);
    const served = await BreachExporter.start(services, STABLE);
    exporter = served.exporter;
    prometheus = await startPrometheus({
      scrapeIntervalSeconds: BREACH_SCRAPE_MS / 1000,
      staticTargets: [{ targets: [served.target] }],
    });
    const provider = new PrometheusProvider({ url: prometheus.url, timeoutMs: 2000 });
    await until(
      'a first scrape',
      () => provider.query(`sum(${REQUESTS_TOTAL}{track="stable"})`),
      Math.min(opts.deadline, Date.now() + 20_000),
      100,
    );
    worker = await StepWorker.start({
      address: opts.env.address,
      taskQueue,
      bundlePath: opts.bundlePath,
      policyDir: writePolicies(breachPolicy(), services),
      prometheusUrl: prometheus.url,
    });
    const arrivals = new Arrivals();
    /** Per release: its check's query, and every answer the analysis got to it. */
    const watched = new Map<string, { query: string; rounds: { at: number; values: number[] }[] }>();
    worker.onMessage((m) => {
      if (m.type === 'undo') arrivals.mark(`undo:${m.workflowId}`, m.at);
      if (m.type !== 'query') return;
      const w = watched.get(m.workflowId);
      if (!w || m.query !== w.query) return;
      w.rounds.push({ at: m.at, values: m.values });
      if (m.values.length > 0 && mean(m.values) <= MAX) arrivals.mark(`pass:${m.workflowId}`, m.at);
    });

    const runTrial = async (n: number): Promise<BreachTrial> => {
      const ex = exporter!;
      const version = `2.0.${n}`;
      const failureLimit = BREACH_FAILURE_LIMITS[n % BREACH_FAILURE_LIMITS.length]!;
      const service = benchService(n);
      const workflowId = releaseWorkflowId(service);
      const query = queryFor(service, version);
      const rounds: { at: number; values: number[] }[] = [];
      watched.set(workflowId, { query, rounds });
      ex.set(service, 'canary', version, HEALTHY_SHARE);
      const started = opts.env.client.workflow.start('releaseWorkflow', {
        taskQueue,
        workflowId,
        args: [
          {
            service,
            version,
            initiator: 'bench',
            ...(failureLimit !== BREACH_FAILURE_LIMITS[0] && { policy: { canary: { analysis: { failureLimit } } } }),
          },
        ],
      });
      try {
        const handle = await started;
        await arrivals.wait(`pass:${workflowId}`, 30_000);
        // A random phase against the analysis rounds, as a real breach would have.
        await sleepMs(Math.random() * BREACH_INTERVAL_MS);
        const undone = arrivals.wait(`undo:${workflowId}`, failureLimit * BREACH_INTERVAL_MS + 30_000);
        undone.catch(() => undefined);
        const flipAt = ex.set(service, 'canary', version, BREACH_SHARE);
        const visibleAt = await until(
          'breach visible in Prometheus',
          async () => ((await provider.query(query)) ?? 0) > MAX || undefined,
          flipAt + 20_000,
          VISIBLE_POLL_MS,
        ).then(() => Date.now());
        const rollbackAt = await undone;
        const after = rounds.filter((r) => r.at >= flipAt && r.at <= rollbackAt);
        const deciding = after.at(-1);
        await Promise.race([handle.result().catch(() => undefined), sleepMs(10_000)]);
        return {
          failureLimit,
          flipToVisibleMs: visibleAt - flipAt,
          visibleToRollbackMs: rollbackAt - visibleAt,
          flipToRollbackMs: rollbackAt - flipAt,
          decisionToRollbackMs: deciding ? rollbackAt - deciding.at : NaN,
          rounds: after.length,
          failedRounds: after.filter((r) => r.values.length > 0 && mean(r.values) > MAX).length,
          noDataRounds: after.filter((r) => r.values.length === 0).length,
        };
      } finally {
        await started.then((h) => h.terminate('bench over')).catch(() => undefined);
        watched.delete(workflowId);
        ex.remove(service, 'canary', version);
      }
    };

    let next = 0;
    const lane = async () => {
      while (next < opts.trials && Date.now() < opts.deadline && failures.length < 5) {
        const n = next++;
        try {
          trials.push(await runTrial(n));
        } catch (err) {
          failures.push(`trial ${n}: ${err instanceof Error ? err.message : String(err)}`);
        }
        opts.log(`breach: ${trials.length}/${opts.trials} trials`);
      }
    };
    await Promise.all(Array.from({ length: opts.lanes }, lane));
  } finally {
    await worker?.stop().catch(() => undefined);
    await prometheus?.stop().catch(() => undefined);
    await exporter?.close().catch(() => undefined);
  }
  return {
    intervalMs: BREACH_INTERVAL_MS,
    scrapeMs: BREACH_SCRAPE_MS,
    rateWindow: `${BREACH_INTERVAL_MS / 1000}s`,
    query: queryFor(SERVICE, 'VERSION').replaceAll(`"${SERVICE}"`, '"<service>"').replaceAll('VERSION', '<version>'),
    prometheus: prometheusVersion(),
    lanes: opts.lanes,
    trials,
    failures,
    wallMs: Date.now() - t0,
  };
}
