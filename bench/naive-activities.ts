import { DryRunTarget } from '../src/providers/targets/dry-run';

/** Track of one naive deploy step; the same dry-run target as the real design, so both pay the same per step. */
export interface NaiveStep {
  releaseId: string;
  service: string;
  version: string;
  track: 'staging' | 'canary' | 'production';
}

/** The baseline's activities: a deploy per stage and one short, instant analysis per check round. */
export function createNaiveActivities(target = new DryRunTarget({ checkout: '1.0.0' })) {
  return {
    async naiveDeploy(step: NaiveStep): Promise<void> {
      await target.apply({
        key: `${step.releaseId}/${step.track}`,
        releaseId: step.releaseId,
        service: step.service,
        version: step.version,
        stableVersion: '1.0.0',
        track: step.track,
      });
    },
    naiveAnalyzeOnce(round: number): Promise<{ round: number; verdict: 'pass' | 'fail' }> {
      return Promise.resolve({ round, verdict: 'pass' });
    },
    async naiveMarkStable(step: NaiveStep): Promise<void> {
      await target.markStable(step.service, step.version);
    },
  };
}
