import { z } from 'zod';
import { bodyExcerpt, describeFetchError } from '../fetch-errors';
import { splitUrlCredentials } from '../url-credentials';
import { MetricsQueryError, type MetricsProvider, type RangeWindow } from './types';

export interface PrometheusOptions {
  /** Base URL of the Prometheus server (a path prefix such as `/prometheus` is kept); `user:password@` is basic auth. */
  url: string;
  /** Per request, connect to last byte of the body. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

const optionsSchema = z.object({
  url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL, e.g. http://127.0.0.1:9090' }),
  timeoutMs: z.number().int().min(1).max(600_000).default(5000),
});

/** Prometheus renders sample values as strings, including "NaN", "+Inf" and "-Inf". */
const sampleValue = z.tuple([
  z.number(),
  z.string().regex(/^(?:[+-]?Inf|NaN|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$/, 'expected a sample value'),
]);
const responseSchema = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('success'),
    data: z.discriminatedUnion('resultType', [
      z.object({ resultType: z.literal('vector'), result: z.array(z.object({ value: sampleValue })) }),
      z.object({ resultType: z.literal('matrix'), result: z.array(z.object({ values: z.array(sampleValue) })) }),
      z.object({ resultType: z.literal('scalar'), result: sampleValue }),
      z.object({ resultType: z.literal('string'), result: sampleValue }),
    ]),
  }),
  z.object({ status: z.literal('error'), errorType: z.string().optional(), error: z.string().optional() }),
]);
type QueryData = Extract<z.infer<typeof responseSchema>, { status: 'success' }>['data'];

/** Metrics from Prometheus' HTTP API. Queries must aggregate to one series; more is an error, not a guess. */
export class PrometheusProvider implements MetricsProvider {
  readonly kind = 'prometheus';
  /** Without credentials (they are in `authorization`), so it can be quoted in errors. */
  private readonly base: string;
  private readonly authorization: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;

  constructor(options: PrometheusOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new TypeError(`prometheus provider: ${issue?.path.join('.') ?? 'options'}: ${issue?.message ?? 'invalid'}`);
    }
    const { url, authorization } = splitUrlCredentials(parsed.data.url);
    this.base = url.href.endsWith('/') ? url.href : `${url.href}/`;
    this.authorization = authorization;
    this.timeoutMs = parsed.data.timeoutMs;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  async isOnline(): Promise<boolean> {
    try {
      const response = await this.fetch(new URL('-/ready', this.base), {
        headers: this.headers(),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      await response.arrayBuffer();
      return response.status === 200;
    } catch {
      return false;
    }
  }

  async query(query: string): Promise<number | undefined> {
    const data = await this.request('api/v1/query', query, new URLSearchParams({ query }));
    if (data.resultType === 'scalar') return orNoData(parseSample(data.result[1]));
    if (data.resultType !== 'vector') throw new MetricsQueryError(query, `expected a vector, got a ${data.resultType}`);
    const series = single(query, data.result);
    return series === undefined ? undefined : orNoData(parseSample(series.value[1]));
  }

  async queryRange(query: string, window: RangeWindow): Promise<number[]> {
    const params = new URLSearchParams({
      query,
      start: String(window.start.getTime() / 1000),
      end: String(window.end.getTime() / 1000),
      step: String(window.stepSeconds),
    });
    const data = await this.request('api/v1/query_range', query, params);
    if (data.resultType !== 'matrix') throw new MetricsQueryError(query, `expected a matrix, got a ${data.resultType}`);
    const series = single(query, data.result);
    if (series === undefined) return [];
    return series.values.map(([, value]) => parseSample(value)).filter((v) => !Number.isNaN(v));
  }

  private async request(path: string, query: string, params: URLSearchParams): Promise<QueryData> {
    const url = new URL(path, this.base);
    let status: number;
    let text: string;
    try {
      // POST keeps long queries out of URL length limits (Prometheus accepts both).
      const response = await this.fetch(url, {
        method: 'POST',
        headers: this.headers({ 'content-type': 'application/x-www-form-urlencoded' }),
        body: params.toString(),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = response.status;
      text = await response.text();
    } catch (error) {
      throw new MetricsQueryError(query, describeFetchError(error, this.timeoutMs, { url: this.base }));
    }

    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      const why =
        status >= 200 && status < 300
          ? `malformed response from ${url.origin} (not JSON)`
          : `HTTP ${status} from ${url.origin}`;
      throw new MetricsQueryError(query, `${why}: ${bodyExcerpt(text)}`);
    }
    const parsed = responseSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? ` at ${issue.path.join('.')}` : '';
      const why =
        status >= 200 && status < 300 ? `malformed response from ${url.origin}` : `HTTP ${status} from ${url.origin}`;
      throw new MetricsQueryError(query, `${why}${where}: ${issue?.message ?? 'unexpected shape'}`);
    }
    if (parsed.data.status === 'error') {
      const detail = [parsed.data.errorType, parsed.data.error].filter(Boolean).join(': ') || 'no error message';
      throw new MetricsQueryError(query, `HTTP ${status} from Prometheus: ${detail}`);
    }
    return parsed.data.data;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.authorization === undefined ? extra : { ...extra, authorization: this.authorization };
  }
}

function single<T>(query: string, result: T[]): T | undefined {
  if (result.length > 1) {
    throw new MetricsQueryError(
      query,
      `expected one series, got ${result.length} (aggregate the query, e.g. with sum())`,
    );
  }
  return result[0];
}

function parseSample(value: string): number {
  if (value === '+Inf') return Infinity;
  if (value === '-Inf') return -Infinity;
  return Number(value);
}

/** NaN (0/0, a quantile of nothing) means no data, never a number to judge. */
function orNoData(value: number): number | undefined {
  return Number.isNaN(value) ? undefined : value;
}
