import { setCurrentDetails } from '@temporalio/workflow';
import { formatMeasure } from '../domain/analysis';
import { formatDuration } from '../domain/duration';
import type { HookRun, ReleaseStatus } from '../domain/status';
import { markdownText as md, progressBar } from '../domain/text';

const bar = (fraction: number) => progressBar(fraction, 20);
/** The latest hook runs shown; `status` has them all. */
const SHOWN_HOOK_RUNS = 10;
/** What people decided, with who and how it was proven: the latest shown, `status` and the history have all. */
const PEOPLES_DECISIONS = new Set(['approve', 'promote', 'resume', 'pause', 'abort', 'rollback']);
const SHOWN_DECISIONS = 10;
/** A key's fingerprint as code, so it reads (and copies) as ssh-keygen prints it; any other proof is escaped text. */
const proofText = (proof: string) => (/^SHA256:[A-Za-z0-9+/]+$/.test(proof) ? `\`${proof}\`` : md(proof));
const hookLine = (h: HookRun) =>
  `**${md(h.hook)}** (${h.at}${h.step ? ` ${md(h.step.split('/').pop() ?? '')}` : ''}): ${h.outcome} — ${md(h.reason)}`;

/**
 * The Temporal UI's "current details" (markdown): what a person watching the release needs at a glance. Text from
 * people, targets and metrics goes in escaped (`md`): it can neither add a link or an image nor break a line.
 */
export function renderDetails(status: ReleaseStatus): void {
  const lines = [
    `**${md(status.service)} ${md(status.version)}** — stage **${status.stage}**, state **${status.state}**` +
      (status.outcome ? `, outcome **${status.outcome}**` : ''),
    `stable version: ${status.stableVersion !== undefined ? md(status.stableVersion) : 'none yet'}`,
  ];
  lines.push(
    `started by ${md(status.initiator)}${status.startProof ? ` — proven: ${proofText(status.startProof)}` : ' (not proven)'}`,
  );
  if (status.target?.dryRun) lines.push(`**dry run**: target ${md(status.target.kind)} deploys nothing`);
  if (status.gate) lines.push(`⏸ awaiting approval (${status.gate.name}): ${md(status.gate.message)}`);
  if (status.pause) lines.push(`⏸ paused by ${md(status.pause.by)}: ${md(status.pause.reason)}`);
  if (status.waitingForWindowUntil) lines.push(`waiting for a deployment window until ${status.waitingForWindowUntil}`);
  for (const al of status.alerts ?? []) {
    lines.push(
      `🔔 alert **${md(al.name)}** firing on the ${al.track}${al.severity ? ` (${md(al.severity)})` : ''} since ${al.startsAt} → ${al.action}` +
        (al.summary ? `: ${md(al.summary)}` : ''),
    );
  }
  if (status.watch && !status.watch.passedAt && status.state !== 'done' && status.state !== 'rolling-back') {
    lines.push(
      `👀 every wave is out; production watched${status.watch.keepPrevious ? `, ${md(status.stableVersion ?? 'the previous version')} kept warm` : ''}` +
        ` — \`tollgate rollback ${md(status.service)}\` or signal \`rollback\` to go back`,
    );
  }
  if (status.rollbackWindow) {
    lines.push(
      `⏪ rollback window: stable ${status.rollbackWindow.releasesAgo} release(s) ago, so the canary bake was skipped`,
    );
  }
  const bake = status.bake;
  if (bake) {
    const fraction = bake.cycleMs > 0 ? bake.elapsedMs / bake.cycleMs : 1;
    lines.push(
      `${bake.watch ? 'watch of production' : 'bake'} ${bar(fraction)} ${Math.floor(fraction * 100)}% — ${formatDuration(bake.elapsedMs)} of ${formatDuration(bake.cycleMs)}, ` +
        `${formatDuration(bake.remainingMs)} left; requests ${bake.requestsSeen}/${bake.requestsRequired}`,
    );
    if (!status.pause && bake.remainingMs > 0) {
      lines.push(
        `bake ends at ${new Date(Date.parse(status.updatedAt) + bake.remainingMs).toISOString()} unless paused`,
      );
    }
    for (const peak of bake.peakWindows)
      lines.push(`- peak ${md(peak.window)}: ${peak.seen ? 'seen' : 'not yet seen'}`);
    if (bake.waitingFor.length > 0) lines.push(`waiting for: ${md(bake.waitingFor.join(', '))}`);
  }
  const a = status.analysis;
  if (a.checks.length > 0) {
    lines.push('', `analysis: ${a.rounds} rounds, ${a.failures} failed, ${a.inconclusive} inconclusive in a row`, '');
    // A list, not a table: the UI renders markdown tables without padding or borders.
    for (const c of a.checks) {
      const numbers = [
        c.canary !== undefined && `canary ${formatMeasure(c.canary)}`,
        c.baseline !== undefined && `baseline ${formatMeasure(c.baseline)}`,
      ]
        .filter(Boolean)
        .join(', ');
      lines.push(
        `- **${md(c.check)}**${c.critical ? ' (critical)' : ''}: ${c.verdict}${numbers ? ` (${numbers})` : ''} — ${md(c.reason)}`,
      );
    }
  }
  const decisions = status.audit.filter((e) => e.accepted && PEOPLES_DECISIONS.has(e.action));
  if (decisions.length > 0) {
    lines.push('', 'decisions:', '');
    for (const e of decisions.slice(-SHOWN_DECISIONS)) {
      const proof = e.proof ? `signed, key ${proofText(e.proof)}` : 'not signed';
      lines.push(`- ${e.at} **${e.action}** by **${md(e.actor)}** (${proof})`);
    }
  }
  if (status.waves.length > 1)
    lines.push('', `waves: ${status.waves.map((w) => `${w.percent}% ${w.state}`).join(' → ')}`);
  const hooks = status.hooks ?? [];
  if (hooks.length > 0) {
    lines.push('', 'hooks:', '');
    for (const h of hooks.slice(-SHOWN_HOOK_RUNS)) lines.push(`- ${h.outcome === 'passed' ? '✓' : '✗'} ${hookLine(h)}`);
  }
  if (status.rollback) {
    const r = status.rollback;
    lines.push(
      '',
      `**rollback**: ${md(r.reason)}; undone ${r.undone.length} steps, ${r.failedAttempts} failed attempts retried`,
    );
    if (r.lastError) lines.push(`last error: ${md(r.lastError)}`);
  }
  // The UI caps details at 20 KB; the analysis table is the only part that can grow.
  setCurrentDetails(lines.join('\n').slice(0, 16_000));
}
