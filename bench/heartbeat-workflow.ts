import { proxyActivities } from '@temporalio/workflow';
import type { createActivities } from '../src/activities';
import type { AnalysisSegment, AnalyzeInput } from '../src/activities/types';

export interface StretchesInput {
  /** Stretches to run back to back, each of `analysis.maxRounds` rounds unless one decides first. */
  stretches: number;
  analysis: AnalyzeInput;
  /** The option's heartbeat timeout (undefined: none, liveness then rests on the start-to-close timeout). */
  heartbeatTimeoutMs: number | undefined;
  /** Added to a stretch's rounds for its start-to-close timeout, as the release's bake does. */
  marginMs: number;
}

export interface StretchesResult {
  rounds: number;
  /** Each stretch's decision, or why its activity failed (a heartbeat timeout, for a worker that stopped). */
  outcomes: string[];
}

/**
 * Analysis stretches of the real `analyze` activity back to back, as a release's canary bake runs them between its
 * milestones, with an option's heartbeat timeout: what the heartbeat bench measures, apart from the rest of a release.
 * One attempt per stretch, so a stretch that stops heartbeating shows as its timeout instead of a retry.
 */
export async function analysisStretchesWorkflow(input: StretchesInput): Promise<StretchesResult> {
  const { analyze } = proxyActivities<ReturnType<typeof createActivities>>({
    startToCloseTimeout: input.analysis.maxRounds * input.analysis.intervalMs + input.marginMs,
    ...(input.heartbeatTimeoutMs !== undefined && { heartbeatTimeout: input.heartbeatTimeoutMs }),
    retry: { maximumAttempts: 1 },
  });
  let counters = input.analysis.counters;
  const outcomes: string[] = [];
  for (let i = 0; i < input.stretches; i++) {
    try {
      const segment: AnalysisSegment = await analyze({ ...input.analysis, counters });
      counters = segment.counters;
      outcomes.push(segment.decision);
      if (segment.decision !== 'healthy') break;
    } catch (err) {
      let cause: unknown = err;
      while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
      outcomes.push(`failed: ${cause instanceof Error ? cause.message : String(cause)}`);
      break;
    }
  }
  return { rounds: counters.rounds, outcomes };
}
