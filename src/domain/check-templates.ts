import { DEFAULT_METRIC_NAMES, type MetricNames } from './metric-names';
import type { Check } from './policy';
import { serviceNameSchema, versionSchema, type Track } from './release';

/**
 * PromQL for a check, over the org's metric and label names. Every query aggregates to one series, because the
 * metrics provider refuses an ambiguous answer rather than pick a series.
 */

export interface CheckQueryContext {
  service: string;
  version: string;
  /** The version serving before this release; without it the baseline of a custom query is unknown. */
  stableVersion?: string;
  track: Track;
  stepSeconds: number;
}

export interface CheckQueries {
  canary: string;
  /** Present only when the check compares with the baseline (and, for a custom query, a stable version is known). */
  baseline?: string;
}

/** A check whose query cannot be built from what the release knows; retrying will not help. */
export class CheckQueryError extends Error {
  override readonly name = 'CheckQueryError';
}

/**
 * The `track` label value of the population under test. Production waves run the new version on the stable fleet,
 * so there the new version is told apart from the old one by its `version` label alone.
 */
const TRACK_LABEL: Record<Track, string> = { staging: 'staging', canary: 'canary', production: 'stable' };
const STABLE_TRACK = 'stable';

export function checkQueries(
  check: Check,
  ctx: CheckQueryContext,
  names: MetricNames = DEFAULT_METRIC_NAMES,
): CheckQueries {
  const service = labelValue('service', ctx.service, serviceNameSchema.safeParse(ctx.service).success);
  const version = labelValue('version', ctx.version, versionSchema.safeParse(ctx.version).success);
  const stableVersion =
    ctx.stableVersion === undefined
      ? undefined
      : labelValue('stableVersion', ctx.stableVersion, versionSchema.safeParse(ctx.stableVersion).success);
  if (!Number.isInteger(ctx.stepSeconds) || ctx.stepSeconds < 1) {
    throw new CheckQueryError(
      `check "${check.name}": stepSeconds must be a whole number of seconds ≥ 1, got ${ctx.stepSeconds}`,
    );
  }
  const window = `${ctx.stepSeconds}s`;
  const track = TRACK_LABEL[ctx.track];

  if (check.query !== undefined) {
    const canary = fill(check, { service, version, track, window, stableVersion });
    if (check.baseline === undefined || stableVersion === undefined) return { canary };
    const baseline = fill(check, { service, version: stableVersion, track: STABLE_TRACK, window, stableVersion });
    return { canary, baseline };
  }

  const select = (series: Omit<Series, 'service'>) => selector(names.labels, { service, ...series });
  // In production the new version is told apart by its version alone: a target may keep it on its own track until
  // promoted (the haproxy fleet labels it `canary`) or put it on the stable one. Staging never serves production.
  const canarySelector =
    ctx.track === 'production'
      ? select({ track: TRACK_LABEL.staging, version, not: 'track' })
      : select({ track, version });
  // Without a known stable version, the stable track is the baseline; in production, where the new version shares
  // the stable track, the old version is whatever is not the new one.
  const baselineSelector =
    stableVersion !== undefined
      ? select({ track: STABLE_TRACK, version: stableVersion })
      : ctx.track === 'production'
        ? select({ track: STABLE_TRACK, version, not: 'version' })
        : select({ track: STABLE_TRACK });
  const build = templateQuery(check, window, names);
  return {
    canary: build(canarySelector),
    ...(check.baseline !== undefined && { baseline: build(baselineSelector) }),
  };
}

function templateQuery(check: Check, window: string, names: MetricNames): (selector: string) => string {
  const requests = names.requests;
  switch (check.template) {
    case 'error-ratio':
      // A service that never failed has no 5xx series at all; `or vector(0)` makes that a ratio of 0, not "no data".
      return (s) =>
        `(sum(rate(${requests}${withLabel(s, `${names.labels.statusCode}=~"5.."`)}[${window}])) or vector(0))` +
        ` / sum(rate(${requests}${s}[${window}]))`;
    case 'latency-p99':
      return (s) => `histogram_quantile(0.99, sum by (le) (rate(${names.requestDuration}_bucket${s}[${window}])))`;
    case 'request-count':
      return (s) => `sum(increase(${requests}${s}[${window}]))`;
    case undefined:
      throw new CheckQueryError(`check "${check.name}" has neither a template nor a query`);
  }
}

interface Series {
  service: string;
  track: string;
  version?: string;
  /** The one label matched with `!=` instead. */
  not?: 'track' | 'version';
}

/** `{service="checkout",track="canary",version="1.4.2"}`, in the org's label names. */
function selector(label: MetricNames['labels'], { service, track, version, not }: Series): string {
  const matchers = [`${label.service}="${service}"`, `${label.track}${not === 'track' ? '!=' : '='}"${track}"`];
  if (version !== undefined) matchers.push(`${label.version}${not === 'version' ? '!=' : '='}"${version}"`);
  return `{${matchers.join(',')}}`;
}

function withLabel(selector: string, matcher: string): string {
  return `${selector.slice(0, -1)},${matcher}}`;
}

/**
 * Values go into PromQL string literals unescaped, so only the characters service names and versions may hold are
 * let through; anything else is refused rather than escaped, since it cannot be a real service or version.
 */
function labelValue(field: string, value: string, valid: boolean): string {
  if (!valid) throw new CheckQueryError(`${field} ${JSON.stringify(value)} cannot be used in a metrics query`);
  return value;
}

type Placeholders = Record<'service' | 'version' | 'track' | 'window', string> & { stableVersion: string | undefined };

function fill(check: Check, values: Placeholders): string {
  return (check.query ?? '').replace(/\{\{\s*([A-Za-z]+)\s*\}\}/g, (_match, key: string) => {
    if (!Object.hasOwn(values, key)) {
      throw new CheckQueryError(
        `check "${check.name}": unknown placeholder {{${key}}} (known: service, version, track, window, stableVersion)`,
      );
    }
    const value = values[key as keyof Placeholders];
    if (value === undefined) {
      throw new CheckQueryError(`check "${check.name}" uses {{${key}}}, but this release has no stable version`);
    }
    return value;
  });
}
