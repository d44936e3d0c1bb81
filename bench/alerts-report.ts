import type { AlertsResult } from './alerts';
import type { FleetResult, FleetTrial } from './alerts-fleet';
import type { WebhookResult } from './alerts-webhook';
import type { Goal } from './report';
import type { BenchReport, SectionOutcome } from './run';
import { medianRange, num, summarize } from './stats';

/** §8 of BENCHMARKS.md: canary alerts, from [`bench/alerts.ts`](alerts.ts)'s result. */

const GOAL_WEBHOOK_P99_MS = 300;
const MIN_WEBHOOK_TRIALS = 100;
const HEADING = '## 8. Canary alerts: first 5xx and Alertmanager webhook → rollback (dev server)';
const WEBHOOK_GOAL = `Alertmanager webhook → first undo p99 ≤ ${GOAL_WEBHOOK_P99_MS} ms (issue 15)`;

const s1 = (ms: number) => `${num(ms / 1000, 1)} s`;
const ms = (value: number) => `${num(value)} ms`;
const failedTrials = (failures: string[]) =>
  failures.length > 0
    ? `Failed trials (${failures.length}): ${failures.slice(0, 5).join('; ')}.`
    : 'Failed trials: none.';
const partFailed = (name: string, part: { error?: string }) =>
  part.error !== undefined ? `_${name} did not complete: ${part.error}_\n\n` : '';
const optional = (values: (number | undefined)[]) => values.filter((v): v is number => v !== undefined);

function webhookPart(r: WebhookResult | undefined, goals: Goal[]): { text: string; p99?: number; n: number } {
  if (!r) {
    goals.push({ goal: WEBHOOK_GOAL, measured: 'n/a', met: undefined });
    return { text: '', n: 0 };
  }
  const s = summarize(r.trials.map((t) => t.reactionMs));
  const answer = summarize(r.trials.map((t) => t.answerMs));
  const closed = summarize(optional(r.trials.map((t) => t.closedMs)));
  goals.push({
    goal: WEBHOOK_GOAL,
    measured: `p99 ${ms(s.p99)} (p50 ${ms(s.p50)}, p95 ${ms(s.p95)}; n = ${num(s.n)}); receiver's 200 p99 ${ms(answer.p99)}`,
    met: s.n > 0 ? s.p99 <= GOAL_WEBHOOK_P99_MS && s.n >= MIN_WEBHOOK_TRIALS : undefined,
  });
  const text = `### Alertmanager's webhook → first undo

Releases (1-hour cycle, 1-minute analysis, dry-run target, instant analysis double; each of a service of its own,
\`checkout-<n>\`, whose policy has the rule \`{ name: canary-errors, matchers: ['alertname="TollgateErrorRatioHigh"'],
action: rollback }\`) are started ${r.batch} at a time on a worker process that reports every activity start over IPC
([\`bench/breach-worker.ts\`](bench/breach-worker.ts)) and each is left baking in canary. The receiver runs as its own
process, \`${r.receiver}\` (after \`npm run build\`; bearer token, the bench's policy dir), warmed by one
webhook for a service with nothing in flight, since its Temporal connection is lazy. Then, one release at a time,
the bench posts the webhook Alertmanager would send for that canary's \`TollgateErrorRatioHigh\` (version 4, one firing
alert, the template's labels, \`Authorization: Bearer …\`) and times from just before the POST to the first \`undo\`
activity starting on the worker (a timestamp taken in the activity; same machine clock). The next POST waits until
the rolled-back release has closed, so trials do not overlap.

| trials | p50 | p95 | p99 | min–max | receiver's 200 at the bench, p50 / p99 | release closed (rollback done), p50 / p99 |
| --- | --- | --- | --- | --- | --- | --- |
| ${num(s.n)} | ${ms(s.p50)} | ${ms(s.p95)} | ${ms(s.p99)} | ${num(s.min)}–${ms(s.max)} | ${ms(answer.p50)} / ${ms(answer.p99)} | ${ms(closed.p50)} / ${ms(closed.p99)} |

What bounds it: the receiver answers 200 once Temporal has taken the \`alert\` signal (authentication, parsing and
routing take well under a millisecond; the rest of the answer is the signal's round trip to the dev server). From
there it is §3's abort-by-signal path: a workflow task for the signal, the alert judged against the service's
rules (a known error: roll back now), the bake cancelled and the first \`undo\` dispatched to the worker. So
webhook → undo ≈ the receiver's answer + §3's signal → undo, less the overlap (the workflow task can start before the
200 has travelled back).

${failedTrials(r.failures)} Wall time: ${num(r.wallMs / 1000)} s.
`;
  return { text, p99: s.p99, n: s.n };
}

const flaggerMs = (r: FleetResult) => r.intervalMs * r.failureLimit;

function fleetPart(r: FleetResult | undefined): { text: string; medians?: Record<string, number> } {
  if (!r) return { text: '' };
  const byMode = (mode: FleetTrial['mode']) => r.trials.filter((t) => t.mode === mode);
  const medians: Record<string, number> = {};
  const rows = (['analysis-only', 'alert-driven'] as const).map((mode) => {
    const trials = byMode(mode);
    const s = summarize(trials.map((t) => t.errorToUndoMs));
    medians[mode] = s.median;
    const by = [...new Set(trials.map((t) => t.rolledBackBy))].join(', ') || '—';
    const rounds = summarize(trials.map((t) => t.failedRounds));
    return (
      `| ${mode} | ${s.n} | ${s1(s.median)} | ${s.n > 0 ? `${s1(s.min)}–${s1(s.max)}` : 'n/a'} | ` +
      `${s1(flaggerMs(r))} (${num(r.intervalMs / 1000)} s × ${r.failureLimit}) | ${by} | ${medianRange(rounds)} |`
    );
  });
  const alerts = byMode('alert-driven');
  const cell = (v: number | undefined) => (v === undefined ? '—' : s1(v));
  const breakdown = alerts.map(
    (t) =>
      `| ${t.version} | ${cell(t.errorToScrapedMs)} | ${cell(t.errorToFiringMs)} | ${cell(t.errorToWebhookMs)} | ${t.webhookToUndoMs === undefined ? '—' : ms(t.webhookToUndoMs)} | ${s1(t.errorToUndoMs)} |`,
  );
  const shown = byMode('analysis-only').filter((t) => t.errorToWebhookMs !== undefined);
  const webhookSeen = summarize(shown.map((t) => t.errorToWebhookMs! / 1000));
  const other = r.trials.reduce((n, t) => n + t.otherNon2xx, 0);
  const text = `### First 5xx served by a canary → first undo: analysis-only against alert-driven

One HAProxy fleet of the demo service (4 instances of 1.0.0, HAProxy's retries off), under load through its frontend
([\`demo/load.ts\`](demo/load.ts): ${num(r.load.baseRps)}–${num(r.load.peakRps)} requests/s), scraped by the real
Prometheus every second with Tollgate's rendered rule templates evaluated every second (\`TollgateErrorRatioHigh\`:
5xx share of the rate over [${r.rateWindow}] per service, version and track above 5 %, \`for: 0s\`, severity critical);
Prometheus sends to a real Alertmanager (group_wait 0 s, group_interval 1 s, one route to the receiver with a bearer
token), which posts to the receiver, here in the bench process (\`startReceiver\`, the CLI's own code, its sink
wrapped to timestamp each webhook's firing alerts). One worker in the bench process has the real activities over the
fleet and the real Prometheus analysis: one check \`error-ratio\` (max ${num(r.maxErrorRatio * 100)} %), every
${num(r.intervalMs / 1000)} s, failureLimit ${r.failureLimit}. Each trial releases a version that fails one request
in five (demo/versions.yaml's 1.2.0-bad, copied as \`1.2.0-bad.<n>\` into the fleet's own catalogue so each trial's
alert and series are its own: a fresh Alertmanager group is notified after group_wait, one still holding the last
trial's resolved alert only at its next group_interval) to a canary of one instance. Modes alternate trial by trial:
**analysis-only**, a policy without alert rules (the alert still fires and reaches the release, which only shows it),
and **alert-driven**, the same policy plus the rule rolling back on \`TollgateErrorRatioHigh\`. The clock starts at the
load generator's first non-2xx answer (\`LoadReport.firstNon2xxAt\`, a fresh load run per trial) and stops when the
first \`undo\` activity starts on the worker. Flagger's rule for the same settings — interval × threshold — is the
computed column.

| mode | trials | first 5xx → first undo, median | min–max | Flagger's rule (interval × failureLimit) | rolled back by | failed analysis rounds |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Alert-driven trials, step by step (the first scrape is the canary's oldest \`up\` sample; Prometheus' \`activeAt\` is
the rule evaluation that first found the alert true; the webhook is its first arrival at the receiver; a negative
figure comes before the first 5xx):

| version | first 5xx → Prometheus' first scrape of the canary | first 5xx → alert active in Prometheus | first 5xx → webhook at the receiver | webhook → first undo | first 5xx → first undo |
| --- | --- | --- | --- | --- | --- |
${breakdown.join('\n')}

${shown.length > 0 ? `In the analysis-only trials the same webhook reached the receiver ${medianRange(webhookSeen, 1, ' s')} after the first 5xx, and the release only showed it. ` : ''}Non-2xx answers from anything but the bad canary: ${num(other)}.

What bounds it:

- **Both: Prometheus has to find the canary first.** Its service discovery passes new targets to the scrapers at
  most every 5 s (the discovery manager's update ticker; the fleet writes the file SD file as the canary joins), and
  a new target's first scrape falls anywhere in its 1 s interval, so the canary's first sample lags its first
  request by up to ≈ 6 s (the first-scrape column). Its ratio exists once two scrapes are in the rate window.
- **Analysis-only: then the analysis interval × failureLimit.** Rounds run every ${num(r.intervalMs / 1000)} s at a
  phase the canary does not choose; the first failing round comes 0–1 interval after the errors are in Prometheus,
  and the rollback comes with failed round number ${r.failureLimit}, ${r.failureLimit - 1} intervals later. So
  ≈ (failureLimit − 1) to failureLimit intervals after the errors are visible, plus the discovery lag: Flagger's
  interval × threshold is the same arithmetic, without the lag.
- **Alert-driven: then one rule evaluation and the webhook, not the interval.** The rule fires at the first
  evaluation (every 1 s) that sees the ratio over 5 % (\`for: 0s\`), Prometheus' notifier sends at once, Alertmanager
  notifies a new group after group_wait (0 s), and webhook → undo is the part above. Neither the analysis interval
  nor failureLimit enters; a real fleet scraped every 15–30 s, with \`rateWindow: 2m\`, stretches it by a few
  scrape intervals.

${failedTrials(r.failures)} Wall time: ${num(r.wallMs / 1000)} s.
`;
  return { text, medians };
}

export function alertsSection(
  outcome: SectionOutcome<AlertsResult>,
  report: Pick<BenchReport, 'command' | 'startedAt' | 'quick'>,
  goals: Goal[],
  findings: string[],
): string {
  const r = outcome.result;
  if (!r) {
    goals.push({ goal: WEBHOOK_GOAL, measured: 'n/a', met: undefined });
    return `${HEADING}\n\n_The alerts bench did not complete: ${outcome.error ?? 'no result'}_\n`;
  }
  const webhook = webhookPart(r.webhook.result, goals);
  const fleet = fleetPart(r.fleet.result);
  const f = r.fleet.result;
  const [analysis, alert] = [fleet.medians?.['analysis-only'], fleet.medians?.['alert-driven']];
  if (f && analysis !== undefined && alert !== undefined && Number.isFinite(analysis) && Number.isFinite(alert)) {
    findings.push(
      `- **A failing canary's alert rolls it back ${num(analysis / alert, 1)}× sooner than its analysis**: first 5xx → ` +
        `first undo ${s1(alert)} alert-driven against ${s1(analysis)} analysis-only (medians; Flagger's rule for the ` +
        `same ${num(f.intervalMs / 1000)} s interval and failureLimit ${f.failureLimit}: ${s1(flaggerMs(f))}), on one ` +
        `fleet with 1 s scrapes and rule evaluations; Alertmanager's webhook → first undo is ` +
        `${webhook.p99 !== undefined ? `${ms(webhook.p99)} p99 (n = ${num(webhook.n)})` : 'not measured'}, so ` +
        `scrapes and rule evaluations, not Tollgate, make up nearly all of the alert path.`,
    );
  }
  const stamp = `_Measured by \`${report.command}\` on ${report.startedAt}${report.quick ? ' — **quick mode: too few runs to keep these figures**' : ''}._`;
  return `${HEADING}

${stamp}

A team's canary alert, issue 15: Prometheus ${r.prometheus}, Alertmanager ${r.alertmanager}, the Temporal dev
server, \`tollgate receiver\`. First the receiver and the workflow alone, over many releases; then the whole chain on a
real fleet, against analysis alone.

${partFailed('The webhook part', r.webhook)}${webhook.text}
${partFailed('The fleet part', r.fleet)}${fleet.text}
Section wall time: ${num(r.wallMs / 1000)} s.
`;
}
