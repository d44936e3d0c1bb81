import type { ConcurrencyResult } from './concurrency';
import { EVENTS_HEADROOM, RUN_MAX_BYTES, RUN_MAX_EVENTS } from '../src/workflows/rollover';
import {
  ANALYSIS_HEARTBEAT_TIMEOUT_MS,
  HEARTBEAT_SPACING_MS,
  HISTORY_EVENT_LIMIT,
  type Anatomy,
  type CycleLabel,
  type CycleResult,
  type HistoryResult,
  type RunCost,
} from './history';
import type { BenchReport, SectionOutcome } from './run';
import type { AbortResult, ApproveResult } from './reaction';
import type { BreachResult, BreachTrial } from './breach';
import { heartbeatSection } from './report-heartbeats';
import { alertsSection } from './alerts-report';
import { rollbackSection } from './rollback-report';
import { externalSection } from './external';
import { kubernetesSection } from './kubernetes';
import { clusterSection } from './cluster';
import { latency, le, medianRange, num, summarize, type Summary } from './stats';

const GOAL_MAX_EVENTS = 4_096;
const GOAL_EVENT_RATIO = 50;
const GOAL_ABORT_P99_MS = 250;
const GOAL_STARTUP_RATIO = 2;

export interface Goal {
  goal: string;
  measured: string;
  met: boolean | undefined;
  /** Instead of met / not met, for figures without a numeric goal. */
  verdict?: string;
}

const verdict = (met: boolean | undefined) => (met === undefined ? 'not measured' : met ? '**met**' : '**not met**');
const seconds = (ms: number) => `${num(ms / 1000, 0)} s`;
const failed = (name: string, s: SectionOutcome<unknown>) =>
  s.error !== undefined ? `_${name} did not complete: ${s.error}_\n` : '';

const ROUNDS = (c: CycleResult) => c.cycleMs / 60_000;
const stat = (runs: RunCost[], pick: (r: RunCost) => number): Summary => summarize(runs.map(pick));
const mib = (bytes: number) => `${num(bytes / 1024 / 1024, 2)} MiB`;
const plural = (n: number, word: string) => `${num(n)} ${word}${n === 1 ? '' : 's'}`;
const BOUND_MIB = `${num(RUN_MAX_BYTES / 1024 / 1024)} MiB`;
const signed = (n: number) => (n > 0 ? `+${num(n)}` : n < 0 ? `−${num(-n)}` : '±0');

/**
 * Events per release before issue 12's modules and continue-as-new (BENCHMARKS.md and the workflow of 8cca3c0): the
 * new code must not do worse. That release recorded one patch and ran these activities.
 */
const BASELINE = {
  events: {
    '1-hour': { median: 181, min: 178, max: 181 },
    '24-hour': { median: 307, min: 301, max: 307 },
    '7-day': { median: 1_227, min: 1_224, max: 1_227 },
  } as Partial<Record<CycleLabel, { median: number; min: number; max: number }>>,
  patches: ['bounded-bake-history'],
  activities: ['resolvePolicy', 'notify', 'stableVersion', 'deploy', 'analyze', 'markStable'],
};
/** Where a patch or an activity the baseline did not have came from. */
const ORIGIN: Record<string, string> = {
  'continue-as-new': 'issue 12',
  'hostile-input-hardening': 'before issue 12, 6642e9a',
  describeTarget: 'before issue 12, d7c6a9e: the release records its target',
};
/** Events a patch adds: its marker and the TemporalChangeVersion upsert the SDK's core adds after it. */
const EVENTS_PER_PATCH = 2;
/** Events an activity awaited alone adds: scheduled, started, completed, and the workflow task it wakes. */
const EVENTS_PER_ACTIVITY = 6;

/** What the release has that the baseline did not, once per release, and the events that should cost. */
function addedSinceBaseline(anatomy: Anatomy | undefined) {
  const patches = (anatomy?.patches ?? []).filter((p) => !BASELINE.patches.includes(p));
  const activities = Object.entries(anatomy?.activities ?? {})
    .filter(([type]) => !BASELINE.activities.includes(type))
    .map(([type, count]) => ({ type, count }));
  const events = EVENTS_PER_PATCH * patches.length + EVENTS_PER_ACTIVITY * activities.reduce((n, a) => n + a.count, 0);
  return { patches, activities, events };
}

const promoted = (runs: RunCost[]) => runs.filter((r) => r.outcome === 'promoted');

/**
 * The naive design's cost of a whole release when it cannot finish one: its cost is linear in check rounds, so the
 * line through the medians of its finished 1-hour and 24-hour releases, taken out to the cycle's rounds.
 */
function naiveLine(cycles: CycleResult[], pick: (r: RunCost) => number) {
  const a = cycles.find((c) => c.label === '1-hour');
  const b = cycles.find((c) => c.label === '24-hour');
  if (!a || !b || promoted(a.naive).length === 0 || promoted(b.naive).length === 0) return undefined;
  const [ya, yb] = [stat(promoted(a.naive), pick).median, stat(promoted(b.naive), pick).median];
  const perRound = (yb - ya) / (ROUNDS(b) - ROUNDS(a));
  return { perRound, at: (c: CycleResult) => Math.round(ya + perRound * (ROUNDS(c) - ROUNDS(a))) };
}

function projectNaive(cycles: CycleResult[], target: CycleResult, pick: (r: RunCost) => number): number | undefined {
  return naiveLine(cycles, pick)?.at(target);
}

const naiveFinished = (c: CycleResult) => c.naive.length > 0 && promoted(c.naive).length === c.naive.length;

const NAIVE_NOT_RUN = 'not run (it cannot finish even 7 days)';

/** The figures of one cycle, Tollgate and naive, measured or projected. */
function cycleFigures(h: HistoryResult, c: CycleResult) {
  const events = stat(c.release, (r) => r.events);
  const actions = stat(c.release, (r) => r.actions.total);
  const naiveEvents = stat(c.naive, (r) => r.events);
  const naiveActions = stat(c.naive, (r) => r.actions.total);
  const finished = naiveFinished(c);
  const projectedEvents = finished ? naiveEvents.median : projectNaive(h.cycles, c, (r) => r.events);
  const projectedActions = finished ? naiveActions.median : projectNaive(h.cycles, c, (r) => r.actions.total);
  return {
    events,
    actions,
    largest: stat(c.release, (r) => r.largestRun),
    largestBytes: stat(c.release, (r) => r.largestRunBytes ?? NaN),
    runs: stat(c.release, (r) => r.runs),
    naiveEvents,
    naiveActions,
    naiveLargest: stat(c.naive, (r) => r.largestRun),
    finished,
    projectedEvents,
    projectedActions,
    ratio: projectedEvents !== undefined ? projectedEvents / events.median : NaN,
    withBeats: actions.median + c.heartbeatsEstimate,
    baseline: BASELINE.events[c.label]?.median,
  };
}

function historyRows(h: HistoryResult) {
  const rows: string[] = [];
  const actionRows: string[] = [];
  for (const c of h.cycles) {
    const f = cycleFigures(h, c);
    const stopped = c.naive.find((r) => r.outcome !== 'promoted');
    const naiveCell = f.finished
      ? medianRange(f.naiveEvents)
      : `${c.naive.length === 0 ? NAIVE_NOT_RUN : `${stopped?.outcome} at ${medianRange(f.naiveEvents)}`}; a whole release needs ≈ ${num(f.projectedEvents ?? NaN)} (projected)`;
    const lowerBound =
      !f.finished && c.naive.length > 0 ? ` (≥ ${num(f.naiveEvents.max / f.events.median, 0)}× at termination)` : '';
    const before = f.baseline === undefined ? '—' : `${num(f.baseline)} (now ${signed(f.events.median - f.baseline)})`;
    const runs = f.runs.min === f.runs.max ? num(f.runs.max) : `${num(f.runs.min)}–${num(f.runs.max)}`;
    const chain = c.release.find((r) => r.runs > 1)?.runEvents;
    rows.push(
      `| ${c.label} | ${c.release.length} / ${c.naive.length} | ${medianRange(f.events)} | ${before} | ${runs}${chain ? ` (${chain.map((n) => num(n)).join(' + ')} events)` : ''} | ${num(f.largest.max)} (${mib(f.largestBytes.max)}) | ${naiveCell} | ${c.naive.length ? num(f.naiveLargest.max) : '—'} | ${num(f.ratio, 1)}×${lowerBound} |`,
    );
    const breakdown = (r: RunCost | undefined) =>
      r
        ? `: ${r.actions.activities} activities · ${r.actions.timers} timers · ${r.actions.upserts} upserts · ${r.actions.other} other`
        : '';
    const naiveActionsCell = f.finished
      ? medianRange(f.naiveActions)
      : `${c.naive.length === 0 ? 'not run' : `${medianRange(f.naiveActions)} at termination`}; ≈ ${num(f.projectedActions ?? NaN)} per release (projected)`;
    actionRows.push(
      `| ${c.label} | ${medianRange(f.actions)}${breakdown(c.release[0])} | + ${num(c.heartbeatsEstimate)} | ${num(f.withBeats)} | ${naiveActionsCell} | ${num((f.projectedActions ?? NaN) / f.actions.median, 1)}× | ${num((f.projectedActions ?? NaN) / f.withBeats, 2)}× |`,
    );
  }
  return { rows, actionRows };
}

/** Issue 12: no worse than the baseline's events per release, and what the difference is made of. */
function baselineGoal(h: HistoryResult, goals: Goal[], findings: string[]): void {
  const compared = h.cycles.flatMap((c) => {
    const baseline = BASELINE.events[c.label];
    const events = stat(c.release, (r) => r.events);
    return baseline ? [{ c, ...baseline, events }] : [];
  });
  const labels = compared.map((x) => x.c.label).join(' / ');
  const list = (pick: (x: (typeof compared)[number]) => string) => compared.map(pick).join(' / ');
  const goal = `events per ${Object.keys(BASELINE.events).join(' / ')} release no worse than before issue 12's modules and continue-as-new (${Object.values(
    BASELINE.events,
  )
    .map((b) => num(b.median))
    .join(' / ')})`;
  if (compared.length < Object.keys(BASELINE.events).length || compared.some((x) => x.events.n === 0)) {
    goals.push({ goal, measured: 'n/a', met: undefined });
    return;
  }
  const deltas = compared.map((x) => x.events.median - x.median);
  const added = addedSinceBaseline(compared[0]!.c.release[0]?.anatomy);
  // What is left once the once-per-release additions are taken off, against the baseline's own spread.
  const rests = deltas.map((d) => d - added.events);
  const inSpread = compared.every((x, i) => Math.abs(rests[i]!) <= x.max - x.min + 1);
  const parts = [
    ...added.patches.map((p) => `the ${p} patch (${ORIGIN[p] ?? 'since the baseline'})`),
    ...added.activities.map((a) => `the ${a.type} activity (${ORIGIN[a.type] ?? 'since the baseline'})`),
  ];
  const once = `${signed(added.events)} once per release (${[...added.patches, ...added.activities.map((a) => a.type)].join(', ')})`;
  goals.push({
    goal,
    measured:
      `${list((x) => num(x.events.median))} (${deltas.map(signed).join(' / ')}: ${once}` +
      `${inSpread ? ', the rest within the baseline runs’ own spread' : `, then ${rests.map(signed).join(' / ')}`}; see the findings)`,
    met: compared.every((x) => x.events.median <= x.median),
  });
  if (deltas.every((d) => d <= 0)) return;
  findings.push(
    `- **Events per ${labels} release: ${list((x) => num(x.events.median))}, against ${list((x) => num(x.median))} before issue 12 ` +
      `(${deltas.map(signed).join(' / ')})${parts.length > 0 ? `, ${num(added.events)} of them once per release` : ''}.** ` +
      (parts.length > 0
        ? `Since that baseline every release also records ${parts.join(', ')}: ${EVENTS_PER_PATCH} events and 1 action per patch ` +
          `(its marker and the TemporalChangeVersion upsert the SDK's core adds after every patch marker; the baseline recorded only ${BASELINE.patches.join(', ')}), ` +
          `${EVENTS_PER_ACTIVITY} events and 1 action for an activity awaited alone (its three events and the workflow task it wakes): ` +
          `${signed(added.events)} events, ${signed(added.patches.length + added.activities.length)} actions per release, on every cycle. ` +
          `What is left, ${rests.map(signed).join(' / ')}, ${inSpread ? 'is within the spread of the baseline’s own runs' : 'is beyond the spread of the baseline’s own runs'} ` +
          `(${list((x) => `${num(x.min)}–${num(x.max)}`)}: how many wakes share a workflow task varies from run to run), so per round the history costs what it did. ` +
          `Continue-as-new's own share is its patch (${EVENTS_PER_PATCH} events, 1 action), decided once per run so that releases recorded before it replay as they were.`
        : 'The bench finds no patch or activity the baseline lacked: the difference is per round, in the bake.'),
  );
}

/** The 30-day cycle: how many runs a release needs, and whether every run stays within the workflow's bound. */
function rolloverGoal(h: HistoryResult, goals: Goal[], findings: string[]): void {
  const c = h.cycles.find((x) => x.label === '30-day');
  const goal =
    `30-day cycle at 1-minute analysis: runs per release, every run within the workflow's bound ` +
    `(RUN_MAX_EVENTS ${num(RUN_MAX_EVENTS)} events, RUN_MAX_BYTES ${BOUND_MIB}: src/workflows/rollover.ts)`;
  if (!c || c.release.length === 0) {
    goals.push({ goal, measured: 'n/a', met: undefined });
    return;
  }
  const f = cycleFigures(h, c);
  const over = f.largest.max - RUN_MAX_EVENTS;
  const chain = c.release.map((r) => (r.runEvents ?? []).map((n) => num(n)).join(' + ')).join('; ');
  goals.push({
    goal,
    measured:
      `${f.runs.min === f.runs.max ? num(f.runs.max) : `${num(f.runs.min)}–${num(f.runs.max)}`} runs per release ` +
      `(${plural(c.release.length, 'release')}: ${chain} events); largest run ${num(f.largest.max)} events, ${mib(f.largestBytes.max)}` +
      `${over > 0 ? ` — ${num(over)} events past the bound` : ''}`,
    met: f.largest.max <= RUN_MAX_EVENTS && f.largestBytes.max <= RUN_MAX_BYTES,
  });
  const outcomes = [...new Set(c.release.map((r) => r.outcome))].join(', ');
  findings.push(
    `- **A 30-day release (${num(ROUNDS(c))} one-minute rounds) takes ${num(f.runs.median)} runs of continue-as-new**: ` +
      `${num(f.events.median)} events in all (${chain}), ${num(f.actions.median)} actions in history ` +
      `(+ ≈ ${num(c.heartbeatsEstimate)} heartbeats), ${outcomes}. A run rolls over once it has ${num(RUN_MAX_EVENTS - EVENTS_HEADROOM)} events ` +
      `(or ${BOUND_MIB}, or when Temporal suggests it): it checks when a workflow task starts, so the wake before ` +
      `that task and the rollover's own events come on top, and ${num(EVENTS_HEADROOM)} events of headroom keep the run ` +
      `under ${num(RUN_MAX_EVENTS)}: the largest run ends ${over > 0 ? `${num(over)} events past ${num(RUN_MAX_EVENTS)} (${num(f.largest.max)})` : `at ${num(f.largest.max)}, within it`}, ` +
      `${num(HISTORY_EVENT_LIMIT / f.largest.max, 0)}× under the ${num(HISTORY_EVENT_LIMIT)} events at which Temporal terminates a run. ` +
      `The naive design is not run for 30 days: it would need ≈ ${num(f.projectedEvents ?? NaN)} events in one run (projected).`,
  );
}

const stampOf = (report: BenchReport) =>
  `_Measured by \`${report.command}\` on ${report.startedAt}${report.quick ? ' — **quick mode: too few runs to keep these figures**' : ''}._`;

function historySection(report: BenchReport, goals: Goal[], findings: string[]): string {
  const h = report.history.result;
  if (!h) {
    goals.push({ goal: '7-day cycle: no run above 4,096 events', measured: 'n/a', met: undefined });
    goals.push({ goal: '7-day cycle: ≥ 50× fewer events per release than naive', measured: 'n/a', met: undefined });
    return `## 1. History cost per release\n\n${failed('The history bench', report.history)}`;
  }
  const { rows, actionRows } = historyRows(h);
  const week = h.cycles.find((c) => c.label === '7-day');
  if (week) {
    const f = cycleFigures(h, week);
    goals.push({
      goal: '7-day cycle at 1-minute analysis: no run above 4,096 events',
      measured: `largest run ${num(f.largest.max)} events (${plural(week.release.length, 'release')})`,
      met: week.release.length > 0 ? f.largest.max <= GOAL_MAX_EVENTS : undefined,
    });
    goals.push({
      goal: '7-day cycle: ≥ 50× fewer events per release than the naive design',
      measured:
        `${num(f.ratio, 1)}× (naive needs ≈ ${num(f.projectedEvents ?? NaN)} events per release, projected; ` +
        `it was stopped at ${num(f.naiveEvents.max)}, the limit is ${num(HISTORY_EVENT_LIMIT)}) — ` +
        `${num(f.naiveEvents.max / f.events.median, 1)}× even counting only the events before termination`,
      met: week.release.length > 0 && Number.isFinite(f.ratio) ? f.ratio >= GOAL_EVENT_RATIO : undefined,
    });
  }
  baselineGoal(h, goals, findings);
  rolloverGoal(h, goals, findings);
  if (week) {
    const f = cycleFigures(h, week);
    findings.push(
      `- **Heartbeats, not history, decide the 7-day bill.** With TOLLGATE_ANALYSIS_HEARTBEAT=liveness (the ` +
        `default) a running analysis stretch heartbeats once per 80% of its ${num(ANALYSIS_HEARTBEAT_TIMEOUT_MS / 60_000)}-minute ` +
        `heartbeat timeout, ${num(HEARTBEAT_SPACING_MS / 1000)} s, so a 7-day bake sends ≈ ${num(week.heartbeatsEstimate)} ` +
        `heartbeats, each a billable action: ${num(week.heartbeatsEstimate / f.actions.median, 1)}× the ${num(f.actions.median)} ` +
        `actions in its history. Counting them, a Tollgate release costs ≈ ${num(f.withBeats)} actions, ` +
        `${num((f.projectedActions ?? NaN) / f.withBeats, 2)}× fewer than the naive design's ≈ ${num(f.projectedActions ?? NaN)} ` +
        `(projected), and its history is ${num(f.ratio, 0)}× smaller. A worker that died mid-stretch is noticed within ` +
        `the timeout; \`status\` sees a running stretch's rounds up to ${num(HEARTBEAT_SPACING_MS / 60_000, 1)} min late ` +
        `(TOLLGATE_ANALYSIS_HEARTBEAT=round shows each, one action per round). §5 measures the settings side by side.`,
    );
  }
  const baselineText = Object.entries(BASELINE.events)
    .map(([label, b]) => `${num(b.median)} (${num(b.min)}–${num(b.max)}) for ${label}`)
    .join(', ');
  return `## 1. History cost per release (time-skipping server)

${stampOf(report)}

Traffic cycles analysed every minute (one check), staging → canary bake → one production wave without bake, no
gates, dry-run target. Tollgate is \`releaseWorkflow\` with its real activities and an **instant** analysis double;
the naive design is [\`bench/naive-workflow.ts\`](bench/naive-workflow.ts): \`for each minute: await sleep(1m); await
analyzeOnce()\`, one timer and one activity per check round, no continue-as-new. Both run in this invocation on the
time-skipping test server (${report.versions.testServer}) in two lanes of their own servers (the 30-day Tollgate
releases, then the naive 7-day run in one, everything else in the other). Figures: median (min–max) over the releases; a release's events are summed
over its continue-as-new chain, and "largest run" is the largest single run seen in any of them (its events, and
their encoded size). "Before issue 12" is the release workflow before its modules and continue-as-new (8cca3c0:
${baselineText}).

| traffic cycle | releases (Tollgate / naive) | Tollgate events per release | before issue 12 | runs per release | Tollgate largest run | naive events per release | naive largest run | naive ÷ Tollgate |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Temporal Cloud actions per release:

| traffic cycle | Tollgate actions in history | heartbeats of real analysis (estimated) | Tollgate with heartbeats | naive actions | naive ÷ Tollgate (history) | naive ÷ Tollgate (with heartbeats) |
| --- | --- | --- | --- | --- | --- | --- |
${actionRows.join('\n')}

How these are counted:

- **Events**: \`history.events.length\` of each run (\`handle.fetchHistory()\`), summed over the release's runs.
- **Continue-as-new**: a Tollgate run rolls over into a new one once it has ${num(RUN_MAX_EVENTS - EVENTS_HEADROOM)} events (so that
  none passes ${num(RUN_MAX_EVENTS)}) or ${BOUND_MIB} of history, or when Temporal suggests it (\`RUN_MAX_EVENTS\`, \`RUN_MAX_BYTES\` in
  [\`src/workflows/rollover.ts\`](src/workflows/rollover.ts)); the bench follows the chain from the first run (at most
  100 runs). Every run's start is an action.
- **Actions** (rule from docs.temporal.io/cloud/actions, counted from the history, [\`bench/actions.ts\`](bench/actions.ts)):
  workflow started 1 (each run, so a continue-as-new counts); activity scheduled 1, plus 1 per retry
  (\`attempt − 1\` of its started event); timer started 1; signal received or sent 1; search-attribute upsert 1
  (attributes given at start are free; the TemporalChangeVersion upsert after each patch marker counts); update
  accepted 1; child workflow initiated 2; external cancel 1; workflow options updated 1; local-activity markers 1 per
  workflow task. Not in history and so not in the "in history"
  column: queries (the bench sends none while measuring), rejected updates (none), and **activity heartbeats** —
  estimated in their own column as TOLLGATE_ANALYSIS_HEARTBEAT=liveness sends them: bake length ÷
  ${num(HEARTBEAT_SPACING_MS / 1000)} s (80% of the analysis heartbeat timeout; §5 counts them at the server).
- **Instant double**: an analysis stretch that answers at once makes the workflow wait for the stretch's planned
  end with an extra timer (${h.cycles.map((c) => `${num(c.segments)} stretch${c.segments === 1 ? '' : 'es'} for ${c.label}`).join(', ')}), so a real
  run costs slightly fewer events and timers than the Tollgate columns (and adds the heartbeats above).
- **Naive 7-day and 30-day**: neither can finish: the real server terminates a run past ${num(HISTORY_EVENT_LIMIT)}
  events; the bench does not rely on the test server to do the same, so the naive workflow fails itself once its
  history reaches the limit ("terminated at the history limit"); a run still going at the bench's wall-time bound is
  terminated and recorded as "stopped by the time bound". The 30-day one is not run at all. Their per-release
  figures are projected from the measured 1-hour and 24-hour medians (cost is linear in check rounds:
  ${num(naiveLine(h.cycles, (r) => r.events)?.perRound ?? NaN, 2)} events and ${num(naiveLine(h.cycles, (r) => r.actions.total)?.perRound ?? NaN, 2)} actions per round).
- **Bounded**: each Tollgate release and each naive run has a wall-time bound of its own, no release starts past the
  section's deadline, and a 30-day release takes seconds on the time-skipping server, so the section stays within
  minutes.
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

/** BENCHMARKS.md's sections in order (§1 …), by their BENCH_SECTIONS names. */
export const SECTION_KEYS = [
  'history',
  'startup',
  'reaction',
  'concurrency',
  'heartbeats',
  'kubernetes',
  'external',
  'alerts',
  'rollback',
  'cluster',
] as const;
export type SectionKey = (typeof SECTION_KEYS)[number];

interface Rendered {
  /** The section's number, §n; its heading starts `## n. `. */
  n: number;
  text: string;
  /** Its rows of the goals table and its findings, each tagged with §n (a partial run replaces them by the tag). */
  goals: string[];
  findings: string[];
}

function renderSection(report: BenchReport, key: SectionKey): Rendered {
  const goals: Goal[] = [];
  const findings: string[] = [];
  const render = {
    history: () => historySection(report, goals, findings),
    startup: () => startupSection(report, goals),
    reaction: () => reactionSection(report, goals, findings),
    concurrency: () => concurrencySection(report, goals, findings),
    heartbeats: () => heartbeatSection(report.heartbeats, report, goals, findings),
    kubernetes: () => kubernetesSection(report.kubernetes, goals, findings),
    external: () => externalSection(report.external, report, goals, findings),
    alerts: () => alertsSection(report.alerts, report, goals, findings),
    rollback: () => rollbackSection(report.rollback, report, goals, findings),
    cluster: () => clusterSection(report.cluster, goals, findings),
  }[key];
  const text = render();
  const n = SECTION_KEYS.indexOf(key) + 1;
  return {
    n,
    text,
    goals: goals.map((g) => `| §${n} | ${g.goal} | ${g.measured} | ${g.verdict ?? verdict(g.met)} |`),
    findings: findings.map((f) => f.replace(/^- /, `- §${n}: `)),
  };
}

const GOALS_HEADING = '## Goals (issues 7, 12–16 and 18)';
const FINDINGS_HEADING = '## Findings';
const RERUN_PREFIX = 'Re-run alone since, each stamped under its heading: ';
const goalsBlock = (rows: string[]) =>
  `${GOALS_HEADING}\n\n| § | goal | measured | verdict |\n| --- | --- | --- | --- |\n${rows.join('\n')}\n`;
const findingsBlock = (items: string[]) => `${FINDINGS_HEADING}\n\n${items.join('\n')}\n`;

export function renderReport(report: BenchReport): string {
  const sections = SECTION_KEYS.map((key) => renderSection(report, key));
  const m = report.machine;
  const v = report.versions;
  return `# Benchmarks

Written by \`${report.command}\` (the TypeScript in [\`bench/\`](bench/), compiled with \`tsc -p bench/tsconfig.json\`)
on ${report.startedAt}; total bench time ${seconds(report.totalMs)} (plus the \`tsc\` step)${report.quick ? ' — **quick mode (BENCH_QUICK=1): too few runs to keep these figures**' : ''}.
Re-run it to refresh this file; compare figures side by side within one run, not absolute times across machines.
\`BENCH_SECTIONS\` naming some sections rewrites only theirs (and their goals and findings, tagged §n).

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

${goalsBlock(sections.flatMap((s) => s.goals))}
${findingsBlock(sections.flatMap((s) => s.findings))}
${sections.map((s) => s.text).join('\n')}`;
}

/** Only `keys`' goals, findings and sections (a partial run's figures not for keeping, written aside). */
export function renderPartial(report: BenchReport, keys: SectionKey[]): string {
  const sections = keys.map((key) => renderSection(report, key));
  return `${stampOf(report)}

${goalsBlock(sections.flatMap((s) => s.goals))}
${findingsBlock(sections.flatMap((s) => s.findings))}
${sections.map((s) => s.text).join('\n')}`;
}

/** The §n a goals row (`| §n | …`) or a finding (`- §n: …`) belongs to. */
const tagOf = (line: string) => Number(/^(?:\| §|- §)(\d+)/.exec(line)?.[1] ?? NaN);

/** `kept` without the lines of sections `ns`, plus `fresh`, in section order (each section's own order kept). */
function mergeTagged(kept: string[], fresh: string[], ns: Set<number>): string[] {
  const untagged = kept.filter((l) => !Number.isFinite(tagOf(l)));
  if (untagged.length > 0) throw new Error(`BENCHMARKS.md has lines without a §n tag: ${untagged[0]}`);
  return [...kept.filter((l) => !ns.has(tagOf(l))), ...fresh].sort((a, b) => tagOf(a) - tagOf(b));
}

/** Where the block under the line starting `heading` is: from that line up to the next `## ` heading (or the end). */
function blockAt(text: string, heading: string): { start: number; end: number } {
  const start = text.indexOf(`\n${heading}`) + 1;
  if (start === 0) throw new Error(`BENCHMARKS.md has no "${heading}"`);
  const next = text.indexOf('\n## ', start);
  return { start, end: next < 0 ? text.length : next + 1 };
}

/** `text` with section §n replaced by `section` (or put before the first later section, or at the end). */
function replaceSection(text: string, n: number, section: string): string {
  const heads = [...text.matchAll(/^## (\d+)\. /gm)];
  const at = heads.find((x) => Number(x[1]) === n);
  if (at) {
    const { end } = blockAt(text, at[0]);
    return `${text.slice(0, at.index)}${section}${end < text.length ? '\n' : ''}${text.slice(end)}`;
  }
  const later = heads.find((x) => Number(x[1]) > n);
  if (later) return `${text.slice(0, later.index)}${section}\n${text.slice(later.index)}`;
  return `${text.trimEnd()}\n\n${section}`;
}

/**
 * A partial run (BENCH_SECTIONS naming some sections): `existing` (BENCHMARKS.md) with those sections rewritten —
 * their text, their rows of the goals table, their findings — and the header saying which were re-run and when;
 * every other line as it was.
 */
export function spliceReport(existing: string, report: BenchReport, keys: SectionKey[]): string {
  const fresh = keys.map((key) => renderSection(report, key));
  const ns = new Set(fresh.map((r) => r.n));
  let text = existing;
  for (const r of fresh) text = replaceSection(text, r.n, r.text);
  const goals = blockAt(text, '## Goals');
  const rows = text
    .slice(goals.start, goals.end)
    .split('\n')
    .filter((l) => l.startsWith('| ') && !l.startsWith('| § |') && !l.startsWith('| --- '));
  text = `${text.slice(0, goals.start)}${goalsBlock(
    mergeTagged(
      rows,
      fresh.flatMap((r) => r.goals),
      ns,
    ),
  )}\n${text.slice(goals.end)}`;
  const found = blockAt(text, FINDINGS_HEADING);
  const items = text
    .slice(found.start, found.end)
    .split('\n')
    .filter((l) => l.startsWith('- '));
  text = `${text.slice(0, found.start)}${findingsBlock(
    mergeTagged(
      items,
      fresh.flatMap((r) => r.findings),
      ns,
    ),
  )}\n${text.slice(found.end)}`;
  return withReruns(text, report, ns);
}

/** The header's line of sections re-run alone since the full run, with this run's. */
function withReruns(text: string, report: BenchReport, ns: Set<number>): string {
  const entry = (n: number) => `§${n} by \`${report.command}\` on ${report.startedAt} (${seconds(report.totalMs)})`;
  const line = new RegExp(`^${RERUN_PREFIX.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(.*)\\.$`, 'm').exec(text);
  const entries = (line?.[1] ?? '')
    .split('; ')
    .filter((e) => /^§\d+ /.test(e) && !ns.has(Number(/^§(\d+)/.exec(e)![1])));
  const all = [...entries, ...[...ns].map(entry)].sort(
    (a, b) => Number(/^§(\d+)/.exec(a)![1]) - Number(/^§(\d+)/.exec(b)![1]),
  );
  const rerun = `${RERUN_PREFIX}${all.join('; ')}.`;
  if (line) return `${text.slice(0, line.index)}${rerun}${text.slice(line.index + line[0].length)}`;
  const at = text.indexOf('\nRe-run it to refresh this file');
  if (at < 0) throw new Error('BENCHMARKS.md has no header line "Re-run it to refresh this file"');
  return `${text.slice(0, at + 1)}${rerun}\n${text.slice(at + 1)}`;
}
