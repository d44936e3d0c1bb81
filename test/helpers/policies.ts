import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Check, OrgPolicy, ServicePolicyInput } from '../../src/domain/policy';

/** Policy files as a worker reads them, in a directory of their own: org.yaml and services/<service>.yaml. */
export function writePolicies(org: Partial<Record<keyof OrgPolicy, unknown>>, services: ServicePolicyInput[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-policies-'));
  mkdirSync(join(dir, 'services'));
  writeFileSync(join(dir, 'org.yaml'), stringify(org));
  for (const s of services) writeFileSync(join(dir, 'services', `${s.service}.yaml`), stringify(s));
  return dir;
}

/** The check most tests judge by, as written and as resolved; what it measures is up to the analysis double. */
export const errorsCheck: Check = { name: 'errors', template: 'error-ratio', max: 0.01, critical: false };

/**
 * The checkout service of the workflow tests: a 24-hour cycle analysed every minute, then two 1-hour waves with no
 * approval. A test overrides what it is about.
 */
export function checkoutPolicy(overrides: Partial<ServicePolicyInput> = {}): ServicePolicyInput {
  return {
    service: 'checkout',
    trafficCycle: { duration: '24h' },
    canary: { analysis: { interval: '1m', checks: [errorsCheck] } },
    production: {
      approval: false,
      waves: [
        { percent: 50, bake: '1h' },
        { percent: 100, bake: '1h' },
      ],
    },
    ...overrides,
  };
}

/**
 * The org of releases on a real HAProxy fleet that last seconds: no analysis check required (so every bake can be
 * pure timer time), short limits, no approvals.
 */
export const FLEET_ORG = {
  trafficCycle: { minDuration: '1s', minCanaryRequests: 0 },
  minimums: {
    analysisChecks: 0,
    maxAnalysisInterval: '10s',
    maxFailureLimit: 5,
    maxInconclusiveLimit: 5,
    productionApproval: false,
    fourEyes: false,
  },
};

type Analysis = NonNullable<NonNullable<ServicePolicyInput['canary']>['analysis']>;

export interface FleetPolicyOptions {
  cycleMs: number;
  minCanaryRequests?: number;
  canaryApproval?: boolean;
  /** The canary's analysis; by default none that checks anything, so the bake is timer time only. */
  analysis?: Analysis;
  waveBakeMs?: number;
  waveAnalysis?: Analysis;
}

/** A release on a real fleet, in seconds: staging not baked, a canary of one instance, waves of 50% and 100%. */
export function fleetPolicy(service: string, o: FleetPolicyOptions): ServicePolicyInput {
  const wave = (percent: number) => ({
    percent,
    bake: `${o.waveBakeMs ?? 2_000}ms`,
    ...(o.waveAnalysis && { analysis: o.waveAnalysis }),
  });
  return {
    service,
    trafficCycle: { duration: `${o.cycleMs}ms`, minCanaryRequests: o.minCanaryRequests ?? 0 },
    staging: { bake: '0s' },
    canary: {
      poolSize: 1,
      approval: o.canaryApproval ?? false,
      analysis: o.analysis ?? { interval: '5s', checks: [] },
    },
    production: { approval: false, waves: [wave(50), wave(100)] },
  };
}
