import { formatDuration } from '../domain/duration';
import type { ReleaseStatus } from '../domain/status';
import { printableDeep, progressBar } from '../domain/text';
import type { ReleaseSummary } from './tollgate-client';

/** The latest hook runs shown; `--json` has them all. */
const SHOWN_HOOK_RUNS = 10;
const bar = (fraction: number) => `[${progressBar(fraction, 30, { filled: '#', empty: '.' })}]`;

/**
 * The live view of one release: what `tollgate status` and `tollgate watch` print. Every string in a status may
 * come from someone hostile (a reason, a target's error, a terminate reason): all of it passes the one sanitiser
 * before a line is built, so no field can add a line or reach the terminal as a control sequence.
 */
export function renderStatus(status: ReleaseStatus, now = Date.now()): string {
  const s = printableDeep(status);
  const over = s.state === 'done' || s.state === 'rolling-back';
  const lines = [
    `${s.service} ${s.version}  (stable: ${s.stableVersion ?? 'none'})  started by ${s.initiator}`,
    `stage: ${s.stage}   state: ${s.state}${s.outcome ? `   outcome: ${s.outcome}` : ''}`,
  ];
  if (s.target?.dryRun) lines.push(`>> DRY RUN: target ${s.target.kind} deploys nothing`);
  if (s.ended) lines.push(`>> release ${s.ended.status.toLowerCase()} without an outcome: ${s.ended.message}`);
  // Releases recorded before an abort cleared its gate still carry one: an ended release awaits nothing.
  if (s.gate && !over)
    lines.push(
      `>> awaiting approval (${s.gate.name}): ${s.gate.message}`,
      `   tollgate approve ${s.service} --by <name>`,
    );
  if (s.pause && !over) lines.push(`>> paused by ${s.pause.by} since ${s.pause.since}: ${s.pause.reason}`);
  for (const r of s.retrying ?? []) lines.push(`>> ${r.activity} failing, attempt ${r.attempt}: ${r.lastError}`);
  if (s.waitingForWindowUntil) lines.push(`>> waiting for a deployment window until ${s.waitingForWindowUntil}`);
  if (s.watch && !s.watch.passedAt && !over) {
    const warm = s.watch.keepPrevious ? `; ${s.stableVersion ?? 'the previous version'} kept warm` : '';
    lines.push(
      `>> watching production since ${s.watch.startedAt}${warm}`,
      `   tollgate rollback ${s.service} --by <name> --reason <why>`,
    );
  }
  if (s.rollbackWindow) {
    lines.push(
      `rollback window: ${s.version} was stable ${s.rollbackWindow.releasesAgo} release(s) ago; canary bake skipped`,
    );
  }
  if (s.bake) {
    const b = s.bake;
    const fraction = b.cycleMs > 0 ? b.elapsedMs / b.cycleMs : 1;
    lines.push(
      `${b.watch ? 'watch' : 'bake'} ${bar(fraction)} ${Math.floor(fraction * 100)}%  ${formatDuration(b.elapsedMs)} / ${formatDuration(b.cycleMs)}, ` +
        `${formatDuration(b.remainingMs)} left   requests ${b.requestsSeen}/${b.requestsRequired}`,
    );
    for (const p of b.peakWindows) lines.push(`  peak ${p.window}: ${p.seen ? 'seen' : 'not yet seen'}`);
    if (b.waitingFor.length > 0) lines.push(`  waiting for: ${b.waitingFor.join(', ')}`);
  }
  const a = s.analysis;
  if (a.checks.length > 0) {
    lines.push(`analysis: ${a.rounds} rounds, ${a.failures} failed, ${a.inconclusive} inconclusive in a row`);
    for (const c of a.checks) {
      const mark = c.verdict === 'pass' ? 'ok  ' : c.verdict === 'fail' ? 'FAIL' : '??  ';
      lines.push(`  ${mark} ${c.check}${c.critical ? ' (critical)' : ''}: ${c.reason}`);
    }
  }
  for (const al of s.alerts ?? []) {
    const severity = al.severity ? ` ${al.severity}` : '';
    lines.push(
      `>> ALERT ${al.name} (${al.track}${severity}) firing since ${al.startsAt} -> ${al.action}${al.summary ? `: ${al.summary}` : ''}`,
    );
  }
  if (s.waves.length > 0) lines.push(`waves: ${s.waves.map((w) => `${w.percent}% ${w.state}`).join(' -> ')}`);
  const hooks = s.hooks ?? [];
  if (hooks.length > SHOWN_HOOK_RUNS) lines.push(`hooks: ${hooks.length - SHOWN_HOOK_RUNS} earlier run(s) in --json`);
  for (const h of hooks.slice(-SHOWN_HOOK_RUNS)) {
    const where = h.step ? `${h.at} ${h.step.split('/').pop()}` : h.at;
    lines.push(`hook ${h.outcome === 'passed' ? 'ok  ' : 'FAIL'} ${h.hook} (${where}): ${h.reason}`);
  }
  if (s.rollback) {
    const r = s.rollback;
    lines.push(
      `rollback: ${r.reason}`,
      `  undone ${r.undone.length} step(s); ${r.failedAttempts} failed attempt(s) retried`,
    );
    if (r.lastError) lines.push(`  last error: ${r.lastError}`);
  }
  const recent = s.audit.slice(-5);
  if (recent.length > 0) {
    lines.push('recent:');
    for (const e of recent) {
      lines.push(
        `  ${e.at}  ${e.actor} ${e.action}${e.accepted ? '' : ' (rejected)'}${e.detail ? `: ${e.detail}` : ''}`,
      );
    }
  }
  lines.push(`updated ${formatDuration(now - Date.parse(s.updatedAt))} ago`);
  return lines.join('\n');
}

export function renderList(summaries: ReleaseSummary[]): string {
  if (summaries.length === 0) return 'no releases';
  // Search attributes are anyone's to set when starting a workflow: sanitised like everything else.
  const rows = printableDeep(summaries);
  const header = ['SERVICE', 'VERSION', 'STATUS', 'STATE', 'STARTED', 'CLOSED'];
  const table = rows.map((r) => [r.service, r.version, r.status, r.state ?? '', r.startTime, r.closeTime ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  return [header, ...table]
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
