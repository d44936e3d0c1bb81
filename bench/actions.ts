import { temporal } from '@temporalio/proto';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const T = temporal.api.enums.v1.EventType;

/**
 * Temporal Cloud actions visible in one run's history (docs.temporal.io/cloud/actions):
 * workflow started (a client start or a continue-as-new run) 1; activity scheduled 1, plus 1 per retry (attempt > 1);
 * timer started 1; signal received or sent 1; search-attribute upsert 1; update accepted 1; child workflow
 * initiated 2 (start + execution); external cancel request 1; workflow options updated 1; local-activity markers
 * 1 per workflow task that recorded any. Not in history, so not counted here: heartbeats, queries, rejected updates
 * (the bench sends no queries or updates while measuring history; heartbeats are estimated apart).
 */
export interface ActionCount {
  total: number;
  activities: number;
  timers: number;
  upserts: number;
  signals: number;
  other: number;
}

export function countActions(events: HistoryEvent[]): ActionCount {
  const count: ActionCount = { total: 0, activities: 0, timers: 0, upserts: 0, signals: 0, other: 0 };
  const markerTasks = new Set<string>();
  for (const e of events) {
    switch (e.eventType) {
      case T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
      case T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
      case T.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
      case T.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED:
        count.other++;
        break;
      case T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
        count.other += 2;
        break;
      case T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        count.activities++;
        break;
      case T.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        count.activities += Math.max(0, (e.activityTaskStartedEventAttributes?.attempt ?? 1) - 1);
        break;
      case T.EVENT_TYPE_TIMER_STARTED:
        count.timers++;
        break;
      case T.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        count.upserts++;
        break;
      case T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
      case T.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
        count.signals++;
        break;
      case T.EVENT_TYPE_MARKER_RECORDED:
        markerTasks.add(String(e.markerRecordedEventAttributes?.workflowTaskCompletedEventId ?? e.eventId));
        break;
      default:
        break;
    }
  }
  count.other += markerTasks.size;
  count.total = count.activities + count.timers + count.upserts + count.signals + count.other;
  return count;
}

/**
 * Heartbeats a real analysis sends to the server over a bake with TOLLGATE_ANALYSIS_HEARTBEAT=liveness (the default):
 * one per 80% of the heartbeat timeout (bench/heartbeats.ts measures it, and the other settings).
 */
export function estimatedHeartbeats(bakeMs: number, heartbeatTimeoutMs: number): number {
  return Math.ceil(bakeMs / (0.8 * heartbeatTimeoutMs));
}

export const eventTypeName = (e: HistoryEvent): string =>
  (T[e.eventType ?? 0] ?? 'UNKNOWN').replace(/^EVENT_TYPE_/, '').toLowerCase();

/**
 * The Temporal server's own count of actions (its `action` Prometheus counter, one series per action type such as
 * `grpc_RecordActivityTaskHeartbeat` or `command_ScheduleActivityTask`) for one namespace, from `/metrics` text.
 */
export function serverActions(metricsText: string, namespace: string): Record<string, number> {
  // Prometheus label values as the server writes them: a namespace's dashes become underscores.
  const label = namespace.replace(/[^A-Za-z0-9_]/g, '_');
  const counts: Record<string, number> = {};
  for (const line of metricsText.split('\n')) {
    const m = /^action\{([^}]*)\}\s+([0-9.e+]+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string | undefined> = Object.fromEntries(
      [...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1] ?? '', l[2] ?? '']),
    );
    const type = labels.action_type;
    if (labels.namespace !== label || !type) continue;
    counts[type] = (counts[type] ?? 0) + Number(m[2]);
  }
  return counts;
}
