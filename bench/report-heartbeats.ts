import type { SectionOutcome } from './run';
import { INTERVAL_MS, SHORT_STRETCHES, type HeartbeatResult, type OptionResult, type ReleaseShape } from './heartbeats';
import { num } from './stats';

/** The bill the issue sets for a 7-day release, heartbeats included. */
export const GOAL_ACTIONS_7D = 2_000;
/** A worker that stops mid-stretch must be noticed within this. */
const GOAL_NOTICED_MS = 10 * 60_000;
/** The option the product defaults to (TOLLGATE_ANALYSIS_HEARTBEAT=liveness, heartbeat timeout 10 min). */
export const CHOSEN = 'liveness-10m';

export const HEARTBEATS_HEADING = '## 5. Analysis heartbeats: billable actions per 7-day release, option by option';

interface Goal {
  goal: string;
  measured: string;
  met: boolean | undefined;
}

const minutes = (ms: number) => (Number.isFinite(ms) ? `${num(ms / 60_000, ms < 60_000 ? 1 : 0)} min` : 'n/a');
const mark = (ok: boolean) => (ok ? '✓' : '✗');

/** Heartbeats over a 7-day canary: the measured ones per full stretch, times the stretches' rounds ÷ a stretch's. */
function heartbeats7d(o: OptionResult, shape: ReleaseShape): number {
  return Math.round((o.heartbeats / Math.max(1, o.rounds)) * shape.rounds);
}

export function heartbeatTotals(h: HeartbeatResult): { key: string; total: number }[] {
  const full = h.releases[0];
  if (!full) return [];
  return h.options.map((o) => ({ key: o.option.key, total: full.cost.actions.total + heartbeats7d(o, full) }));
}

function agreement(o: OptionResult): string {
  const server = o.serverActions;
  const scheduled = server.command_ScheduleActivityTask ?? 0;
  const started = server.grpc_StartWorkflowExecution ?? 0;
  return scheduled === o.historyActions.activities && started === o.historyActions.other ? 'agree' : 'differ';
}

export function heartbeatSection(
  outcome: SectionOutcome<HeartbeatResult>,
  run: { command: string; startedAt: string; quick: boolean },
  goals: Goal[],
  findings: string[],
): string {
  const h = outcome.result;
  if (!h) {
    goals.push({
      goal: `7-day release ≤ ${num(GOAL_ACTIONS_7D)} actions, heartbeats included`,
      measured: 'n/a',
      met: undefined,
    });
    return `${HEARTBEATS_HEADING}\n\n${outcome.error !== undefined ? `_The heartbeat bench did not complete: ${outcome.error}_\n` : ''}`;
  }
  const [full, ...short] = h.releases;
  const interval = `${num(INTERVAL_MS / 60_000)} min`;
  const rows = h.options.map((o) => {
    const opt = o.option;
    if (o.error !== undefined || !full)
      return `| ${opt.label} | — | — | — | — | — | — | — | _${o.error ?? 'no release measured'}_ |`;
    const beats = heartbeats7d(o, full);
    const total = full.cost.actions.total + beats;
    const noticed = o.dead?.noticedMs ?? NaN;
    const chosen = opt.key === CHOSEN ? ' **(chosen)**' : '';
    return (
      `| ${opt.label}${chosen} | \`${opt.setting}\` · ${minutes(opt.heartbeatTimeoutMs)} · ${minutes(opt.throttleMs)} | ` +
      `${num(o.heartbeats / Math.max(1, o.stretches), 1)} | ${num(beats)} | **${num(total)}** ${mark(total <= GOAL_ACTIONS_7D)} | ` +
      `${num(o.shownLive)} of ${num(o.liveRounds)} ${mark(o.shownLive === o.liveRounds)} | ` +
      `${minutes(o.stalenessMs.median)} / ${minutes(o.stalenessMs.max)} | ` +
      `${minutes(noticed)} ${mark(noticed <= GOAL_NOTICED_MS)} | ` +
      `${o.failing ? `${o.failing.decision}, ${num(o.failing.reportMs)} ms` : 'n/a'} |`
    );
  });
  const shortRows = short.map((s, i) => {
    const margin = SHORT_STRETCHES[i]?.marginMs ?? NaN;
    return (
      `| stretches of ${s.stretchRounds} rounds reporting back, no heartbeats (start-to-close ${s.stretchRounds} × ${interval} + ${minutes(margin)} is the only liveness) | ` +
      `— · none · — | 0 | 0 | **${num(s.cost.actions.total)}** ${mark(s.cost.actions.total <= GOAL_ACTIONS_7D)} | ` +
      `0 of ${num(s.rounds - s.stretches)}: each report only | ≤ ${minutes(s.stretchRounds * INTERVAL_MS)} (every report) | ` +
      `≤ ${minutes(s.stretchRounds * INTERVAL_MS + margin)} at ${interval} analysis; never within 10 min at ≥ 10-min analysis ✗ | at once (by design) |`
    );
  });
  const shapeRows = h.releases.map(
    (s) =>
      `| ≤ ${s.stretchRounds} rounds | ${num(s.stretches)} | ${num(s.cost.actions.total)}: ${s.cost.actions.activities} activities · ` +
      `${s.cost.actions.timers} timers · ${s.cost.actions.upserts} upserts · ${s.cost.actions.signals} signals · ${s.cost.actions.other} other | ` +
      `${num(s.workflowTasks)} | ${num(s.cost.events)} | ${num(s.cost.runs)} (largest ${num(s.cost.largestRun)} events) | ${s.cost.outcome} |`,
  );
  const chosen = h.options.find((o) => o.option.key === CHOSEN);
  const chosenTotal = chosen && full ? full.cost.actions.total + heartbeats7d(chosen, full) : NaN;
  goals.push({
    goal: `7-day release ≤ ${num(GOAL_ACTIONS_7D)} actions, heartbeats included (TOLLGATE_ANALYSIS_HEARTBEAT=liveness, 10-min heartbeat timeout)`,
    measured: chosen
      ? `${num(chosenTotal)} (${num(full?.cost.actions.total ?? NaN)} in history + ${num(full ? heartbeats7d(chosen, full) : NaN)} heartbeats); a stopped stretch noticed after ${minutes(chosen.dead?.noticedMs ?? NaN)}`
      : 'n/a',
    met: chosen && full ? chosenTotal <= GOAL_ACTIONS_7D : undefined,
  });
  const today = h.options.find((o) => o.option.key === 'round-2m');
  if (chosen && today && full) {
    findings.push(
      `- **A 7-day release costs ${num(chosenTotal)} actions, not ${num(full.cost.actions.total + heartbeats7d(today, full))}**: ` +
        `a running stretch now heartbeats only as its heartbeat timeout needs (one per 8 min with a 10-min timeout: ` +
        `${num(heartbeats7d(chosen, full))} over the canary, instead of one per round). The price is \`status\`: it sees a ` +
        `stretch's rounds up to 8 min late (the demo sets TOLLGATE_ANALYSIS_HEARTBEAT=round and sees each one). Spacing ` +
        `heartbeats with the SDK's throttle instead costs the same, but a stretch that stops while heartbeats wait in the ` +
        `throttle is noticed only after the throttle and the timeout, ${minutes(h.options.find((o) => o.option.key === 'round-throttle-10m')?.dead?.noticedMs ?? NaN)} here; ` +
        `stretches that report back without heartbeats cost more history and cannot be noticed within 10 min once a round is that long (§5).`,
    );
  }
  const byKey = (key: string) => h.options.find((o) => o.option.key === key);
  const totalOf = (key: string) => {
    const o = byKey(key);
    return o && full ? full.cost.actions.total + heartbeats7d(o, full) : NaN;
  };
  const [short5, short9] = short;
  const choice = chosen
    ? `**Chosen: \`liveness\` with a 10-minute heartbeat timeout** (TOLLGATE_ANALYSIS_HEARTBEAT's default; the
timeout is the workflow's analysis proxy's): ${num(chosenTotal)} actions per 7-day release, ${num(totalOf('round-2m') / chosenTotal, 1)}× fewer than
today's ${num(totalOf('round-2m'))}, and a stretch that stops heartbeating is noticed within the 10 minutes
(${minutes(chosen.dead?.noticedMs ?? NaN)} here). Its heartbeats cost the same at any analysis interval: one per 8 minutes. What it gives up:
\`status\` and \`watch\` see a running stretch's rounds up to 8 min late (a failure never waits for that: the deciding
round returns at once, ${num(chosen.failing?.reportMs ?? NaN)} ms here, and the workflow rolls back on it); a retry after a crash repeats up to 8 rounds; a
cancelled stretch (abort, promote, a stretch resized on resume) learns of it only at its next heartbeat, up to 8 min
later, running rounds nobody reads until then. The demo, whose whole canary is 3 minutes of 10-second rounds, sets
\`round\` (with its 10 s throttle), so \`watch\` shows every round, one action each. Not chosen: **every round**
(today, or with a 10-min timeout: "details only on change" changes nothing when every round changes them) and **2-min
spacing** stay above ${num(GOAL_ACTIONS_7D)}; **liveness with the 2-min timeout** left as it is costs ${num(totalOf('liveness-2m'))}; **spacing by the
SDK's throttle** (TOLLGATE_MAX_HEARTBEAT_THROTTLE=10m) costs the same as the choice, but for every activity of the
worker, and heartbeats held in the throttle are sent for a stretch that has already stopped, which put its timeout
off to ${minutes(byKey('round-throttle-10m')?.dead?.noticedMs ?? NaN)}; **stretches that report back without heartbeats** cost ${num(short5?.cost.actions.total ?? NaN)} with the bake's 5-minute
margin and ${num(short9?.cost.actions.total ?? NaN)} with a 1-minute one, but ${num((short9?.cost.events ?? NaN) / (full?.cost.events ?? NaN), 0)}× the history (${num(short9?.cost.events ?? NaN)} events in
${num(short9?.cost.runs ?? NaN)} runs), no live rounds, no cancellation (it arrives only with a heartbeat), and start-to-close as their only
liveness: with analysis every 5–9 min a stretch holds one round, and at 10 min or more (org policies allow up to 15)
no stretch fits in 10 minutes at all.
`
    : '';
  return `${HEARTBEATS_HEADING}

_Measured by \`${run.command}\` on ${run.startedAt}${run.quick ? ' — **quick mode: one stretch per option, figures not for keeping**' : ''}._

What a running analysis stretch costs, for each way it could heartbeat, in one run. A 7-day release at
${interval} analysis (§1's) is **history + heartbeats**: its history is measured on the time-skipping server
(${h.releases.length} releases of the real \`releaseWorkflow\`, whose analysis double takes each stretch's time on the
server's clock, so the next stretch starts on the report, as with real analysis), and its heartbeats on the dev server: the real \`analyze\`
activity under each option's setting, heartbeat timeout and worker throttle, all options side by side, each in a
namespace of its own, every duration divided by ${num(h.scale)} (a minute-long round takes ${num(INTERVAL_MS / h.scale)} ms),
${num(h.stretchesPerOption)} full stretch${h.stretchesPerOption === 1 ? '' : 'es'} of 120 rounds each, counted by the
server. Times in the table are real (measured × ${num(h.scale)}).

| option | setting · heartbeat timeout · worker throttle | heartbeats per 2-hour stretch | heartbeats per 7-day canary | actions per 7-day release (≤ ${num(GOAL_ACTIONS_7D)}) | rounds \`watch\` showed live | a round's end → \`status\` shows it, median / max | stops heartbeating → noticed (≤ 10 min) | critical round → activity reports |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${[...rows, ...shortRows].join('\n')}

${choice}
The release's history, by stretch length:

| stretches | stretches per release | actions in history | workflow tasks (not billed) | events | runs |  |
| --- | --- | --- | --- | --- | --- | --- |
${shapeRows.join('\n')}

How these are counted:

- **Actions in history** (bench/actions.ts, as §1): workflow started 1 per run (so continue-as-new counts), activity
  scheduled 1 plus 1 per retry, timer 1, search-attribute upsert 1, signal 1, update 1. Workflow tasks are not
  actions (docs.temporal.io/cloud/actions); they are shown for the history's size only. §1 counts more in history
  (its instant double waits out each stretch on a timer, which also re-arms the progress timer); this double does
  not, as real analysis does not.
- **Heartbeats**: the dev server's own \`action\` counter, \`grpc_RecordActivityTaskHeartbeat\`, per namespace —
  the heartbeats that reached the server, which is what Temporal Cloud bills ("a Heartbeat counts as an Action only
  if it reaches the Temporal Server"; the SDK throttles the rest). Per 7-day canary: heartbeats per round measured ×
  the ${num(full?.rounds ?? NaN)} rounds the release's ${num(full?.stretches ?? NaN)} stretches ran. The same counter's activity and workflow
  starts ${h.options.every((o) => agreement(o) === 'agree') ? 'agree' : '**do not agree**'} with the history count of the stretches' workflows.
- Not counted: queries. Each \`tollgate status\`, and each refresh of \`tollgate watch\` (every 2 s), is a query —
  an action, whatever the heartbeat setting — so watching a release costs ≈ 1,800 actions an hour.
- **\`watch\`**: the bench polls the pending activity's heartbeat details (what \`status\` reads) 5 times a round;
  a round counts as shown when its own number appeared (a stretch's last round arrives in its report instead). Its
  delay is measured from the round's log line to the first poll, or report, that showed it: at best the poll's
  resolution, ${minutes(INTERVAL_MS / 5)}.
- **Stops heartbeating**: after two rounds of one more stretch the metrics stop answering, so the activity sends
  nothing more, as a worker that hung or died; from then to the server's heartbeat timeout event. With the SDK's
  throttle at 10 min, heartbeats of earlier rounds still wait in it and are sent for the stuck activity later, which
  puts the timeout off.
- **Critical round**: one more stretch fails its third round; from that round's end to the activity's completion
  event. The workflow rolls back on the completion, whatever the heartbeat setting.

Section wall time: ${num(h.wallMs / 1000)} s.
`;
}
