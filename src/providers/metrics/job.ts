import type { CheckResult } from '../../domain/analysis';
import { contractEnv } from '../external/contract-env';
import type { Check } from '../../domain/policy';
import type { Stage, Track } from '../../domain/release';
import { oneLine } from '../../domain/text';
import type { CommandRunner, ExternalOutcome } from '../external/types';

/**
 * A job check (Argo Rollouts' `job` provider): the user's command — a synthetic transaction, a short load test — run
 * once per round; its exit status is the verdict. It gets the round as JSON on stdin and as environment variables:
 *
 *     TOLLGATE_CHECK  TOLLGATE_RELEASE_ID  TOLLGATE_SERVICE  TOLLGATE_VERSION  TOLLGATE_STABLE_VERSION (unset when none)
 *     TOLLGATE_STAGE  TOLLGATE_TRACK  TOLLGATE_WINDOW_SECONDS (the analysis interval: the stretch since the last round)
 *
 * Exit 0 passes; exit 75 ("try again later") is inconclusive, as is a run past its timeout or a command that cannot
 * start; any other status fails the check, with the command's last lines as the reason.
 */

export type JobCall = NonNullable<NonNullable<Check['provider']>['job']>;

export interface JobContext {
  releaseId: string;
  service: string;
  version: string;
  stableVersion: string | undefined;
  stage: Stage;
  track: Track;
  windowSeconds: number;
  /** When the round judges: the result's `at`. */
  at: string;
}

export interface JobRunOptions {
  /** The activity's cancellation: the command's process group is killed with it. */
  signal?: AbortSignal;
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** How much of a command's output a reason quotes: the end, where tools say what went wrong. */
const REASON_LINES = 5;
/** Each quoted line is cut on its own, so one huge line cannot push the ones after it out of the reason. */
const REASON_LINE_CHARS = 160;
const REASON_CHARS = 1000;
/** How ProcessRunner words a command it could not start. */
const NEVER_STARTED = /^cannot run /;

/** Runs the check's command and judges it; never throws (a runner that does is missing evidence: inconclusive). */
export async function runJobCheck(
  runner: CommandRunner | undefined,
  check: Pick<Check, 'name' | 'critical'>,
  job: JobCall,
  ctx: JobContext,
  options: JobRunOptions = {},
): Promise<CheckResult> {
  const result = (verdict: CheckResult['verdict'], reason: string): CheckResult => ({
    check: check.name,
    verdict,
    critical: check.critical,
    reason: oneLine(reason, REASON_CHARS),
    at: ctx.at,
  });
  if (!runner) return result('inconclusive', 'this worker runs no commands');
  let outcome: ExternalOutcome;
  try {
    outcome = await runner.run(job, {
      payload: {
        check: check.name,
        releaseId: ctx.releaseId,
        service: ctx.service,
        version: ctx.version,
        stableVersion: ctx.stableVersion ?? null,
        stage: ctx.stage,
        track: ctx.track,
        windowSeconds: ctx.windowSeconds,
        at: ctx.at,
      },
      env: jobEnv(check.name, ctx),
      // One key per check and stage, not per round: rounds of a check never overlap, and a retry after a killed
      // worker then finds (and kills) the run the dead attempt left behind.
      key: `check.${ctx.releaseId}.${ctx.stage}.${check.name}`,
      ...(options.signal && { signal: options.signal }),
      ...(options.onLine && { onLine: options.onLine }),
    });
  } catch (err) {
    // A cancelled activity stops here, not with a verdict nobody asked for.
    if (options.signal?.aborted) throw err;
    return result('inconclusive', `cannot run ${job.command[0]}: ${(err as Error).message}`);
  }
  const took = `${(outcome.durationMs / 1000).toFixed(1)} s`;
  switch (outcome.kind) {
    case 'ok':
      return result('pass', `exit 0 after ${took}`);
    case 'failed':
      // A command that never started (not found, not executable, no such directory) said nothing about the canary.
      if (NEVER_STARTED.test(outcome.message)) return result('inconclusive', outcome.message);
      return result('fail', withOutput(outcome.message, outcome.lastLines));
    case 'retry':
      return result('inconclusive', withOutput(outcome.message, outcome.lastLines));
    case 'timeout':
      return result('inconclusive', withOutput(outcome.message, outcome.lastLines));
  }
}

export const jobEnv = (check: string, ctx: JobContext): Record<string, string> =>
  contractEnv({
    check,
    releaseId: ctx.releaseId,
    service: ctx.service,
    version: ctx.version,
    stableVersion: ctx.stableVersion,
    stage: ctx.stage,
    track: ctx.track,
    windowSeconds: ctx.windowSeconds,
  });

/** The runner's message, then the output's last lines unless the message already quotes them. */
function withOutput(message: string, lastLines: string[]): string {
  const tail = lastLines
    .slice(-REASON_LINES)
    .map((l) => oneLine(l, REASON_LINE_CHARS))
    .filter(Boolean);
  const quoted = tail.filter((line) => !message.includes(line));
  return quoted.length === 0 ? message : `${message}: ${quoted.join(' | ')}`;
}
