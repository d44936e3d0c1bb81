import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { clusterBinaries, postgresBinDir, startCluster, type StartTimings } from '../scripts/cluster';
import { runConcurrencyBench, type ConcurrencyResult, type Phase } from './concurrency';
import { devServerPid, treeUsage } from './proc';
import type { Goal } from './report';
import type { SectionOutcome } from './run';
import { startDevServer } from './servers';
import { latency, le, num } from './stats';

/**
 * The concurrency bench's workload — N releases of as many services started at once, all left baking, served by
 * two worker processes on one task queue — on the dev server (one process, SQLite in memory) and on the real
 * cluster of scripts/cluster.ts (PostgreSQL and the four Temporal services as processes of their own), one after
 * the other in the same run, so the two are compared on the same machine in the same minutes.
 */

export interface ClusterBenchOptions {
  bundlePath: string;
  releases: number;
  workers: number;
  steadyMs: number;
  /** Each server's run gets its own half of what is left until here. */
  deadline: number;
  log: (line: string) => void;
}

export interface ServerRun {
  run: ConcurrencyResult;
  /** What the server is: its version, the database behind it. */
  server: string;
}

export interface ClusterBenchResult {
  releases: number;
  workers: number;
  devServer: ServerRun;
  cluster: ServerRun & { start: StartTimings };
  wallMs: number;
}

/** The version a binary's `--version` prints (`temporal version 1.29.1`, `postgres (PostgreSQL) 15.18 (…)`). */
const versionOf = (binary: string) => {
  try {
    const out = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    return /\d+(?:\.\d+)+/.exec(out)?.[0] ?? 'unknown';
  } catch {
    return 'unknown';
  }
};

export async function runClusterBench(opts: ClusterBenchOptions): Promise<ClusterBenchResult> {
  const t0 = Date.now();
  const half = () => Date.now() + (opts.deadline - Date.now()) / 2;
  const workload = { bundlePath: opts.bundlePath, releases: opts.releases, workers: opts.workers, log: opts.log };

  const dev = await startDevServer();
  let devServer: ServerRun;
  try {
    const pid = devServerPid(dev.address);
    if (pid === undefined) throw new Error(`no dev server process found for ${dev.address}`);
    opts.log(`cluster: ${opts.releases} releases on the dev server (pid ${pid})`);
    devServer = {
      run: await runConcurrencyBench({
        ...workload,
        env: dev,
        steadyMs: opts.steadyMs,
        server: () => treeUsage({ 'dev server': pid }),
        deadline: half(),
      }),
      server: 'dev server (`temporal server start-dev`, SQLite in memory)',
    };
  } finally {
    await dev.teardown();
  }

  const cluster = await startCluster({ ui: false, log: opts.log });
  try {
    const env = await TestWorkflowEnvironment.createFromExistingServer({
      address: cluster.address,
      namespace: cluster.namespace,
    });
    try {
      opts.log(`cluster: ${opts.releases} releases on the cluster (${cluster.address})`);
      const run = await runConcurrencyBench({
        ...workload,
        env,
        steadyMs: opts.steadyMs,
        // Looked up at every sample: a part restarted mid-run would otherwise read as zero.
        server: () => treeUsage(cluster.pids()),
        deadline: opts.deadline,
      });
      return {
        releases: opts.releases,
        workers: opts.workers,
        devServer,
        cluster: {
          run,
          server: `Temporal Server ${versionOf(clusterBinaries().server)} as four processes on PostgreSQL ${versionOf(join(postgresBinDir(), 'postgres'))}`,
          start: cluster.timings,
        },
        wallMs: Date.now() - t0,
      };
    } finally {
      await env.teardown();
    }
  } finally {
    await cluster.stop();
  }
}

const HEADING = '## 10. A Temporal cluster on PostgreSQL beside the dev server: releases baking on two workers';

const sum = (parts: Record<string, number> | undefined) => Object.values(parts ?? {}).reduce((n, x) => n + x, 0);
const breakdown = (parts: Record<string, number> | undefined, digits: number, unit: string) =>
  Object.keys(parts ?? {}).length > 1
    ? ` (${Object.entries(parts ?? {})
        .map(([part, x]) => `${part} ${num(x, digits)}${unit}`)
        .join(', ')})`
    : '';
/** Releases one worker carries per GiB of its own peak RSS: releases per worker ÷ a worker's peak, i.e. all ÷ all. */
const perGiB = (r: ConcurrencyResult) => (r.releases / r.peakRssMiB) * 1024;
/** Tasks (workflow and activity) the workers ran in a phase. */
const tasks = (p: Phase) => (p.workflowTaskScheduleToStart?.count ?? 0) + (p.activityScheduleToStart?.count ?? 0);
/** CPU time per task in a phase, in ms: phases that ran different work compare on this, not on CPU share. */
const perTask = (cpuPercent: number, p: Phase) => (tasks(p) > 0 ? ((cpuPercent / 100) * p.wallMs) / tasks(p) : NaN);
/** What each release adds to a worker's RSS, over the worker idle. */
const perRelease = (r: ConcurrencyResult) => (r.peakRssMiB - r.idleRssMiB) / r.releases;

export function clusterSection(outcome: SectionOutcome<ClusterBenchResult>, goals: Goal[], findings: string[]): string {
  const r = outcome.result;
  const goal = `${num(1000)} baking releases on a Temporal cluster on PostgreSQL with two workers: zero errors, side by side with the dev server`;
  if (!r) {
    goals.push({ goal, measured: 'n/a', met: undefined });
    return `${HEADING}

_The cluster bench did not complete: ${outcome.error ?? 'no result'}_
`;
  }
  const sides = [
    ['dev server', r.devServer.run],
    ['cluster', r.cluster.run],
  ] as const;
  const phases = (c: ConcurrencyResult) =>
    [
      ['ramp-up (start → all baking)', c.rampUp],
      ['steady (all baking)', c.steady],
      ['whole window', c.whole],
    ] as const;
  const cpuRow = (server: string, phase: string, p: Phase) =>
    `| ${server} | ${phase} | ${num(p.wallMs / 1000)} s | ${num(p.cpuPercent, 1)} % | ${num(sum(p.serverCpuPercent), 1)} %${breakdown(p.serverCpuPercent, 1, ' %')} | ${num(perTask(p.cpuPercent, p), 1)} / ${num(perTask(sum(p.serverCpuPercent), p), 1)} ms | ${latency(p.workflowTaskScheduleToStart)} | ${latency(p.activityScheduleToStart)} |`;
  const rows = sides.flatMap(([server, c]) => phases(c).map(([phase, p]) => cpuRow(server, phase, p)));
  const memory = sides.map(
    ([server, c]) =>
      `| ${server} | ${c.perWorker.map((w) => `${num(w.idleRssMiB)} → ${num(w.peakRssMiB)}`).join(' and ')} MiB | ${num(perRelease(c), 2)} MiB | ${num(perGiB(c))} | ${num(sum(c.serverPssMiB?.idle))} → ${num(sum(c.serverPssMiB?.end))} MiB${breakdown(c.serverPssMiB?.end, 0, '')} | ${c.errors.length === 0 ? '0' : c.errors.join('; ')} |`,
  );
  const c = r.cluster.run;
  const d = r.devServer.run;
  const errors = c.errors.length + d.errors.length;
  goals.push({
    goal,
    measured:
      `${num(r.releases)} releases: ${c.errors.length} errors on the cluster, ${d.errors.length} on the dev server; ` +
      `workflow task schedule-to-start p99 once baking ${le(c.steady.workflowTaskScheduleToStart?.p99LeMs ?? NaN)} ` +
      `(dev server ${le(d.steady.workflowTaskScheduleToStart?.p99LeMs ?? NaN)}); ${num(perGiB(c))} releases per GiB of a worker`,
    met: r.releases >= 1000 ? errors === 0 : undefined,
  });
  const times = (x: number, y: number) => (y > 0 ? `${num(x / y, 1)}×` : 'n/a');
  const busiest = Object.entries(c.rampUp.serverCpuPercent ?? {})
    .sort((x, y) => y[1] - x[1])
    .slice(0, 2)
    .map(([part, x]) => `${part} ${num(x, 0)} %`)
    .join(', ');
  // The whole window: the steady one holds different work on each (a longer ramp leaves more of it in the window).
  const [cw, dw] = [c.whole, d.whole];
  const serverPerTask = [perTask(sum(cw.serverCpuPercent), cw), perTask(sum(dw.serverCpuPercent), dw)] as const;
  const workerPerTask = [perTask(cw.cpuPercent, cw), perTask(dw.cpuPercent, dw)] as const;
  findings.push(
    `- **A task costs the cluster ${times(...serverPerTask)} the dev server's CPU and the workers ` +
      `${times(...workerPerTask)}; with ${num(r.releases)} releases baking it holds ${times(sum(c.serverPssMiB?.end), sum(d.serverPssMiB?.end))} ` +
      `the memory**: over the whole window ${num(serverPerTask[0], 1)} against ${num(serverPerTask[1], 1)} ms of server ` +
      `CPU per workflow or activity task (PostgreSQL and four services against one process on SQLite in memory), ` +
      `${num(workerPerTask[0], 1)} against ${num(workerPerTask[1], 1)} ms of the workers', and ` +
      `${num(sum(c.serverPssMiB?.end))} against ${num(sum(d.serverPssMiB?.end))} MiB. On 2 cores shared with the workers ` +
      `that is what stretches the start-up burst: every release baking after ${num(c.rampUp.wallMs / 1000)} s on the ` +
      `cluster against ${num(d.rampUp.wallMs / 1000)} s (the cluster at ${num(sum(c.rampUp.serverCpuPercent), 0)} % of a ` +
      `core meanwhile: ${busiest}); once baking, workflow task schedule-to-start p99 is ` +
      `${le(c.steady.workflowTaskScheduleToStart?.p99LeMs ?? NaN)} on the cluster, ` +
      `${le(d.steady.workflowTaskScheduleToStart?.p99LeMs ?? NaN)} on the dev server. A worker carries ≈ ${num(perGiB(c))} ` +
      `baking releases per GiB of its RSS (≈ ${num(perRelease(c), 2)} MiB each over an idle worker, ` +
      `${num(perRelease(d), 2)} on the dev server); ${errors} errors on either server.`,
  );
  return `${HEADING}

The workload of §4 (${c.cycle} cycle, analysis every ${c.interval}; real activities, dry-run target, instant analysis
double) with **${num(r.releases)} releases** and **${r.workers} worker processes** polling one task queue (the product
worker's capacity settings, workflow cache ${num(c.worker.maxCachedWorkflows)}), run first on the ${r.devServer.server}
and then on the ${r.cluster.server} (\`npm run cluster\`'s cluster: \`scripts/cluster.ts\`,
\`deploy/temporal/cluster.yaml\`; it started in ${num(r.cluster.start.totalMs / 1000, 1)} s,
${r.cluster.start.initdb ? 'a new database' : 'existing data'}). Worker CPU adds up both workers' \`process.cpuUsage()\`;
server CPU and memory come from /proc: each server process and every process under it (PostgreSQL's backends, with
the CPU of those it has reaped); memory there is PSS, each shared page split among the processes sharing it, so
PostgreSQL's shared buffers count once.
Schedule-to-start merges both workers' SDK histograms; CPU per task divides CPU time by the workflow and activity
tasks the workers ran in the phase. "Per GiB" is releases per worker ÷ a worker's peak RSS.
Errors: failed starts, releases not baking or no longer running, worker ERROR log lines, workflow task failures.

| server | phase | wall | workers' CPU (of one core) | server CPU | CPU per task, workers / server | workflow task schedule-to-start p50 / p99 | activity schedule-to-start p50 / p99 |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

| server | each worker's RSS, idle → peak | (peak − idle) ÷ releases | releases per GiB of a worker | server memory (PSS), idle → end of steady window | errors |
| --- | --- | --- | --- | --- | --- |
${memory.join('\n')}

\`BENCH_SECTIONS=cluster npm run bench\` re-runs this section alone; \`BENCH_CLUSTER_RELEASES\` sets the releases
(default 1,000). Section wall time: ${num(r.wallMs / 1000)} s.
`;
}
