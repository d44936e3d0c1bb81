import {
  orgPolicySchema,
  policyOverrideSchema,
  servicePolicySchema,
  type OrgPolicy,
  type PolicyOverrideInput,
  type ServicePolicy,
  type ServicePolicyInput,
} from '../../src/domain/policy';
import { PolicyError, resolvePolicy } from '../../src/domain/policy-resolution';

const sources = { org: 'policies/org.yaml', service: 'policies/services/checkout.yaml' };
const errors = { name: 'errors', template: 'error-ratio', max: 0.01, critical: true } as const;
const latency = { name: 'latency', template: 'latency-p99', baseline: {} } as const;

const org = (input: Record<string, unknown> = {}): OrgPolicy => orgPolicySchema.parse(input);
const service = (over: Partial<ServicePolicyInput> = {}): ServicePolicy =>
  servicePolicySchema.parse({
    service: 'checkout',
    trafficCycle: { duration: '24h', minCanaryRequests: 100 },
    canary: { approval: true, analysis: { interval: '1m', checks: [errors], failureLimit: 3, inconclusiveLimit: 3 } },
    production: {
      approval: true,
      waves: [
        { percent: 25, bake: '1h' },
        { percent: 100, bake: '1h' },
      ],
    },
    approvals: { fourEyes: true },
    ...over,
  });
const override = (input: PolicyOverrideInput) => policyOverrideSchema.parse(input);

/** The PolicyError thrown by `fn`, failing the test when nothing or something else is thrown. */
function policyError(fn: () => unknown): PolicyError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected a PolicyError, nothing was thrown');
}

const resolve = (o: PolicyOverrideInput | undefined, s = service(), g = org()) =>
  resolvePolicy(g, s, o === undefined ? undefined : override(o), sources);

describe('resolvePolicy without an override', () => {
  it('answers the service policy, recording its sources and override: false', () => {
    const s = service();
    expect(resolvePolicy(org(), s, undefined, sources)).toEqual({
      ...s,
      metrics: org().metrics,
      sources: { ...sources, override: false },
    });
  });

  it('carries the org’s metric names, with or without an override', () => {
    const g = org({ metrics: { requests: 'http_requests_total', labels: { service: 'app' } } });
    for (const resolved of [resolve(undefined, service(), g), resolve({}, service(), g)]) {
      expect(resolved.metrics).toEqual({
        requests: 'http_requests_total',
        requestDuration: 'tollgate_demo_http_request_duration_seconds',
        labels: { service: 'app', version: 'version', track: 'track', statusCode: 'code' },
      });
    }
  });
});

describe('resolvePolicy: tighten-only overrides', () => {
  it('accepts a longer cycle, a lower failure limit, an added check and an added peak window', () => {
    const lunch = { name: 'lunch', start: '12:00', end: '14:00' };
    const resolved = resolve({
      trafficCycle: { duration: '48h', peakWindows: [lunch] },
      canary: { analysis: { failureLimit: 1, checks: [latency] } },
    });
    expect(resolved.trafficCycle.duration).toBe(48 * 3_600_000);
    expect(resolved.trafficCycle.minCanaryRequests).toBe(100);
    expect(resolved.trafficCycle.peakWindows).toEqual([lunch]);
    expect(resolved.canary.analysis.failureLimit).toBe(1);
    expect(resolved.canary.analysis.checks.map((c) => c.name)).toEqual(['errors', 'latency']);
    expect(resolved.sources).toEqual({ ...sources, override: true });
  });

  it('adds override peak windows to the service’s own', () => {
    const s = service({ trafficCycle: { duration: '24h', peakWindows: [{ start: '12:00', end: '14:00' }] } });
    const resolved = resolve({ trafficCycle: { peakWindows: [{ start: '18:00', end: '20:00' }] } }, s);
    expect(resolved.trafficCycle.peakWindows.map((w) => w.start)).toEqual(['12:00', '18:00']);
  });

  it('accepts more requests, a shorter interval, more waves and more bake', () => {
    const resolved = resolve({
      trafficCycle: { minCanaryRequests: 500 },
      staging: { bake: '10m' },
      canary: { analysis: { interval: '30s', inconclusiveLimit: 2 } },
      production: {
        waves: [
          { percent: 10, bake: '1h' },
          { percent: 50, bake: '1h' },
          { percent: 100, bake: '1h' },
        ],
      },
    });
    expect(resolved.trafficCycle.minCanaryRequests).toBe(500);
    expect(resolved.staging.bake).toBe(600_000);
    expect(resolved.canary.analysis.interval).toBe(30_000);
    expect(resolved.canary.analysis.inconclusiveLimit).toBe(2);
    expect(resolved.production.waves.map((w) => w.percent)).toEqual([10, 50, 100]);
  });

  it('keeps the service’s windows and approvers, which a request cannot carry', () => {
    const s = service({
      approvals: { fourEyes: true, approvers: ['bob'] },
      windows: { allowed: [{ start: '09:00', end: '17:00' }] },
    });
    const resolved = resolve({ approvals: { fourEyes: true } }, s);
    expect(resolved.approvals).toMatchObject({ fourEyes: true, approvers: ['bob'], signers: [], machines: [] });
    expect(resolved.windows.allowed).toHaveLength(1);
  });

  it('records override: true for an empty override', () => {
    expect(resolve({}).sources.override).toBe(true);
  });

  it('rejects replacing a service check by name with a looser one', () => {
    const looser = { name: 'errors', template: 'error-ratio', max: 1, critical: false } as const;
    const err = policyError(() => resolve({ canary: { analysis: { checks: [looser] } } }));
    expect(err.message).toContain('policy.canary.analysis.checks');
  });
});

describe('resolvePolicy: loosening overrides are rejected, naming the field', () => {
  it.each<[string, PolicyOverrideInput, string, RegExp]>([
    ['a shorter cycle', { trafficCycle: { duration: '12h' } }, 'policy.trafficCycle.duration', /may only be raised/],
    ['fewer requests', { trafficCycle: { minCanaryRequests: 10 } }, 'policy.trafficCycle.minCanaryRequests', /raised/],
    [
      'a higher failure limit',
      { canary: { analysis: { failureLimit: 5 } } },
      'policy.canary.analysis.failureLimit',
      /may only be lowered by a request \(service policy: 3, requested: 5\)/,
    ],
    [
      'a higher inconclusive limit',
      { canary: { analysis: { inconclusiveLimit: 4 } } },
      'policy.canary.analysis.inconclusiveLimit',
      /may only be lowered/,
    ],
    [
      'a longer interval',
      { canary: { analysis: { interval: '2m' } } },
      'policy.canary.analysis.interval',
      /may only be lowered by a request \(service policy: 1m, requested: 2m\)/,
    ],
    [
      'production approval off',
      { production: { approval: false } },
      'policy.production.approval',
      /cannot be turned off by a request/,
    ],
    ['four-eyes off', { approvals: { fourEyes: false } }, 'policy.approvals.fourEyes', /cannot be turned off/],
    ['canary approval off', { canary: { approval: false } }, 'policy.canary.approval', /cannot be turned off/],
    [
      'fewer waves',
      { production: { waves: [{ percent: 100, bake: '5h' }] } },
      'policy.production.waves',
      /may not have fewer waves than the service policy \(2\)/,
    ],
    [
      'a shorter first-wave bake',
      {
        production: {
          waves: [
            { percent: 25, bake: '30m' },
            { percent: 100, bake: '1h' },
          ],
        },
      },
      'policy.production.waves[0].bake',
      /may only be raised by a request \(service policy: 1h, requested: 30m\)/,
    ],
  ])('rejects %s', (_, input, path, message) => {
    const err = policyError(() => resolve(input));
    expect(err.message).toMatch(/^release policy rejected: /);
    const issue = err.issues.find((i) => i.path === path);
    expect(issue?.message).toMatch(message);
    expect(err.message).toContain(`${path}: ${issue?.message}`);
  });

  it('rejects a shorter staging bake', () => {
    const s = service({ staging: { bake: '10m' } });
    const err = policyError(() => resolve({ staging: { bake: '5m' } }, s));
    expect(err.issues.map((i) => i.path)).toEqual(['policy.staging.bake']);
  });

  it('lists every loosening at once', () => {
    const err = policyError(() =>
      resolve({ trafficCycle: { duration: '1h' }, production: { approval: false }, approvals: { fourEyes: false } }),
    );
    expect(err.issues.map((i) => i.path)).toEqual([
      'policy.trafficCycle.duration',
      'policy.production.approval',
      'policy.approvals.fourEyes',
      'policy.production.approval',
    ]);
  });
});

describe('resolvePolicy: org minimums on the service file', () => {
  it.each<[string, Record<string, unknown>, Partial<ServicePolicyInput>, string, RegExp]>([
    [
      'minDuration',
      { trafficCycle: { minDuration: '7d' } },
      {},
      'trafficCycle.duration',
      /below the org minimum traffic cycle \(7d\)/,
    ],
    [
      'minCanaryRequests',
      { trafficCycle: { minCanaryRequests: 1000 } },
      {},
      'trafficCycle.minCanaryRequests',
      /below the org minimum \(1000\)/,
    ],
    [
      'requirePeakWindow',
      { trafficCycle: { requirePeakWindow: true } },
      {},
      'trafficCycle.peakWindows',
      /at least one peak window/,
    ],
    [
      'analysisChecks',
      { minimums: { analysisChecks: 2 } },
      {},
      'canary.analysis.checks',
      /has 1 checks; the org requires at least 2/,
    ],
    [
      'maxAnalysisInterval',
      { minimums: { maxAnalysisInterval: '30s' } },
      {},
      'canary.analysis.interval',
      /longer than the org maximum \(30s\)/,
    ],
    ['maxFailureLimit', { minimums: { maxFailureLimit: 2 } }, {}, 'canary.analysis.failureLimit', /org maximum \(2\)/],
    [
      'maxInconclusiveLimit',
      { minimums: { maxInconclusiveLimit: 2 } },
      {},
      'canary.analysis.inconclusiveLimit',
      /org maximum \(2\)/,
    ],
    [
      'productionApproval',
      { minimums: { productionApproval: true } },
      { production: { approval: false } },
      'production.approval',
      /requires approval before production/,
    ],
    [
      'fourEyes',
      { minimums: { fourEyes: true } },
      { approvals: { fourEyes: false } },
      'approvals.fourEyes',
      /requires four-eyes approval/,
    ],
  ])('enforces %s', (_, orgInput, serviceOver, path, message) => {
    const err = policyError(() => resolve(undefined, service(serviceOver), org(orgInput)));
    expect(err.message).toMatch(/^service policy policies\/services\/checkout\.yaml breaks the org policy: /);
    expect(err.issues.map((i) => i.path)).toEqual([path]);
    expect(err.issues[0]?.message).toMatch(message);
  });

  it('rejects a service analysis interval under one second', () => {
    const s = service({ canary: { analysis: { interval: 500, checks: [errors] } } });
    expect(policyError(() => resolve(undefined, s)).issues).toEqual([
      { path: 'canary.analysis.interval', message: 'must be at least 1s' },
    ]);
  });

  it('counts the org defaults: one check required, approval before production', () => {
    const s = service({ canary: { analysis: { checks: [] } }, production: { approval: false } });
    expect(
      policyError(() => resolve(undefined, s))
        .issues.map((i) => i.path)
        .sort(),
    ).toEqual(['canary.analysis.checks', 'production.approval']);
  });

  it('checks the service file even when an override would satisfy the org', () => {
    const s = service({ trafficCycle: { duration: '1h' } });
    const err = policyError(() =>
      resolve({ trafficCycle: { duration: '7d' } }, s, org({ trafficCycle: { minDuration: '1d' } })),
    );
    expect(err.issues.map((i) => i.path)).toEqual(['trafficCycle.duration']);
  });
});

describe('resolvePolicy: org minimums on the merged policy', () => {
  it.each<[string, Record<string, unknown>, PolicyOverrideInput, string, RegExp]>([
    [
      'minDuration',
      { trafficCycle: { minDuration: '20h' } },
      { trafficCycle: { duration: '12h' } },
      'policy.trafficCycle.duration',
      /below the org minimum traffic cycle \(20h\)/,
    ],
    [
      'minCanaryRequests',
      { trafficCycle: { minCanaryRequests: 50 } },
      { trafficCycle: { minCanaryRequests: 10 } },
      'policy.trafficCycle.minCanaryRequests',
      /below the org minimum \(50\)/,
    ],
    [
      'maxAnalysisInterval',
      {},
      { canary: { analysis: { interval: '20m' } } },
      'policy.canary.analysis.interval',
      /longer than the org maximum \(15m\)/,
    ],
    [
      'maxFailureLimit',
      { minimums: { maxFailureLimit: 4 } },
      { canary: { analysis: { failureLimit: 5 } } },
      'policy.canary.analysis.failureLimit',
      /above the org maximum \(4\)/,
    ],
    [
      'productionApproval',
      {},
      { production: { approval: false } },
      'policy.production.approval',
      /the org requires approval before production/,
    ],
    [
      'fourEyes',
      { minimums: { fourEyes: true } },
      { approvals: { fourEyes: false } },
      'policy.approvals.fourEyes',
      /the org requires four-eyes approval/,
    ],
  ])('enforces %s on the merged result, beside the loosening', (_, orgInput, input, path, message) => {
    const err = policyError(() => resolve(input, service(), org(orgInput)));
    expect(err.message).toMatch(/^release policy rejected: /);
    const onPath = err.issues.filter((i) => i.path === path).map((i) => i.message);
    expect(onPath).toHaveLength(2);
    expect(onPath[0]).toMatch(/by a request/);
    expect(onPath[1]).toMatch(message);
  });

  it('rejects an analysis interval tightened below one second, which only the org rule catches', () => {
    const err = policyError(() => resolve({ canary: { analysis: { interval: 500 } } }));
    expect(err.issues).toEqual([{ path: 'policy.canary.analysis.interval', message: 'must be at least 1s' }]);
  });

  it('keeps the service’s checks and peak windows, so an override cannot drop below the org count', () => {
    const g = org({ trafficCycle: { requirePeakWindow: true }, minimums: { analysisChecks: 1 } });
    const s = service({ trafficCycle: { duration: '24h', peakWindows: [{ start: '12:00', end: '13:00' }] } });
    const resolved = resolve({ trafficCycle: { peakWindows: [] }, canary: { analysis: { checks: [] } } }, s, g);
    expect(resolved.trafficCycle.peakWindows).toHaveLength(1);
    expect(resolved.canary.analysis.checks.map((c) => c.name)).toEqual(['errors']);
  });

  it('accepts an override that tightens a lax service, recording override: true', () => {
    const lax = service({
      canary: { approval: false, analysis: { interval: '1m', checks: [errors] } },
      production: { approval: false },
      approvals: { fourEyes: false },
    });
    const g = org({ minimums: { productionApproval: false } });
    expect(resolve(undefined, lax, g).sources.override).toBe(false);
    const resolved = resolve(
      { production: { approval: true }, approvals: { fourEyes: true }, canary: { approval: true } },
      lax,
      g,
    );
    expect(resolved.production.approval).toBe(true);
    expect(resolved.approvals.fourEyes).toBe(true);
    expect(resolved.canary.approval).toBe(true);
    expect(resolved.sources).toEqual({ ...sources, override: true });
  });
});

describe('resolvePolicy: production waves may only become more gradual and more strictly analysed', () => {
  const own = { interval: '30s', checks: [errors, latency], failureLimit: 2, inconclusiveLimit: 2 };
  /** The default test service, but its first wave bakes with an analysis of its own, stricter than the canary's. */
  const strictWaves = () =>
    service({
      production: {
        approval: true,
        waves: [
          { percent: 25, bake: '1h', analysis: own },
          { percent: 100, bake: '1h' },
        ],
      },
    });
  const waves = (...w: NonNullable<NonNullable<PolicyOverrideInput['production']>['waves']>) => ({
    production: { waves: w },
  });

  it('refuses the audit’s override: waves 98/99/100 with no checks, a failure limit of 100 and a 1h interval', () => {
    const lax = { checks: [], failureLimit: 100, interval: '1h' };
    const err = policyError(() =>
      resolve(
        waves(
          { percent: 98, bake: '1h', analysis: lax },
          { percent: 99, bake: '1h', analysis: lax },
          { percent: 100, bake: '1h', analysis: lax },
        ),
      ),
    );
    const messages = err.issues.map((i) => `${i.path}: ${i.message}`);
    expect(messages).toEqual(
      expect.arrayContaining([
        'policy.production.waves[0].percent: may only be lowered by a request (service policy: 25, requested: 98)',
        'policy.production.waves[0].analysis.interval: may only be lowered by a request (service policy: 1m, requested: 1h)',
        'policy.production.waves[0].analysis.checks: may not drop the service\'s check "errors"',
        'policy.production.waves[0].analysis.failureLimit: may only be lowered by a request (service policy: 3, requested: 100)',
        'policy.production.waves[2].analysis.failureLimit: may only be lowered by a request (service policy: 3, requested: 100)',
        'policy.production.waves[0].analysis.checks: has 0 checks; the org requires at least 1',
        'policy.production.waves[0].analysis.interval: is longer than the org maximum (15m)',
        'policy.production.waves[1].analysis.failureLimit: is above the org maximum (10)',
      ]),
    );
  });

  it.each<[string, ServicePolicy, PolicyOverrideInput, string, RegExp]>([
    [
      'a larger first wave',
      service(),
      waves({ percent: 50, bake: '1h' }, { percent: 100, bake: '1h' }),
      'policy.production.waves[0].percent',
      /^may only be lowered by a request \(service policy: 25, requested: 50\)$/,
    ],
    [
      'a shorter final-wave bake',
      service(),
      waves({ percent: 25, bake: '1h' }, { percent: 100, bake: '10m' }),
      'policy.production.waves[1].bake',
      /^may only be raised by a request \(service policy: 1h, requested: 10m\)$/,
    ],
    [
      'added waves that shorten the full-fleet bake',
      service(),
      waves({ percent: 10, bake: '1h' }, { percent: 25, bake: '1h' }, { percent: 100, bake: '30m' }),
      'policy.production.waves[2].bake',
      /^may only be raised by a request \(service policy: 1h, requested: 30m\)$/,
    ],
    [
      'a wave’s failure limit above the service wave’s',
      strictWaves(),
      waves({ percent: 25, bake: '1h', analysis: { ...own, failureLimit: 3 } }, { percent: 100, bake: '1h' }),
      'policy.production.waves[0].analysis.failureLimit',
      /^may only be lowered by a request \(service policy: 2, requested: 3\)$/,
    ],
    [
      'a wave’s inconclusive limit above the service wave’s',
      strictWaves(),
      waves({ percent: 25, bake: '1h', analysis: { ...own, inconclusiveLimit: 3 } }, { percent: 100, bake: '1h' }),
      'policy.production.waves[0].analysis.inconclusiveLimit',
      /^may only be lowered by a request \(service policy: 2, requested: 3\)$/,
    ],
    [
      'a wave’s interval longer than the service wave’s',
      strictWaves(),
      waves({ percent: 25, bake: '1h', analysis: { ...own, interval: '1m' } }, { percent: 100, bake: '1h' }),
      'policy.production.waves[0].analysis.interval',
      /^may only be lowered by a request \(service policy: 30s, requested: 1m\)$/,
    ],
    [
      'a wave dropping one of the service wave’s checks',
      strictWaves(),
      waves({ percent: 25, bake: '1h', analysis: { ...own, checks: [errors] } }, { percent: 100, bake: '1h' }),
      'policy.production.waves[0].analysis.checks',
      /^may not drop the service's check "latency"$/,
    ],
    [
      'a wave replacing one of the service wave’s checks with a looser one',
      strictWaves(),
      waves(
        { percent: 25, bake: '1h', analysis: { ...own, checks: [{ ...errors, max: 0.5 }, latency] } },
        { percent: 100, bake: '1h' },
      ),
      'policy.production.waves[0].analysis.checks',
      /^may not replace the service's check "errors"; add a check with a new name$/,
    ],
    [
      'a wave raising the limit of the canary analysis it inherits in the service file',
      service(),
      waves({ percent: 25, bake: '1h', analysis: { checks: [errors], failureLimit: 4 } }, { percent: 100, bake: '1h' }),
      'policy.production.waves[0].analysis.failureLimit',
      /^may only be lowered by a request \(service policy: 3, requested: 4\)$/,
    ],
    [
      'a wave without analysis where the service wave has a stricter one',
      strictWaves(),
      waves({ percent: 25, bake: '1h' }, { percent: 100, bake: '1h' }),
      'policy.production.waves[0].analysis.failureLimit',
      /^may only be lowered by a request \(service policy: 2, requested: 3\) \(this wave has no analysis of its own, so it bakes with the canary's\)$/,
    ],
    [
      'an added wave analysed more loosely than the service’s final wave',
      service({
        production: {
          approval: true,
          waves: [
            { percent: 25, bake: '1h' },
            { percent: 100, bake: '1h', analysis: own },
          ],
        },
      }),
      waves(
        { percent: 10, bake: '1h' },
        { percent: 25, bake: '1h', analysis: own },
        { percent: 100, bake: '1h', analysis: { ...own, failureLimit: 5 } },
      ),
      'policy.production.waves[2].analysis.failureLimit',
      /^may only be lowered by a request \(service policy: 2, requested: 5\)$/,
    ],
  ])('rejects %s', (_, s, input, path, message) => {
    const err = policyError(() => resolve(input, s));
    expect(err.message).toMatch(/^release policy rejected: /);
    const onPath = err.issues.filter((i) => i.path === path);
    expect(onPath).toHaveLength(1);
    expect(onPath[0]?.message).toMatch(message);
    expect(err.message).toContain(`${path}: ${onPath[0]?.message}`);
  });

  it('accepts a stricter wave analysis and a smaller wave added in front, and resolves to them', () => {
    const stricter = { interval: '10s', checks: [latency, errors, { ...errors, name: 'errors-2' }], failureLimit: 1 };
    const resolved = resolve(
      waves(
        { percent: 5, bake: '2h', analysis: { ...stricter, inconclusiveLimit: 1 } },
        { percent: 25, bake: '1h' },
        { percent: 100, bake: '1h' },
      ),
      strictWaves(),
    );
    expect(resolved.production.waves.map((w) => [w.percent, w.bake])).toEqual([
      [5, 7_200_000],
      [25, 3_600_000],
      [100, 3_600_000],
    ]);
    expect(resolved.production.waves[0]?.analysis?.failureLimit).toBe(1);
    expect(resolved.production.waves[0]?.analysis?.checks.map((c) => c.name)).toEqual([
      'latency',
      'errors',
      'errors-2',
    ]);
  });

  it('accepts a baking wave with its own analysis where the service’s wave ran none (it did not bake)', () => {
    const noBake = service({ production: { approval: true, waves: [{ percent: 100, bake: 0 }] } });
    const resolved = resolve(
      waves({ percent: 10, bake: '1h', analysis: { checks: [latency], failureLimit: 5 } }, { percent: 100 }),
      noBake,
    );
    expect(resolved.production.waves[0]?.analysis?.failureLimit).toBe(5);
  });

  it('does not hold a wave that does not bake (and so runs no analysis) to the service’s analysis', () => {
    const resolved = resolve(
      waves(
        { percent: 10, bake: '1h', analysis: own },
        { percent: 25, bake: '1h', analysis: own },
        { percent: 60, bake: 0, analysis: { checks: [errors], failureLimit: 9 } },
        { percent: 100, bake: '1h' },
      ),
      strictWaves(),
    );
    expect(resolved.production.waves.map((w) => w.percent)).toEqual([10, 25, 60, 100]);
  });

  it('reports a loosened canary analysis once, not again on every wave that inherits it', () => {
    const err = policyError(() => resolve({ canary: { analysis: { failureLimit: 5 } } }));
    expect(err.issues.map((i) => i.path)).toEqual(['policy.canary.analysis.failureLimit']);
  });

  it('enforces the org maximum on a wave’s own analysis beside the loosening', () => {
    const err = policyError(() =>
      resolve(
        waves(
          { percent: 25, bake: '1h', analysis: { checks: [errors], interval: '20m' } },
          { percent: 100, bake: '1h' },
        ),
      ),
    );
    expect(err.issues.filter((i) => i.path === 'policy.production.waves[0].analysis.interval')).toEqual([
      {
        path: 'policy.production.waves[0].analysis.interval',
        message: 'may only be lowered by a request (service policy: 1m, requested: 20m)',
      },
      { path: 'policy.production.waves[0].analysis.interval', message: 'is longer than the org maximum (15m)' },
    ]);
  });
});

describe('resolvePolicy: org minimums on the service file’s wave analyses', () => {
  const withWaveAnalysis = (analysis: Record<string, unknown>) =>
    service({
      production: {
        approval: true,
        waves: [
          { percent: 25, bake: '1h' },
          { percent: 100, bake: '1h', analysis: { checks: [errors], ...analysis } },
        ],
      },
    });

  it.each<[string, Record<string, unknown>, Record<string, unknown>, RegExp]>([
    [
      'analysisChecks',
      { minimums: { analysisChecks: 1 } },
      { checks: [] },
      /^has 0 checks; the org requires at least 1$/,
    ],
    [
      'maxAnalysisInterval',
      { minimums: { maxAnalysisInterval: '5m' } },
      { interval: '10m' },
      /^is longer than the org maximum \(5m\)$/,
    ],
    ['a 1s interval floor', {}, { interval: 500 }, /^must be at least 1s$/],
    ['maxFailureLimit', { minimums: { maxFailureLimit: 4 } }, { failureLimit: 5 }, /^is above the org maximum \(4\)$/],
    [
      'maxInconclusiveLimit',
      { minimums: { maxInconclusiveLimit: 4 } },
      { inconclusiveLimit: 5 },
      /^is above the org maximum \(4\)$/,
    ],
  ])('enforces %s on production.waves[1].analysis', (_, orgInput, analysis, message) => {
    const err = policyError(() => resolve(undefined, withWaveAnalysis(analysis), org(orgInput)));
    expect(err.message).toMatch(/^service policy policies\/services\/checkout\.yaml breaks the org policy: /);
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]?.path).toMatch(
      /^production\.waves\[1\]\.analysis\.(checks|interval|failureLimit|inconclusiveLimit)$/,
    );
    expect(err.issues[0]?.path.split('.').at(-1)).toBe(Object.keys(analysis)[0]);
    expect(err.issues[0]?.message).toMatch(message);
  });

  it('accepts a service file whose wave analyses all meet the org floor', () => {
    const s = withWaveAnalysis({ interval: '30s', failureLimit: 2 });
    expect(resolve(undefined, s).production.waves[1]?.analysis?.failureLimit).toBe(2);
  });
});
