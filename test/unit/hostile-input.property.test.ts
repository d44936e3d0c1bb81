import type { Client } from '@temporalio/client';
import fc from 'fast-check';
import type { z } from 'zod';
import { TollgateClient } from '../../src/client/tollgate-client';
import { rejectionFor, type ControlView } from '../../src/domain/controls';
import { CONTROL_SCHEMAS, type ControlName } from '../../src/domain/messages';
import {
  orgPolicySchema,
  policyOverrideSchema,
  servicePolicySchema,
  type OrgPolicy,
  type PolicyOverride,
  type ServicePolicy,
} from '../../src/domain/policy';
import { PolicyError, resolvePolicy } from '../../src/domain/policy-resolution';
import { MAX_REQUEST_CHARS, releaseRequestSchema } from '../../src/domain/release';
import { describeZodError } from '../../src/domain/zod-errors';
import { RELEASE_STATES, type ReleaseStatus } from '../../src/domain/status';
import { markdownText, printableJson } from '../../src/domain/text';
import { renderList, renderStatus } from '../../src/client/render';
import { recordHostileRows, type HostileRow } from '../helpers/reliability-report';

const RUNS = { numRuns: 300, seed: 20261127 };
const CONTROLS = Object.keys(CONTROL_SCHEMAS) as ControlName[];
/** What each class of hostile input came to, for RELIABILITY.md. */
const hostileCounts: HostileRow[] = [];
const FILE = 'test/unit/hostile-input.property.test.ts';
afterAll(() => recordHostileRows('unit', hostileCounts));
const tally = (
  label: string,
  cases: number,
  found: Partial<Pick<HostileRow, 'jams' | 'bypasses' | 'loosenings'>> = {},
) =>
  hostileCounts.push({
    class: label,
    cases,
    jams: 0,
    bypasses: 0,
    loosenings: 0,
    ...found,
    seed: RUNS.seed,
    file: FILE,
  });

// ---- arbitraries -------------------------------------------------------------------------------------------

/** Mostly the right shape, sometimes anything at all in its place. */
const or = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 5, arbitrary: arb }, { weight: 1, arbitrary: fc.anything({ maxDepth: 1 }) });

const hugeString = fc
  .tuple(fc.constantFrom('x', 'é', '💥', '\n', '\u202e', '\u0000'), fc.integer({ min: 2001, max: 200_000 }))
  .map(([c, n]) => c.repeat(n));

const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.constantFrom(
    '',
    ' ',
    '\t\n',
    'checkout',
    '1.4.2',
    'alice',
    'bob',
    '../../etc/passwd',
    'a'.repeat(64),
    '__proto__',
  ),
  hugeString,
);

const durationArb = or(
  fc.oneof(fc.constantFrom('1m', '90s', '1h', '24h', '7d', '1h30m', '0s'), fc.nat(), hostileString),
);
const nameArb = fc.oneof(fc.constantFrom('errors', 'latency', 'requests', 'new-check'), hostileString);
const timeArb = fc.oneof(fc.constantFrom('09:00', '12:00', '14:00', '23:59'), hostileString);

const checkArb = fc.record(
  {
    name: or(nameArb),
    template: or(fc.constantFrom('error-ratio', 'latency-p99', 'request-count')),
    query: or(fc.string()),
    max: or(fc.double()),
    min: or(fc.double()),
    baseline: or(
      fc.record(
        {
          direction: or(fc.constantFrom('increase', 'decrease', 'either')),
          tolerance: or(fc.double({ min: -1, max: 20 })),
          minSamples: or(fc.integer({ min: -5, max: 20_000 })),
        },
        { requiredKeys: [] },
      ),
    ),
    critical: or(fc.boolean()),
  },
  { requiredKeys: [] },
);
const checksArb = or(fc.array(checkArb, { maxLength: 4 }));
const windowArb = fc.record(
  {
    name: or(nameArb),
    days: or(fc.array(fc.constantFrom('mon', 'tue', 'sun', 'funday'), { maxLength: 8 })),
    start: timeArb,
    end: timeArb,
  },
  { requiredKeys: [] },
);
const wavesArb = or(
  fc.array(fc.record({ percent: or(fc.integer({ min: -10, max: 120 })), bake: durationArb }, { requiredKeys: [] }), {
    maxLength: 4,
  }),
);
const analysisArb = fc.record(
  {
    interval: durationArb,
    checks: checksArb,
    failureLimit: or(fc.integer({ min: -2, max: 120 })),
    inconclusiveLimit: or(fc.integer({ min: -2, max: 120 })),
  },
  { requiredKeys: [] },
);

/** The override shape of a release request, with wrong types and unknown keys mixed in. */
const overrideArb = fc.record(
  {
    trafficCycle: or(
      fc.record(
        {
          duration: durationArb,
          minCanaryRequests: or(fc.integer({ min: -10, max: 10_000 })),
          peakWindows: or(fc.array(windowArb, { maxLength: 3 })),
        },
        { requiredKeys: [] },
      ),
    ),
    staging: or(fc.record({ smokeChecks: checksArb, bake: durationArb }, { requiredKeys: [] })),
    canary: or(
      fc.record(
        { poolSize: or(fc.integer({ min: -1, max: 2000 })), approval: or(fc.boolean()), analysis: or(analysisArb) },
        { requiredKeys: [] },
      ),
    ),
    production: or(fc.record({ approval: or(fc.boolean()), waves: wavesArb }, { requiredKeys: [] })),
    approvals: or(fc.record({ fourEyes: or(fc.boolean()) }, { requiredKeys: [] })),
  },
  { requiredKeys: [] },
);
/** Keys nobody asked for, named with anything (newlines, `__proto__`), next to the real ones. */
const withStrayKeys = <T extends object>(arb: fc.Arbitrary<T>) =>
  fc
    .tuple(
      arb,
      fc.dictionary(fc.oneof(hostileString, fc.constant('force')), fc.anything({ maxDepth: 0 }), { maxKeys: 2 }),
    )
    .map(([known, stray]) => ({ ...stray, ...known }));

const requestArb = fc.oneof(
  fc.anything(),
  fc.object({ maxDepth: 3, withBigInt: true, withDate: true, withMap: true, withNullPrototype: true }),
  withStrayKeys(
    fc.record(
      {
        service: or(hostileString),
        version: or(hostileString),
        initiator: or(hostileString),
        reason: or(hostileString),
        policy: or(withStrayKeys(overrideArb)),
      },
      { requiredKeys: [] },
    ),
  ),
  fc.constantFrom(
    JSON.parse('{"__proto__": {"service": "checkout"}, "version": "1", "initiator": "a"}') as unknown,
    JSON.parse(
      '{"service": "checkout", "version": "1", "initiator": "a", "constructor": {"prototype": {}}}',
    ) as unknown,
  ),
);

const servicePolicyArb = fc.oneof(
  fc.anything(),
  fc.record(
    {
      service: or(nameArb),
      trafficCycle: or(
        fc.record({ duration: durationArb, peakWindows: or(fc.array(windowArb)) }, { requiredKeys: [] }),
      ),
      canary: or(fc.record({ analysis: or(analysisArb), approval: or(fc.boolean()) }, { requiredKeys: [] })),
      production: or(
        fc.record(
          {
            approval: or(fc.boolean()),
            waves: wavesArb,
            watch: or(
              fc.record(
                { duration: durationArb, analysis: or(analysisArb), keepPrevious: or(fc.boolean()) },
                { requiredKeys: [] },
              ),
            ),
            rollbackWindow: or(
              fc.record({ releases: or(fc.integer({ min: -1, max: 60 })), within: durationArb }, { requiredKeys: [] }),
            ),
          },
          { requiredKeys: [] },
        ),
      ),
      windows: or(fc.record({ allowed: or(fc.array(windowArb, { maxLength: 3 })) }, { requiredKeys: [] })),
    },
    { requiredKeys: [] },
  ),
);

const orgPolicyArb = fc.oneof(
  fc.anything(),
  fc.record(
    {
      trafficCycle: or(
        fc.record(
          { minDuration: durationArb, requirePeakWindow: or(fc.boolean()), minCanaryRequests: or(fc.integer()) },
          { requiredKeys: [] },
        ),
      ),
      minimums: or(
        fc.record(
          {
            analysisChecks: or(fc.integer({ min: -1, max: 5 })),
            maxAnalysisInterval: durationArb,
            productionApproval: or(fc.boolean()),
            fourEyes: or(fc.boolean()),
            productionWatch: durationArb,
          },
          { requiredKeys: [] },
        ),
      ),
    },
    { requiredKeys: [] },
  ),
);

const controlPayloadArb = fc.oneof(
  fc.anything(),
  withStrayKeys(
    fc.record({ by: or(hostileString), reason: or(hostileString), comment: or(hostileString) }, { requiredKeys: [] }),
  ),
);

const viewArb: fc.Arbitrary<ControlView> = fc.record({
  state: fc.constantFrom(...RELEASE_STATES),
  stage: fc.constantFrom('staging', 'canary', 'production', 'done' as const),
  gate: fc.constantFrom(undefined, 'canary', 'production', 'inconclusive' as const),
  paused: fc.boolean(),
  baking: fc.boolean(),
  watching: fc.boolean(),
  initiator: fc.oneof(fc.constantFrom('alice', 'bob'), fc.string()),
  fourEyes: fc.boolean(),
  approvers: fc.option(fc.array(fc.oneof(fc.constantFrom('alice', 'bob'), fc.string()), { maxLength: 4 }), {
    nil: undefined,
  }),
});

// ---- properties --------------------------------------------------------------------------------------------

/** Every issue is named by its field (or `(input)` when the input as a whole is wrong) on one bounded line. */
function expectFieldLevel(error: z.ZodError, input: unknown): void {
  const text = describeZodError(error);
  expect(text).not.toMatch(/[\r\n\u2028\u2029]/);
  expect(text.length).toBeLessThan(10 * 520);
  for (const issue of error.issues.slice(0, 10)) {
    if (issue.path.length > 0) {
      expect(text).toContain(`${issue.path.map(String).join('.')}: `);
    } else {
      // Only a wrong type for the whole input, or keys nobody asked for (the message names them), have no field.
      const topLevel = typeof input !== 'object' || input === null || Array.isArray(input);
      expect(topLevel || issue.code === 'unrecognized_keys' || issue.code === 'invalid_type').toBe(true);
      expect(text).toContain('(input): ');
    }
  }
}

/** Any throw fails the property: a parse that throws is what jams a workflow task. */
function propertySafeParse(schema: z.ZodType, arb: fc.Arbitrary<unknown>, label: string): void {
  fc.assert(
    fc.property(arb, (input) => {
      const parsed = schema.safeParse(input);
      if (!parsed.success) expectFieldLevel(parsed.error, input);
    }),
    RUNS,
  );
  tally(label, RUNS.numRuns);
}

describe('hostile input: every input is accepted or refused field by field, nothing throws', () => {
  it('release requests', () =>
    propertySafeParse(releaseRequestSchema, requestArb, 'release requests (workflow input)'));
  it('policy overrides on their own', () =>
    propertySafeParse(policyOverrideSchema, or(withStrayKeys(overrideArb)), 'policy overrides'));
  it('service policies', () => propertySafeParse(servicePolicySchema, servicePolicyArb, 'service policy files'));
  it('org policies', () => propertySafeParse(orgPolicySchema, orgPolicyArb, 'org policy files'));
  it.each(CONTROLS)('%s payloads', (name) =>
    propertySafeParse(CONTROL_SCHEMAS[name], controlPayloadArb, `${name} payloads (schema)`),
  );

  it('rejectionFor never throws, and accepts only payloads its schema accepts', () => {
    fc.assert(
      fc.property(fc.constantFrom(...CONTROLS), controlPayloadArb, viewArb, (name, payload, view) => {
        const answer = rejectionFor(name, payload, view);
        expect(answer === undefined || typeof answer === 'string').toBe(true);
        const valid = CONTROL_SCHEMAS[name].safeParse(payload).success;
        if (!valid) expect(answer).toMatch(new RegExp(`^invalid ${name}: `));
        if (answer === undefined) expect(valid).toBe(true);
        // Going back after the last wave is only ever a decision about a watched production.
        if (name === 'rollback' && answer === undefined)
          expect(view.watching && view.state !== 'done' && view.state !== 'rolling-back').toBe(true);
      }),
      RUNS,
    );
    tally('control decisions on any payload in any release state', RUNS.numRuns);
  });
});

describe('resolvePolicy on random valid policies and overrides', () => {
  const bool = fc.boolean();
  const checkArb = fc.record({
    name: fc.constantFrom('errors', 'latency', 'saturation'),
    template: fc.constantFrom('error-ratio' as const, 'latency-p99' as const),
    max: fc.constantFrom(0.01, 0.05, 1),
    critical: bool,
  });
  const some = <T>(arb: fc.Arbitrary<T>, max: number) => fc.array(arb, { maxLength: max });
  /** Checks of distinct names: two of one name are refused where they are written. */
  const checks = (arb: fc.Arbitrary<{ name: string }>, max: number) =>
    fc.uniqueArray(arb, { maxLength: max, selector: (c) => c.name });
  const part = <T extends Record<string, fc.Arbitrary<unknown>>>(fields: T) => fc.record(fields, { requiredKeys: [] });

  /** Overrides the schema accepts: the interesting part is whether they loosen the service or break the org's floor. */
  const anyOverride = part({
    trafficCycle: part({
      duration: fc.constantFrom('30m', '1h', '24h', '7d', '14d'),
      minCanaryRequests: fc.nat({ max: 1000 }),
      peakWindows: some(
        fc.record({
          name: fc.constantFrom('lunch', 'evening'),
          start: fc.constantFrom('12:00', '18:00'),
          end: fc.constantFrom('14:00', '20:00'),
        }),
        2,
      ),
    }),
    staging: part({ bake: fc.constantFrom(0, '10m', '1h'), smokeChecks: checks(checkArb, 2) }),
    canary: part({
      poolSize: fc.integer({ min: 1, max: 10 }),
      approval: bool,
      analysis: part({
        interval: fc.constantFrom('500ms', '30s', '1m', '15m', '1h'),
        checks: checks(checkArb, 3),
        failureLimit: fc.integer({ min: 1, max: 100 }),
        inconclusiveLimit: fc.integer({ min: 1, max: 100 }),
      }),
    }),
    production: part({
      approval: bool,
      waves: fc.constantFrom(
        [{ percent: 100 }],
        [{ percent: 100, bake: '2h' }],
        [
          { percent: 50, bake: '1h' },
          { percent: 100, bake: '1h' },
        ],
        [{ percent: 10 }, { percent: 50 }, { percent: 100, bake: '30m' }],
      ),
    }),
    approvals: part({ fourEyes: bool }),
  });
  /** Within any of the service policies below, so some requests get through. */
  const tightening = part({
    trafficCycle: part({ duration: fc.constant('14d'), minCanaryRequests: fc.nat({ max: 1000 }) }),
    canary: part({
      approval: fc.constant(true),
      analysis: part({
        interval: fc.constant('30s'),
        failureLimit: fc.constant(1),
        checks: checks(
          checkArb.map((c) => ({ ...c, name: 'saturation' })),
          1,
        ),
      }),
    }),
    production: part({ approval: fc.constant(true) }),
    approvals: part({ fourEyes: fc.constant(true) }),
  });
  const overrides = fc.option(
    fc.oneof(anyOverride, tightening).map((o): PolicyOverride => policyOverrideSchema.parse(o)),
    { nil: undefined, freq: 4 },
  );
  const lenientOrg = { minimums: { analysisChecks: 0, maxFailureLimit: 20, productionApproval: false } };
  const anyOrg = part({
    trafficCycle: part({
      minDuration: fc.constantFrom(0, '1h', '24h'),
      minCanaryRequests: fc.constantFrom(0, 100, 500),
      requirePeakWindow: bool,
    }),
    minimums: part({
      analysisChecks: fc.integer({ min: 0, max: 3 }),
      maxAnalysisInterval: fc.constantFrom('1m', '15m'),
      maxFailureLimit: fc.integer({ min: 1, max: 20 }),
      maxInconclusiveLimit: fc.integer({ min: 1, max: 20 }),
      productionApproval: bool,
      fourEyes: bool,
    }),
  });
  const orgs = fc.oneof(fc.constant(lenientOrg), anyOrg).map((o): OrgPolicy => orgPolicySchema.parse(o));

  const services = fc
    .record({
      duration: fc.constantFrom('1h', '24h', '7d'),
      interval: fc.constantFrom('30s', '1m', '15m'),
      checks: fc.array(fc.constantFrom('errors', 'latency'), { maxLength: 2 }),
      productionApproval: bool,
      fourEyes: bool,
      failureLimit: fc.integer({ min: 1, max: 20 }),
      poolSize: fc.integer({ min: 1, max: 4 }),
      canaryApproval: bool,
      stagingBake: fc.constantFrom(0, '10m'),
    })
    .map((s): ServicePolicy =>
      servicePolicySchema.parse({
        service: 'checkout',
        trafficCycle: { duration: s.duration },
        staging: { bake: s.stagingBake },
        canary: {
          poolSize: s.poolSize,
          approval: s.canaryApproval,
          analysis: {
            interval: s.interval,
            failureLimit: s.failureLimit,
            checks: [...new Set(s.checks)].map((name) => ({ name, template: 'error-ratio', max: 0.01 })),
          },
        },
        production: { approval: s.productionApproval },
        approvals: { fourEyes: s.fourEyes },
      }),
    );

  it('either meets the org minimums and tightens only, or throws a PolicyError whose issues all name a field', () => {
    let resolved = 0;
    let refused = 0;
    fc.assert(
      fc.property(orgs, services, overrides, (org, service, override) => {
        let policy;
        try {
          policy = resolvePolicy(org, service, override, { org: 'org.yaml', service: 'checkout.yaml' });
        } catch (err) {
          expect(err).toBeInstanceOf(PolicyError);
          const issues = (err as PolicyError).issues;
          expect(issues.length).toBeGreaterThan(0);
          for (const issue of issues) {
            expect(issue.path).toMatch(/^[a-zA-Z]/);
            expect(issue.message.length).toBeGreaterThan(0);
          }
          refused++;
          return;
        }
        resolved++;
        const { trafficCycle: cycle, minimums: min } = org;
        expect(policy.trafficCycle.duration).toBeGreaterThanOrEqual(cycle.minDuration);
        expect(policy.trafficCycle.minCanaryRequests).toBeGreaterThanOrEqual(cycle.minCanaryRequests);
        if (cycle.requirePeakWindow) expect(policy.trafficCycle.peakWindows.length).toBeGreaterThan(0);
        expect(policy.canary.analysis.checks.length).toBeGreaterThanOrEqual(min.analysisChecks);
        expect(policy.canary.analysis.interval).toBeLessThanOrEqual(min.maxAnalysisInterval);
        expect(policy.canary.analysis.failureLimit).toBeLessThanOrEqual(min.maxFailureLimit);
        if (min.productionApproval) expect(policy.production.approval).toBe(true);
        if (min.fourEyes) expect(policy.approvals.fourEyes).toBe(true);
        // Tighten only: a request never weakens its service's policy.
        expect(policy.trafficCycle.duration).toBeGreaterThanOrEqual(service.trafficCycle.duration);
        expect(policy.canary.analysis.interval).toBeLessThanOrEqual(service.canary.analysis.interval);
        expect(policy.canary.analysis.failureLimit).toBeLessThanOrEqual(service.canary.analysis.failureLimit);
        expect(policy.canary.analysis.inconclusiveLimit).toBeLessThanOrEqual(service.canary.analysis.inconclusiveLimit);
        expect(policy.canary.poolSize).toBeLessThanOrEqual(service.canary.poolSize);
        expect(policy.trafficCycle.minCanaryRequests).toBeGreaterThanOrEqual(service.trafficCycle.minCanaryRequests);
        expect(policy.staging.bake).toBeGreaterThanOrEqual(service.staging.bake);
        if (service.canary.approval) expect(policy.canary.approval).toBe(true);
        for (const window of service.trafficCycle.peakWindows)
          expect(policy.trafficCycle.peakWindows).toContainEqual(window);
        for (const smoke of service.staging.smokeChecks) expect(policy.staging.smokeChecks).toContainEqual(smoke);
        expect(policy.production.waves.length).toBeGreaterThanOrEqual(service.production.waves.length);
        if (service.production.approval) expect(policy.production.approval).toBe(true);
        if (service.approvals.fourEyes) expect(policy.approvals.fourEyes).toBe(true);
        for (const check of service.canary.analysis.checks) expect(policy.canary.analysis.checks).toContainEqual(check);
      }),
      RUNS,
    );
    // Both branches must actually have been exercised for the property to mean anything.
    expect(resolved).toBeGreaterThan(10);
    expect(refused).toBeGreaterThan(10);
    // Any loosening would have failed an expectation above: reaching here means none was accepted.
    tally('policy overrides against service policies and org minimums', resolved + refused);
  });
});

// ---- oversized payloads --------------------------------------------------------------------------------------

const check = (i: number) => ({ name: `check-${i}`, template: 'error-ratio', max: 0.01 });
const base = { service: 'checkout', version: '2.0.0', initiator: 'alice' };
const oversized = {
  '3 MB reason': {
    input: { ...base, reason: 'r'.repeat(3 * 1024 * 1024) },
    message: 'reason: at most 2000 characters',
  },
  '10,000 checks': {
    input: {
      ...base,
      policy: { canary: { analysis: { checks: Array.from({ length: 10_000 }, (_, i) => check(i)) } } },
    },
    message: 'policy.canary.analysis.checks: Too big: expected array to have <=50 items',
  },
  '10,000 checks in a wave': {
    input: {
      ...base,
      policy: {
        production: {
          waves: [{ percent: 100, analysis: { checks: Array.from({ length: 10_000 }, (_, i) => check(i)) } }],
        },
      },
    },
    message: 'policy.production.waves.0.analysis.checks: Too big: expected array to have <=50 items',
  },
  // Each field within its bounds, together megabytes: 50 checks × 4000-character queries, per stage and wave.
  'every field at its maximum': {
    input: (() => {
      const checks = Array.from({ length: 50 }, (_, i) => ({ name: `c${i}`, query: 'q'.repeat(4000), max: 1 }));
      const waves = Array.from({ length: 20 }, (_, i) => ({ percent: (i + 1) * 5, analysis: { checks } }));
      return {
        ...base,
        policy: { staging: { smokeChecks: checks }, canary: { analysis: { checks } }, production: { waves } },
      };
    })(),
    message: `policy: the request is too large`,
  },
};

describe('oversized payloads are refused before they reach Temporal', () => {
  it.each(Object.entries(oversized))(
    'releaseRequestSchema refuses %s, naming the field',
    (_label, { input, message }) => {
      expect(JSON.stringify(input).length).toBeGreaterThan(MAX_REQUEST_CHARS);
      const parsed = releaseRequestSchema.safeParse(input);
      expect(parsed.success).toBe(false);
      const text = describeZodError(parsed.error!);
      expect(text).toContain(message);
      expect(text.length).toBeLessThan(2000);
    },
  );

  function stubClient() {
    const calls: unknown[] = [];
    const client = {
      workflow: {
        start: (...args: unknown[]) => {
          calls.push(args);
          return Promise.resolve({ workflowId: 'release-checkout', firstExecutionRunId: 'run-1' });
        },
      },
    } as unknown as Client;
    return { client: new TollgateClient(client, 'test-queue'), calls };
  }

  it.each(Object.entries(oversized))('TollgateClient.start refuses %s without calling Temporal', async (_l, c) => {
    const { client, calls } = stubClient();
    const refusal = client.start(c.input as Parameters<TollgateClient['start']>[0]);
    await expect(refusal).rejects.toMatchObject({ name: 'TollgateError', code: 'invalid-input' });
    await expect(refusal).rejects.toThrow(c.message);
    expect(calls).toHaveLength(0);
  });

  it('TollgateClient.start calls Temporal for a valid request and for nothing else it is given', async () => {
    const { client, calls } = stubClient();
    await client.start({ ...base, reason: 'quarterly release' });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toEqual(['releaseWorkflow', expect.objectContaining({ workflowId: 'release-checkout' })]);

    await fc.assert(
      fc.asyncProperty(requestArb, async (input) => {
        const before = calls.length;
        const valid = releaseRequestSchema.safeParse(input).success;
        const outcome = await client.start(input as Parameters<TollgateClient['start']>[0]).then(
          () => 'started',
          (err: Error & { code?: string }) => err.code,
        );
        expect(outcome).toBe(valid ? 'started' : 'invalid-input');
        expect(calls.length - before).toBe(valid ? 1 : 0);
      }),
      { ...RUNS, numRuns: 200 },
    );
  });
});

// ---- what people read -----------------------------------------------------------------------------------------

/** Strings built to reach a terminal as something else: CSI, OSC 8 links, OSC 52 clipboard writes, forged lines. */
const terminalAttack = fc.oneof(
  hostileString,
  fc.constantFrom(
    '\u001b[2J',
    '\u001b]8;;https://evil.example\u0007click\u001b]8;;\u0007',
    '\u001b]52;c;cm0gLXJmIH4=\u0007',
    '\u009b31m', // an 8-bit CSI
    'ok\n2026-01-01T00:00:00Z  bob approve',
    'ok\r\u001b[8m(rejected)',
    '\u202eevorppa',
    '\u2028forged',
    '[click](https://evil.example) ![x](https://evil.example/x.png) <img src=x>',
  ),
  fc
    .array(fc.constantFrom('\u001b', '[', ']', '\u0007', '\n', '\r', 'a', ';', '\u009b', '\u202e', '('), {
      maxLength: 30,
    })
    .map((cs) => cs.join('')),
);

function hostileStatus(t: () => string): ReleaseStatus {
  const at = '2026-12-01T00:00:00.000Z';
  return {
    releaseId: t(),
    service: t(),
    version: t(),
    initiator: t(),
    reason: t(),
    stableVersion: t(),
    stage: 'canary',
    state: 'baking',
    target: { kind: t(), dryRun: true },
    analysis: {
      rounds: 1,
      failures: 0,
      inconclusive: 0,
      requests: 3,
      checks: [{ check: t(), verdict: 'fail', critical: true, reason: t(), at }],
    },
    waves: [{ index: 0, percent: 100, state: 'pending' }],
    gate: { name: 'production', since: at, message: t() },
    pause: { by: t(), reason: t(), since: at },
    waitingForWindowUntil: t(),
    bake: {
      stage: 'canary',
      startedAt: at,
      cycleMs: 10,
      elapsedMs: 5,
      remainingMs: 5,
      requestsSeen: 1,
      requestsRequired: 2,
      peakWindows: [{ window: t(), seen: false }],
      waitingFor: [t(), t()],
    },
    deployedSteps: [t()],
    hooks: [
      { hook: t(), at: 'after-deploy', step: t(), outcome: 'failed', reason: t(), startedAt: at, durationMs: 1 },
      { hook: t(), at: 'before-canary', outcome: 'passed', reason: t(), startedAt: at, durationMs: 1 },
    ],
    alerts: [
      {
        name: t(),
        track: 'canary',
        severity: t(),
        summary: t(),
        action: 'rollback',
        rule: t(),
        startsAt: t(),
        fingerprint: t(),
        labels: { [t()]: t() },
      },
    ],
    rollback: { reason: t(), startedAt: at, failedAttempts: 1, lastError: t(), undone: [t()] },
    audit: [{ at, actor: t(), action: 'approve', accepted: false, detail: t() }],
    auditDropped: 0,
    updatedAt: at,
    retrying: [{ activity: t(), attempt: 2, lastError: t() }],
    ended: { status: 'TERMINATED', message: t() },
  };
}
const ACTS_ON_TERMINAL =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/u;

describe('hostile input: what the CLI and the Web UI show', () => {
  const plain = hostileStatus(() => 'x');
  const plainLines = renderStatus(plain, 0).split('\n').length;

  it('renderStatus: no field reaches the terminal as a control, or adds a line', () => {
    let cases = 0;
    let leaks = 0;
    fc.assert(
      // Empty fields leave out optional lines by design; anything else must not change how many there are.
      fc.property(
        fc.array(
          terminalAttack.filter((t) => t.trim() !== ''),
          { minLength: 40, maxLength: 40 },
        ),
        (texts) => {
          let i = 0;
          const shown = renderStatus(
            hostileStatus(() => texts[i++ % texts.length]!),
            0,
          );
          cases++;
          if (ACTS_ON_TERMINAL.test(shown) || shown.split('\n').length !== plainLines) leaks++;
          expect(shown).not.toMatch(ACTS_ON_TERMINAL);
          expect(shown.split('\n')).toHaveLength(plainLines);
        },
      ),
      RUNS,
    );
    tally('CLI status view of a hostile status', cases, { loosenings: leaks });
  });

  it('renderList: a search attribute cannot add a row or a control', () => {
    fc.assert(
      fc.property(fc.array(terminalAttack, { minLength: 6, maxLength: 6 }), ([a, b, c, d, e, f]) => {
        const shown = renderList([
          { workflowId: a!, runId: b!, service: c!, version: d!, status: 'RUNNING', state: e!, startTime: f! },
        ] as never);
        expect(shown).not.toMatch(ACTS_ON_TERMINAL);
        expect(shown.split('\n')).toHaveLength(2);
      }),
      RUNS,
    );
  });

  it('printableJson: the same value back, with nothing raw a terminal acts on', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.array(terminalAttack, { maxLength: 4 }), (value, texts) => {
        const data = { value, texts };
        const text = printableJson(data, 2);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(data)));
        expect(text.replace(/\n/g, '')).not.toMatch(ACTS_ON_TERMINAL);
      }),
      RUNS,
    );
  });

  it('markdownText: no link, image or HTML survives into the Web UI details', () => {
    fc.assert(
      fc.property(terminalAttack, (text) => {
        const shown = markdownText(text);
        expect(shown).not.toMatch(ACTS_ON_TERMINAL);
        expect(shown).not.toMatch(/(^|[^\\])[[\]()<>!`]/);
      }),
      RUNS,
    );
  });
});

describe('hostile input: names and four-eyes', () => {
  const invisible = fc.constantFrom(
    '\u200b',
    '\u200c',
    '\u200d',
    '\u2060',
    '\ufeff',
    '\u00ad',
    '\u180e',
    '\u3164',
    '\u115f',
    '\u{e0061}',
    '\u00a0',
    '\u3000',
    '\u202e',
    '\u0007',
  );

  it('a name with an invisible, formatting or odd space character anywhere is refused', () => {
    fc.assert(
      fc.property(fc.constantFrom('alice', 'bob', 'carol'), invisible, fc.nat(), (name, ch, at) => {
        const i = 1 + (at % (name.length - 1));
        const sneaky = `${name.slice(0, i)}${ch}${name.slice(i)}`;
        expect(CONTROL_SCHEMAS.approve.safeParse({ by: sneaky }).success).toBe(false);
        expect(
          releaseRequestSchema.safeParse({ service: 'checkout', version: '1.0.0', initiator: sneaky }).success,
        ).toBe(false);
      }),
      RUNS,
    );
  });

  it('four-eyes refuses the initiator under any look-alike spelling that passes the schema', () => {
    // Per letter: itself, a capital, its full-width form, and its confusable from another script where one exists.
    const lookAlikes: Record<string, string[]> = {
      a: ['a', 'A', 'ａ', '\u0430'],
      l: ['l', 'L', 'ｌ', '1', 'I', '\u04cf'],
      i: ['i', 'I', 'ｉ', '\u0456'],
      c: ['c', 'C', 'ｃ', '\u0441'],
      e: ['e', 'E', 'ｅ', '\u0435'],
    };
    let cases = 0;
    let bypasses = 0;
    fc.assert(
      fc.property(fc.tuple(...[...'alice'].map((ch) => fc.constantFrom(...lookAlikes[ch]!))), (letters) => {
        const by = letters.join('');
        const view: ControlView = {
          state: 'awaiting-approval',
          stage: 'production',
          gate: 'production',
          paused: false,
          baking: false,
          watching: false,
          initiator: 'alice',
          fourEyes: true,
          approvers: undefined,
        };
        const answer = rejectionFor('approve', { by }, view);
        cases++;
        if (answer === undefined) bypasses++;
        expect(answer).toMatch(/^four-eyes: /);
      }),
      RUNS,
    );
    tally('four-eyes under look-alike names (case, width, scripts, digits)', cases, { bypasses });
  });
});
