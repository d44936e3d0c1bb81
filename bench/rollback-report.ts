import type { Goal } from './report';
import type { RollbackMode, RollbackResult, RollbackTrial, RollbackTrigger } from './rollback';
import type { BenchReport, SectionOutcome } from './run';
import { num, summarize } from './stats';

/** §9 of BENCHMARKS.md: rollback after promotion, warm against cold, from [`bench/rollback.ts`](rollback.ts)'s result. */

const GOAL_RATIO = 5;
const GOAL_WARM_MS = 10_000;
const HEADING = '## 9. Rollback after promotion: warm switch against cold start (dev server, 10-instance demo fleet)';
const RATIO_GOAL = `rollback after promotion (\`tollgate rollback\`, or a watch breach) → all production traffic on the previous version: warm ≥ ${GOAL_RATIO}× faster than cold (issue 16)`;
const WARM_GOAL = `… warm, under ${num(GOAL_WARM_MS / 1000)} s for the 10-instance demo fleet (issue 16)`;
const FAILED_GOAL = 'no request fails while production switches back (issue 16; HAProxy retries off)';

const s1 = (ms: number) => `${num(ms / 1000, 1)} s`;
const s2 = (ms: number) => `${num(ms / 1000, 2)} s`;
const TRIGGERS: RollbackTrigger[] = ['rollback', 'breach'];
const MODES: RollbackMode[] = ['warm', 'cold'];
const TRIGGER_NAME: Record<RollbackTrigger, string> = {
  rollback: '`tollgate rollback` (t0: sent)',
  breach: 'watch SLO breach (t0: the workflow’s rollback start)',
};
const MODE_NAME: Record<RollbackMode, string> = {
  warm: 'warm (keepPrevious: true)',
  cold: 'cold (keepPrevious: false)',
};

const of = (r: RollbackResult, trigger: RollbackTrigger, mode: RollbackMode) =>
  r.trials.filter((t) => t.trigger === trigger && t.mode === mode);
const range = (values: number[]) => {
  const s = summarize(values);
  return s.n === 0 ? 'n/a' : s.n === 1 ? s2(s.median) : `${s2(s.min)}–${s2(s.max)}`;
};
const median = (values: number[]) => summarize(values).median;
const defined = (values: (number | undefined)[]) => values.filter((v): v is number => v !== undefined);
const sum = (trials: RollbackTrial[], pick: (t: RollbackTrial) => number) => trials.reduce((n, t) => n + pick(t), 0);
const spread = (values: number[]) => {
  const s = summarize(values);
  return s.n === 0 ? 'n/a' : s.min === s.max ? num(s.min) : `${num(s.min)}–${num(s.max)}`;
};

function summaryRow(r: RollbackResult, trigger: RollbackTrigger, mode: RollbackMode): string | undefined {
  const trials = of(r, trigger, mode);
  if (trials.length === 0) return undefined;
  const to = trials.map((t) => t.toPreviousMs);
  const med = (values: (number | undefined)[]) => {
    const known = defined(values);
    return known.length > 0 ? s2(median(known)) : '—';
  };
  return (
    `| ${TRIGGER_NAME[trigger]} | ${MODE_NAME[mode]} | ${trials.length} | **${s2(median(to))}** | ${range(to)} | ` +
    `${med(trials.map((t) => t.answersMs))} | ${med(trials.map((t) => t.drainedMs))} | ` +
    `${med(trials.map((t) => t.firstDrainedMs))} | ${med(trials.map((t) => t.rollbackMs))} | ` +
    `${spread(trials.map((t) => t.fleetStarts))} | ${spread(trials.map((t) => t.switchBacks))} | ` +
    `${num(sum(trials, (t) => t.failed))} of ${num(sum(trials, (t) => t.sent))} |`
  );
}

function trialRow(t: RollbackTrial, n: number): string {
  const cell = (v: number | undefined) => (v === undefined ? '—' : s2(v));
  const way = t.trigger === 'rollback' ? `${cell(t.rollbackStartMs)} (answered ${cell(t.answeredMs)})` : '—';
  const kinds = Object.entries(t.failedKinds)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  return (
    `| ${n + 1} | ${t.trigger} | ${t.mode} | ${cell(t.lastNewMs)} | ${s2(t.answersMs)} | ${cell(t.firstDrainedMs)} | ` +
    `${cell(t.drainedMs)} | ${cell(t.rotationMs)} | **${s2(t.toPreviousMs)}** | ${way} | ` +
    `${t.detectMs === undefined ? '—' : s1(t.detectMs)} | ${s2(t.rollbackMs)} | ${t.fleetStarts} | ${t.switchBacks} | ` +
    `${num(t.sent)} / ${num(t.failed)}${kinds ? ` (${kinds})` : ''} | ${num(t.otherNon2xx)} |`
  );
}

interface Ratios {
  warm: number;
  cold: number;
  ratio: number;
  n: [number, number];
}

function ratioOf(r: RollbackResult, trigger: RollbackTrigger): Ratios | undefined {
  const [warm, cold] = MODES.map((m) => of(r, trigger, m).map((t) => t.toPreviousMs));
  if (!warm?.length || !cold?.length) return undefined;
  const [w, c] = [median(warm), median(cold)];
  return { warm: w, cold: c, ratio: c / w, n: [warm.length, cold.length] };
}

function goalsOf(r: RollbackResult, goals: Goal[]): Partial<Record<RollbackTrigger, Ratios>> {
  const ratios = Object.fromEntries(
    TRIGGERS.flatMap((trigger) => {
      const ratio = ratioOf(r, trigger);
      return ratio ? [[trigger, ratio]] : [];
    }),
  ) as Partial<Record<RollbackTrigger, Ratios>>;
  const measured = TRIGGERS.flatMap((trigger) => {
    const x = ratios[trigger];
    return x
      ? [
          `${trigger === 'rollback' ? '`tollgate rollback`' : 'breach'}: warm ${s2(x.warm)} vs cold ${s2(x.cold)} ` +
            `(medians, n = ${x.n[0]} / ${x.n[1]}) = **${num(x.ratio, 1)}×**`,
        ]
      : [];
  });
  goals.push({
    goal: RATIO_GOAL,
    measured: measured.length > 0 ? measured.join('; ') : 'n/a',
    met: ratios.rollback ? Object.values(ratios).every((x) => x.ratio >= GOAL_RATIO) : undefined,
  });
  const warm = r.trials.filter((t) => t.mode === 'warm').map((t) => t.toPreviousMs);
  const w = summarize(warm);
  goals.push({
    goal: WARM_GOAL,
    measured: w.n > 0 ? `slowest warm trial ${s2(w.max)} (median ${s2(w.median)}, n = ${w.n}, both triggers)` : 'n/a',
    met: w.n > 0 ? w.max < GOAL_WARM_MS : undefined,
  });
  const byMode = MODES.map((mode) => {
    const trials = r.trials.filter((t) => t.mode === mode);
    return `${mode}: ${num(sum(trials, (t) => t.failed))} of ${num(sum(trials, (t) => t.sent))}`;
  });
  goals.push({
    goal: FAILED_GOAL,
    measured:
      r.trials.length > 0 ? `failed requests from the watch to the end of the switch — ${byMode.join('; ')}` : 'n/a',
    met: r.trials.length > 0 ? sum(r.trials, (t) => t.failed) === 0 : undefined,
  });
  return ratios;
}

export function rollbackSection(
  outcome: SectionOutcome<RollbackResult>,
  report: Pick<BenchReport, 'command' | 'startedAt' | 'quick'>,
  goals: Goal[],
  findings: string[],
): string {
  const r = outcome.result;
  if (!r) {
    for (const goal of [RATIO_GOAL, WARM_GOAL, FAILED_GOAL]) goals.push({ goal, measured: 'n/a', met: undefined });
    return `${HEADING}\n\n_The rollback bench did not complete: ${outcome.error ?? 'no result'}_\n`;
  }
  const ratios = goalsOf(r, goals);
  const rows = TRIGGERS.flatMap((trigger) => MODES.map((mode) => summaryRow(r, trigger, mode))).filter(
    (row): row is string => row !== undefined,
  );
  const manual = ratios.rollback;
  if (manual) {
    const warm = of(r, 'rollback', 'warm');
    const cold = of(r, 'rollback', 'cold');
    const firstBack = median(defined(warm.map((t) => t.firstDrainedMs)));
    const warmDone = median(warm.map((t) => t.rollbackMs));
    findings.push(
      `- **Rolling a watched release back by traffic switch puts all production traffic on the previous version ` +
        `${num(manual.ratio, 1)}× sooner than starting it cold**: \`tollgate rollback\` → every request through the ` +
        `frontend answered by the previous version after ${s2(manual.warm)} warm against ${s2(manual.cold)} cold ` +
        `(medians), on the 10-instance demo fleet under load; ${num(sum(r.trials, (t) => t.failed))} requests failed ` +
        `in all ${r.trials.length} switches, breaches included. Warm starts no instance process behind the frontend: ` +
        `the instances the 100 % wave replaced are back in rotation ${s2(firstBack)} after t0, the rest follow in the two undo activities ` +
        `after it; the rest of the rollback (to its end at ${s2(warmDone)}, median) stops the last new-version process ` +
        `and starts the staging instance again, which serves no production traffic. Cold starts ` +
        `${spread(cold.map((t) => t.fleetStarts))} instances one after another, ≈ ${s2(manual.cold / r.fleetSize)} each.`,
    );
  }
  const stamp = `_Measured by \`${report.command}\` on ${report.startedAt}${report.quick ? ' — **quick mode: too few runs to keep these figures**' : ''}._`;
  const ratioLine = TRIGGERS.flatMap((trigger) => {
    const x = ratios[trigger];
    return x ? [`${trigger === 'rollback' ? '`tollgate rollback`' : 'watch breach'} ${num(x.ratio, 1)}×`] : [];
  }).join(', ');
  const failedTrials =
    r.failures.length > 0
      ? `Failed trials (${r.failures.length}): ${r.failures.slice(0, 5).join('; ')}.`
      : 'Failed trials: none.';
  return `${HEADING}

${stamp}

Issue 16's rollback after promotion, on the demo's fleet: ${r.fleetSize} instances of the demo service behind a real
HAProxy (the demo's service command and catalogue, demo/versions.yaml; HAProxy's retries off, unlike the demo, so
that a request the switch cut is counted rather than retried), under steady load through the frontend
([\`demo/load.ts\`](demo/load.ts): ${num(r.load.baseRps)}–${num(r.load.peakRps)} requests/s), scraped every second by
Prometheus ${r.prometheus}, released by a worker in the bench process with the real activities on the Temporal dev
server. Each trial releases a version (staging, a canary of one, waves of 50 % and 100 %) and, once the release is
\`watching\` (the watch's analysis: \`error-ratio\` max ${num(r.watch.maxErrorRatio * 100)} % every
${r.watch.interval}, failureLimit ${r.watch.failureLimit}), takes production back to 1.0.0:

- **\`tollgate rollback\`**: 1.1.0, a good version; one second into the watch the bench calls
  \`TollgateClient.rollback\` (what \`tollgate rollback\` runs). t0 is just before the update is sent.
- **watch SLO breach**: 1.2.0-bad (one request in five answered 500), which the canary and the waves do not check for;
  the watch's analysis fails it. When the breach itself began is not a moment one can pin (the errors start with the
  canary; the watch judges the rate window of each round), so t0 is the workflow's rollback start
  (\`status.rollback.startedAt\`) and the figure is rollback start → all traffic back. The watch's start → rollback
  start is shown apart.

Warm keeps the previous version running out of rotation (\`production.watch.keepPrevious: true\`, the default), and
the undo switches back to those processes; cold (\`keepPrevious: false\`) starts the previous version afresh. Modes
alternate trial by trial, 1.0.0 serving all of production again before each.

When did all production traffic reach the previous version? From the answers: a probe in the bench sends one request
through the frontend every ${r.probeEveryMs} ms, each on its own, until ${num(r.settleMs / 1000, 1)} s after the
release has closed, and reads the version each answer names (\`x-version\`); the switch ended after the last request
answered by the new version and by the first request after which every answer named the previous one. With HAProxy's
roundrobin over ${r.fleetSize} servers the last new-version instance gets one request in ${r.fleetSize}, so the
answers alone can put the end a probe gap or two early. From the fleet: its actions log records each \`drain\` once
HAProxy's runtime API has taken it, and HAProxy sends a drained server no new request, so the last new-version
instance's drain is when the switch had ended at the latest. **The figure is the later of the two.** HAProxy's own
view, polled on its admin socket every ${r.rotationEveryMs} ms (the servers UP, not drained, by the version the fleet's
state has listening there), cross-checks the drains.

| trigger | previous version | trials | t0 → all traffic on the previous version, median | min–max | from the answers alone, median | t0 → last new-version instance drained, median | t0 → first drained (the first step's instances back), median | rollback start → done (every step undone, staging included), median | instance processes started behind the frontend | warm instances switched back | failed requests during the switch / sent |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Cold ÷ warm (medians of t0 → all traffic on the previous version): ${ratioLine || 'n/a'}.

Trial by trial (t0 as above; "failed" counts requests of the load generator and the probe from the watch's start to
the end of the switch without an answer or answered by HAProxy itself; the bad version's own 500s are not failures
of the switch, other versions' non-2xx are counted apart):

| # | trigger | mode | t0 → last answer from the new version | t0 → first request with only previous-version answers after it | t0 → first new-version instance drained | t0 → last drained | t0 → HAProxy's rotation all previous | t0 → all traffic on the previous version | t0 → rollback start in the workflow | watch start → rollback start | rollback start → done | starts | switch-backs | sent / failed | other non-2xx |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${r.trials.map(trialRow).join('\n')}

What bounds it:

- **Warm: three traffic switches, one per deployed step, in the order they are undone.** The release's compensation
  undoes its steps latest first, one \`undo\` activity each: the 100 % wave's (5 instances), the 50 % wave's (4), the
  canary's (1). Each sets its warm slots \`ready\` (HAProxy never stopped health-checking them, so they are UP at once),
  then drains the new version's instances together and stops them; the last new instance leaves rotation when the
  canary's undo drains it. The staging instance, not behind the frontend, is started again on 1.0.0 afterwards.
- **Cold: ${r.fleetSize} process starts, one at a time.** Each instance of 1.0.0 starts, answers its health check,
  is enabled and waits for HAProxy's check to find it UP, and only then is the new-version instance it replaces
  drained and stopped, so nothing ever serves short of ${r.fleetSize}; every start is paid in series. A service
  slower to start than the demo's (a JVM, a cache to warm) pays that many times over, where the switch stays a
  switch.

${failedTrials} Section wall time: ${num(r.wallMs / 1000)} s.
`;
}
