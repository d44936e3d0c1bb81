import {
  orgPolicySchema,
  policyOverrideSchema,
  servicePolicySchema,
  type ServicePolicyInput,
} from '../../src/domain/policy';
import { PolicyError, resolvePolicy } from '../../src/domain/policy-resolution';
import { inRollbackWindow, type PromotedRelease } from '../../src/domain/rollback-window';
import { describeZodError } from '../../src/domain/zod-errors';

const sources = { org: 'org.yaml', service: 'checkout.yaml' };
const errors = { name: 'errors', template: 'error-ratio', max: 0.01 } as const;
const base = (production: Record<string, unknown> = {}): ServicePolicyInput => ({
  service: 'checkout',
  trafficCycle: { duration: '1h' },
  canary: { analysis: { checks: [errors] } },
  production: { waves: [{ percent: 100 }], ...production },
});
const refusal = (input: unknown) => {
  const parsed = servicePolicySchema.safeParse(input);
  expect(parsed.success).toBe(false);
  return parsed.success ? '' : describeZodError(parsed.error);
};

describe('production.watch in the service policy', () => {
  it('defaults: keep the previous version warm, the analysis defaults', () => {
    const p = servicePolicySchema.parse(base({ watch: { duration: '1h', analysis: { checks: [errors] } } }));
    expect(p.production.watch).toMatchObject({ duration: 3_600_000, keepPrevious: true });
    expect(p.production.watch?.analysis).toMatchObject({ interval: 60_000, failureLimit: 3 });
    expect(servicePolicySchema.parse(base()).production.watch).toBeUndefined();
  });

  it('refuses a zero watch, unknown fields and a rollback window without a bound, naming the field', () => {
    expect(refusal(base({ watch: { duration: '0s' } }))).toMatch(/production\.watch\.duration.*longer than 0s/);
    expect(refusal(base({ watch: { duration: '1h', keepWarm: true } }))).toMatch(/production\.watch.*keepWarm/);
    expect(refusal(base({ rollbackWindow: {} }))).toMatch(/production\.rollbackWindow.*"releases", "within"/);
    expect(refusal(base({ rollbackWindow: { releases: 0 } }))).toMatch(/production\.rollbackWindow\.releases/);
    expect(refusal(base({ rollbackWindow: { within: '400d' } }))).toMatch(/rollbackWindow\.within.*365d/);
  });

  it('the org can require a watch of at least a duration, with analysis as strict as any', () => {
    const org = orgPolicySchema.parse({ minimums: { productionWatch: '30m', maxFailureLimit: 5 } });
    const refused = (p: ServicePolicyInput) => {
      try {
        resolvePolicy(org, servicePolicySchema.parse(p), undefined, sources);
      } catch (err) {
        expect(err).toBeInstanceOf(PolicyError);
        return (err as PolicyError).issues.map((i) => i.path);
      }
      return [];
    };
    expect(refused(base())).toEqual(['production.watch.duration']);
    expect(refused(base({ watch: { duration: '10m', analysis: { checks: [errors] } } }))).toEqual([
      'production.watch.duration',
    ]);
    expect(refused(base({ watch: { duration: '1h', analysis: { checks: [errors], failureLimit: 9 } } }))).toEqual([
      'production.watch.analysis.failureLimit',
    ]);
    expect(refused(base({ watch: { duration: '1h', analysis: { checks: [errors] } } }))).toEqual([]);
  });

  it('a release request can neither drop nor change the watch or the rollback window', () => {
    const org = orgPolicySchema.parse({});
    const service = servicePolicySchema.parse(
      base({ watch: { duration: '1h', analysis: { checks: [errors] } }, rollbackWindow: { releases: 2 } }),
    );
    const resolved = resolvePolicy(
      org,
      service,
      policyOverrideSchema.parse({ production: { waves: [{ percent: 50, bake: '1h' }, { percent: 100 }] } }),
      sources,
    );
    expect(resolved.production.watch).toEqual(service.production.watch);
    expect(resolved.production.rollbackWindow).toEqual({ releases: 2 });
    expect(policyOverrideSchema.safeParse({ production: { watch: { duration: '1s' } } }).success).toBe(false);
    expect(policyOverrideSchema.safeParse({ production: { rollbackWindow: { releases: 50 } } }).success).toBe(false);
  });
});

describe('inRollbackWindow', () => {
  const day = 86_400_000;
  const now = Date.parse('2026-12-01T00:00:00Z');
  const at = (daysAgo: number) => new Date(now - daysAgo * day).toISOString();
  const promoted: PromotedRelease[] = [
    { version: '1.0.0', promotedAt: at(30), releaseId: 'r1' },
    { version: '1.2.0', promotedAt: at(2), releaseId: 'r3' },
    { version: '1.1.0', promotedAt: at(10), releaseId: 'r2' },
  ];

  it('counts promotions since the version, newest first whatever order visibility answers in', () => {
    expect(inRollbackWindow({ releases: 1 }, '1.1.0', promoted, now)).toEqual({
      releaseId: 'r2',
      promotedAt: at(10),
      stableUntil: at(2),
      releasesAgo: 1,
    });
    expect(inRollbackWindow({ releases: 1 }, '1.0.0', promoted, now)).toBeUndefined();
    expect(inRollbackWindow({ releases: 2 }, '1.0.0', promoted, now)?.releasesAgo).toBe(2);
  });

  it('measures "within" from when the version stopped being stable; the current stable version always counts', () => {
    expect(inRollbackWindow({ within: 3 * day }, '1.1.0', promoted, now)?.stableUntil).toBe(at(2));
    expect(inRollbackWindow({ within: 1 * day }, '1.1.0', promoted, now)).toBeUndefined();
    expect(inRollbackWindow({ within: 1 * day }, '1.2.0', promoted, now)?.releasesAgo).toBe(0);
  });

  it('both bounds must hold; a version never promoted is never in the window', () => {
    expect(inRollbackWindow({ releases: 5, within: day }, '1.0.0', promoted, now)).toBeUndefined();
    expect(inRollbackWindow({ releases: 1, within: 30 * day }, '1.0.0', promoted, now)).toBeUndefined();
    expect(inRollbackWindow({ releases: 50, within: 365 * day }, '9.9.9', promoted, now)).toBeUndefined();
    expect(inRollbackWindow({ releases: 50 }, '1.1.0', [], now)).toBeUndefined();
  });
});
