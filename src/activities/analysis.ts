import type { CheckResult } from '../domain/analysis';
import { checkQueries, type CheckQueryContext } from '../domain/check-templates';
import { DEFAULT_METRIC_NAMES, type MetricNames } from '../domain/metric-names';
import { judgeCheck, type CheckSamples } from '../domain/judge';
import type { Check } from '../domain/policy';
import type { CommandRunner } from '../providers/external/types';
import { runJobCheck } from '../providers/metrics/job';
import type { MetricsProvider, RangeWindow } from '../providers/metrics/types';
import { WebMetrics } from '../providers/metrics/web';
import type { ReleaseContext } from './types';

const REQUEST_COUNT: Check = { name: 'requests', template: 'request-count', min: 0, critical: false };

/** How many per-interval samples a round reads: enough for the baseline test, one for a plain threshold. */
const samplesFor = (check: Check) => check.baseline?.minSamples ?? 1;

/**
 * Prometheus applies service-discovery changes on 5 s tickers and needs two scrapes to rate a new series, so a canary
 * can take traffic seconds before its metrics exist. Staying under the analysis activity's heartbeat timeout matters
 * too: nothing heartbeats while a round waits.
 */
const FIRST_DATA_WAIT_MAX_MS = 15_000;
const FIRST_DATA_POLL_MS = 500;

/**
 * Until the canary's request count has a value, for at most `budgetMs`; says whether it waited. Judging the first
 * round before then would spend it as inconclusive and put off the verdict on a faulty canary by a whole interval;
 * waiting costs only the lag. A query or provider that fails is not waited for: the round reports it.
 */
async function waitForCanaryData(
  metrics: MetricsProvider,
  ctx: CheckQueryContext,
  names: MetricNames,
  budgetMs: number,
): Promise<boolean> {
  let query: string;
  try {
    query = checkQueries(REQUEST_COUNT, ctx, names).canary;
  } catch {
    return false;
  }
  const deadline = Date.now() + budgetMs;
  for (let poll = 0; poll <= Math.ceil(budgetMs / FIRST_DATA_POLL_MS); poll++) {
    const at = new Date();
    const counted = await metrics
      .queryRange(query, { start: at, end: at, stepSeconds: ctx.stepSeconds })
      .catch(() => undefined);
    if (counted === undefined || counted.length > 0 || Date.now() >= deadline) return poll > 0;
    await new Promise((r) => setTimeout(r, FIRST_DATA_POLL_MS));
  }
  return true;
}

async function samples(metrics: MetricsProvider, query: string, window: RangeWindow): Promise<number[]> {
  return metrics.queryRange(query, window);
}

/** Where checks that are not Prometheus get their evidence. */
export interface CheckSources {
  /** Web checks' client; one over the worker's own environment when left out. */
  web?: WebMetrics;
  /** Runs job checks; without one, every job check is inconclusive. */
  commands?: CommandRunner;
  /** The activity's cancellation: web requests and jobs in flight stop with it. */
  signal?: AbortSignal;
  /** Each line a job check's command writes, already sanitised. */
  onJobLine?: (check: string, line: string, stream: 'stdout' | 'stderr') => void;
}

const workerWeb = new WebMetrics();

/**
 * A check recorded before checks had providers (an old history) has none: Prometheus, as it was then. The first-data
 * wait and the request count stay Prometheus' too: they are about Prometheus' scrape lag and the canary's traffic.
 */
const readsPrometheus = (check: Check) => check.provider === undefined;

/** One analysis round: every check judged on the canary's (and baseline's) per-interval samples up to `now`. */
export async function analysisRound(
  metrics: MetricsProvider,
  context: ReleaseContext,
  checks: Check[],
  intervalMs: number,
  roundAt: Date,
  /** Rounds already run this stage: how many intervals of canary data exist. */
  roundsSoFar = Number.POSITIVE_INFINITY,
  metricNames: MetricNames = DEFAULT_METRIC_NAMES,
  sources: CheckSources = {},
  /** Baseline samples end here instead of at the round (the watch's before/after comparison). */
  baselineEnd?: Date,
): Promise<{ results: CheckResult[]; requests: number }> {
  const stepSeconds = Math.max(1, Math.round(intervalMs / 1000));
  const ctx = { ...context, stableVersion: context.stableVersion, stepSeconds };
  // A round whose checks all ask other sources has nothing to gain from waiting out Prometheus' lag.
  const waitsForPrometheus = checks.length === 0 || checks.some(readsPrometheus);
  const waited =
    roundsSoFar === 0 &&
    waitsForPrometheus &&
    (await waitForCanaryData(metrics, ctx, metricNames, Math.min(intervalMs, FIRST_DATA_WAIT_MAX_MS)));
  const now = waited ? new Date() : roundAt;
  const windowFor = (n: number, end = now): RangeWindow => ({
    start: new Date(end.getTime() - (n - 1) * stepSeconds * 1000),
    end,
    stepSeconds,
  });
  const at = now.toISOString();
  const web = sources.web ?? workerWeb;
  const checkSamples = async (check: Check, needed: number): Promise<CheckSamples> => {
    if (check.provider?.web) {
      const population = { ...context, end: now, intervals: needed, stepSeconds };
      return web.samples(check, check.provider.web, population, sources.signal);
    }
    const queries = checkQueries(check, ctx, metricNames);
    const window = windowFor(needed);
    const [canary, baseline] = await Promise.all([
      samples(metrics, queries.canary, window),
      queries.baseline
        ? samples(metrics, queries.baseline, baselineEnd ? windowFor(needed, baselineEnd) : window)
        : Promise.resolve([]),
    ]);
    return { canary, baseline };
  };
  const results = await Promise.all(
    checks.map(async (check): Promise<CheckResult> => {
      const needed = samplesFor(check);
      if (roundsSoFar + 1 < needed) {
        const reason = `warming up: ${roundsSoFar + 1}/${needed} intervals of canary data`;
        return { check: check.name, verdict: 'inconclusive', critical: check.critical, reason, warmingUp: true, at };
      }
      const { job } = check.provider ?? {};
      if (job) {
        return runJobCheck(
          sources.commands,
          check,
          job,
          { ...context, windowSeconds: stepSeconds, at },
          {
            ...(sources.signal && { signal: sources.signal }),
            ...(sources.onJobLine && { onLine: (line, stream) => sources.onJobLine?.(check.name, line, stream) }),
          },
        );
      }
      try {
        return judgeCheck(check, await checkSamples(check, needed), at);
      } catch (err) {
        // A provider that cannot answer is missing evidence: inconclusive, never a pass.
        return {
          check: check.name,
          verdict: 'inconclusive',
          critical: check.critical,
          reason: (err as Error).message,
          at,
        };
      }
    }),
  );
  // Cancelled mid-round: what the round saw was cut off by the cancellation, not evidence about the canary.
  sources.signal?.throwIfAborted();
  let requests = 0;
  try {
    const counted = await metrics.queryRange(checkQueries(REQUEST_COUNT, ctx, metricNames).canary, windowFor(1));
    requests = Math.round(counted.at(-1) ?? 0);
  } catch {
    // Unknown request counts only delay the minimum-requests rule; they never satisfy it.
  }
  return { results, requests };
}
