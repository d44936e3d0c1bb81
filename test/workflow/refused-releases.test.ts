import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { stringify } from 'yaml';
import { statusQuery } from '../../src/domain/messages';
import type { PolicyOverrideInput, ServicePolicyInput } from '../../src/domain/policy';
import { releaseWorkflowId } from '../../src/domain/release';
import { releaseWorkflow } from '../../src/workflows';
import { writePolicies } from '../helpers/policies';
import { waitForStatus } from '../helpers/release-handle';
import { releaseHarness } from '../helpers/release-harness';
import type { DryRunTarget } from '../../src/providers/targets/dry-run';
import { randomWorkflowId } from '../helpers/temporal';
import { startTimeSkipping } from '../helpers/temporal-servers';

/**
 * Malformed requests and refused policies, end to end through the shipped workflow bundle and the real policy
 * activity: each release fails with one message naming the bad field, and the deployment target records nothing.
 */

const errors = { name: 'errors', template: 'error-ratio', max: 0.01 } as const;
const latency = { name: 'latency', template: 'latency-p99', max: 0.3, baseline: {} } as const;
const fullFleetAnalysis = { interval: '30s', checks: [errors, latency], failureLimit: 2, inconclusiveLimit: 2 };

const org = {
  trafficCycle: { minDuration: '12h', minCanaryRequests: 10 },
  minimums: { analysisChecks: 1, maxAnalysisInterval: '5m', maxFailureLimit: 5, maxInconclusiveLimit: 5 },
};

const checkout: ServicePolicyInput = {
  service: 'checkout',
  trafficCycle: { duration: '24h', minCanaryRequests: 100 },
  canary: { analysis: { interval: '1m', checks: [errors], failureLimit: 3, inconclusiveLimit: 3 } },
  production: {
    approval: true,
    waves: [
      { percent: 25, bake: '1h' },
      { percent: 100, bake: '1h', analysis: fullFleetAnalysis },
    ],
  },
};

/** A service file whose own wave analysis is looser than the org allows. */
const laxWaves: ServicePolicyInput = {
  ...checkout,
  service: 'lax-waves',
  production: {
    approval: true,
    waves: [{ percent: 100, bake: '1h', analysis: { checks: [errors], failureLimit: 9 } }],
  },
};

const brokenDuration: ServicePolicyInput = { ...checkout, service: 'broken', trafficCycle: { duration: 'one day' } };

const request = (over: Record<string, unknown> = {}) => ({
  service: 'checkout',
  version: '2.0.0',
  initiator: 'alice',
  ...over,
});
const withPolicy = (policy: PolicyOverrideInput) => request({ policy });
const waves = (...w: NonNullable<NonNullable<PolicyOverrideInput['production']>['waves']>) =>
  withPolicy({ production: { waves: w } });

const REQUEST = 'invalid release request: ';
const POLICY = 'release policy rejected: ';

/** [case, request, failure type, the message's start, fragments it must contain (each naming a field)] */
const CASES: [string, unknown, 'InvalidRequest' | 'InvalidPolicy', string, string[]][] = [
  [
    'an unknown service',
    request({ service: 'payments' }),
    'InvalidPolicy',
    'no policy for service "payments" at ',
    ['services/payments.yaml'],
  ],
  [
    'a service name that is not lower-case',
    request({ service: 'Checkout' }),
    'InvalidRequest',
    REQUEST,
    ['service: expected a lower-case service name'],
  ],
  [
    'a malformed version',
    request({ version: '2.0.0 beta' }),
    'InvalidRequest',
    REQUEST,
    ['version: expected a version such as 1.4.2'],
  ],
  ['a missing initiator', request({ initiator: undefined }), 'InvalidRequest', REQUEST, ['initiator: ']],
  ['a blank initiator', request({ initiator: '   ' }), 'InvalidRequest', REQUEST, ['initiator: must name a person']],
  ['an unknown field', request({ force: true }), 'InvalidRequest', REQUEST, ['"force"']],
  [
    'a malformed duration in the override',
    withPolicy({ trafficCycle: { duration: 'one day' } }),
    'InvalidRequest',
    REQUEST,
    ['policy.trafficCycle.duration: expected a duration such as "90s", "15m", "24h" or "7d", got "one day"'],
  ],
  [
    'an override with an unknown key',
    request({ policy: { canary: { pool: 3 } } }),
    'InvalidRequest',
    REQUEST,
    ['policy.canary: ', '"pool"'],
  ],
  [
    'override waves whose percentages do not increase',
    waves({ percent: 50 }, { percent: 25 }, { percent: 100 }),
    'InvalidRequest',
    REQUEST,
    ['policy.production.waves: wave percentages must increase'],
  ],
  [
    'an override below the org minimum traffic cycle',
    withPolicy({ trafficCycle: { duration: '6h' } }),
    'InvalidPolicy',
    POLICY,
    ['policy.trafficCycle.duration: is below the org minimum traffic cycle (12h)'],
  ],
  [
    'an override loosening the service’s canary failure limit',
    withPolicy({ canary: { analysis: { failureLimit: 4 } } }),
    'InvalidPolicy',
    POLICY,
    ['policy.canary.analysis.failureLimit: may only be lowered by a request (service policy: 3, requested: 4)'],
  ],
  [
    'an override replacing the service’s canary check with a looser one',
    withPolicy({ canary: { analysis: { checks: [{ ...errors, max: 0.5 }] } } }),
    'InvalidPolicy',
    POLICY,
    ['policy.canary.analysis.checks: may not replace the service\'s check "errors"'],
  ],
  [
    'an override turning production approval off',
    withPolicy({ production: { approval: false } }),
    'InvalidPolicy',
    POLICY,
    ['policy.production.approval: is required by the service policy and cannot be turned off by a request'],
  ],
  [
    'the audit’s override: waves 98/99/100 with no checks, a failure limit of 100 and a 1h interval',
    waves(
      { percent: 98, bake: '1h', analysis: { checks: [], failureLimit: 100, interval: '1h' } },
      { percent: 99, bake: '1h', analysis: { checks: [], failureLimit: 100, interval: '1h' } },
      { percent: 100, bake: '1h', analysis: { checks: [], failureLimit: 100, interval: '1h' } },
    ),
    'InvalidPolicy',
    POLICY,
    [
      'policy.production.waves[0].percent: may only be lowered by a request (service policy: 25, requested: 98)',
      'policy.production.waves[0].analysis.failureLimit: may only be lowered by a request (service policy: 3, requested: 100)',
      'policy.production.waves[2].analysis.checks: may not drop the service\'s check "latency"',
      'policy.production.waves[1].analysis.interval: is longer than the org maximum (5m)',
    ],
  ],
  [
    'a larger first wave',
    waves({ percent: 50, bake: '1h' }, { percent: 100, bake: '1h', analysis: fullFleetAnalysis }),
    'InvalidPolicy',
    POLICY,
    ['policy.production.waves[0].percent: may only be lowered by a request (service policy: 25, requested: 50)'],
  ],
  [
    'fewer waves',
    waves({ percent: 100, bake: '3h', analysis: fullFleetAnalysis }),
    'InvalidPolicy',
    POLICY,
    ['policy.production.waves: may not have fewer waves than the service policy (2)'],
  ],
  [
    'a shorter wave bake',
    waves({ percent: 25, bake: '10m' }, { percent: 100, bake: '1h', analysis: fullFleetAnalysis }),
    'InvalidPolicy',
    POLICY,
    ['policy.production.waves[0].bake: may only be raised by a request (service policy: 1h, requested: 10m)'],
  ],
  [
    'a wave failure limit above the service wave’s',
    waves(
      { percent: 25, bake: '1h' },
      { percent: 100, bake: '1h', analysis: { ...fullFleetAnalysis, failureLimit: 3 } },
    ),
    'InvalidPolicy',
    POLICY,
    [
      'policy.production.waves[1].analysis.failureLimit: may only be lowered by a request (service policy: 2, requested: 3)',
    ],
  ],
  [
    'a wave dropping one of the service wave’s checks',
    waves(
      { percent: 25, bake: '1h' },
      { percent: 100, bake: '1h', analysis: { ...fullFleetAnalysis, checks: [errors] } },
    ),
    'InvalidPolicy',
    POLICY,
    ['policy.production.waves[1].analysis.checks: may not drop the service\'s check "latency"'],
  ],
  [
    'a wave analysis interval longer than the service wave’s',
    waves(
      { percent: 25, bake: '1h' },
      { percent: 100, bake: '1h', analysis: { ...fullFleetAnalysis, interval: '1m' } },
    ),
    'InvalidPolicy',
    POLICY,
    [
      'policy.production.waves[1].analysis.interval: may only be lowered by a request (service policy: 30s, requested: 1m)',
    ],
  ],
  [
    'a wave falling back to the looser canary analysis',
    waves({ percent: 25, bake: '1h' }, { percent: 100, bake: '1h' }),
    'InvalidPolicy',
    POLICY,
    [
      'policy.production.waves[1].analysis.inconclusiveLimit: may only be lowered by a request (service policy: 2, requested: 3) (this wave has no analysis of its own',
    ],
  ],
  [
    'a service file whose wave analysis breaks the org maximum',
    request({ service: 'lax-waves' }),
    'InvalidPolicy',
    'service policy ',
    ['lax-waves.yaml breaks the org policy: production.waves[0].analysis.failureLimit: is above the org maximum (5)'],
  ],
  [
    'a service file with a malformed duration',
    request({ service: 'broken' }),
    'InvalidPolicy',
    '',
    ['broken.yaml: trafficCycle.duration: expected a duration such as "90s", "15m", "24h" or "7d", got "one day"'],
  ],
  [
    'an override putting more instances in the canary',
    withPolicy({ canary: { poolSize: 3 } }),
    'InvalidPolicy',
    POLICY,
    ['policy.canary.poolSize: may only be lowered by a request (service policy: 1, requested: 3)'],
  ],
  [
    'a traffic cycle longer than any timer should be',
    withPolicy({ trafficCycle: { duration: '99999999d' } }),
    'InvalidRequest',
    REQUEST,
    ['policy.trafficCycle.duration: must be at most 365d, got "99999999d"'],
  ],
  [
    'a duration too long to read (Infinity)',
    withPolicy({ staging: { bake: `${'9'.repeat(400)}s` } }),
    'InvalidRequest',
    REQUEST,
    ['policy.staging.bake: expected a duration such as'],
  ],
  [
    'two checks of one name in an override',
    withPolicy({
      canary: { analysis: { checks: [errors, { ...errors, name: 'extra' }, { ...errors, max: 0.5, name: 'extra' }] } },
    }),
    'InvalidRequest',
    REQUEST,
    ['policy.canary.analysis.checks.2.name: duplicate check name "extra"'],
  ],
  [
    'an initiator with a zero-width space',
    request({ initiator: 'alice\u200b' }),
    'InvalidRequest',
    REQUEST,
    ['initiator: must not contain invisible or formatting characters'],
  ],
  [
    'a reason with a terminal escape',
    request({ reason: 'fix \u001b[2J' }),
    'InvalidRequest',
    REQUEST,
    ['reason: must not contain control'],
  ],
  [
    'a service file that names another service',
    request({ service: 'misnamed' }),
    'InvalidPolicy',
    '',
    ['misnamed.yaml: service: says "checkout", expected "misnamed"'],
  ],
];

describe('refused releases (time-skipping): a clear error naming the field, and nothing deployed', () => {
  let env: TestWorkflowEnvironment;
  let harness: Awaited<ReturnType<typeof releaseHarness<DryRunTarget>>>;
  let running: Promise<void>;

  beforeAll(async () => {
    env = await startTimeSkipping();
    const policyDir = writePolicies(org, [checkout, laxWaves, brokenDuration]);
    writeFileSync(join(policyDir, 'services', 'misnamed.yaml'), stringify(checkout));
    harness = await releaseHarness(env, { policyDir });
    // One worker for every case: starting one per case would cost more than the cases themselves.
    running = harness.worker.run();
  });
  afterAll(async () => {
    harness?.worker.shutdown();
    await running;
    await env?.teardown();
  });

  /** The ID a release of the input's service runs as; any ID for input without a service. */
  const idFor = (input: unknown) => {
    const service = (input as { service?: unknown } | null)?.service;
    return typeof service === 'string' ? releaseWorkflowId(service) : randomWorkflowId('release-refused');
  };

  /** The release's failure; fails the test if the release was not refused (ended otherwise, or still runs). */
  async function failureOf(input: unknown, workflowId = idFor(input)): Promise<ApplicationFailure> {
    const handle = await env.client.workflow.start(releaseWorkflow, {
      taskQueue: harness.taskQueue,
      workflowId,
      args: [input],
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      const outcome = await Promise.race([
        handle.result().then(
          (result) => new Error(`the release was not refused: ${JSON.stringify(result)}`),
          (err: unknown) => err,
        ),
        // An accepted release waits at its approval gates: give up on it at once rather than at the test timeout.
        new Promise<Error>((resolve) => {
          timer = setTimeout(() => resolve(new Error('the release was not refused: still running after 10s')), 10_000);
        }),
      ]);
      if (!(outcome instanceof WorkflowFailedError)) throw outcome;
      expect(outcome.cause).toBeInstanceOf(ApplicationFailure);
      return outcome.cause as ApplicationFailure;
    } finally {
      clearTimeout(timer);
      await handle.terminate('test over').catch(() => undefined);
    }
  }

  it('has at least 15 cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(15);
  });

  it.each(CASES)('refuses %s', async (_, input, type, start, fragments) => {
    const failure = await failureOf(input);
    expect(failure.type).toBe(type);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message.startsWith(start)).toBe(true);
    for (const fragment of fragments) expect(failure.message).toContain(fragment);
    expect(harness.target.actions).toEqual([]);
  });

  it.each(['sneaky-checkout', 'release-checkout-2', 'release-payments', 'RELEASE-checkout'])(
    'refuses a valid release run under workflow ID %j, changing nothing',
    async (workflowId) => {
      const failure = await failureOf(request(), workflowId);
      expect(failure.type).toBe('InvalidWorkflowId');
      expect(failure.nonRetryable).toBe(true);
      expect(failure.message).toBe(
        `a release of checkout runs as workflow ID "release-checkout", not "${workflowId}": one release per service at a time`,
      );
      expect(harness.target.actions).toEqual([]);
    },
  );

  // Last, as it deploys: shows that this worker and target do record a deploy, and that a tightening override
  // (a smaller wave added in front, a stricter full-fleet analysis) passes the same rules.
  it('deploys a valid tightening release on the same worker', async () => {
    const handle = await env.client.workflow.start(releaseWorkflow, {
      taskQueue: harness.taskQueue,
      workflowId: releaseWorkflowId('checkout'),
      args: [
        waves(
          { percent: 10, bake: '2h' },
          // Now at the service's second position, so held to the analysis the service's second wave bakes with.
          { percent: 25, bake: '1h', analysis: fullFleetAnalysis },
          { percent: 100, bake: '1h', analysis: { ...fullFleetAnalysis, failureLimit: 1 } },
        ),
      ],
    });
    try {
      const status = await waitForStatus(handle, (s) => s.deployedSteps.length > 0, { env, step: '1s' });
      expect(status.policy?.production.waves.map((w) => w.percent)).toEqual([10, 25, 100]);
      // The release goes on while the test looks, so only its first step is certain.
      expect(harness.target.actions[0]).toMatchObject({ action: 'apply', service: 'checkout', version: '2.0.0' });
      expect(harness.target.actions[0]?.key).toMatch(/\/staging$/);
      expect((await handle.query(statusQuery)).policy?.sources.override).toBe(true);
    } finally {
      await handle.terminate('test over').catch(() => undefined);
    }
  });
});
