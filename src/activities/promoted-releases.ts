import type { Client } from '@temporalio/client';
import { releaseWorkflowId } from '../domain/release';
import type { PromotedRelease } from '../domain/rollback-window';
import { TollgateStage, TollgateVersion } from '../domain/search-attributes';

/**
 * A service's promoted releases from visibility. Every release of a service runs as `release-<service>`; one that
 * closed Completed at stage `done` was promoted (rolled-back ones end at the stage they failed in, and a run that
 * continued as new closed ContinuedAsNew). The service name is a lower-case name, so it is safe in the query.
 */
export async function listPromoted(client: Client, service: string, limit: number): Promise<PromotedRelease[]> {
  const query =
    `WorkflowId = '${releaseWorkflowId(service)}' AND ExecutionStatus = 'Completed' AND ` +
    `${TollgateStage.name} = 'done'`;
  const found: PromotedRelease[] = [];
  for await (const execution of client.workflow.list({ query, pageSize: limit })) {
    const version = execution.typedSearchAttributes.get(TollgateVersion);
    if (version === undefined || execution.closeTime === undefined) continue;
    found.push({
      version,
      promotedAt: execution.closeTime.toISOString(),
      releaseId: `${execution.workflowId}/${execution.runId}`,
    });
    if (found.length >= limit) break;
  }
  // In visibility's order (newest first); the rollback window sorts what it judges itself.
  return found;
}
