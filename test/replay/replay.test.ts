import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker, type ReplayWorkerOptions } from '@temporalio/worker';
import { workflowBundle } from '../helpers/bundles';

// Releases in flight outlive worker deploys: every recorded history must replay on the current workflow code.
// A failure here means a change would break running releases: guard it with `patched()`, keep the old histories
// and record new ones with `npx jest --testMatch '**/record-histories.record.ts'`.
const HISTORY_DIR = join(__dirname, '..', 'histories');
const files = readdirSync(HISTORY_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort();

/**
 * A history file does not hold its workflow ID, and the workflow reads it (a release runs only as
 * `release-<service>`): every fixture releases checkout, so each replays under the ID it was recorded with.
 */
interface Recorded {
  label: string;
  replay: HistoryAndWorkflowId;
}

function load(file: string): Recorded {
  const history = historyFromJSON(JSON.parse(readFileSync(file, 'utf8')));
  return { label: basename(file, '.json'), replay: { workflowId: 'release-checkout', history } };
}

/** Replays every history and answers "<file>: <error>" for each one that does not replay cleanly. */
async function replayFailures(options: ReplayWorkerOptions, recorded: Recorded[]): Promise<string[]> {
  const failures: string[] = [];
  const histories = recorded.map((r) => r.replay);
  let replayed = 0;
  // Results come in the order the histories were given.
  for await (const result of Worker.runReplayHistories(options, histories)) {
    const label = recorded[replayed]?.label ?? result.workflowId;
    replayed++;
    if (result.error) failures.push(`${label}.json: ${result.error.name}: ${result.error.message}`);
  }
  if (replayed !== histories.length) failures.push(`replayed ${replayed} of ${histories.length} histories`);
  return failures;
}

describe('replay of recorded release histories', () => {
  it('has the representative histories recorded', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'abort-during-canary.json',
        'deployment-window-wait.json',
        'happy-waves-approval.json',
        'inconclusive-approve.json',
        'inconclusive-gate-and-pause.json',
        'continued-as-new.run-1.json',
        'continued-as-new.run-2.json',
        'inconclusive-approve.before-hostile-input.json',
        'pause-resume-promote.json',
        'rollback-on-failure.json',
        'undo-retries.json',
        'watch-promoted.json',
        'watch-rollback.json',
        'rollback-window-skip.json',
        'signed-approvals.json',
      ]),
    );
  });

  it('replays every history in test/histories on the current workflow code without nondeterminism', async () => {
    const histories = files.map((f) => load(join(HISTORY_DIR, f)));
    expect(await replayFailures({ workflowBundle: workflowBundle('release') }, histories)).toEqual([]);
  });

  it('fails when the history does not match the code: a release history on a bundle without releaseWorkflow', async () => {
    const history = load(join(HISTORY_DIR, 'happy-waves-approval.json'));
    const failures = await replayFailures({ workflowBundle: workflowBundle('fixtures') }, [history]);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(/^happy-waves-approval\.json: /);
  });

  it('fails on a command the code would not issue: a history whose first activity was renamed', async () => {
    const json = JSON.parse(readFileSync(join(HISTORY_DIR, 'rollback-on-failure.json'), 'utf8')) as {
      events: Array<{ activityTaskScheduledEventAttributes?: { activityType: { name: string } } }>;
    };
    const scheduled = json.events.find((e) => e.activityTaskScheduledEventAttributes);
    scheduled!.activityTaskScheduledEventAttributes!.activityType.name = 'deployEverywhereAtOnce';
    const failures = await replayFailures({ workflowBundle: workflowBundle('release') }, [
      { label: 'tampered', replay: { workflowId: 'release-checkout', history: historyFromJSON(json) } },
    ]);
    expect(failures).toEqual([
      expect.stringMatching(/^tampered\.json: DeterminismViolationError: .*deployEverywhereAtOnce/),
    ]);
  });
});
