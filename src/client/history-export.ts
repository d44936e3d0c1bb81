import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { printable } from '../domain/text';
import { TollgateError } from './errors';

/**
 * A release's history as a file (`tollgate history --export`): every run of the release, oldest first, each in
 * Temporal's proto3 JSON form (what `temporal workflow show -o json` writes and test/histories/ holds), so it can be
 * replayed, read by Temporal's own tools, and re-checked offline by `verifyHistory`.
 */
export const EXPORT_FORMAT = 'tollgate-history/v1';

export interface ExportedRun {
  runId: string;
  /** History events in proto3 JSON. */
  events: unknown[];
}

export interface ExportedRelease {
  format: typeof EXPORT_FORMAT;
  workflowId: string;
  /** Oldest first: the run a release started in, then each run it continued as new into. */
  runs: ExportedRun[];
}

/** Far beyond any release (a 50,000-signal flood takes some 30 runs); a chain that long is cut at its newest runs. */
export const MAX_EXPORTED_RUNS = 1_000;

/**
 * The release's runs up to the latest (or up to `runId`), following each run's `continuedExecutionRunId` back to the
 * run it started in. Each run is fetched by its own ID, so a run that hands over meanwhile cannot be skipped.
 */
export async function exportRelease(client: Client, workflowId: string, runId?: string): Promise<ExportedRelease> {
  try {
    const newest = runId ?? (await client.workflow.getHandle(workflowId).describe()).runId;
    const runs: ExportedRun[] = [];
    const seen = new Set<string>();
    for (let id: string | undefined = newest; id && !seen.has(id) && runs.length < MAX_EXPORTED_RUNS;) {
      seen.add(id);
      const history = await client.workflow.getHandle(workflowId, id).fetchHistory();
      const { events } = JSON.parse(historyToJSON(history)) as { events?: unknown[] };
      runs.unshift({ runId: id, events: events ?? [] });
      id = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
    }
    return { format: EXPORT_FORMAT, workflowId, runs };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      const run = runId === undefined ? '' : ` run ${printable(runId, 100)}`;
      throw new TollgateError(`no workflow ${printable(workflowId, 200)}${run} to export`, 'unknown-release');
    }
    throw err;
  }
}
