import { analysisRound } from '../../src/activities/analysis';
import { metricNamesSchema } from '../../src/domain/metric-names';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import { canaryContext } from '../helpers/analysis';
import { errorsCheck } from '../helpers/policies';

/** Answers every query with one sample and remembers what was asked. */
function recordingMetrics(): MetricsProvider & { asked: string[] } {
  const asked: string[] = [];
  return {
    kind: 'recording',
    asked,
    isOnline: () => Promise.resolve(true),
    query: () => Promise.resolve(0),
    queryRange: (query) => {
      asked.push(query);
      return Promise.resolve([0]);
    },
  };
}

describe('an analysis round and the org’s metric names', () => {
  it('queries the demo’s names when given none', async () => {
    const metrics = recordingMetrics();
    await analysisRound(metrics, canaryContext, [errorsCheck], 60_000, new Date(), 3);
    expect(metrics.asked).toHaveLength(2);
    for (const query of metrics.asked) expect(query).toContain('tollgate_demo_http_requests_total{service="checkout"');
  });

  it('queries the names it is given, the request count included', async () => {
    const metrics = recordingMetrics();
    const names = metricNamesSchema.parse({ requests: 'http_requests_total', labels: { service: 'app' } });
    await analysisRound(metrics, canaryContext, [errorsCheck], 60_000, new Date(), 3, names);
    expect(metrics.asked).toHaveLength(2);
    for (const query of metrics.asked) {
      expect(query).toContain('http_requests_total{app="checkout"');
      expect(query).not.toContain('tollgate_demo');
    }
  });
});
