import { z } from 'zod';
import { matches, MATCHER_MAX_LENGTH, parseMatcher } from './alert-matchers';
import type { MetricNames } from './metric-names';
import { lowerCaseName, oneLine, uniquelyNamed } from './text';

/**
 * A team's own alerts in a release: what Alertmanager sends (webhook version 4), what the receiver signals to the
 * release (the `alert` signal), which alerts the policy calls known errors, and what one alert does to a release.
 * Pure: the workflow decides, so every decision is in its history.
 */

/** Alerts one `alert` signal may carry; the receiver sends a larger group in several signals. */
export const ALERTS_PER_SIGNAL = 100;
export const LABEL_VALUE_MAX = 1024;

const labelName = z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]{0,199}$/, 'expected a Prometheus label name');
const labelsSchema = z
  .record(labelName, z.string().max(LABEL_VALUE_MAX, `at most ${LABEL_VALUE_MAX} characters`))
  .refine((labels) => Object.keys(labels).length <= 64, 'at most 64 labels');
const annotationsSchema = z
  .record(z.string().min(1).max(128), z.string().max(4096, 'at most 4096 characters'))
  .refine((a) => Object.keys(a).length <= 32, 'at most 32 annotations');
const timestamp = z.iso.datetime({ offset: true });

/** One alert as the release takes it: Alertmanager's fields that say what fired, where and since when. */
export const alertSchema = z.strictObject({
  fingerprint: z.string().regex(/^[0-9A-Za-z:_-]{1,128}$/, 'expected an Alertmanager fingerprint'),
  status: z.enum(['firing', 'resolved']),
  labels: labelsSchema,
  annotations: annotationsSchema.default({}),
  startsAt: timestamp,
});
export type Alert = z.output<typeof alertSchema>;

/** The `alert` signal's payload: alerts of one service, from one webhook call. */
export const alertSignalSchema = z.strictObject({
  alerts: z.array(alertSchema).min(1).max(ALERTS_PER_SIGNAL),
  /** The Alertmanager receiver the alerts came through, for the audit trail. */
  receiver: z.string().max(200).optional(),
});
export type AlertSignal = z.output<typeof alertSignalSchema>;

/** One alert of a webhook, as Alertmanager sends it; what else it carries (endsAt, generatorURL) is not read. */
export const webhookAlertSchema = z.object({
  status: z.enum(['firing', 'resolved']),
  labels: labelsSchema,
  annotations: annotationsSchema.default({}),
  startsAt: timestamp,
  fingerprint: alertSchema.shape.fingerprint,
});

/**
 * Alertmanager's webhook body, version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
 * Fields Alertmanager may add later are ignored. Alerts are read one by one (`webhookAlertSchema`): Alertmanager
 * never retries a 4xx, so refusing a whole group for one bad alert would drop every good one with it. The body's
 * size bounds how many there can be.
 */
export const alertmanagerWebhookSchema = z.object({
  version: z.literal('4', { error: 'expected Alertmanager webhook version "4"' }),
  receiver: z.string().max(200).default(''),
  status: z.enum(['firing', 'resolved']),
  truncatedAlerts: z.number().int().min(0).default(0),
  alerts: z.array(z.unknown()),
});
export type AlertmanagerWebhook = z.output<typeof alertmanagerWebhookSchema>;

/**
 * Which population an alert is about, from its track label: a canary alert is production's alert on the canary
 * track. An alert without one (or with another value) is about the service as a whole, which the stable track
 * serves.
 */
export const ALERT_TRACKS = ['staging', 'canary', 'stable'] as const;
export type AlertTrack = (typeof ALERT_TRACKS)[number];

/** Strongest first: when several rules match an alert, the strongest action wins, so adding a rule never weakens. */
export const ALERT_ACTIONS = ['rollback', 'fail-round', 'show'] as const;
export type AlertAction = (typeof ALERT_ACTIONS)[number];

const matcherText = z
  .string()
  .max(MATCHER_MAX_LENGTH)
  .superRefine((text, ctx) => {
    const parsed = parseMatcher(text);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  });

/** Org rules are named `org.<name>`; a service rule cannot take (and so replace) one. */
export const ORG_RULE_PREFIX = 'org.';

/** Which alerts are known errors for a service, and what each does to a release in flight. */
export const alertRuleSchema = z.strictObject({
  name: lowerCaseName('rule name').refine((n) => !n.startsWith(ORG_RULE_PREFIX), {
    message: `names starting with "${ORG_RULE_PREFIX}" are the org's`,
  }),
  /** All must match (Alertmanager's syntax, e.g. `alertname="TollgateErrorRatioHigh"`, `severity=~"critical|page"`). */
  matchers: z.array(matcherText).min(1).max(20),
  /** `rollback` at once; `fail-round` counts as a failed round of the current (or next) analysis; `show` in status only. */
  action: z.enum(ALERT_ACTIONS),
  /** The tracks whose alerts the rule acts on: the stable track's alerts never touch a canary unless listed. */
  tracks: z.array(z.enum(ALERT_TRACKS)).min(1).max(3).default(['canary']),
});
export type AlertRule = z.output<typeof alertRuleSchema>;

export const alertRulesSchema = uniquelyNamed(alertRuleSchema, 'rule', 50);

/** What the org minimum `criticalCanaryAlertsRollBack` adds to every service's rules. */
export const ORG_CRITICAL_CANARY_RULE: AlertRule = Object.freeze({
  name: `${ORG_RULE_PREFIX}critical-canary`,
  matchers: ['severity="critical"'],
  action: 'rollback',
  tracks: ['canary'],
}) as AlertRule;

/** What the release knows when it judges an alert. */
export interface AlertContext {
  service: string;
  version: string;
  labels: MetricNames['labels'];
}

export type AlertVerdict =
  { action: AlertAction; track: AlertTrack; rule?: string } | { action: 'ignore'; track: AlertTrack; why: string };

export function trackOfAlert(alert: Alert, ctx: AlertContext): AlertTrack {
  const value = alert.labels[ctx.labels.track];
  return value === 'canary' || value === 'staging' ? value : 'stable';
}

/** What one alert does to this release: an alert of another service or of another canary is nothing to it. */
export function judgeAlert(alert: Alert, rules: readonly AlertRule[], ctx: AlertContext): AlertVerdict {
  const track = trackOfAlert(alert, ctx);
  const service = alert.labels[ctx.labels.service];
  if (service !== ctx.service) return { action: 'ignore', track, why: 'not an alert of this service' };
  const version = alert.labels[ctx.labels.version];
  if (track !== 'stable' && version !== undefined && version !== ctx.version) {
    return { action: 'ignore', track, why: `the ${track} of version ${oneLine(version, 64)}, not this release's` };
  }
  let verdict: AlertVerdict = { action: 'show', track };
  for (const rule of rules) {
    if (!rule.tracks.includes(track)) continue;
    const all = rule.matchers.every((text) => {
      const matcher = parseMatcher(text);
      return typeof matcher !== 'string' && matches(matcher, alert.labels);
    });
    const rank = ALERT_ACTIONS.indexOf(rule.action) - ALERT_ACTIONS.indexOf(verdict.action);
    // The first rule that decides is named, even a `show` one: status says which rule saw the alert.
    if (all && (rank < 0 || (rank === 0 && verdict.rule === undefined))) {
      verdict = { action: rule.action, track, rule: rule.name };
    }
  }
  return verdict;
}

/** Identity of one firing: Alertmanager re-sends it, unchanged, every `repeat_interval` and on every group change. */
export const firingKey = (alert: Alert): string => `${alert.fingerprint}@${new Date(alert.startsAt).toISOString()}`;

/** An alert in words: its name, its track, the summary and the labels that say which. */
export function describeAlert(alert: Alert, track: AlertTrack): string {
  const name = alert.labels.alertname ?? 'unnamed alert';
  const summary = alert.annotations.summary ?? alert.annotations.description;
  const shown = Object.entries(alert.labels)
    .filter(([k]) => k !== 'alertname')
    .slice(0, 12)
    .map(([k, v]) => `${k}="${oneLine(v, 80)}"`)
    .join(', ');
  return oneLine(`alert ${name} on the ${track}${summary ? `: ${summary}` : ''} {${shown}}`, 600);
}
