import type { ServerResponse } from 'node:http';
import { analysisRound } from '../../src/activities/analysis';
import type { CheckResult } from '../../src/domain/analysis';
import { checkSchema, type Check } from '../../src/domain/policy';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import { MetricsQueryError } from '../../src/providers/metrics/types';
import { WebMetrics, type PlaceholderValues } from '../../src/providers/metrics/web';
import { json, startMetricsApi, type Answer, type MetricsApi } from '../fixtures/checks/metrics-api';
import { canaryContext } from '../helpers/analysis';

const webCheck = (web: Record<string, unknown>, judge: Record<string, unknown> = { max: 0.01 }): Check =>
  checkSchema.parse({ name: 'api-errors', provider: { web }, ...judge });
const webOf = (check: Check) => check.provider!.web!;

/** Prometheus as a round sees it when no check asks it: every query empty, every call counted. */
function emptyPrometheus() {
  let calls = 0;
  const metrics: MetricsProvider = {
    kind: 'empty',
    isOnline: () => Promise.resolve(true),
    query: () => Promise.resolve(undefined),
    queryRange: () => {
      calls++;
      return Promise.resolve([]);
    },
  };
  return { metrics, calls: () => calls };
}

let api: MetricsApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});
const serve = async (answer: Answer) => (api = await startMetricsApi(answer));

/** One analysis round of `check` against the API, as the analyze activity runs it (rounds enough to be warm). */
async function round(check: Check, env: NodeJS.ProcessEnv = {}): Promise<CheckResult> {
  const { results } = await analysisRound(
    emptyPrometheus().metrics,
    canaryContext,
    [check],
    10_000,
    new Date(),
    10,
    undefined,
    { web: new WebMetrics({ env }) },
  );
  return results[0]!;
}

describe('web metrics: the request a metrics API sees', () => {
  it('fills every placeholder of the URL, URL-encoded, for the window the samples cover', async () => {
    const { url, requests } = await serve(json({ value: 0.001 }));
    const check = webCheck({
      url:
        `${url}/q?s={service}&v={version}&sv={stableVersion}&t={track}&from={start}&to={end}` +
        `&fi={startIso}&ti={endIso}&w={window}&st={step}`,
      jsonPath: '$.value',
    });
    const end = new Date('2026-12-02T10:00:30.700Z');
    const context = { ...canaryContext, version: '2.0.0+build.7', end, intervals: 3, stepSeconds: 10 };
    const samples = await new WebMetrics({ env: {} }).samples(check, webOf(check), context);
    expect(samples).toEqual({ canary: [0.001], baseline: [] });
    expect(requests).toHaveLength(1);
    expect(requests[0]!.method).toBe('GET');
    expect(requests[0]!.url).toContain('v=2.0.0%2Bbuild.7');
    const endSeconds = Date.parse('2026-12-02T10:00:30Z') / 1000;
    expect(Object.fromEntries(requests[0]!.query)).toEqual({
      s: 'checkout',
      v: '2.0.0+build.7',
      sv: '1.0.0',
      t: 'canary',
      from: String(endSeconds - 30),
      to: String(endSeconds),
      fi: '2026-12-02T10:00:00.000Z',
      ti: '2026-12-02T10:00:30.000Z',
      w: '30',
      st: '10',
    });
    expect(requests[0]!.headers.accept).toBe('application/json');
  });

  it('escapes values as the URL and a JSON body need, whatever they hold', async () => {
    const { url, requests } = await serve(json({ value: 1 }));
    const check = webCheck({
      url: `${url}/q?track={track}`,
      method: 'POST',
      body: '{"service": "{service}", "version": "{version}", "from": {start}}',
      jsonPath: '$.value',
    });
    const values: PlaceholderValues = {
      service: 'checkout',
      version: 'a"b\\c\nd',
      stableVersion: undefined,
      track: 'a b&c=d',
      start: '100',
      end: '160',
      startIso: '',
      endIso: '',
      window: '60',
      step: '60',
    };
    expect(await new WebMetrics({ env: {} }).query(webOf(check), values)).toEqual([1]);
    expect(requests[0]!.query.get('track')).toBe('a b&c=d');
    expect(requests[0]!.headers['content-type']).toBe('application/json');
    expect(JSON.parse(requests[0]!.body)).toEqual({ service: 'checkout', version: 'a"b\\c\nd', from: 100 });
  });

  it('sends headers from the worker environment, and never says the secret', async () => {
    const { url, requests } = await serve((request, response) => {
      // A server that quotes what it was sent in its error: the secret must not reach the reason.
      response.writeHead(403, { 'content-type': 'text/plain' });
      response.end(`forbidden for ${String(request.headers.authorization)}`);
    });
    const check = webCheck({
      url: `${url}/q`,
      headers: { Authorization: 'Bearer ${METRICS_TOKEN}', 'X-Org': 'shop' },
      jsonPath: '$.value',
    });
    const result = await round(check, { METRICS_TOKEN: 's3cr3t-t0ken' });
    expect(requests[0]!.headers.authorization).toBe('Bearer s3cr3t-t0ken');
    expect(requests[0]!.headers['x-org']).toBe('shop');
    expect(result).toMatchObject({ verdict: 'inconclusive' });
    expect(result.reason).toContain('HTTP 403');
    expect(result.reason).toContain('forbidden for Bearer ***');
    expect(result.reason).not.toContain('s3cr3t-t0ken');
  });

  it('is inconclusive, naming the variable, when a header names one the worker does not have; nothing is sent', async () => {
    const { url, requests } = await serve(json({ value: 0 }));
    const check = webCheck({ url: `${url}/q`, headers: { 'DD-API-KEY': '${DD_API_KEY}' }, jsonPath: '$.value' });
    const result = await round(check, {});
    expect(result).toMatchObject({ verdict: 'inconclusive' });
    expect(result.reason).toContain('header DD-API-KEY: environment variable DD_API_KEY is not set');
    expect(requests).toHaveLength(0);
  });

  it('asks the same template for the stable population, with the stable version, for a baseline comparison', async () => {
    const { url, requests } = await serve(json({ series: [{ points: [0.1, 0.11, 0.09, 0.1, 0.12] }] }));
    const check = webCheck(
      { url: `${url}/latency?track={track}&version={version}&window={window}`, jsonPath: '$.series[0].points' },
      { baseline: { minSamples: 5 } },
    );
    const end = new Date();
    const samples = await new WebMetrics({ env: {} }).samples(check, webOf(check), {
      ...canaryContext,
      end,
      intervals: 5,
      stepSeconds: 60,
    });
    expect(samples.canary).toHaveLength(5);
    expect(samples.baseline).toHaveLength(5);
    const asked = requests.map((r) => Object.fromEntries(r.query)).sort((a, b) => a.track!.localeCompare(b.track!));
    expect(asked).toEqual([
      { track: 'canary', version: '2.0.0', window: '300' },
      { track: 'stable', version: '1.0.0', window: '300' },
    ]);
  });
});

describe('web metrics: what the answer means', () => {
  it.each<[string, unknown, string, number[]]>([
    ['a number', { v: 0.5 }, '$.v', [0.5]],
    ['a numeric string', { v: ' 1e-3 ' }, '$.v', [0.001]],
    ['a list, nulls as gaps', { v: [1, '2', null, 3] }, '$.v', [1, 2, 3]],
    ['a wildcard over a series', { series: [{ v: 1 }, { v: 2 }] }, '$.series[*].v', [1, 2]],
    [
      'a pointlist of [time, value] pairs',
      [
        [0, 1.5],
        [10, '2.5'],
      ],
      '$[*][1]',
      [1.5, 2.5],
    ],
    ['null: no data', { v: null }, '$.v', []],
    ['an empty list: no data', { v: [] }, '$.v', []],
    ['a wildcard that matches nothing: no data', { series: [] }, '$.series[*].v', []],
  ])('%s', async (_what, body, jsonPath, expected) => {
    const { url } = await serve(json(body));
    const check = webCheck({ url: `${url}/q`, jsonPath });
    const values = await new WebMetrics({ env: {} }).samples(check, webOf(check), {
      ...canaryContext,
      end: new Date(),
      intervals: 1,
      stepSeconds: 60,
    });
    expect(values.canary).toEqual(expected);
  });

  const huge =
    (chunked: boolean): Answer =>
    (_request, response: ServerResponse) => {
      const chunk = `${'x'.repeat(64 * 1024 - 1)}\n`;
      response.writeHead(200, {
        'content-type': 'application/json',
        ...(chunked ? {} : { 'content-length': String(chunk.length * 32) }),
      });
      for (let n = 0; n < 32; n++) response.write(chunk);
      response.end();
    };
  const raw =
    (status: number, body: string, headers: Record<string, string> = {}): Answer =>
    (_request, response) => {
      response.writeHead(status, headers);
      response.end(body);
    };

  it.each<[string, Answer, string, RegExp]>([
    [
      'a server error',
      json({ error: 'boom' }, 500),
      '$.v',
      /HTTP 500 from http:\/\/127\.0\.0\.1:\d+: \{"error":"boom"\}/,
    ],
    ['an HTML page', raw(200, '<html><body>Bad gateway</body></html>'), '$.v', /not JSON\): <html><body>Bad gateway/],
    ['an empty body', raw(200, ''), '$.v', /not JSON\): \(empty body\)/],
    ['"NaN"', json({ v: 'NaN' }, 200), '$.v', /\$\.v is the string "NaN", not a number/],
    [
      'a path that is not there',
      json({ data: {} }),
      '$.data.value',
      /found nothing: no member "value" in the object at \$\.data/,
    ],
    ['an object where the value should be', json({ v: {} }), '$.v', /\$\.v is an object, not a number/],
    ['a boolean in the list', json({ v: [1, true] }), '$.v', /item 1 of \$\.v is a boolean, not a number/],
    ['a number JSON cannot hold', raw(200, '{"v": 1e400}'), '$.v', /\$\.v is Infinity, not a number/],
    [
      'a redirect',
      raw(302, '', { location: 'https://elsewhere.example/' }),
      '$.v',
      /HTTP 302 .*redirects are not followed/,
    ],
    ['a body over 1 MiB', huge(false), '$.v', /response larger than 1 MiB/],
    ['a body over 1 MiB with no length', huge(true), '$.v', /response larger than 1 MiB/],
    [
      'more samples than a round can use',
      json({ v: Array.from({ length: 10_001 }, () => 1) }),
      '$.v',
      /more than 10000 values/,
    ],
    ['escape sequences', raw(500, '\u001b[2J\u001b]0;pwned\u0007oops'), '$.v', /HTTP 500 .*\\u\{001b\}\[2J/],
  ])('%s: inconclusive, with the reason', async (_what, answer, jsonPath, reason) => {
    const { url } = await serve(answer);
    const result = await round(webCheck({ url: `${url}/q`, jsonPath }));
    expect(result).toMatchObject({ check: 'api-errors', verdict: 'inconclusive' });
    expect(result.reason).toMatch(reason);
    expect(result.reason).toContain(`GET ${url}/q`);
    // eslint-disable-next-line no-control-regex
    expect(result.reason).not.toMatch(/[\u0000-\u001f]/);
  });

  it('gives up on a server that does not answer within the timeout', async () => {
    const { url } = await serve(() => undefined);
    const started = Date.now();
    const result = await round(webCheck({ url: `${url}/slow`, jsonPath: '$.v', timeout: '300ms' }));
    expect(result).toMatchObject({ verdict: 'inconclusive' });
    expect(result.reason).toMatch(/timed out after 300 ms/);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('is inconclusive when nothing listens, and for a plain-http URL off this machine (never sent)', async () => {
    const { url } = await serve(json({}));
    await api!.close();
    api = undefined;
    expect((await round(webCheck({ url: `${url}/q`, jsonPath: '$.v' }))).reason).toMatch(/connection refused/);
    const remote = await round(webCheck({ url: 'http://metrics.example.com/q', jsonPath: '$.v' }));
    expect(remote).toMatchObject({ verdict: 'inconclusive' });
    expect(remote.reason).toMatch(/url: expected an https URL/);
  });

  it('raises only MetricsQueryError from a query', async () => {
    const { url } = await serve(json({ error: 'x' }, 503));
    const check = webCheck({ url: `${url}/q`, jsonPath: '$.v' });
    const values = { ...canaryContext, end: new Date(), intervals: 1, stepSeconds: 60 };
    await expect(new WebMetrics({ env: {} }).samples(check, webOf(check), values)).rejects.toBeInstanceOf(
      MetricsQueryError,
    );
  });
});

describe('web checks in an analysis round', () => {
  it('passes and fails by threshold on the value the API gives', async () => {
    let value = 0.002;
    await serve((_request, response) => json({ data: { errorRate: String(value) } })(_request, response));
    const check = webCheck({ url: `${api!.url}/errors?service={service}`, jsonPath: '$.data.errorRate' });
    expect(await round(check)).toMatchObject({ verdict: 'pass', canary: 0.002, reason: 'mean 0.002 within max 0.01' });
    value = 0.2;
    expect(await round(check)).toMatchObject({ verdict: 'fail', canary: 0.2, reason: 'mean 0.2 > max 0.01' });
    expect(await round({ ...check, critical: true })).toMatchObject({ verdict: 'fail', critical: true });
  });

  it('compares the canary with the stable population on per-interval samples', async () => {
    const series: Record<string, number[]> = {
      stable: [0.1, 0.11, 0.09, 0.1, 0.12, 0.1],
      canary: [0.1, 0.1, 0.11, 0.09, 0.1, 0.11],
    };
    await serve((request, response) => json({ points: series[request.query.get('track')!] })(request, response));
    const check = webCheck(
      { url: `${api!.url}/p99?track={track}&version={version}`, jsonPath: '$.points' },
      { baseline: { direction: 'increase', tolerance: 0.2, minSamples: 5 } },
    );
    expect(await round(check)).toMatchObject({ verdict: 'pass', samples: { canary: 6, baseline: 6 } });
    series.canary = [0.3, 0.31, 0.29, 0.32, 0.3, 0.33];
    const slow = await round(check);
    expect(slow).toMatchObject({ verdict: 'fail', canary: 0.305, baseline: 0.1 });
    expect(slow.reason).toMatch(/^canary higher than baseline: canary median 0.305 vs baseline 0.1/);
  });

  it('waits for enough intervals before comparing, without asking the API', async () => {
    const { url, requests } = await serve(json({ points: [1] }));
    const check = webCheck({ url: `${url}/p99`, jsonPath: '$.points' }, { baseline: { minSamples: 4 } });
    const { results } = await analysisRound(emptyPrometheus().metrics, canaryContext, [check], 10_000, new Date(), 1);
    expect(results[0]).toMatchObject({ verdict: 'inconclusive', warmingUp: true });
    expect(requests).toHaveLength(0);
  });

  it('judges Prometheus and web checks side by side; a check without a provider is Prometheus', async () => {
    const { url } = await serve(json({ value: 0.001 }));
    const prometheus: MetricsProvider = {
      kind: 'fixed',
      isOnline: () => Promise.resolve(true),
      query: () => Promise.resolve(undefined),
      queryRange: (query) => Promise.resolve(query.includes('increase(') ? [42] : [0.5]),
    };
    const errors: Check = { name: 'errors', template: 'error-ratio', max: 0.01, critical: false };
    const { results, requests } = await analysisRound(
      prometheus,
      canaryContext,
      [errors, webCheck({ url: `${url}/q`, jsonPath: '$.value' })],
      10_000,
      new Date(),
      3,
      undefined,
      { web: new WebMetrics({ env: {} }) },
    );
    expect(results.map((r) => `${r.check}:${r.verdict}`)).toEqual(['errors:fail', 'api-errors:pass']);
    expect(requests).toBe(42);
  });

  it('does not hold the first round for Prometheus when no check reads it', async () => {
    const { url } = await serve(json({ value: 0.001 }));
    const { metrics, calls } = emptyPrometheus();
    const started = Date.now();
    const { results } = await analysisRound(
      metrics,
      canaryContext,
      [webCheck({ url: `${url}/q`, jsonPath: '$.value' })],
      4_000,
      new Date(),
      0,
      undefined,
      { web: new WebMetrics({ env: {} }) },
    );
    expect(results[0]?.verdict).toBe('pass');
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(calls()).toBe(1); // the round's request count, nothing else
  });
});
