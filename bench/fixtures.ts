import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import pino from 'pino';
import { stringify } from 'yaml';
import { createActivities } from '../src/activities';
import type { AnalysisSegment, AnalyzeInput } from '../src/activities/types';
import { PolicyStore } from '../src/config/policies';
import { statusQuery } from '../src/domain/messages';
import type { ServicePolicyInput } from '../src/domain/policy';
import type { MetricsProvider } from '../src/providers/metrics/types';
import { DryRunTarget } from '../src/providers/targets/dry-run';
import type { DeployStep } from '../src/providers/targets/types';
import { createNaiveActivities } from './naive-activities';

export const SERVICE = 'checkout';
/**
 * A release runs as workflow ID `release-<service>` (the workflow refuses any other), so releases side by side are of
 * services of their own: the `n`-th of a bench is `checkout-<n>`, each with its own policy file (`writePolicies`).
 */
export const benchService = (n: number): string => `${SERVICE}-${n}`;
export const benchServices = (count: number): string[] => Array.from({ length: count }, (_, n) => benchService(n));
const STABLE_VERSION = '1.0.0';
const errors = { name: 'errors', template: 'error-ratio', max: 0.01 } as const;

/** The service policy every bench release uses: one check, no gates, one production wave without bake. */
export function servicePolicy(cycle: string, interval: string): ServicePolicyInput {
  return {
    service: SERVICE,
    trafficCycle: { duration: cycle },
    canary: { analysis: { interval, checks: [errors] } },
    production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
  };
}

/**
 * A policy directory in tmp, read by the real `resolvePolicy` activity: `policy` as the file of each of `services`
 * (by default its own service only).
 */
export function writePolicies(policy: ServicePolicyInput, services: string[] = [policy.service]): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-policies-'));
  mkdirSync(join(dir, 'services'));
  writeFileSync(join(dir, 'org.yaml'), stringify({ minimums: { productionApproval: false } }));
  for (const service of services) {
    writeFileSync(join(dir, 'services', `${service}.yaml`), stringify({ ...policy, service }));
  }
  return dir;
}

/** The dry-run target of a bench worker: every service with a policy file in `policyDir` runs 1.0.0 before its release. */
export function benchTarget(policyDir: string): DryRunTarget {
  const services = readdirSync(join(policyDir, 'services')).map((file) => file.replace(/\.yaml$/, ''));
  return new DryRunTarget(Object.fromEntries(services.map((service) => [service, STABLE_VERSION])));
}

export const silentLogger = pino({ level: 'silent' });

const noMetrics: MetricsProvider = {
  kind: 'none',
  isOnline: () => Promise.resolve(false),
  query: () => Promise.resolve(undefined),
  queryRange: () => Promise.resolve([]),
};

/** An instant analysis stretch: every round healthy, answered at once. */
export function instantHealthy(input: AnalyzeInput): AnalysisSegment {
  return {
    counters: { ...input.counters, rounds: input.counters.rounds + input.maxRounds },
    checks: input.checks.map((c) => ({
      check: c.name,
      verdict: 'pass',
      critical: false,
      reason: 'within bounds',
      canary: 0.001,
      at: new Date().toISOString(),
    })),
    decision: 'healthy',
    reason: 'healthy',
  };
}

export interface ActivityHooks {
  onAnalyze?: (workflowId: string) => void;
  onUndo?: (workflowId: string, at: number) => void;
}

/**
 * The real activities over a dry-run target, with analysis replaced by an instant healthy double, plus the naive
 * baseline's activities (their names do not clash, so one worker serves both designs).
 */
export function benchActivities(policyDir: string, hooks: ActivityHooks = {}) {
  const real = createActivities({
    target: benchTarget(policyDir),
    metrics: noMetrics,
    policies: new PolicyStore(policyDir),
    logger: silentLogger,
  });
  return {
    ...real,
    ...createNaiveActivities(),
    analyze: (input: AnalyzeInput): Promise<AnalysisSegment> => {
      hooks.onAnalyze?.(Context.current().info.workflowExecution!.workflowId);
      return Promise.resolve(instantHealthy(input));
    },
    undo: (step: DeployStep) => {
      hooks.onUndo?.(Context.current().info.workflowExecution!.workflowId, Date.now());
      return real.undo(step);
    },
  };
}

const noop = () => undefined;
const quietBundlerLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error };

/** Bundles compiled workflow code once per bench run (the SDK's bundler version matches the worker's). */
export async function bundle(workflowsPath: string): Promise<string> {
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: quietBundlerLogger });
  return code;
}

export const ms = (since: number): number => Date.now() - since;
export const sleepMs = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** First time each workflow reached a point (keyed by the caller), and whoever waits for it. */
export class Arrivals {
  private readonly seen = new Map<string, number>();
  private readonly waiting = new Map<string, (at: number) => void>();
  mark(key: string, at: number) {
    if (this.seen.has(key)) return;
    this.seen.set(key, at);
    this.waiting.get(key)?.(at);
    this.waiting.delete(key);
  }
  wait(key: string, timeoutMs: number): Promise<number> {
    const at = this.seen.get(key);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new Error(`${key}: not within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(key, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
  }
}

/** Once its analysis has started and the status says so: a release settled into its canary bake (bounded). */
export async function bakingInCanary(handle: WorkflowHandle, arrivals: Arrivals): Promise<void> {
  await arrivals.wait(`analyze:${handle.workflowId}`, 30_000);
  for (let i = 0; i < 100; i++) {
    const status = await handle.query(statusQuery);
    if (status.stage === 'canary' && status.state === 'baking') return;
    await sleepMs(20);
  }
  throw new Error(`${handle.workflowId} never settled into canary baking`);
}
