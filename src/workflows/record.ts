import { log, upsertSearchAttributes } from '@temporalio/workflow';
import type { ReleaseEvent } from '../providers/notify/types';
import type { ReleaseRequest, Stage, Track } from '../domain/release';
import { TollgateStage, TollgateState } from '../domain/search-attributes';
import { initialStatus, type AuditEntry, type HookRun, type ReleaseState, type ReleaseStatus } from '../domain/status';
import { notifications, failureMessage } from './activities';
import { renderDetails } from './details';

const AUDIT_LIMIT = 200;
/** Hook runs kept in `status`; the audit trail keeps every one as long as it keeps anything. */
const HOOK_RUNS_LIMIT = 100;

/** What the record carries across continue-as-new: plain data only. */
export interface RecordState {
  status: ReleaseStatus;
  /** The stage and state last written to the search attributes. */
  indexed: { stage: string; state: string };
}

export const trackOf = (stage: Stage): Track => (stage === 'done' ? 'production' : stage);

/**
 * The release as people see it: the only code that writes what is shown — status, audit trail, search attributes,
 * UI details, notifications and the fields of every log line.
 */
export class ReleaseRecord {
  readonly status: ReleaseStatus;
  private indexed: RecordState['indexed'];

  constructor(
    readonly request: ReleaseRequest,
    state: RecordState,
  ) {
    this.status = state.status;
    this.indexed = state.indexed;
  }

  static fresh(request: ReleaseRequest, releaseId: string, at: string): RecordState {
    return { status: initialStatus(releaseId, request, 'resolving-policy', at), indexed: { stage: '', state: '' } };
  }

  get carried(): RecordState {
    return { status: this.status, indexed: this.indexed };
  }

  get releaseId(): string {
    return this.status.releaseId;
  }

  logFields() {
    const { service, version, stage } = this.status;
    return { service, version, stage, track: trackOf(stage), releaseId: this.releaseId };
  }

  /** Who a step belongs to, as activities log it. */
  context(stage: Stage) {
    const { releaseId, service, version, stableVersion } = this.status;
    return { releaseId, service, version, stableVersion, stage, track: trackOf(stage) };
  }

  /** Search attributes only when they change (each upsert is a command in history); details on every call. */
  refresh(): void {
    const s = this.status;
    s.updatedAt = new Date().toISOString();
    if (this.indexed.stage !== s.stage || this.indexed.state !== s.state) {
      this.indexed = { stage: s.stage, state: s.state };
      upsertSearchAttributes([
        { key: TollgateStage, value: s.stage },
        { key: TollgateState, value: s.state },
      ]);
    }
    renderDetails(s);
  }

  setState(state: ReleaseState): void {
    this.status.state = state;
    this.refresh();
  }

  /** Bounded; refusals go first, so a flood of refused messages cannot push decisions out of the trail. */
  audit(entry: Omit<AuditEntry, 'at'>): void {
    const trail = this.status.audit;
    trail.push({ at: new Date().toISOString(), ...entry });
    if (trail.length > AUDIT_LIMIT) {
      const oldestRefusal = trail.findIndex((e) => !e.accepted);
      trail.splice(Math.max(0, oldestRefusal), 1);
      this.status.auditDropped++;
    }
  }

  /** A hook's run: in `status`, the audit trail, the UI details and the log. */
  hookRan(run: HookRun): void {
    const runs = (this.status.hooks ??= []);
    runs.push(run);
    if (runs.length > HOOK_RUNS_LIMIT) runs.shift();
    const where = run.step ? `${run.at} ${run.step.split('/').pop()}` : run.at;
    this.audit({
      actor: 'tollgate',
      action: `hook-${run.outcome}`,
      accepted: true,
      detail: `${run.hook} (${where}): ${run.reason}`,
    });
    const line = `hook ${run.hook} (${where}) ${run.outcome}: ${run.reason}`;
    if (run.outcome === 'passed') log.info(line, this.logFields());
    else log.warn(line, this.logFields());
    this.refresh();
  }

  /** Never holds the release up; a notification nobody got is worth a line in the worker's log. */
  notify(event: ReleaseEvent, message: string, details?: Record<string, unknown>): Promise<void> {
    const s = this.status;
    return notifications.notify
      .executeWithOptions({ summary: `notify ${event}` }, [
        {
          event,
          message,
          service: s.service,
          version: s.version,
          stage: s.stage,
          track: trackOf(s.stage),
          releaseId: this.releaseId,
          at: new Date().toISOString(),
          ...(s.stableVersion !== undefined && { stableVersion: s.stableVersion }),
          ...(s.target?.dryRun && { dryRun: true as const }),
          ...(details && { details }),
        },
      ])
      .catch((err: unknown) =>
        log.warn(`release notification ${event} not delivered: ${failureMessage(err)}`, this.logFields()),
      );
  }
}
