import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import pino from 'pino';
import { createActivities } from '../../src/activities';
import type { AnalysisSegment, AnalyzeInput } from '../../src/activities/types';
import { decide, type CheckResult } from '../../src/domain/analysis';
import { statusQuery } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import type { ReleaseRequestInput } from '../../src/domain/release';
import type { PromotedRelease } from '../../src/domain/rollback-window';
import { PolicyStore } from '../../src/config/policies';
import type { Logger } from '../../src/logger';
import type { ExternalRunners } from '../../src/providers/external/types';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import type { Notifier, ReleaseNotification } from '../../src/providers/notify/types';
import { DryRunTarget } from '../../src/providers/targets/dry-run';
import type { DeployReceipt, DeploymentTarget, DeployStep } from '../../src/providers/targets/types';
import { workflowBundle } from './bundles';
import { checkoutPolicy, writePolicies } from './policies';
import { startRelease, type Drive } from './release-handle';
import { runHistories, taskQueueForTest } from './temporal';

export const silentLogger = pino({ level: 'silent' });

export const pass = (check: string, at = '2026-01-01T00:00:00Z'): CheckResult => ({
  check,
  verdict: 'pass',
  critical: false,
  reason: 'within bounds',
  canary: 0.001,
  at,
});

export type AnalysisStep = (input: AnalyzeInput) => AnalysisSegment;
/**
 * What the scripted analysis answers to each call, instantly; past the script's end every stretch is healthy.
 * A single step answers every call.
 */
export type AnalysisScript = AnalysisStep[] | AnalysisStep;

export const healthy =
  (requests = 0): ((input: AnalyzeInput) => AnalysisSegment) =>
  (input) => ({
    counters: {
      ...input.counters,
      rounds: input.counters.rounds + input.maxRounds,
      requests: input.counters.requests + requests,
    },
    checks: input.checks.map((c) => pass(c.name)),
    decision: 'healthy',
    reason: 'healthy',
  });

/** A test double for the analysis activity: answers from a script, then behaves like a long healthy stretch. */
function scriptedAnalysis(script: AnalysisScript, calls: AnalyzeInput[]) {
  return (input: AnalyzeInput): Promise<AnalysisSegment> => {
    const step = typeof script === 'function' ? script : (script[calls.length] ?? healthy());
    calls.push(input);
    return Promise.resolve(step(input));
  };
}

export interface HarnessOptions<Target extends DeploymentTarget = DryRunTarget> {
  policyDir: string;
  /** Where the real activities deploy; by default a dry-run target whose stable versions are `stable`. */
  target?: Target;
  analysis?: AnalysisScript;
  stable?: Record<string, string>;
  undoFailures?: number;
  metrics?: MetricsProvider;
  /** A real notifier (e.g. webhooks) to send to, besides the recorded `notifications`. */
  notifier?: Notifier;
  /** What runs hooks and job checks; the real process runner and HTTP caller when left out. */
  external?: ExternalRunners;
  /** The activities' logger; silent when left out. */
  logger?: Logger;
  /** Stands in for the deploy activity (`real` deploys to the target). */
  deploy?: (step: DeployStep, real: (step: DeployStep) => Promise<DeployReceipt>) => Promise<DeployReceipt>;
  /** Stands in for the undo activity, as `deploy` does (`undoFailures` is the simple case). */
  undo?: (step: DeployStep, real: (step: DeployStep) => Promise<DeployReceipt>) => Promise<DeployReceipt>;
  /**
   * What visibility answers about the service's promoted releases (the rollback window): the time-skipping server
   * has no visibility queries, so a test says. Left out: the real activity asks the server.
   */
  promoted?: PromotedRelease[] | { unknown: string };
}

const noMetrics: MetricsProvider = {
  kind: 'none',
  isOnline: () => Promise.resolve(false),
  query: () => Promise.resolve(undefined),
  queryRange: () => Promise.resolve([]),
};

/** A worker on the test's own task queue, with the real activities over a dry-run target and scripted analysis. */
export async function releaseHarness<Target extends DeploymentTarget = DryRunTarget>(
  env: TestWorkflowEnvironment,
  opts: HarnessOptions<Target>,
) {
  const taskQueue = taskQueueForTest();
  // Without a target of the caller's, Target is its default, DryRunTarget.
  const target = opts.target ?? (new DryRunTarget(opts.stable ?? { checkout: '1.0.0' }) as DeploymentTarget as Target);
  const analyzeCalls: AnalyzeInput[] = [];
  const notifications: ReleaseNotification[] = [];
  const real = createActivities({
    notifier: {
      kind: 'recording',
      notify: (n) => {
        notifications.push(n);
        return opts.notifier?.notify(n) ?? Promise.resolve();
      },
    },
    target,
    metrics: opts.metrics ?? noMetrics,
    policies: new PolicyStore(opts.policyDir),
    logger: opts.logger ?? silentLogger,
    ...(opts.external && { external: opts.external }),
  });
  let undoFailuresLeft = opts.undoFailures ?? 0;
  const undoAttempts: string[] = [];
  const retired: DeployStep[] = [];
  const promoted = opts.promoted;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: workflowBundle('release'),
    activities: {
      ...real,
      analyze: scriptedAnalysis(opts.analysis ?? [], analyzeCalls),
      deploy: (step: DeployStep) => (opts.deploy ? opts.deploy(step, (s) => real.deploy(s)) : real.deploy(step)),
      undo: async (step: DeployStep) => {
        undoAttempts.push(step.key);
        if (opts.undo) return opts.undo(step, (s) => real.undo(s));
        if (undoFailuresLeft > 0) {
          undoFailuresLeft--;
          throw new Error('load balancer API unavailable');
        }
        return real.undo(step);
      },
      retirePrevious: (step: DeployStep) => {
        retired.push(step);
        return real.retirePrevious(step);
      },
      ...(promoted && {
        promotedReleases: () => Promise.resolve(Array.isArray(promoted) ? { releases: promoted } : promoted),
      }),
    },
  });
  return { worker, taskQueue, target, analyzeCalls, undoAttempts, notifications, retired };
}

export interface ReleaseOptions<Target extends DeploymentTarget = DryRunTarget> extends Omit<
  HarnessOptions<Target>,
  'policyDir'
> {
  /** The version released; 2.0.0 by default. */
  version?: string;
  /** The service's policy; `checkoutPolicy()` by default. */
  policy?: ServicePolicyInput;
  /** The org's policy; by default it lets the service's policy decide on production approval. */
  org?: Record<string, unknown>;
  reason?: string;
  /** Laid over the request alice starts with: another initiator, a signature, an identity token. */
  request?: Partial<ReleaseRequestInput>;
}

/**
 * Releases `version` (2.0.0) of the policy's service, started by alice, on a harness worker: `drive` acts on the release while
 * it runs. Whatever it leaves running is terminated at the end: a release left running without its worker would hold
 * a time-skipping server's clock for every later test.
 */
export async function withRelease<T, Target extends DeploymentTarget = DryRunTarget>(
  env: TestWorkflowEnvironment,
  opts: ReleaseOptions<Target>,
  drive: Drive<T>,
) {
  const policy = opts.policy ?? checkoutPolicy();
  const policyDir = writePolicies(opts.org ?? { minimums: { productionApproval: false } }, [policy]);
  const harness = await releaseHarness(env, { ...opts, policyDir });
  return harness.worker.runUntil(async () => {
    const handle = await startRelease(env.client, harness.taskQueue, {
      service: policy.service,
      version: opts.version ?? '2.0.0',
      initiator: 'alice',
      ...(opts.reason !== undefined && { reason: opts.reason }),
      ...opts.request,
    });
    try {
      return { value: await drive(handle), handle, ...harness };
    } finally {
      await handle.terminate('test over').catch(() => undefined);
    }
  });
}

/**
 * `withRelease`, through to the release's end: its result, its status then, and the history of every run it took
 * (`history` is the last run's).
 */
export async function runRelease<T = void, Target extends DeploymentTarget = DryRunTarget>(
  env: TestWorkflowEnvironment,
  opts: ReleaseOptions<Target> = {},
  drive: Drive<T> = () => Promise.resolve(undefined as T),
) {
  const { value, ...rest } = await withRelease(env, opts, async (handle) => {
    const value = await drive(handle);
    const result = await handle.result();
    const status = await handle.query(statusQuery);
    const runs = await runHistories(env.client, handle.workflowId, handle.firstExecutionRunId);
    return { value, result, status, runs, history: runs.at(-1)!.history };
  });
  return { ...value, ...rest };
}

export const failing =
  (reason: string, critical = false) =>
  (input: AnalyzeInput): AnalysisSegment => ({
    counters: { ...input.counters, rounds: input.counters.rounds + 1, failures: input.counters.failures + 1 },
    checks: input.checks.map((c) => ({ ...pass(c.name), verdict: 'fail', critical, reason })),
    decision: critical ? 'critical' : 'failed',
    reason,
  });

export const inconclusive =
  (reason: string) =>
  (input: AnalyzeInput): AnalysisSegment => ({
    counters: { ...input.counters, rounds: input.counters.rounds + 3, inconclusive: input.counters.inconclusive + 3 },
    checks: input.checks.map((c) => ({ ...pass(c.name), verdict: 'inconclusive', reason })),
    decision: 'inconclusive',
    reason,
  });

/**
 * The analysis activity's own bookkeeping over rounds whose checks all get `verdict()`: up to `maxRounds` rounds,
 * stopping where the activity would, with the limits the workflow passed.
 */
export const rounds =
  (verdict: () => 'pass' | 'fail' | 'inconclusive', critical = false): AnalysisStep =>
  (input) => {
    let counters = input.counters;
    let checks: CheckResult[] = [];
    for (let round = 0; round < input.maxRounds; round++) {
      checks = input.checks.map((c) => ({ ...pass(c.name), verdict: verdict(), critical, reason: verdict() }));
      const outcome = decide(counters, checks, 0, input);
      counters = outcome.counters;
      if (outcome.decision !== 'healthy')
        return { counters, checks, decision: outcome.decision, reason: outcome.reason };
    }
    return { counters, checks, decision: 'healthy', reason: 'healthy' };
  };
