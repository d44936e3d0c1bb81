import type { ConcurrencyResult, HistogramSummary } from './concurrency';
import {
  ANALYSIS_HEARTBEAT_TIMEOUT_MS,
  HEARTBEAT_SPACING_MS,
  HISTORY_EVENT_LIMIT,
  type CycleResult,
  type RunCost,
} from './history';
import type { BenchReport, SectionOutcome } from './run';
import type { AbortResult, ApproveResult } from './reaction';
import type { BreachResult, BreachTrial } from './breach';
import { heartbeatSection } from './report-heartbeats';
import { medianRange, num, summarize, type Summary } from './stats';

const GOAL_MAX_EVENTS = 4_096;
const GOAL_EVENT_RATIO = 50;
const GOAL_ABORT_P99_MS = 250;
const GOAL_STARTUP_RATIO = 2;

interface Goal {
  goal: string;
  measured: string;
  met: boolean | undefined;
  /** Instead of met / not met, for figures without a numeric goal. */
  verdict?: string;
}

const verdict = (met: boolean | undefined) => (met === undefined ? 'not measured' : met ? '**met**' : '**not met**');
const seconds = (ms: number) => `${num(ms / 1000, 0)} s`;
const le = (ms: number) => (Number.isFinite(ms) ? `≤ ${num(ms)} ms` : '> 2,000 ms');
const failed = (name: string, s: SectionOutcome<unknown>) =>
  s.error !== undefined ? `_${name} did not complete: ${s.error}_\n` : '';

const ROUNDS = (c: CycleResult) => c.cycleMs / 60_000;
const stat = (runs: RunCost[], pick: (r: RunCost) => number): Summary => summarize(runs.map(pick));

/**
 * The naive design's cost of a whole release when it cannot finish one: its cost is linear in check rounds, so the
 * line through its measured 1-hour and 24-hour medians, taken out to the cycle's rounds.
 */
function naiveLine(cycles: CycleResult[], pick: (r: RunCost) => number) {
  const a = cycles.find((c) => c.label === '1-hour');
  const b = cycles.find((c) => c.label === '24-hour');
  if (!a?.naive.length || !b?.naive.length || !naiveFinished(a) || !naiveFinished(b)) return undefined;
  const [ya, yb] = [stat(a.naive, pick).median, stat(b.naive, pick).median];
  const perRound = (yb - ya) / (ROUNDS(b) - ROUNDS(a));
  return { perRound, at: (c: CycleResult) => Math.round(ya + perRound * (ROUNDS(c) - ROUNDS(a))) };
}

function projectNaive(cycles: CycleResult[], target: CycleResult, pick: (r: RunCost) => number): number | undefined {
  return naiveLine(cycles, pick)?.at(target);
}

const naiveFinished = (c: CycleResult) => c.naive.length > 0 && c.naive.every((r) => r.outcome === 'promoted');

function historySection(report: BenchReport, goals: Goal[], findings: string[]): string {
  const h = report.history.result;
  if (!h) {
    goals.push({ goal: '7-day cycle: no run above 4,096 events', measured: 'n/a', met: undefined });
    goals.push({ goal: '7-day cycle: ≥ 50× fewer events per release than naive', measured: 'n/a', met: undefined });
    return `## 1. History cost per release\n\n${failed('The history bench', report.history)}`;
  }
  const rows: string[] = [];
  const actionRows: string[] = [];
  for (const c of h.cycles) {
    const events = stat(c.release, (r) => r.events);
    const actions = stat(c.release, (r) => r.actions.total);
    const naiveEvents = stat(c.naive, (r) => r.events);
    const largest = stat(c.release, (r) => r.largestRun);
    const naiveLargest = stat(c.naive, (r) => r.largestRun);
    const runsPerRelease = stat(c.release, (r) => r.runs);
    const naiveActions = stat(c.naive, (r) => r.actions.total);
    const finished = naiveFinished(c);
    const projectedEvents = finished ? naiveEvents.median : projectNaive(h.cycles, c, (r) => r.events);
    const projectedActions = finished ? naiveActions.median : projectNaive(h.cycles, c, (r) => r.actions.total);
    const stopped = c.naive.find((r) => r.outcome !== 'promoted');
    const naiveCell = finished
      ? medianRange(naiveEvents)
      : `${stopped?.outcome ?? 'not run'} at ${medianRange(naiveEvents)}; a whole release needs ≈ ${num(projectedEvents ?? NaN)} (projected)`;
    const ratio = projectedEvents !== undefined ? projectedEvents / events.median : NaN;
    const lowerBound =
      !finished && c.naive.length > 0 ? ` (≥ ${num(naiveEvents.max / events.median, 0)}× at termination)` : '';
    rows.push(
      `| ${c.label} | ${c.release.length} / ${c.naive.length} | ${medianRange(events)} | ${num(largest.max)} (${num(runsPerRelease.max)} run${runsPerRelease.max === 1 ? '' : 's'} per release) | ${naiveCell} | ${num(naiveLargest.max)} | ${num(ratio, 1)}×${lowerBound} |`,
    );
    const breakdown = (r: RunCost | undefined) =>
      r
        ? `: ${r.actions.activities} activities · ${r.actions.timers} timers · ${r.actions.upserts} upserts · ${r.actions.other} other`
        : '';
    const withBeats = actions.median + c.heartbeatsEstimate;
    actionRows.push(
      `| ${c.label} | ${medianRange(actions)}${breakdown(c.release[0])} | + ${num(c.heartbeatsEstimate)} | ${num(withBeats)} | ${finished ? medianRange(naiveActions) : `${medianRange(naiveActions)} at termination; ≈ ${num(projectedActions ?? NaN)} per release (projected)`} | ${num((projectedActions ?? NaN) / actions.median, 1)}× | ${num((projectedActions ?? NaN) / withBeats, 2)}× |`,
    );
    if (c.label === '7-day') {
      goals.push({
        goal: '7-day cycle at 1-minute analysis: no run above 4,096 events',
        measured: `largest run ${num(largest.max)} events (${c.release.length} releases)`,
        met: c.release.length > 0 ? largest.max <= GOAL_MAX_EVENTS : undefined,
      });
      goals.push({
        goal: '7-day cycle: ≥ 50× fewer events per release than the naive design',
        measured:
          `${num(ratio, 1)}× (naive needs ≈ ${num(projectedEvents ?? NaN)} events per release, projected; ` +
          `it was stopped at ${num(naiveEvents.max)}, the limit is ${num(HISTORY_EVENT_LIMIT)}) — ` +
          `${num(naiveEvents.max / events.median, 1)}× even counting only the events before termination`,
        met: c.release.length > 0 && Number.isFinite(ratio) ? ratio >= GOAL_EVENT_RATIO : undefined,
      });
      findings.push(
        `- **Heartbeats, not history, decide the 7-day bill.** With TOLLGATE_ANALYSIS_HEARTBEAT=liveness (the ` +
          `default) a running analysis stretch heartbeats once per 80% of its ${num(ANALYSIS_HEARTBEAT_TIMEOUT_MS / 60_000)}-minute ` +
          `heartbeat timeout, ${num(HEARTBEAT_SPACING_MS / 1000)} s, so a 7-day bake sends ≈ ${num(c.heartbeatsEstimate)} ` +
          `heartbeats, each a billable action: ${num(c.heartbeatsEstimate / actions.median, 1)}× the ${num(actions.median)} ` +
          `actions in its history. Counting them, a Tollgate release costs ≈ ${num(withBeats)} actions, ` +
          `${num((projectedActions ?? NaN) / withBeats, 2)}× fewer than the naive design's ≈ ${num(projectedActions ?? NaN)} ` +
          `(projected), and its history is ${num(ratio, 0)}× smaller. A worker that died mid-stretch is noticed within ` +
          `the timeout; \`status\` sees a running stretch's rounds up to ${num(HEARTBEAT_SPACING_MS / 60_000, 1)} min late ` +
          `(TOLLGATE_ANALYSIS_HEARTBEAT=round shows each, one action per round). §5 measures the settings side by side.`,
      );
    }
  }
  return `## 1. History cost per release (time-skipping server)

Traffic cycles analysed every minute (one check), staging → canary bake → one production wave without bake, no
gates, dry-run target. Tollgate is \`releaseWorkflow\` with its real activities and an **instant** analysis double;
the naive design is [\`bench/naive-workflow.ts\`](bench/naive-workflow.ts): \`for each minute: await sleep(1m); await
analyzeOnce()\`, one timer and one activity per check round, no continue-as-new. Both run in this invocation on the
time-skipping test server (${report.versions.testServer}) in two lanes of their own servers (the naive 7-day run in
one, everything else in the other). Figures: median (min–max) over the releases; a release's events are summed
over its continue-as-new chain, and "largest run" is the largest single run seen in any of them.

| traffic cycle | releases (Tollgate / naive) | Tollgate events per release | Tollgate largest run | naive events per release | naive largest run | naive ÷ Tollgate |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Temporal Cloud actions per release:

| traffic cycle | Tollgate actions in history | heartbeats of real analysis (estimated) | Tollgate with heartbeats | naive actions | naive ÷ Tollgate (history) | naive ÷ Tollgate (with heartbeats) |
| --- | --- | --- | --- | --- | --- | --- |
${actionRows.join('\n')}

How these are counted:

- **Events**: \`history.events.length\` of the run (\`handle.fetchHistory()\`).
- **Actions** (rule from docs.temporal.io/cloud/actions, counted from the history, [\`bench/actions.ts\`](bench/actions.ts)):
  workflow started 1 (each run, so a continue-as-new counts); activity scheduled 1, plus 1 per retry
  (\`attempt − 1\` of its started event); timer started 1; signal received or sent 1; search-attribute upsert 1
  (attributes given at start are free); update accepted 1; child workflow initiated 2; external cancel 1; workflow
  options updated 1; local-activity markers 1 per workflow task. Not in history and so not in the "in history"
  column: queries (the bench sends none while measuring), rejected updates (none), and **activity heartbeats** —
  estimated in their own column as TOLLGATE_ANALYSIS_HEARTBEAT=liveness sends them: bake length ÷
  ${num(HEARTBEAT_SPACING_MS / 1000)} s (80% of the analysis heartbeat timeout; §5 counts them at the server).
- **Instant double**: an analysis stretch that answers at once makes the workflow wait for the stretch's planned
  end with an extra timer (${h.cycles.map((c) => `${c.segments} stretches for ${c.label}`).join(', ')}), so a real
  run costs slightly fewer events and timers than the Tollgate columns (and adds the heartbeats above).
- **Naive 7-day**: it cannot finish: the real server terminates a run past ${num(HISTORY_EVENT_LIMIT)} events; the
  bench does not rely on the test server to do the same, so the naive workflow fails itself once its history reaches
  the limit ("terminated at the history limit"); a run still going at the bench's wall-time bound is terminated and recorded as "stopped by the
  time bound". Its per-release figure is projected from the measured 1-hour and 24-hour medians (cost is linear in
  check rounds: ${num(naiveLine(h.cycles, (r) => r.events)?.perRound ?? NaN, 2)} events and ${num(naiveLine(h.cycles, (r) => r.actions.total)?.perRound ?? NaN, 2)} actions per round).
- Heartbeats: see the findings at the top.

Section wall time: ${seconds(h.wallMs)}.
`;
}

function startupSection(report: BenchReport, goals: Goal[]): string {
  const s = report.startup.result;
  if (!s) {
    goals.push({
      goal: 'Prebuilt bundle start-up ≥ 2× faster than bundling at start',
      measured: 'n/a',
      met: undefined,
    });
    return `## 2. Worker start-up\n\n${failed('The start-up bench', report.startup)}`;
  }
  const of = (mode: string, pick: 'processToTaskMs' | 'createToTaskMs') =>
    summarize(s.runs.filter((r) => r.mode === mode).map((r) => r[pick]));
  const [pp, bp, pc, bc] = [
    of('prebuilt', 'processToTaskMs'),
    of('bundle', 'processToTaskMs'),
    of('prebuilt', 'createToTaskMs'),
    of('bundle', 'createToTaskMs'),
  ];
  const ratio = bp.median / pp.median;
  goals.push({
    goal: 'Prebuilt bundle start-up ≥ 2× faster than bundling at start',
    measured: `${num(ratio, 1)}× from process start (${num(pp.median)} vs ${num(bp.median)} ms); ${num(bc.median / pc.median, 1)}× from Worker.create`,
    met: pp.n > 0 && bp.n > 0 ? ratio >= GOAL_STARTUP_RATIO : undefined,
  });
  return `## 2. Worker start-up (dev server)

A fresh \`node\` process per run ([\`bench/startup-worker.ts\`](bench/startup-worker.ts)): connect, \`Worker.create\`,
\`run\`. A release is already waiting on the worker's new task queue, so the first poll finds a task; the moment is
that task's \`WorkflowTaskStarted\` time in the server's history (same machine clock). Prebuilt: \`workflowBundle:
{ codePath }\` of the release workflows bundled once by this bench (${num(s.bundleKiB)} KiB); bundling at start:
\`workflowsPath\` (what the worker does without \`npm run build\`). Modes alternate run by run.

| workflow code | runs | process start → first polled workflow task | Worker.create → first polled workflow task |
| --- | --- | --- | --- |
| prebuilt bundle | ${pp.n} | ${medianRange(pp, 0, ' ms')} | ${medianRange(pc, 0, ' ms')} |
| bundling at start | ${bp.n} | ${medianRange(bp, 0, ' ms')} | ${medianRange(bc, 0, ' ms')} |
| ratio (median) | | ${num(ratio, 1)}× | ${num(bc.median / pc.median, 1)}× |

Section wall time: ${seconds(s.wallMs)}.
`;
}

const failedTrials = (failures: string[]) =>
  failures.length > 0
    ? `Failed trials (${failures.length}): ${failures.slice(0, 5).join('; ')}`
    : 'Failed trials: none.';
const partFailed = (name: string, part: { error?: string }) =>
  part.error !== undefined ? `_${name} did not complete: ${part.error}_\n` : '';
const span = (s: Summary) => (s.n === 0 ? 'n/a' : s.min === s.max ? num(s.min) : `${num(s.min)}–${num(s.max)}`);

function abortPart(r: AbortResult | undefined, goals: Goal[], findings: string[]): string {
  if (!r) {
    goals.push({ goal: 'abort → first undo started: p99 ≤ 250 ms', measured: 'n/a', met: undefined });
    return '';
  }
  const rows = (['update', 'signal'] as const).map((kind) => {
    const trials = r.trials.filter((t) => t.kind === kind);
    const s = summarize(trials.map((t) => t.reactionMs));
    const closed = summarize(trials.flatMap((t) => (t.closedMs !== undefined ? [t.closedMs] : [])));
    const answer = summarize(trials.flatMap((t) => (t.answerMs !== undefined ? [t.answerMs] : [])));
    return {
      kind,
      s,
      row: `| ${kind} | ${s.n} | ${num(s.p50)} ms | ${num(s.p95)} ms | ${num(s.p99)} ms | ${num(s.min)}–${num(s.max)} ms | ${answer.n > 0 ? `${num(answer.p50)} / ${num(answer.p99)} ms` : '—'} | ${num(closed.p50)} / ${num(closed.p99)} ms |`,
    };
  });
  const worst = Math.max(...rows.map((x) => x.s.p99));
  const [update, signal] = [rows[0]!.s, rows[1]!.s];
  if (update.n > 0 && signal.n > 0) {
    findings.push(
      `- **An abort update reacts faster than an abort signal** (p50 ${num(update.p50)} vs ${num(signal.p50)} ms, ` +
        `p99 ${num(update.p99)} vs ${num(signal.p99)} ms): both well inside the goal. The likely reason, not ` +
        `profiled further: the server hands an update to the worker in a speculative workflow task straight away, ` +
        `while a signal's workflow task goes through the history service's task queue first.`,
    );
  }
  const enough = rows.every((x) => x.s.n >= 200);
  goals.push({
    goal: 'abort → first undo activity started: p99 ≤ 250 ms (dev server)',
    measured: rows.map((x) => `${x.kind} p99 ${num(x.s.p99)} ms (n = ${x.s.n})`).join('; '),
    met: rows.every((x) => x.s.n > 0) ? worst <= GOAL_ABORT_P99_MS && enough : undefined,
  });
  return `Releases (1-hour cycle, 1-minute analysis, instant analysis double; each of a service of its own,
\`checkout-<n>\`, since a release runs as \`release-<service>\`) are started ${r.batch} at a time on one worker
process ([\`bench/worker-process.ts\`](bench/worker-process.ts)) and each is left baking in canary; then, one release
at a time, the bench sends \`abort\` — as an update and as a signal, alternately — and times from just before the
client call to the moment the first \`undo\` activity starts on the worker (a timestamp taken in the activity, sent to
the bench over IPC; same machine clock). The next abort waits until the previous release has closed, so trials do
not overlap; the other baking releases of the batch stay on the worker as background.

| abort via | trials | p50 | p95 | p99 | min–max | update answered at the client, p50 / p99 | release closed (rollback done), p50 / p99 |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows.map((x) => x.row).join('\n')}

${failedTrials(r.failures)} Wall time: ${seconds(r.wallMs)}.
`;
}

function approvePart(r: ApproveResult | undefined, goals: Goal[]): string {
  if (!r) {
    goals.push({ goal: 'approve → next deploy started (no numeric goal)', measured: 'n/a', met: undefined });
    return '';
  }
  const rows = (['update', 'signal'] as const).map((kind) => {
    const trials = r.trials.filter((t) => t.kind === kind);
    const s = summarize(trials.map((t) => t.reactionMs));
    const answer = summarize(trials.flatMap((t) => (t.answerMs !== undefined ? [t.answerMs] : [])));
    return {
      kind,
      s,
      row: `| ${kind} | ${s.n} | ${num(s.p50)} ms | ${num(s.p95)} ms | ${num(s.p99)} ms | ${num(s.min)}–${num(s.max)} ms | ${answer.n > 0 ? `${num(answer.p50)} / ${num(answer.p99)} ms` : '—'} |`,
    };
  });
  goals.push({
    goal: 'approve → next deploy activity started (dev server; issue 7 sets no number)',
    measured: rows.map((x) => `${x.kind} p50 ${num(x.s.p50)} ms, p99 ${num(x.s.p99)} ms (n = ${x.s.n})`).join('; '),
    met: undefined,
    verdict: 'figures only',
  });
  return `The same kind of releases, but their policy gates the canary on approval (\`canary.approval: true\`, no
four-eyes; the approver \`bench-approver\` is not the initiator anyway). They are started ${r.batch} at a time on a worker
process that reports every activity start ([\`bench/breach-worker.ts\`](bench/breach-worker.ts), instant analysis
double) and each is left at the canary gate until the \`status\` query shows \`awaiting-approval\`; then, one release
at a time, the bench sends \`approve\` — update and signal alternately — and times from just before the client call
to the moment the canary's \`deploy\` activity starts on the worker. The next approve waits until the approved release
has started its canary analysis, so trials do not overlap.

| approve via | trials | p50 | p95 | p99 | min–max | update answered at the client, p50 / p99 |
| --- | --- | --- | --- | --- | --- | --- |
${rows.map((x) => x.row).join('\n')}

${failedTrials(r.failures)} Wall time: ${seconds(r.wallMs)}.
`;
}

function breachPart(r: BreachResult | undefined, goals: Goal[]): string {
  if (!r) {
    goals.push({ goal: 'metric breach visible in Prometheus → rollback started', measured: 'n/a', met: undefined });
    return '';
  }
  const limits = [...new Set(r.trials.map((t) => t.failureLimit))].sort((a, b) => b - a);
  const figures = limits.map((limit) => {
    const trials = r.trials.filter((t) => t.failureLimit === limit);
    const pick = (f: (t: BreachTrial) => number) => summarize(trials.map(f));
    const inIntervals = (f: (t: BreachTrial) => number) => pick((t) => f(t) / r.intervalMs);
    const visible = inIntervals((t) => t.visibleToRollbackMs);
    const flip = inIntervals((t) => t.flipToRollbackMs);
    const seen = pick((t) => t.flipToVisibleMs);
    const decision = pick((t) => t.decisionToRollbackMs);
    const rounds = pick((t) => t.rounds);
    const failed = pick((t) => t.failedRounds);
    const noData = trials.reduce((a, t) => a + t.noDataRounds, 0);
    return {
      limit,
      visible,
      flip,
      row:
        `| ${limit} | ${trials.length} | ${medianRange(visible, 2)} | ${medianRange(flip, 2)} | ` +
        `${medianRange(seen, 0, ' ms')} | ${medianRange(decision, 0, ' ms')} | ${span(rounds)} (failed ${span(failed)}; without data: ${noData} in all trials) |`,
    };
  });
  goals.push({
    goal: `metric breach visible in Prometheus → rollback started, in analysis intervals (${num(r.intervalMs / 1000)} s; bound by design: failureLimit intervals, see §3)`,
    measured: figures.length
      ? figures
          .map(
            (f) =>
              `failureLimit ${f.limit}: median ${num(f.visible.median, 2)}, max ${num(f.visible.max, 2)} from visible (` +
              `${num(f.flip.median, 2)} / ${num(f.flip.max, 2)} from the flip; n = ${f.visible.n})`,
          )
          .join('; ')
      : 'n/a',
    met: undefined,
    verdict: 'figures only',
  });
  return `A real Prometheus (${r.prometheus}; its own config and TSDB in a temp dir) scrapes every ${num(r.scrapeMs / 1000)} s
a target in the bench process ([\`bench/breach-exporter.ts\`](bench/breach-exporter.ts)) that serves the demo
service's request counters for the stable fleet and for each canary version, growing at 200 requests/s, 0.2 % of
them 5xx. Releases analyse their canary with the **real** \`analyze\` activity through the project's Prometheus
provider, one check \`error-ratio\` (max 1 %) every ${num(r.intervalMs / 1000)} s, so the query's rate window is
[${r.rateWindow}]: \`${r.query}\`. Once a canary has passed a round, the bench waits a random fraction of an interval
and flips its error share to 20 % at T_flip; it polls Prometheus' instant query API with the same query every 25 ms
until the answer shows the breach (T_visible, the answer's arrival), and T_rollback is the first \`undo\` starting on
the worker ([\`bench/breach-worker.ts\`](bench/breach-worker.ts), which also reports each round's query time and
values). Trials alternate between failureLimit 3 (the service policy; the default, and the bench services') and 1 (a
release request tightening it), ${r.lanes} releases in flight at once, each trial a service of its own
(\`checkout-<n>\`, as \`release-<service>\`). Figures: median (min–max) over the trials.

| failureLimit | trials | T_visible → T_rollback, intervals | T_flip → T_rollback, intervals | T_flip → T_visible | deciding round's query → undo started | analysis rounds T_flip → T_rollback |
| --- | --- | --- | --- | --- | --- | --- |
${figures.map((f) => f.row).join('\n')}

What bounds it:

- **The analysis interval.** Rounds run every interval at a phase the breach does not choose, so the first round
  after the breach is visible comes 0–1 interval later.
- **failureLimit.** A non-critical check rolls back at its failureLimit-th failed round (failed rounds are counted
  over the stage, like Flagger's failed-checks counter: a passing round in between does not reset them), so the
  rollback lands failureLimit − 1 intervals after the first failed round: from T_visible, between failureLimit − 1
  and failureLimit intervals, plus the deciding round's own latency (its query, the activity's completion, a workflow
  task, the undo's dispatch: the "deciding round → undo" column). A \`critical\` check rolls back on its first failed
  round, as failureLimit 1 does here.
- **The scrape interval** puts T_visible up to one scrape (plus ingestion) after T_flip.
- **The rate window** (one interval, \`[${r.rateWindow}]\`) mixes samples from before and after the flip: a 20 % share
  breaks the 1 % bound as soon as one post-flip scrape is in the window, but a breach closer to the bound needs more of
  the window, up to a whole interval, before a round sees it — and Prometheus' instant query sees it at the same
  moment, so that wait falls in T_flip → T_visible, not after it. A window of two scrapes is short: a round that
  finds a single sample in it gets no data, which is inconclusive and not a failure, so it adds an interval (the
  "without data" count above). A rate window of at least four scrape intervals (Prometheus' usual advice) avoids it;
  the templates tie the window to the analysis interval, so that means an interval ≥ 4 scrapes.
- So T_visible → T_rollback ≤ failureLimit intervals + the deciding round's latency, one more interval per round
  without data; T_flip → T_rollback ≤ that + one scrape + (for a marginal breach) one rate window.

${failedTrials(r.failures)} Wall time: ${seconds(r.wallMs)}.
`;
}

function reactionSection(report: BenchReport, goals: Goal[], findings: string[]): string {
  const r = report.reaction.result;
  if (!r) {
    abortPart(undefined, goals, findings);
    approvePart(undefined, goals);
    breachPart(undefined, goals);
    return `## 3. Reaction time\n\n${failed('The reaction bench', report.reaction)}`;
  }
  return `## 3. Reaction time (dev server)

### Abort → first undo

${partFailed('The abort bench', r.abort)}${abortPart(r.abort.result, goals, findings)}
### Approve → next deploy

${partFailed('The approve bench', r.approve)}${approvePart(r.approve.result, goals)}
### Metric breach visible in Prometheus → rollback

${partFailed('The breach bench', r.breach)}${breachPart(r.breach.result, goals)}
Section wall time: ${seconds(r.wallMs)}.
`;
}

const latency = (h: HistogramSummary | undefined) =>
  h ? `${le(h.p50LeMs)} / ${le(h.p99LeMs)} (n = ${num(h.count)})` : '—';

const maxCachedNote = (report: BenchReport) =>
  report.command.includes('BENCH_MAX_CACHED_WORKFLOWS')
    ? ', set by the bench'
    : ", the worker's `TOLLGATE_MAX_CACHED_WORKFLOWS`";

function concurrencySection(report: BenchReport, goals: Goal[], findings: string[]): string {
  const done = report.concurrency.filter((c): c is { result: ConcurrencyResult } => c.result !== undefined);
  const failures = report.concurrency.map((c, i) => failed(`Concurrency run ${i + 1}`, c)).join('');
  const rows = done.flatMap(({ result: c }) =>
    (
      [
        ['ramp-up (start → all baking)', c.rampUp],
        ['steady (all baking)', c.steady],
        ['whole window', c.whole],
      ] as const
    ).map(
      ([phase, p]) =>
        `| ${num(c.releases)} | ${phase} | ${seconds(p.wallMs)} | ${num(p.cpuPercent, 1)} % | ${latency(p.workflowTaskScheduleToStart)} | ${latency(p.activityScheduleToStart)} |`,
    ),
  );
  const perRelease = (c: ConcurrencyResult) => (c.peakRssMiB - c.idleRssMiB) / c.releases;
  const memory = done.map(
    ({ result: c }) =>
      `| ${num(c.releases)} | ${num(c.worker.maxCachedWorkflows)} | ${num(c.idleRssMiB)} MiB | ${num(c.endRssMiB)} MiB | ${num(c.peakRssMiB)} MiB | ${num(perRelease(c), 1)} MiB | ${c.errors.length === 0 ? '0' : c.errors.join('; ')} |`,
  );
  const thousand = done.find((c) => c.result.releases >= 1000)?.result;
  goals.push({
    goal: '1,000 concurrent baking releases on one worker: CPU ≤ 50 % of a core, peak RSS ≤ 1 GiB, zero errors',
    measured: thousand
      ? `CPU ${num(thousand.whole.cpuPercent, 1)} % (steady ${num(thousand.steady.cpuPercent, 1)} %), peak RSS ${num(thousand.peakRssMiB)} MiB, ${thousand.errors.length} errors`
      : `1,000 not run (BENCH_CONCURRENCY or the time bound); ${done
          .filter((c) => c.result.releases === 100)
          .map(
            ({ result: c }) =>
              `100 releases: CPU ${num(c.whole.cpuPercent, 1)} % over the window (steady ${num(c.steady.cpuPercent, 1)} %), peak RSS ${num(c.peakRssMiB)} MiB, ${c.errors.length} errors`,
          )
          .join('')}`,
    met: thousand
      ? thousand.whole.cpuPercent <= 50 && thousand.peakRssMiB <= 1024 && thousand.errors.length === 0
      : undefined,
  });
  const first = done[0]?.result;
  for (const { result: c } of done) {
    findings.push(
      `- **${num(c.releases)} baking releases cost the worker ${num(c.steady.cpuPercent, 1)} % of a core once baking** ` +
        `(${num(c.whole.cpuPercent, 1)} % over the whole window, ${c.errors.length} errors); the start-up burst is what ` +
        `costs (${num(c.rampUp.cpuPercent, 0)} % for ${seconds(c.rampUp.wallMs)}, workflow task schedule-to-start p99 ` +
        `${le(c.rampUp.workflowTaskScheduleToStart?.p99LeMs ?? NaN)} while ${num(c.releases)} releases start in the same ` +
        `second on 2 shared cores). Peak RSS ${num(c.peakRssMiB)} MiB: ≈ ${num(perRelease(c), 1)} MiB over idle per ` +
        `release, ${c.worker.maxCachedWorkflows >= c.releases ? 'every one of them' : `at most ${num(c.worker.maxCachedWorkflows)}`} ` +
        `cached (cache ${num(c.worker.maxCachedWorkflows)}${maxCachedNote(report)}). Much of it is module state, not ` +
        `release state: the SDK's reusable V8 context evaluates every module a workflow imports once per cached ` +
        `workflow unless the bundle preloads it. zod is preloaded (src/workflows/preload.ts; ≈ 0.7 MiB and ≈ 10 ms ` +
        `of CPU per workflow before, 2.1 GiB at 1,000 releases); the domain's own schemas, ≈ 0.4 MiB per workflow, are ` +
        `not, since zod fills schemas in lazily and the SDK freezes what it preloads (profiled outside the bench). ` +
        `With real analysis ` +
        `every baking release also holds one long-running \`analyze\` activity: \`maxConcurrentActivityTaskExecutions\` ` +
        `(\`TOLLGATE_MAX_ACTIVITIES\`, ${num(c.worker.maxConcurrentActivityTaskExecutions)} here) must be ≥ the ` +
        `releases a worker carries, or stretches queue.`,
    );
  }
  return `## 4. Concurrency: releases baking at once on one worker (dev server)

One worker process (real activities, dry-run target, instant analysis double; the product worker's capacity
settings — \`workerCapacity\` in src/worker.ts, unless \`BENCH_MAX_CACHED_WORKFLOWS\` overrides the cache — and
its bundler options, ${first ? `a ${num(first.worker.bundleKiB)} KiB bundle` : 'as `npm run build`'})
serves N releases of as many services (\`checkout-0\` …, each its own \`release-<service>\`), started at once
(${first ? `${first.cycle} cycle, analysis every ${first.interval}` : ''}, so each wakes at least once in the steady window). CPU is the worker process's own \`process.cpuUsage()\` over wall
time (100 % = one core); RSS is sampled every 100 ms; schedule-to-start comes from the SDK's Prometheus metrics
(\`temporal_workflow_task_schedule_to_start_latency\`, \`temporal_activity_schedule_to_start_latency\`, finer buckets
set by the bench), read as the bucket bounds holding p50 / p99 of the tasks in each phase. Errors: failed starts,
releases not baking or no longer running, worker ERROR log lines, workflow task failures.

| releases | phase | wall | worker CPU (of one core) | workflow task schedule-to-start p50 / p99 | activity schedule-to-start p50 / p99 |
| --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

| releases | workflow cache (maxCachedWorkflows) | worker RSS, idle | RSS at the end of the steady window | RSS, peak | (peak − idle) ÷ releases | errors |
| --- | --- | --- | --- | --- | --- | --- |
${memory.join('\n')}

${failures}The ramp-up is a burst (every release starts in the same second and each needs ~8 activities and ~10
workflow tasks to reach canary) on 2 cores shared with the dev server and the bench driver; its schedule-to-start
is queueing behind that burst. \`BENCH_CONCURRENCY\` sets the numbers of releases (default 100,1000) and
\`BENCH_MAX_CACHED_WORKFLOWS=N\` overrides the worker's cache.

${done.map(({ result: c }) => `Section wall time (${num(c.releases)}): ${seconds(c.wallMs)}.`).join(' ')}
`;
}

export function renderReport(report: BenchReport): string {
  const goals: Goal[] = [];
  const findings: string[] = [];
  const sections = [
    historySection(report, goals, findings),
    startupSection(report, goals),
    reactionSection(report, goals, findings),
    concurrencySection(report, goals, findings),
    heartbeatSection(report.heartbeats, report, goals, findings),
  ];
  const m = report.machine;
  const v = report.versions;
  return `# Benchmarks

Written by \`${report.command}\` (the TypeScript in [\`bench/\`](bench/), compiled with \`tsc -p bench/tsconfig.json\`)
on ${report.startedAt}; total bench time ${seconds(report.totalMs)} (plus the \`tsc\` step)${report.quick ? ' — **quick mode (BENCH_QUICK=1): too few runs to keep these figures**' : ''}.
Re-run it to refresh this file; compare figures side by side within one run, not absolute times across machines.

| machine | |
| --- | --- |
| CPU | ${m.cpu}, ${m.cores} cores |
| memory | ${num(m.memoryGiB, 1)} GiB |
| OS | ${m.os} |
| Node.js | ${m.node} |
| Temporal CLI (dev server) | ${v.temporalCli.replace(/\s+/g, ' ')} |
| Temporal test server | ${v.testServer} |
| Temporal TypeScript SDK | ${v.sdk} |
| workflow bundling (2 bundles, once per run) | ${num(report.bundleMs)} ms |

## Goals (issue 7)

| goal | measured | verdict |
| --- | --- | --- |
${goals.map((g) => `| ${g.goal} | ${g.measured} | ${g.verdict ?? verdict(g.met)} |`).join('\n')}

## Findings

${findings.join('\n')}

${sections.join('\n')}`;
}
