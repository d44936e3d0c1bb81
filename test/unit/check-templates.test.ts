import { CheckQueryError, checkQueries, type CheckQueryContext } from '../../src/domain/check-templates';
import { metricNamesSchema } from '../../src/domain/metric-names';
import { checkSchema, type Check } from '../../src/domain/policy';

const check = (input: Record<string, unknown>): Check => checkSchema.parse({ name: 'c', max: 1, ...input });
const ctx: CheckQueryContext = { service: 'checkout', version: '1.4.2', track: 'canary', stepSeconds: 60 };

describe('checkQueries: templates', () => {
  it('builds the error ratio of the canary and of the stable track', () => {
    const q = checkQueries(check({ template: 'error-ratio', baseline: {} }), ctx);
    expect(q.canary).toBe(
      '(sum(rate(tollgate_demo_http_requests_total{service="checkout",track="canary",version="1.4.2",code=~"5.."}[60s]))' +
        ' or vector(0)) / sum(rate(tollgate_demo_http_requests_total{service="checkout",track="canary",version="1.4.2"}[60s]))',
    );
    expect(q.baseline).toBe(
      '(sum(rate(tollgate_demo_http_requests_total{service="checkout",track="stable",code=~"5.."}[60s]))' +
        ' or vector(0)) / sum(rate(tollgate_demo_http_requests_total{service="checkout",track="stable"}[60s]))',
    );
  });

  it('builds p99 latency from the histogram buckets, pinning the stable version when known', () => {
    const q = checkQueries(check({ template: 'latency-p99', baseline: {} }), {
      ...ctx,
      stableVersion: '1.4.1',
      stepSeconds: 30,
    });
    expect(q.canary).toBe(
      'histogram_quantile(0.99, sum by (le) (rate(tollgate_demo_http_request_duration_seconds_bucket' +
        '{service="checkout",track="canary",version="1.4.2"}[30s])))',
    );
    expect(q.baseline).toBe(
      'histogram_quantile(0.99, sum by (le) (rate(tollgate_demo_http_request_duration_seconds_bucket' +
        '{service="checkout",track="stable",version="1.4.1"}[30s])))',
    );
  });

  it('counts the canary requests, with no baseline unless the check compares', () => {
    const q = checkQueries(check({ template: 'request-count', min: 100 }), ctx);
    expect(q).toEqual({
      canary:
        'sum(increase(tollgate_demo_http_requests_total{service="checkout",track="canary",version="1.4.2"}[60s]))',
    });
  });

  it('uses the staging track label in staging', () => {
    const q = checkQueries(check({ template: 'request-count' }), { ...ctx, track: 'staging' });
    expect(q.canary).toContain('{service="checkout",track="staging",version="1.4.2"}');
  });

  it('tells the new version from the old on the stable fleet in production', () => {
    const withoutStable = checkQueries(check({ template: 'latency-p99', baseline: {} }), {
      ...ctx,
      track: 'production',
    });
    expect(withoutStable.canary).toContain('{service="checkout",track!="staging",version="1.4.2"}');
    expect(withoutStable.baseline).toContain('{service="checkout",track="stable",version!="1.4.2"}');
    const withStable = checkQueries(check({ template: 'latency-p99', baseline: {} }), {
      ...ctx,
      track: 'production',
      stableVersion: '1.4.1',
    });
    expect(withStable.baseline).toContain('{service="checkout",track="stable",version="1.4.1"}');
  });
});

describe('checkQueries: the org’s metric names', () => {
  const names = metricNamesSchema.parse({
    requests: 'http_server_requests_total',
    requestDuration: 'http_server_request_duration_seconds',
    labels: { service: 'app', version: 'app_version', track: 'deployment_track', statusCode: 'status' },
  });

  it('builds every template over them', () => {
    const errors = checkQueries(
      check({ template: 'error-ratio', baseline: {} }),
      { ...ctx, stableVersion: '1.4.1' },
      names,
    );
    expect(errors).toEqual({
      canary:
        '(sum(rate(http_server_requests_total{app="checkout",deployment_track="canary",app_version="1.4.2",status=~"5.."}[60s]))' +
        ' or vector(0)) / sum(rate(http_server_requests_total{app="checkout",deployment_track="canary",app_version="1.4.2"}[60s]))',
      baseline:
        '(sum(rate(http_server_requests_total{app="checkout",deployment_track="stable",app_version="1.4.1",status=~"5.."}[60s]))' +
        ' or vector(0)) / sum(rate(http_server_requests_total{app="checkout",deployment_track="stable",app_version="1.4.1"}[60s]))',
    });
    expect(checkQueries(check({ template: 'latency-p99' }), ctx, names).canary).toBe(
      'histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket' +
        '{app="checkout",deployment_track="canary",app_version="1.4.2"}[60s])))',
    );
    expect(checkQueries(check({ template: 'request-count' }), ctx, names).canary).toBe(
      'sum(increase(http_server_requests_total{app="checkout",deployment_track="canary",app_version="1.4.2"}[60s]))',
    );
  });

  it('tells the new version from the old in production in them too', () => {
    const q = checkQueries(check({ template: 'request-count', baseline: {} }), { ...ctx, track: 'production' }, names);
    expect(q.canary).toContain('{app="checkout",deployment_track!="staging",app_version="1.4.2"}');
    expect(q.baseline).toContain('{app="checkout",deployment_track="stable",app_version!="1.4.2"}');
  });

  it('leaves a custom query as written', () => {
    const q = checkQueries(check({ query: 'up{job="{{service}}"}' }), ctx, names);
    expect(q.canary).toBe('up{job="checkout"}');
  });
});

describe('checkQueries: custom queries', () => {
  const custom = 'sum(rate(app_errors_total{app="{{service}}",ver="{{version}}",track="{{track}}"}[{{window}}]))';

  it('fills the placeholders for the canary and the stable baseline', () => {
    const q = checkQueries(check({ query: custom, baseline: {} }), { ...ctx, stableVersion: '1.4.1' });
    expect(q.canary).toBe('sum(rate(app_errors_total{app="checkout",ver="1.4.2",track="canary"}[60s]))');
    expect(q.baseline).toBe('sum(rate(app_errors_total{app="checkout",ver="1.4.1",track="stable"}[60s]))');
  });

  it('replaces a template when both are given', () => {
    const q = checkQueries(check({ template: 'error-ratio', query: 'up{job="{{service}}"}' }), ctx);
    expect(q.canary).toBe('up{job="checkout"}');
  });

  it('has no baseline without a stable version, and refuses {{stableVersion}} then', () => {
    expect(checkQueries(check({ query: custom, baseline: {} }), ctx)).toEqual({
      canary: 'sum(rate(app_errors_total{app="checkout",ver="1.4.2",track="canary"}[60s]))',
    });
    expect(() => checkQueries(check({ query: 'x{v="{{stableVersion}}"}' }), ctx)).toThrow(/has no stable version/);
    expect(checkQueries(check({ query: 'x{v="{{ stableVersion }}"}' }), { ...ctx, stableVersion: '1.0' }).canary).toBe(
      'x{v="1.0"}',
    );
  });

  it('names an unknown placeholder', () => {
    expect(() => checkQueries(check({ query: 'x{a="{{instance}}"}' }), ctx)).toThrow(
      new CheckQueryError(
        'check "c": unknown placeholder {{instance}} (known: service, version, track, window, stableVersion)',
      ),
    );
  });
});

describe('checkQueries: label values', () => {
  it.each([
    ['service', { service: 'checkout"} or vector(1) #' }],
    ['service', { service: 'Checkout' }],
    ['version', { version: '1.0"}' }],
    ['version', { version: '1.0\\' }],
    ['version', { version: '' }],
    ['stableVersion', { stableVersion: 'a b' }],
  ])('refuses an unsafe %s: %j', (field, bad) => {
    expect(() => checkQueries(check({ template: 'error-ratio', baseline: {} }), { ...ctx, ...bad })).toThrow(
      new RegExp(`^${field} ".*" cannot be used in a metrics query$`),
    );
  });

  it('accepts every character a version may hold', () => {
    const q = checkQueries(check({ template: 'request-count' }), { ...ctx, version: '2026.11.27-abc_1+build' });
    expect(q.canary).toContain('version="2026.11.27-abc_1+build"');
  });

  it('refuses a step that is not a whole number of seconds', () => {
    expect(() => checkQueries(check({ template: 'request-count' }), { ...ctx, stepSeconds: 0.5 })).toThrow(
      CheckQueryError,
    );
    expect(() => checkQueries(check({ template: 'request-count' }), { ...ctx, stepSeconds: 0 })).toThrow(/stepSeconds/);
  });
});
