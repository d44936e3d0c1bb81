import { stringify } from 'yaml';
import { DEFAULT_METRIC_NAMES, type MetricNames } from './metric-names';

/**
 * Tollgate's alert templates as a Prometheus rule file. Every rule aggregates by the org's service, version and track
 * labels, so one file serves every service, and a canary's alerts are production's alerts that carry
 * `track="canary"`: Alertmanager and the receiver tell them apart by labels alone, as the canary's dashboards do.
 * Pure: the caller writes the file.
 */

export const ALERT_NAMES = {
  errorRatio: 'TollgateErrorRatioHigh',
  latency: 'TollgateLatencyHigh',
  saturation: 'TollgateSaturationHigh',
  crashLoop: 'TollgateCrashLooping',
} as const;

export type Severity = 'critical' | 'warning' | 'info';

interface TemplateOptions {
  /** How long the condition must hold before the alert fires (a Prometheus duration, e.g. `0s`, `30s`, `5m`). */
  for?: string;
  severity?: Severity;
}

export interface AlertRuleOptions {
  /** The window every `rate()` looks back over. It needs at least two scrapes in it: 10 s fits a 1 s scrape. */
  rateWindow?: string;
  /** Evaluation interval of the group; without it, Prometheus' global `evaluation_interval`. */
  interval?: string;
  groupName?: string;
  /** Added to every rule's labels (e.g. `team`), after Tollgate's own; `severity` and `tollgate` cannot be set here. */
  labels?: Record<string, string>;
  errorRatio?: TemplateOptions & {
    /** Share of requests answered 5xx above which the alert fires (0..1). */
    threshold?: number;
    /** Requests a second below which there is no ratio to speak of: one failure out of two requests is not 50%. */
    minRequestRate?: number;
  };
  latency?: TemplateOptions & { thresholdSeconds?: number; quantile?: number };
  saturation?: TemplateOptions & {
    /** Requests a second one instance serves above which it is taken as saturated. */
    maxRequestRatePerInstance?: number;
  };
  crashLoop?: TemplateOptions & {
    /** How far back an instance's scrapes are counted. */
    window?: string;
    /** Share of its scrapes in the window an instance must answer (0..1); one that answers fewer is crash-looping. */
    minUpShare?: number;
  };
}

/**
 * The defaults fit the demo (1 s scrapes and evaluations, a few requests a second per instance): an erroring canary
 * alerts within seconds. A real fleet scraped every 15-30 s wants `rateWindow: 2m` or more.
 */
export const ALERT_RULE_DEFAULTS = Object.freeze({
  rateWindow: '10s',
  groupName: 'tollgate',
  // Critical, because the org minimum `criticalCanaryAlertsRollBack` rolls a release back on any critical canary
  // alert: a canary that fails requests or cannot stay up is a known error, whatever the service's own rules say.
  errorRatio: { threshold: 0.05, minRequestRate: 1, for: '0s', severity: 'critical' },
  latency: { thresholdSeconds: 0.3, quantile: 0.99, for: '10s', severity: 'warning' },
  saturation: { maxRequestRatePerInstance: 50, for: '30s', severity: 'warning' },
  // A new instance's first failed scrape (it was still starting) is a third of its first three: the `for` outlasts
  // that, and a stopped instance drops out of file SD, so only instances that stay down or keep restarting alert.
  crashLoop: { window: '1m', minUpShare: 0.9, for: '10s', severity: 'critical' },
} as const);

export interface PrometheusRule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: { summary: string; description: string };
}

export interface PrometheusRuleFile {
  groups: { name: string; interval?: string; rules: PrometheusRule[] }[];
}

/** Options that cannot make a valid rule file; thrown at once, so a bad option never reaches a team's Prometheus. */
export class AlertRuleOptionsError extends Error {
  override readonly name = 'AlertRuleOptionsError';
}

export function alertRules(
  names: MetricNames = DEFAULT_METRIC_NAMES,
  options: AlertRuleOptions = {},
): PrometheusRuleFile {
  const o = resolve(options);
  const l = names.labels;
  const by = `by (${l.service}, ${l.version}, ${l.track})`;
  const w = o.rateWindow;
  const who = `{{ $labels.${l.service} }} {{ $labels.${l.version} }} on the {{ $labels.${l.track} }} track`;
  const rule = (
    alert: string,
    t: { for: string; severity: Severity },
    expr: string,
    summary: string,
    description: string,
  ): PrometheusRule => ({
    alert,
    expr,
    for: t.for,
    labels: { severity: t.severity, tollgate: 'template', ...o.labels },
    annotations: { summary: `${who}: ${summary}`, description },
  });

  const requestRate = `sum ${by} (rate(${names.requests}[${w}]))`;
  const errorRate = `sum ${by} (rate(${names.requests}{${l.statusCode}=~"5.."}[${w}]))`;
  const { errorRatio, latency, saturation, crashLoop } = o;
  // Only scraped targets of a service count: other jobs' `up` series (the worker, Prometheus itself) have no service.
  const up = `up{${l.service}!=""}`;

  return {
    groups: [
      {
        name: o.groupName,
        ...(o.interval !== undefined && { interval: o.interval }),
        rules: [
          // A series with no 5xx has no error series at all, so a healthy population yields no ratio, and no alert.
          rule(
            ALERT_NAMES.errorRatio,
            errorRatio,
            `(${errorRate} / ${requestRate}) > ${errorRatio.threshold} and ${requestRate} >= ${errorRatio.minRequestRate}`,
            `{{ $value | humanizePercentage }} of requests failed (5xx)`,
            `More than ${percent(errorRatio.threshold)} of requests were answered with a 5xx over the last ${w}.`,
          ),
          rule(
            ALERT_NAMES.latency,
            latency,
            `histogram_quantile(${latency.quantile}, sum by (${l.service}, ${l.version}, ${l.track}, le) ` +
              `(rate(${names.requestDuration}_bucket[${w}]))) > ${latency.thresholdSeconds}`,
            `p${latency.quantile * 100} latency is {{ $value | humanizeDuration }}`,
            `The ${latency.quantile} quantile of request durations over the last ${w} is above ` +
              `${latency.thresholdSeconds} s.`,
          ),
          // The request rate of the busiest instance: the org's metrics have no in-flight gauge, and the demo's
          // instances export no process metrics (CPU), so load per instance is the saturation signal they all have.
          rule(
            ALERT_NAMES.saturation,
            saturation,
            `max ${by} (sum by (${l.service}, ${l.version}, ${l.track}, instance) (rate(${names.requests}[${w}]))) ` +
              `> ${saturation.maxRequestRatePerInstance}`,
            `an instance serves {{ $value | humanize }} requests a second`,
            `An instance serves more than ${saturation.maxRequestRatePerInstance} requests a second ` +
              `(over the last ${w}); the population needs more instances or less traffic.`,
          ),
          // Instances still scraped (`and up`: one the fleet stopped and dropped is gone, not crashing) that failed
          // too many of their recent scrapes: down for good, or restarting over and over. Counting changes of `up`
          // would take a redeploy onto the same instance for a restart. `up` carries the target's labels, so it has
          // the track even with honor_labels; `process_start_time_seconds` needs process metrics the demo's
          // instances do not export.
          rule(
            ALERT_NAMES.crashLoop,
            crashLoop,
            `count ${by} ((avg_over_time(${up}[${crashLoop.window}]) < ${crashLoop.minUpShare}) and ${up})`,
            `{{ $value | humanize }} instance(s) down or restarting`,
            `Instances answered fewer than ${percent(crashLoop.minUpShare)} of their scrapes over the last ` +
              `${crashLoop.window}.`,
          ),
        ],
      },
    ],
  };
}

/** The rule file as YAML, for `rule_files` in a Prometheus config (`promtool check rules` accepts it). */
export function renderAlertRules(names: MetricNames = DEFAULT_METRIC_NAMES, options: AlertRuleOptions = {}): string {
  const header =
    '# Tollgate alert templates: one rule file for every service, firing per service, version and track.\n';
  // lineWidth 0: long expressions stay on one line, as a person reading the file expects to find them.
  return header + stringify(alertRules(names, options), { lineWidth: 0 });
}

const percent = (share: number) => `${Math.round(share * 10_000) / 100}%`;

const DURATION = /^(\d+(ms|s|m|h|d|w|y))+$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,199}$/;
const RESERVED_LABELS = new Set(['severity', 'tollgate', 'alertname']);

function resolve(options: AlertRuleOptions) {
  const d = ALERT_RULE_DEFAULTS;
  const resolved = {
    rateWindow: duration('rateWindow', options.rateWindow ?? d.rateWindow),
    interval: options.interval === undefined ? undefined : duration('interval', options.interval),
    groupName: options.groupName ?? d.groupName,
    labels: extraLabels(options.labels ?? {}),
    errorRatio: {
      ...template('errorRatio', d.errorRatio, options.errorRatio),
      threshold: number('errorRatio.threshold', options.errorRatio?.threshold ?? d.errorRatio.threshold, 0, 1),
      minRequestRate: number(
        'errorRatio.minRequestRate',
        options.errorRatio?.minRequestRate ?? d.errorRatio.minRequestRate,
        0,
      ),
    },
    latency: {
      ...template('latency', d.latency, options.latency),
      thresholdSeconds: number(
        'latency.thresholdSeconds',
        options.latency?.thresholdSeconds ?? d.latency.thresholdSeconds,
        0,
      ),
      quantile: number('latency.quantile', options.latency?.quantile ?? d.latency.quantile, 0, 1),
    },
    saturation: {
      ...template('saturation', d.saturation, options.saturation),
      maxRequestRatePerInstance: number(
        'saturation.maxRequestRatePerInstance',
        options.saturation?.maxRequestRatePerInstance ?? d.saturation.maxRequestRatePerInstance,
        0,
      ),
    },
    crashLoop: {
      ...template('crashLoop', d.crashLoop, options.crashLoop),
      window: duration('crashLoop.window', options.crashLoop?.window ?? d.crashLoop.window),
      minUpShare: number('crashLoop.minUpShare', options.crashLoop?.minUpShare ?? d.crashLoop.minUpShare, 0, 1),
    },
  };
  if (resolved.groupName.length === 0 || resolved.groupName.length > 200) {
    throw new AlertRuleOptionsError('groupName: expected 1 to 200 characters');
  }
  return resolved;
}

function template(field: string, defaults: { for: string; severity: Severity }, options: TemplateOptions | undefined) {
  const severity = options?.severity ?? defaults.severity;
  if (!['critical', 'warning', 'info'].includes(severity)) {
    throw new AlertRuleOptionsError(`${field}.severity: expected critical, warning or info`);
  }
  return { for: duration(`${field}.for`, options?.for ?? defaults.for), severity };
}

function duration(field: string, value: string): string {
  if (!DURATION.test(value)) throw new AlertRuleOptionsError(`${field}: expected a Prometheus duration such as 10s`);
  return value;
}

// Numbers go into PromQL as written by String(), so only finite ones in range: `NaN` or `Infinity` would parse.
function number(field: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new AlertRuleOptionsError(`${field}: expected a number from ${min} to ${max}`);
  }
  return value;
}

function extraLabels(labels: Record<string, string>): Record<string, string> {
  for (const [name, value] of Object.entries(labels)) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) {
      throw new AlertRuleOptionsError(`labels: ${JSON.stringify(name)} is not a Prometheus label name`);
    }
    if (RESERVED_LABELS.has(name)) throw new AlertRuleOptionsError(`labels: "${name}" is set by Tollgate`);
    if (typeof value !== 'string' || value.length > 1024) {
      throw new AlertRuleOptionsError(`labels.${name}: expected a string of at most 1024 characters`);
    }
  }
  return { ...labels };
}
