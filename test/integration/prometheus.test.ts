import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkQueries } from '../../src/domain/check-templates';
import { REQUEST_DURATION, REQUESTS_TOTAL } from '../../src/domain/metric-names';
import { judgeCheck } from '../../src/domain/judge';
import { checkSchema } from '../../src/domain/policy';
import { PrometheusProvider } from '../../src/providers/metrics/prometheus';
import { MetricsQueryError } from '../../src/providers/metrics/types';
import { startPrometheus, type RunningPrometheus } from '../helpers/prometheus';

/**
 * A real Prometheus scraping two fake demo instances every second: a canary (1.1.0) failing 20% of requests at
 * ~0.3-0.5 s, and the stable fleet (1.0.0) that never fails and answers in 50-100 ms.
 */

const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1];
const STEP = 5;
const ctx = { service: 'demo', version: '1.1.0', stableVersion: '1.0.0', track: 'canary' as const, stepSeconds: STEP };

interface Instance {
  errorShare: number;
  /** Every request's duration falls in the bucket ending here. */
  latencyBucket: number;
}

/** Counters grow at 100 requests a second from the moment the instance starts, as prom-client would show them. */
function metricsServer({ errorShare, latencyBucket }: Instance): Server {
  const started = Date.now();
  return createServer((_req, res) => {
    const requests = Math.floor((Date.now() - started) / 10);
    const errors = Math.floor(requests * errorShare);
    const lines = [
      `# TYPE ${REQUESTS_TOTAL} counter`,
      `${REQUESTS_TOTAL}{code="200"} ${requests - errors}`,
      ...(errorShare > 0 ? [`${REQUESTS_TOTAL}{code="500"} ${errors}`] : []),
      `# TYPE ${REQUEST_DURATION} histogram`,
      ...BUCKETS.map((le) => `${REQUEST_DURATION}_bucket{le="${le}"} ${le >= latencyBucket ? requests : 0}`),
      `${REQUEST_DURATION}_bucket{le="+Inf"} ${requests}`,
      `${REQUEST_DURATION}_sum ${requests * latencyBucket * 0.8}`,
      `${REQUEST_DURATION}_count ${requests}`,
    ];
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(`${lines.join('\n')}\n`);
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe('PrometheusProvider against a real Prometheus', () => {
  const canary = metricsServer({ errorShare: 0.2, latencyBucket: 0.5 });
  const stable = metricsServer({ errorShare: 0, latencyBucket: 0.1 });
  let dir: string;
  let prometheus: RunningPrometheus | undefined;
  let provider: PrometheusProvider;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tollgate-prom-test-'));
    const [canaryTarget, stableTarget] = await Promise.all([listen(canary), listen(stable)]);
    const fileSdPath = join(dir, 'targets.json');
    // The canary arrives through file SD (as the demo fleet's will), the stable fleet as a static target.
    await writeFile(
      fileSdPath,
      JSON.stringify([{ targets: [canaryTarget], labels: { service: 'demo', version: '1.1.0', track: 'canary' } }]),
    );
    prometheus = await startPrometheus({
      scrapeIntervalSeconds: 1,
      fileSdPath,
      staticTargets: [{ targets: [stableTarget], labels: { service: 'demo', version: '1.0.0', track: 'stable' } }],
    });
    provider = new PrometheusProvider({ url: prometheus.url, timeoutMs: 2000 });
  });

  afterAll(async () => {
    await prometheus?.stop();
    await Promise.all([canary, stable].map((s) => new Promise((resolve) => s.close(resolve))));
    await rm(dir, { recursive: true, force: true });
  });

  it('is online', async () => {
    await expect(provider.isOnline()).resolves.toBe(true);
  });

  it('measures the error ratio of the canary, and 0 for a stable fleet that never failed', async () => {
    const queries = checkQueries(
      checkSchema.parse({ name: 'errors', template: 'error-ratio', max: 0.01, baseline: {} }),
      ctx,
    );
    const canaryRatio = await eventually('a canary error ratio', () => provider.query(queries.canary));
    expect(canaryRatio).toBeGreaterThan(0.18);
    expect(canaryRatio).toBeLessThan(0.22);
    await expect(eventually('a stable error ratio', () => provider.query(queries.baseline!))).resolves.toBe(0);
  });

  it('fails the canary on p99 latency against the stable baseline, with real per-step samples', async () => {
    const check = checkSchema.parse({ name: 'latency', template: 'latency-p99', max: 1, baseline: { minSamples: 5 } });
    const queries = checkQueries(check, ctx);
    const range = () => {
      const end = new Date();
      return { start: new Date(end.getTime() - 8_000), end, stepSeconds: 1 };
    };
    const samples = await eventually('8 s of latency samples', async () => {
      const window = range();
      const [c, b] = await Promise.all([
        provider.queryRange(queries.canary, window),
        provider.queryRange(queries.baseline!, window),
      ]);
      return c.length >= 5 && b.length >= 5 ? { canary: c, baseline: b } : undefined;
    });
    // histogram_quantile interpolates linearly inside the bucket: 0.25 + 0.99 × 0.25, and 0.05 + 0.99 × 0.05.
    for (const v of samples.canary) expect(v).toBeCloseTo(0.4975, 3);
    for (const v of samples.baseline) expect(v).toBeCloseTo(0.0995, 3);

    const result = judgeCheck(check, samples, new Date().toISOString());
    expect(result.verdict).toBe('fail');
    expect(result.pValue).toBeLessThan(0.01);
    expect(result.reason).toMatch(
      /^canary higher than baseline: canary median 0\.49[78] vs baseline 0\.0995 \(\+400%, p=0\.00/,
    );
  });

  it('counts the canary requests', async () => {
    const queries = checkQueries(checkSchema.parse({ name: 'requests', template: 'request-count', min: 1 }), ctx);
    const count = await eventually('a request count', () => provider.query(queries.canary));
    // 100 requests a second over a 5 s window, give or take Prometheus' extrapolation at the window's edges.
    expect(count).toBeGreaterThan(350);
    expect(count).toBeLessThan(650);
  });

  it("passes on Prometheus' errors: bad PromQL and several series", async () => {
    const bad = await provider.query('sum(rate(x[5s])').catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(MetricsQueryError);
    expect((bad as MetricsQueryError).why).toMatch(/^HTTP 400 from Prometheus: bad_data: .*parse error/);
    const several = await provider.query(`${REQUESTS_TOTAL}{service="demo"}`).catch((e: unknown) => e);
    expect(several).toBeInstanceOf(MetricsQueryError);
    expect((several as MetricsQueryError).why).toMatch(/^expected one series, got [2-9]/);
  });

  it('is offline, and says so clearly, once stopped', async () => {
    await prometheus!.stop();
    await expect(provider.isOnline()).resolves.toBe(false);
    const error = await provider.query('up').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MetricsQueryError);
    expect((error as MetricsQueryError).message).toBe(`query failed: connection refused at ${prometheus!.url}/: up`);
  });
});
