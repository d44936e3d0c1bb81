import { isCancellation } from '@temporalio/workflow';
import type { HookResult } from '../activities/types';
import type { HookMoment, ResolvedPolicy } from '../domain/policy';
import type { Stage } from '../domain/release';
import type { DeployStep } from '../providers/targets/types';
import { failureMessage, hookRuns } from './activities';
import { ReleaseFailure } from './bake';
import type { ReleaseRecord } from './record';

/** Hooks whose failure stops the release: before a stage, or after a deploy. The rest are recorded only. */
const MUST_PASS: ReadonlySet<HookMoment> = new Set([
  'before-staging',
  'before-canary',
  'after-deploy',
  'before-production',
]);

/**
 * The user's hooks at each moment of the pipeline, in the order the policy lists them. No history recorded before
 * hooks existed can hold one (the policy schema refused them), so running them changes no recorded command sequence.
 */
export class Hooks {
  constructor(
    private readonly record: ReleaseRecord,
    private readonly policy: () => ResolvedPolicy | undefined,
  ) {}

  /** Runs the hooks for `at`; one that must pass and fails throws a ReleaseFailure, which rolls the release back. */
  async run(at: HookMoment, stage: Stage, step?: DeployStep): Promise<void> {
    const hooks = (this.policy()?.hooks ?? []).filter(
      (h) => h.at === at && (h.tracks === undefined || (step !== undefined && h.tracks.includes(step.track))),
    );
    for (const hook of hooks) {
      const startedAt = new Date().toISOString();
      let result: HookResult;
      try {
        result = await hookRuns.runHook.executeWithOptions({ summary: `hook ${hook.name} (${at})` }, [
          { hook, context: this.record.context(stage), ...(step && { step }) },
        ]);
      } catch (err) {
        if (isCancellation(err)) throw err;
        // Retries used up on "try again", or a hook that could not run at all: failed, with the last reason.
        result = { outcome: 'failed', reason: failureMessage(err), durationMs: Date.now() - Date.parse(startedAt) };
      }
      this.record.hookRan({ hook: hook.name, at, ...(step && { step: step.key }), ...result, startedAt });
      if (result.outcome === 'failed' && MUST_PASS.has(at)) {
        throw new ReleaseFailure(`hook ${hook.name} (${at}) failed: ${result.reason}`);
      }
    }
  }
}
