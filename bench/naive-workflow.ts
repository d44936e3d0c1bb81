import { ApplicationFailure, proxyActivities, sleep, workflowInfo } from '@temporalio/workflow';
import type { createNaiveActivities, NaiveStep } from './naive-activities';

const { naiveDeploy, naiveAnalyzeOnce, naiveMarkStable } = proxyActivities<ReturnType<typeof createNaiveActivities>>({
  startToCloseTimeout: '1m',
});

export interface NaiveReleaseInput {
  service: string;
  version: string;
  cycleMs: number;
  intervalMs: number;
  /**
   * Stop, as the server would, once history reaches this many events. The real server terminates a run past
   * 51,200 events; the bench does not rely on the time-skipping test server to do the same.
   */
  historyLimit?: number;
}

export interface NaiveReleaseResult {
  outcome: 'promoted' | 'rolled_back';
  rounds: number;
}

/**
 * The baseline the real design is measured against: staging, canary, then one timer and one activity per check
 * round for the whole traffic cycle, production. No continue-as-new, no batching: history grows with every round.
 */
export async function naiveReleaseWorkflow(input: NaiveReleaseInput): Promise<NaiveReleaseResult> {
  const info = workflowInfo();
  const step = (track: NaiveStep['track']): NaiveStep => ({
    releaseId: `${info.workflowId}/${info.runId}`,
    service: input.service,
    version: input.version,
    track,
  });
  await naiveDeploy(step('staging'));
  await naiveDeploy(step('canary'));
  const rounds = Math.ceil(input.cycleMs / input.intervalMs);
  for (let round = 0; round < rounds; round++) {
    if (input.historyLimit !== undefined && workflowInfo().historyLength >= input.historyLimit) {
      throw ApplicationFailure.nonRetryable(
        `history limit of ${input.historyLimit} events reached after ${round} of ${rounds} rounds`,
        'HistoryLimitExceeded',
      );
    }
    await sleep(input.intervalMs);
    const { verdict } = await naiveAnalyzeOnce(round);
    if (verdict === 'fail') return { outcome: 'rolled_back', rounds: round + 1 };
  }
  await naiveDeploy(step('production'));
  await naiveMarkStable(step('production'));
  return { outcome: 'promoted', rounds };
}
