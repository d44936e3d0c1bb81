import { log, setHandler } from '@temporalio/workflow';
import {
  alertSignalSchema,
  describeAlert,
  firingKey,
  judgeAlert,
  type Alert,
  type AlertTrack,
  type AlertVerdict,
} from '../domain/alerts';
import { alertSignal } from '../domain/messages';
import { DEFAULT_METRIC_NAMES } from '../domain/metric-names';
import type { ResolvedPolicy } from '../domain/policy';
import type { FiringAlert } from '../domain/status';
import { oneLine } from '../domain/text';
import { describeZodError } from '../domain/zod-errors';
import type { ReleaseRecord } from './record';

/** Firings remembered, so a repeat changes nothing; the oldest go first. */
const SEEN_LIMIT = 1000;
/** Firing alerts shown in `status`. */
const SHOWN_LIMIT = 20;
/** More failed rounds than any failure limit allows (100): the next analysis rolls back on them either way. */
const PENDING_LIMIT = 100;

/** What the alerts carry across continue-as-new: plain data only. */
export interface AlertsState {
  /** Every firing seen (fingerprint and start), oldest first: Alertmanager re-sends a firing until it resolves. */
  seen: { key: string; resolved: boolean }[];
  /** Why a known error rolls the release back, once one fired. */
  tripped?: string;
  /** `fail-round` alerts that fired while no bake analysed: the next bake that analyses counts them. */
  pendingRounds?: string[];
}

export const freshAlerts = (): AlertsState => ({ seen: [] });

/** How the rest of the release hears of an alert that acts on it. */
export interface AlertReactions {
  /** A known error: roll back now. Says whether it did (nothing to roll back once promoted or rolling back). */
  rollBack(reason: string): boolean;
  /** Whether the canary is deployed: a canary alert before it is about some other canary. */
  canaryDeployed(): boolean;
}

/**
 * The service's own alerts, one concern: each firing is judged once by the policy's rules — a known error rolls
 * back at once, a `fail-round` alert counts as a failed round of the current (or next) analysis, the rest are shown —
 * and every firing and resolution is in `status` and the audit trail. Nothing an alert says can move a release
 * forward: the worst a forged one can do is what `abort` lets anyone do.
 */
export class Alerts {
  /** Set by a bake that analyses, for as long as it runs: where `fail-round` alerts are counted. */
  private onFailedRound: ((reason: string) => void) | undefined;

  constructor(
    private readonly record: ReleaseRecord,
    readonly state: AlertsState,
    private readonly policy: () => ResolvedPolicy | undefined,
    private readonly reactions: AlertReactions,
  ) {}

  /**
   * A bake that analyses counts `fail-round` alerts from now until `stop()`: those that fired while no bake analysed
   * first (an alert during a gate, a hook or a deploy is evidence against the release all the same).
   */
  countFailedRounds(count: (reason: string) => void): { stop(): void } {
    for (const reason of this.state.pendingRounds?.splice(0) ?? []) count(reason);
    this.onFailedRound = count;
    return { stop: () => void (this.onFailedRound = undefined) };
  }

  register(): void {
    setHandler(alertSignal, (payload: unknown) => this.receive(payload));
  }

  private receive(payload: unknown): void {
    const parsed = alertSignalSchema.safeParse(payload);
    if (!parsed.success) {
      const detail = `invalid alert: ${describeZodError(parsed.error)}`;
      this.record.audit({ actor: 'alertmanager', action: 'alert', accepted: false, detail });
      log.warn(`alert signal rejected: ${detail}`, this.record.logFields());
      this.record.refresh();
      return;
    }
    let changed = false;
    for (const alert of parsed.data.alerts) changed = this.take(alert) || changed;
    if (changed) this.record.refresh();
  }

  /** Whether the alert changed what the release shows: a repeat, or an alert of no concern to it, does not. */
  private take(alert: Alert): boolean {
    const key = firingKey(alert);
    const seen = this.state.seen.find((s) => s.key === key);
    if (alert.status === 'resolved') return seen !== undefined && !seen.resolved && this.resolved(alert, seen);
    if (seen) return false;
    this.state.seen.push({ key, resolved: false });
    if (this.state.seen.length > SEEN_LIMIT) this.state.seen.shift();
    const policy = this.policy();
    const verdict = judgeAlert(alert, policy?.alerts?.rules ?? [], {
      service: this.record.request.service,
      version: this.record.request.version,
      labels: (policy?.metrics ?? DEFAULT_METRIC_NAMES).labels,
    });
    if (verdict.action === 'ignore') {
      log.info(`alert ignored (${verdict.why}): ${describeAlert(alert, verdict.track)}`, this.record.logFields());
      return false;
    }
    this.fired(alert, verdict);
    return true;
  }

  private fired(alert: Alert, verdict: Exclude<AlertVerdict, { action: 'ignore' }>): void {
    const { record } = this;
    const described = describeAlert(alert, verdict.track);
    const done = this.act(verdict, described);
    const shown = (record.status.alerts ??= []);
    shown.push(this.view(alert, verdict));
    if (shown.length > SHOWN_LIMIT) shown.shift();
    record.audit({ actor: 'alertmanager', action: 'alert-firing', accepted: true, detail: `${described} → ${done}` });
    log.warn(`${described} → ${done}`, { ...record.logFields(), alert: alert.labels.alertname, rule: verdict.rule });
  }

  /** Does what the verdict says, where it still can, and says what was done. */
  private act(verdict: Exclude<AlertVerdict, { action: 'ignore' }>, described: string): string {
    const by = verdict.rule ? ` (rule ${verdict.rule})` : '';
    if (verdict.action === 'show') return 'shown';
    if (verdict.track === 'canary' && !this.reactions.canaryDeployed())
      return `shown: no canary of this release yet${by}`;
    if (verdict.action === 'fail-round') {
      if (this.onFailedRound) {
        this.onFailedRound(described);
        return `counted as a failed analysis round${by}`;
      }
      const pending = (this.state.pendingRounds ??= []);
      if (pending.length < PENDING_LIMIT) pending.push(described);
      return `a failed analysis round for the next analysis${by}`;
    }
    const reason = `known error: ${described}`;
    if (this.state.tripped === undefined && this.reactions.rollBack(reason)) {
      this.state.tripped = reason;
      return `rolling back${by}`;
    }
    return `known error${by}; nothing left to roll back`;
  }

  private resolved(alert: Alert, seen: AlertsState['seen'][number]): boolean {
    seen.resolved = true;
    const shown = this.record.status.alerts ?? [];
    const at = shown.findIndex((a) => a.fingerprint === alert.fingerprint);
    if (at < 0) return false; // never acted on (ignored): nothing to take back
    const [view] = shown.splice(at, 1);
    const described = describeAlert(alert, view!.track);
    this.record.audit({ actor: 'alertmanager', action: 'alert-resolved', accepted: true, detail: described });
    log.info(`resolved: ${described}`, this.record.logFields());
    return true;
  }

  private view(alert: Alert, verdict: { action: FiringAlert['action']; track: AlertTrack; rule?: string }) {
    const { labels, annotations } = alert;
    const summary = annotations.summary ?? annotations.description;
    return {
      name: oneLine(labels.alertname ?? 'unnamed alert', 200),
      track: verdict.track,
      ...(labels.severity !== undefined && { severity: oneLine(labels.severity, 64) }),
      ...(summary !== undefined && { summary: oneLine(summary, 500) }),
      action: verdict.action,
      ...(verdict.rule !== undefined && { rule: verdict.rule }),
      startsAt: alert.startsAt,
      fingerprint: alert.fingerprint,
      labels: Object.fromEntries(
        Object.entries(labels)
          .slice(0, 12)
          .map(([k, v]) => [k, oneLine(v, 200)]),
      ),
    } satisfies FiringAlert;
  }
}
