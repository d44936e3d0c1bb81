import { callUrlSchema, WEB_PLACEHOLDERS, type WebPlaceholder } from '../../domain/external';
import {
  describe,
  formatJsonPath,
  parseJsonPath,
  selectJsonPath,
  whyNothingSelected,
  type JsonPath,
} from '../../domain/json-path';
import type { CheckSamples } from '../../domain/judge';
import type { Check } from '../../domain/policy';
import type { Track } from '../../domain/release';
import { printable } from '../../domain/text';
import { bodyExcerpt, describeFetchError, readBodyBounded } from '../fetch-errors';
import { MetricsQueryError } from './types';

/**
 * Metrics from a user's own HTTP API (Argo Rollouts' `web` provider): one request per population and round, the
 * value picked from the JSON answer by the check's `jsonPath`.
 *
 * The contract, as a metrics API sees it:
 * - `url` and `body` are templates: `{service}` `{version}` `{stableVersion}` `{track}`, and the window the samples
 *   cover, `{start}` `{end}` (Unix seconds) `{startIso}` `{endIso}` (RFC 3339) `{window}` (end − start, seconds)
 *   `{step}` (seconds per sample: the analysis interval). In `url` each value is URL-encoded; in `body` it is escaped
 *   as inside a JSON string, so `"{version}"` in a JSON body is always a well-formed string, and a bare `{start}`
 *   is a bare number. (The values are service names, versions, track names and numbers, which need neither
 *   escape today; the escaping keeps it so if that ever changes.)
 * - The canary population is `{track}` = the stage's track (`staging`, `canary`, `production`) and `{version}` the
 *   new version; a baseline comparison asks the same template again with `{track}` = `stable` and `{version}` = the
 *   stable version.
 * - Header values may name worker environment variables as `${NAME}`; a POST body goes as `application/json` unless
 *   the check sets its own `content-type`. Redirects are not followed (a header would follow them elsewhere).
 * - The answer must be 2xx JSON of at most 1 MiB, within the check's `timeout`. The path may select a number or a
 *   numeric string (one sample), or a list of them (one sample per interval, for a baseline comparison); `null`
 *   items are gaps, and null, an empty list or a wildcard that matches nothing is no data.
 * Anything else — a timeout, a non-2xx answer, a body that is not JSON, a path that finds nothing, a value that is
 * not a finite number — is a MetricsQueryError saying why, which the analysis turns into an inconclusive check.
 */

export type WebQuery = NonNullable<NonNullable<Check['provider']>['web']>;

/** The population and window one round asks about. */
export interface WebQueryContext {
  service: string;
  version: string;
  stableVersion: string | undefined;
  track: Track;
  /** The window ends here… */
  end: Date;
  /** …and holds this many intervals of this many seconds: one sample per interval is what a list should hold. */
  intervals: number;
  stepSeconds: number;
}

export interface WebMetricsOptions {
  /** Where `${NAME}` in header values is looked up; the worker's environment by default. */
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
  /** Largest response body read, in bytes. */
  maxBodyBytes?: number;
  /** Most samples one answer may hold. */
  maxSamples?: number;
}

export const WEB_MAX_BODY_BYTES = 1024 * 1024;
const WEB_MAX_SAMPLES = 10_000;
/** Resolved header values shorter than this are not hunted for in messages: they would blank out ordinary words. */
const MIN_SECRET_CHARS = 4;
const STABLE_TRACK = 'stable';
const NUMERIC = /^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$/;

export class WebMetrics {
  readonly kind = 'web';
  private readonly fetch: typeof fetch;
  private readonly maxBodyBytes: number;
  private readonly maxSamples: number;
  /** Paths are parsed once: the policy checked them already, this keeps the parse off every round. */
  private readonly paths = new Map<string, JsonPath>();

  constructor(private readonly options: WebMetricsOptions = {}) {
    this.fetch = options.fetch ?? globalThis.fetch;
    this.maxBodyBytes = options.maxBodyBytes ?? WEB_MAX_BODY_BYTES;
    this.maxSamples = options.maxSamples ?? WEB_MAX_SAMPLES;
  }

  /** The canary's samples and, for a check with a baseline and a release with a stable version, the stable ones. */
  async samples(check: Pick<Check, 'baseline'>, web: WebQuery, ctx: WebQueryContext, signal?: AbortSignal) {
    const values = windowValues(ctx);
    const canary = { ...values, track: ctx.track, version: ctx.version };
    const stable =
      check.baseline !== undefined && ctx.stableVersion !== undefined
        ? { ...values, track: STABLE_TRACK, version: ctx.stableVersion }
        : undefined;
    // Without a stable version there is no population to compare with: the judge says so (no baseline samples).
    const [canarySamples, baselineSamples] = await Promise.all([
      this.query(web, canary, signal),
      stable ? this.query(web, stable, signal) : Promise.resolve([]),
    ]);
    return { canary: canarySamples, baseline: baselineSamples } satisfies CheckSamples;
  }

  /** One request: the samples it answered with, or a MetricsQueryError saying why there are none to trust. */
  async query(web: WebQuery, values: PlaceholderValues, signal?: AbortSignal): Promise<number[]> {
    const secrets: string[] = [];
    const hide = (text: string) => secrets.reduce((t, s) => t.split(s).join('***'), text);
    let shown = `${web.method} ${web.url}`;
    const fail = (why: string): never => {
      throw new MetricsQueryError(printable(hide(shown), 500), printable(hide(why), 1000));
    };

    const url = fill(web.url, values, encodeURIComponent, 'url', fail);
    shown = `${web.method} ${url}`;
    const checked = callUrlSchema.safeParse(url);
    if (!checked.success) fail(`url: ${checked.error.issues[0]?.message ?? 'not a URL'}`);
    const body = web.body === undefined ? undefined : fill(web.body, values, jsonStringEscape, 'body', fail);
    const headers = this.headers(web, secrets, fail);
    const path = this.path(web.jsonPath, fail);

    const timeout = AbortSignal.timeout(web.timeout);
    let status: number;
    let text: string | undefined;
    try {
      const response = await this.fetch(url, {
        method: web.method,
        headers,
        ...(body !== undefined && { body }),
        redirect: 'manual',
        signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
      });
      status = response.status;
      text = await readBodyBounded(response, this.maxBodyBytes);
    } catch (err) {
      return fail(describeFetchError(err, web.timeout, { url: new URL(url).origin }));
    }
    if (text === undefined) return fail(`response larger than ${formatBytes(this.maxBodyBytes)}`);

    const origin = new URL(url).origin;
    if (status >= 300 && status < 400) fail(`HTTP ${status} from ${origin}: redirects are not followed`);
    if (status < 200 || status >= 300) fail(`HTTP ${status} from ${origin}: ${bodyExcerpt(text)}`);
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch {
      return fail(`malformed response from ${origin} (not JSON): ${bodyExcerpt(text)}`);
    }
    return this.interpret(path, document, fail);
  }

  private interpret(path: JsonPath, document: unknown, fail: (why: string) => never): number[] {
    const selection = selectJsonPath(path, document, { maxValues: this.maxSamples });
    if (selection.truncated) fail(`jsonPath ${path.source} selects more than ${this.maxSamples} values`);
    if (selection.values.length === 0 && path.definite) {
      fail(`jsonPath ${path.source} found nothing: ${whyNothingSelected(path, document) ?? 'no value'}`);
    }
    // One value that is a list is the list of samples; several values are one sample each.
    const only = selection.values.length === 1 ? selection.values[0] : undefined;
    const list = Array.isArray(only) ? (only as unknown[]) : selection.values;
    const listed = Array.isArray(only) || !path.definite;
    if (list.length > this.maxSamples) fail(`jsonPath ${path.source} selects more than ${this.maxSamples} values`);
    const samples: number[] = [];
    for (const [n, item] of list.entries()) {
      const where = listed ? `item ${n} of ${formatJsonPath(path.segments)}` : formatJsonPath(path.segments);
      const sample = toSample(item);
      if (sample === 'gap') continue;
      if (sample === undefined) fail(`${where} is ${shownValue(item)}, not a number`);
      else samples.push(sample);
    }
    return samples;
  }

  private headers(web: WebQuery, secrets: string[], fail: (why: string) => never): Record<string, string> {
    const env = this.options.env ?? process.env;
    const headers: Record<string, string> = {};
    for (const [name, template] of Object.entries(web.headers)) {
      headers[name] = template.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, variable: string) => {
        const value = env[variable];
        // The variable's name, never its value: the value is the secret.
        if (value === undefined) return fail(`header ${name}: environment variable ${variable} is not set`);
        if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) {
          return fail(`header ${name}: environment variable ${variable} holds characters a header cannot carry`);
        }
        if (value.length >= MIN_SECRET_CHARS) secrets.push(value);
        return value;
      });
    }
    const has = (header: string) => Object.keys(headers).some((h) => h.toLowerCase() === header);
    if (!has('accept')) headers.accept = 'application/json';
    if (web.body !== undefined && !has('content-type')) headers['content-type'] = 'application/json';
    return headers;
  }

  private path(source: string, fail: (why: string) => never): JsonPath {
    const known = this.paths.get(source);
    if (known) return known;
    let path: JsonPath;
    try {
      path = parseJsonPath(source);
    } catch (err) {
      return fail(`jsonPath: ${(err as Error).message}`);
    }
    if (this.paths.size >= 1000) this.paths.clear();
    this.paths.set(source, path);
    return path;
  }
}

export type PlaceholderValues = Record<WebPlaceholder, string | undefined>;

function windowValues(ctx: WebQueryContext): Omit<PlaceholderValues, 'track' | 'version'> {
  const end = Math.floor(ctx.end.getTime() / 1000);
  const window = ctx.intervals * ctx.stepSeconds;
  const start = end - window;
  return {
    service: ctx.service,
    stableVersion: ctx.stableVersion,
    start: String(start),
    end: String(end),
    startIso: new Date(start * 1000).toISOString(),
    endIso: new Date(end * 1000).toISOString(),
    window: String(window),
    step: String(ctx.stepSeconds),
  };
}

function fill(
  template: string,
  values: PlaceholderValues,
  escape: (value: string) => string,
  field: string,
  fail: (why: string) => never,
): string {
  return template.replace(/\{([A-Za-z]+)\}/g, (_match, name: string) => {
    if (!(WEB_PLACEHOLDERS as readonly string[]).includes(name)) return fail(`${field}: unknown placeholder {${name}}`);
    const value = values[name as WebPlaceholder];
    if (value === undefined) return fail(`${field} uses {${name}}, but this release has no stable version`);
    return escape(value);
  });
}

/** The value as it would appear between the quotes of a JSON string. */
const jsonStringEscape = (value: string) => JSON.stringify(value).slice(1, -1);

/** A finite number, a numeric string, a gap (null), or undefined for anything that is not a sample. */
function toSample(item: unknown): number | 'gap' | undefined {
  if (item === null) return 'gap';
  const value = typeof item === 'number' ? item : typeof item === 'string' && NUMERIC.test(item) ? Number(item) : NaN;
  return Number.isFinite(value) ? value : undefined;
}

/** Strings are quoted (cut, printable) so "NaN" or "n/a" is recognisable; other values only named by kind. */
function shownValue(item: unknown): string {
  if (typeof item === 'string') return `the string ${JSON.stringify(printable(item, 40))}`;
  if (typeof item === 'number') return `${item}`;
  return describe(item);
}

const formatBytes = (bytes: number) =>
  bytes % (1024 * 1024) === 0
    ? `${bytes / (1024 * 1024)} MiB`
    : bytes % 1024 === 0
      ? `${bytes / 1024} KiB`
      : `${bytes} bytes`;
