import { analysisRound } from '../../src/activities/analysis';
import { checksAt, decide, type CheckResult } from '../../src/domain/analysis';
import type { Check } from '../../src/domain/policy';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import { canaryContext } from '../helpers/analysis';
import { errorsCheck } from '../helpers/policies';

const latency: Check = {
  name: 'latency',
  template: 'latency-p99',
  max: 0.3,
  baseline: { direction: 'increase', tolerance: 0.2, minSamples: 4 },
  critical: false,
};
const compareOnly: Check = {
  name: 'cmp',
  template: 'latency-p99',
  baseline: { direction: 'increase', tolerance: 0.2, minSamples: 4 },
  critical: false,
};

describe('checksAt', () => {
  it('keeps baseline comparisons while a stable population is left, and drops them at 100%', () => {
    expect(checksAt([latency, compareOnly, errorsCheck], 50)).toEqual([latency, compareOnly, errorsCheck]);
    const at100 = checksAt([latency, compareOnly, errorsCheck], 100);
    expect(at100.map((c) => c.name)).toEqual(['latency', 'errors']);
    expect(at100[0]).not.toHaveProperty('baseline');
    expect(at100[0]?.max).toBe(0.3);
  });
});

describe('analysis warm-up', () => {
  const metrics: MetricsProvider = {
    kind: 'fixed',
    isOnline: () => Promise.resolve(true),
    query: () => Promise.resolve(0),
    queryRange: (_q, w) =>
      Promise.resolve(
        Array.from(
          { length: Math.round((w.end.getTime() - w.start.getTime()) / 1000 / w.stepSeconds) + 1 },
          () => 0.001,
        ),
      ),
  };

  it('does not query or count a comparison until the canary is old enough for its samples', async () => {
    const early = await analysisRound(metrics, canaryContext, [latency, errorsCheck], 10_000, new Date(), 1);
    const warm = early.results.find((r) => r.check === 'latency')!;
    expect(warm).toMatchObject({
      verdict: 'inconclusive',
      warmingUp: true,
      reason: 'warming up: 2/4 intervals of canary data',
    });
    const { counters, decision } = decide({ rounds: 1, failures: 0, inconclusive: 1, requests: 0 }, early.results, 0, {
      failureLimit: 3,
      inconclusiveLimit: 2,
    });
    expect(decision).toBe('healthy');
    expect(counters.inconclusive).toBe(1); // neither counted nor reset
    const later = await analysisRound(metrics, canaryContext, [latency], 10_000, new Date(), 3);
    expect(later.results[0]?.warmingUp).toBeUndefined();
  });

  it('still counts a real inconclusive result next to a warming-up one', () => {
    const results: CheckResult[] = [
      { check: 'latency', verdict: 'inconclusive', critical: false, reason: 'warming up', warmingUp: true, at: 'x' },
      { check: 'errors', verdict: 'inconclusive', critical: false, reason: 'no data', at: 'x' },
    ];
    expect(
      decide({ rounds: 0, failures: 0, inconclusive: 1, requests: 0 }, results, 0, {
        failureLimit: 3,
        inconclusiveLimit: 2,
      }).decision,
    ).toBe('inconclusive');
  });
});

describe('the first round and a canary the metrics system has not scraped yet', () => {
  /** A provider with no canary series for its first `emptyCalls` request-count queries. */
  function lateMetrics(emptyCalls: number) {
    let countQueries = 0;
    const metrics: MetricsProvider = {
      kind: 'late',
      isOnline: () => Promise.resolve(true),
      query: () => Promise.resolve(undefined),
      queryRange: (query) => {
        if (query.includes('increase(') && ++countQueries <= emptyCalls) return Promise.resolve([]);
        return Promise.resolve(query.includes('rate(') ? [0.2] : [40]);
      },
    };
    return { metrics, countQueries: () => countQueries };
  }

  it('is judged once the canary has data, not spent as inconclusive', async () => {
    const { metrics, countQueries } = lateMetrics(2);
    const started = Date.now();
    const round = await analysisRound(metrics, canaryContext, [errorsCheck], 4_000, new Date(), 0);
    expect(round.results[0]).toMatchObject({ check: 'errors', verdict: 'fail' });
    expect(round.requests).toBe(40);
    expect(countQueries()).toBe(4); // two empty polls, the one with data, the round's own count
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('waits at most one interval, then reports the missing data', async () => {
    const { metrics } = lateMetrics(Number.POSITIVE_INFINITY);
    const started = Date.now();
    const round = await analysisRound(metrics, canaryContext, [errorsCheck], 1_000, new Date(), 0);
    expect(round.results[0]).toMatchObject({ verdict: 'fail' }); // the check's own query still answers
    expect(round.requests).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('is not held up on later rounds', async () => {
    const { metrics, countQueries } = lateMetrics(Number.POSITIVE_INFINITY);
    const started = Date.now();
    await analysisRound(metrics, canaryContext, [errorsCheck], 4_000, new Date(), 1);
    expect(countQueries()).toBe(1);
    expect(Date.now() - started).toBeLessThan(500);
  });
});
