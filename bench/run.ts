import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { bundleWorkflowCode, DefaultLogger, makeTelemetryFilterString, Runtime } from '@temporalio/worker';
import { PROJECT_ROOT } from '../scripts/temporal-binaries';
import { workflowBundlerOptions } from '../src/worker';
import { runAlertsBench, type AlertsResult } from './alerts';
import { runClusterBench, type ClusterBenchResult } from './cluster';
import { runConcurrencyBench, type ConcurrencyResult } from './concurrency';
import { runExternalBench, type ExternalResult } from './external';
import { runHeartbeatBench, type HeartbeatResult } from './heartbeats';
import { runKubernetesBench, type KubernetesResult } from './kubernetes';
import { runHistoryBench, type HistoryResult } from './history';
import { machine, versions } from './machine';
import { runReactionBench, type ReactionResult } from './reaction';
import { runRollbackBench, type RollbackResult } from './rollback';
import { renderPartial, renderReport, SECTION_KEYS, spliceReport, type SectionKey } from './report';
import { startDevServer } from './servers';
import { runStartupBench, type StartupResult } from './startup';

/**
 * `npm run bench`: every figure in one invocation, each section bounded in wall time, written to BENCHMARKS.md.
 * Knobs (environment): BENCH_QUICK=1 runs a few repetitions of everything (a smoke test of the bench, figures not
 * for keeping); BENCH_CONCURRENCY (default 100,1000) the numbers of releases baking at once; BENCH_CLUSTER_RELEASES
 * (default 1000) the releases baking on two workers on the Temporal cluster and on the dev server; BENCH_SECTIONS
 * (history,startup,reaction,concurrency,heartbeats,kubernetes,external,alerts,rollback,cluster), BENCH_REACTION
 * (abort,approve,breach) and BENCH_OUT (another file) for a partial run; BENCH_BUDGET_MS bounds the whole run;
 * BENCH_MAX_CACHED_WORKFLOWS overrides the concurrency worker's workflow cache (else the product's
 * TOLLGATE_MAX_CACHED_WORKFLOWS). BENCH_SECTIONS naming only some
 * sections (e.g. history, or heartbeats) rewrites only theirs in BENCHMARKS.md — their text, goals and findings — and
 * says so in its header; a quick or failed partial run goes to dist/bench-<sections>.md instead, BENCHMARKS.md
 * untouched.
 */
const quick = process.env.BENCH_QUICK === '1';
const concurrencyLevels = (process.env.BENCH_CONCURRENCY ?? '100,1000').split(',').map(Number);
/** A concurrency run's wall-time bound: start-up burst, steady window, then describing and terminating every release. */
const concurrencyBoundMs = (releases: number) => (releases >= 1000 ? 240_000 : 120_000);
// 210 s of it for the reaction section's approve → deploy and breach → rollback parts (≈ 160 s in a run); 180 s for
// the external-target section (≈ 60 s in a run); 360 s for the alerts section (its own bound); 600 s for the rollback
// section (its own bound).
const ALERTS_BOUND_MS = 360_000;
const ROLLBACK_BOUND_MS = 600_000;
const clusterReleases = Number(process.env.BENCH_CLUSTER_RELEASES ?? 1000);
/** Both servers' runs (≈ 2 × 3 min at 1,000 releases) and the cluster's start and stop. */
const CLUSTER_BOUND_MS = 900_000;
const BUDGET_MS = Number(
  process.env.BENCH_BUDGET_MS ??
    435_000 +
      600_000 +
      180_000 +
      ALERTS_BOUND_MS +
      ROLLBACK_BOUND_MS +
      CLUSTER_BOUND_MS +
      concurrencyLevels.reduce((sum, n) => sum + concurrencyBoundMs(n), 0),
);
const maxCached = process.env.BENCH_MAX_CACHED_WORKFLOWS ? Number(process.env.BENCH_MAX_CACHED_WORKFLOWS) : undefined;
const SECTIONS = new Set(process.env.BENCH_SECTIONS?.split(',') ?? SECTION_KEYS);
/** The sections on the dev server: it is started only for them. */
const DEV_SERVER_SECTIONS: SectionKey[] = ['startup', 'reaction', 'concurrency'];
/** Healthy 2-hour stretches each heartbeat option runs (at 1/60 of real time: 2 min each). */
const HEARTBEAT_STRETCHES = quick ? 1 : 3;

export interface SectionOutcome<T> {
  result?: T;
  error?: string;
}

export interface BenchReport {
  startedAt: string;
  command: string;
  quick: boolean;
  machine: ReturnType<typeof machine>;
  versions: ReturnType<typeof versions>;
  bundleMs: number;
  history: SectionOutcome<HistoryResult>;
  startup: SectionOutcome<StartupResult>;
  reaction: SectionOutcome<ReactionResult>;
  concurrency: SectionOutcome<ConcurrencyResult>[];
  heartbeats: SectionOutcome<HeartbeatResult>;
  kubernetes: SectionOutcome<KubernetesResult>;
  external: SectionOutcome<ExternalResult>;
  alerts: SectionOutcome<AlertsResult>;
  rollback: SectionOutcome<RollbackResult>;
  cluster: SectionOutcome<ClusterBenchResult>;
  totalMs: number;
}

const noop = () => undefined;
const quietBundlerLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error };

const log = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

async function section<T>(name: string, run: () => Promise<T>): Promise<SectionOutcome<T>> {
  if (!SECTIONS.has(name)) return { error: 'skipped (BENCH_SECTIONS)' };
  const t0 = Date.now();
  log(`${name}: start`);
  try {
    const result = await run();
    log(`${name}: done in ${Math.round((Date.now() - t0) / 1000)} s`);
    return { result };
  } catch (err) {
    log(`${name}: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const end = t0 + BUDGET_MS;
  /** A section's deadline: its own bound, never past the overall end. */
  const until = (boundMs: number) => Math.min(end, Date.now() + boundMs);
  const knobs = [
    'BENCH_QUICK',
    'BENCH_CONCURRENCY',
    'BENCH_CLUSTER_RELEASES',
    'BENCH_SECTIONS',
    'BENCH_REACTION',
    'BENCH_BUDGET_MS',
    'BENCH_MAX_CACHED_WORKFLOWS',
  ]
    .filter((k) => process.env[k] !== undefined)
    .map((k) => `${k}=${process.env[k]} `)
    .join('');
  const report: Partial<BenchReport> = {
    startedAt: new Date(t0).toISOString(),
    command: `${knobs}npm run bench`,
    quick,
    machine: machine(),
    versions: versions(),
  };

  // Quiet: workflow INFO lines and the test server's missing-capability warning would only bury the figures.
  Runtime.install({
    logger: new DefaultLogger('ERROR'),
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'ERROR' }), forward: {} } },
  });
  const b0 = Date.now();
  // Bundled as `npm run build` bundles the product, so the bench's workers run what a real worker runs.
  const bundle = async (workflowsPath: string) =>
    (await bundleWorkflowCode({ workflowsPath, logger: quietBundlerLogger, ...workflowBundlerOptions() })).code;
  const benchCode = await bundle(require.resolve('./workflows'));
  const releaseCode = await bundle(require.resolve('../src/workflows'));
  const bundlePath = join(tmpdir(), `tollgate-bench-${randomUUID().slice(0, 8)}.js`);
  writeFileSync(bundlePath, benchCode);
  report.bundleMs = Date.now() - b0;
  log(`bundled workflows in ${report.bundleMs} ms`);

  report.history = await section('history', () =>
    runHistoryBench({
      code: benchCode,
      // The naive design runs no 30-day release: it cannot finish 7 days (its figure there is projected).
      repeats: quick
        ? {
            release: { '1-hour': 2, '24-hour': 2, '7-day': 1, '30-day': 1 },
            naive: { '1-hour': 2, '24-hour': 1, '7-day': 1, '30-day': 0 },
          }
        : {
            release: { '1-hour': 5, '24-hour': 5, '7-day': 5, '30-day': 2 },
            naive: { '1-hour': 5, '24-hour': 2, '7-day': 1, '30-day': 0 },
          },
      // Past its bound a naive run is stopped: on a busy machine the 7-day one may not reach the limit by then.
      naiveRunBoundMs: 240_000,
      releaseRunBoundMs: 120_000,
      deadline: until(300_000),
      log,
    }),
  );

  report.heartbeats = await section('heartbeats', () =>
    runHeartbeatBench({ code: benchCode, stretchesPerOption: HEARTBEAT_STRETCHES, scale: 60, log }),
  );

  report.kubernetes = await section('kubernetes', () => runKubernetesBench(quick ? 1 : 5, until(600_000)));

  report.external = await section('external', () =>
    runExternalBench({ steps: quick ? 50 : 500, deadline: until(180_000), log }),
  );

  // Its own dev server, Prometheus and Alertmanager: none of the other sections share them.
  report.alerts = await section('alerts', () =>
    runAlertsBench({
      releaseCode,
      bundlePath,
      fleetTrialsPerMode: quick ? 2 : 10,
      webhookTrials: quick ? 20 : 200,
      batch: 25,
      deadline: until(ALERTS_BOUND_MS),
      log,
    }),
  );

  // Its own dev server, Prometheus and the 10-instance demo fleet.
  report.rollback = await section('rollback', () =>
    runRollbackBench({
      releaseCode,
      trialsPerMode: quick ? 1 : 5,
      breachTrialsPerMode: quick ? 1 : 3,
      deadline: until(ROLLBACK_BOUND_MS),
      log,
    }),
  );

  // Its own dev server and cluster, one after the other.
  report.cluster = await section('cluster', () =>
    runClusterBench({
      bundlePath,
      releases: clusterReleases,
      workers: 2,
      steadyMs: quick ? 10_000 : 60_000,
      deadline: until(CLUSTER_BOUND_MS),
      log,
    }),
  );

  const skipped = { error: 'skipped (BENCH_SECTIONS)' };
  report.startup = report.reaction = skipped;
  report.concurrency = [];
  if (DEV_SERVER_SECTIONS.some((key) => SECTIONS.has(key))) {
    await devServerSections(report, until, { releaseCode, bundlePath });
  }
  report.totalMs = Date.now() - t0;
  const partial = SECTION_KEYS.filter((key) => SECTIONS.has(key));
  if (process.env.BENCH_OUT === undefined && partial.length < SECTION_KEYS.length) {
    writeSectionsOnly(report as BenchReport, partial);
    return;
  }
  const out = process.env.BENCH_OUT ?? join(PROJECT_ROOT, 'BENCHMARKS.md');
  writeFileSync(out, renderReport(report as BenchReport));
  log(`wrote ${out} in ${Math.round(report.totalMs / 1000)} s`);
}

/** Start-up, reaction and concurrency, on one dev server. */
async function devServerSections(
  report: Partial<BenchReport>,
  until: (boundMs: number) => number,
  { releaseCode, bundlePath }: { releaseCode: string; bundlePath: string },
): Promise<void> {
  const env = await startDevServer();
  try {
    report.startup = await section('startup', () =>
      runStartupBench({
        env,
        workflowsPath: require.resolve('../src/workflows'),
        code: releaseCode,
        runsPerMode: quick ? 2 : 5,
        deadline: until(60_000),
        log,
      }),
    );
    report.reaction = await section('reaction', () =>
      runReactionBench({
        env,
        bundlePath,
        trialsPerKind: quick ? 20 : 200,
        batch: 25,
        breachTrials: quick ? 4 : 20,
        deadline: until(400_000),
        log,
      }),
    );
    report.concurrency = [];
    for (const releases of concurrencyLevels) {
      report.concurrency.push(
        await section('concurrency', () =>
          runConcurrencyBench({
            env,
            bundlePath,
            releases,
            steadyMs: quick ? 10_000 : 60_000,
            ...(maxCached !== undefined && { maxCachedWorkflows: maxCached }),
            deadline: until(concurrencyBoundMs(releases)),
            log,
          }),
        ),
      );
    }
  } finally {
    await env.teardown();
  }
}

const measured = (report: BenchReport, key: SectionKey): boolean =>
  key === 'concurrency'
    ? report.concurrency.length > 0 && report.concurrency.every((c) => c.result !== undefined)
    : report[key].result !== undefined;

/**
 * A partial run (BENCH_SECTIONS naming some sections): their sections of BENCHMARKS.md replaced, with their goals
 * and findings, and the header's line of sections re-run alone; every other line of the file as it was. A quick
 * run, or one where a section did not complete, goes to dist/ instead, so figures not for keeping never reach
 * BENCHMARKS.md.
 */
function writeSectionsOnly(report: BenchReport, keys: SectionKey[]): void {
  const dir = join(PROJECT_ROOT, 'dist');
  const name = `bench-${keys.join('+')}`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(report, null, 1));
  const out = join(PROJECT_ROOT, 'BENCHMARKS.md');
  const keep = !report.quick && keys.every((key) => measured(report, key)) && existsSync(out);
  if (!keep) {
    const aside = join(dir, `${name}${report.quick ? '.quick' : ''}.md`);
    writeFileSync(aside, renderPartial(report, keys));
    log(`wrote ${aside} (BENCHMARKS.md untouched) in ${Math.round(report.totalMs / 1000)} s`);
    return;
  }
  writeFileSync(out, spliceReport(readFileSync(out, 'utf8'), report, keys));
  log(
    `wrote §${keys.map((key) => SECTION_KEYS.indexOf(key) + 1).join(', §')} of ${out} in ${Math.round(report.totalMs / 1000)} s`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
