import { ORG_CRITICAL_CANARY_RULE } from './alerts';
import { formatDuration } from './duration';
import { sameIdentity } from './identity';
import { SIGNED_APPROVALS } from './signing-policy';
import type { Analysis, Check, OrgPolicy, PolicyOverride, ResolvedPolicy, ServicePolicy } from './policy';

export interface PolicyIssue {
  path: string;
  message: string;
}

/** A policy that breaks the org minimums or loosens its service's policy; every issue names its field. */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  constructor(
    readonly issues: PolicyIssue[],
    context: string,
  ) {
    super(`${context}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
  }
}

/** A request may add checks; replacing one of the service's (and so perhaps loosening it) is refused. */
function mergeChecks(base: Check[], extra: Check[] | undefined, path: string, issues: PolicyIssue[]): Check[] {
  if (!extra) return base;
  const byName = new Map(base.map((c) => [c.name, c]));
  for (const check of extra) {
    const existing = byName.get(check.name);
    if (existing && JSON.stringify(existing) !== JSON.stringify(check)) {
      issues.push({
        path,
        message: `may not replace the service's check "${check.name}"; add a check with a new name`,
      });
      continue;
    }
    byName.set(check.name, check);
  }
  return [...byName.values()];
}

function applyOverride(service: ServicePolicy, o: PolicyOverride, issues: PolicyIssue[]): ServicePolicy {
  return {
    ...service,
    trafficCycle: {
      duration: o.trafficCycle?.duration ?? service.trafficCycle.duration,
      minCanaryRequests: o.trafficCycle?.minCanaryRequests ?? service.trafficCycle.minCanaryRequests,
      peakWindows: [...service.trafficCycle.peakWindows, ...(o.trafficCycle?.peakWindows ?? [])],
    },
    staging: {
      smokeChecks: mergeChecks(
        service.staging.smokeChecks,
        o.staging?.smokeChecks,
        'policy.staging.smokeChecks',
        issues,
      ),
      bake: o.staging?.bake ?? service.staging.bake,
    },
    canary: {
      poolSize: o.canary?.poolSize ?? service.canary.poolSize,
      approval: o.canary?.approval ?? service.canary.approval,
      analysis: {
        interval: o.canary?.analysis?.interval ?? service.canary.analysis.interval,
        checks: mergeChecks(
          service.canary.analysis.checks,
          o.canary?.analysis?.checks,
          'policy.canary.analysis.checks',
          issues,
        ),
        failureLimit: o.canary?.analysis?.failureLimit ?? service.canary.analysis.failureLimit,
        inconclusiveLimit: o.canary?.analysis?.inconclusiveLimit ?? service.canary.analysis.inconclusiveLimit,
      },
    },
    production: {
      approval: o.production?.approval ?? service.production.approval,
      waves: o.production?.waves ?? service.production.waves,
      // A request cannot shorten or drop the watch, nor open a rollback window: both are the service's.
      ...(service.production.watch && { watch: service.production.watch }),
      ...(service.production.rollbackWindow && { rollbackWindow: service.production.rollbackWindow }),
    },
    approvals: { ...service.approvals, fourEyes: o.approvals?.fourEyes ?? service.approvals.fourEyes },
  };
}

type Wave = ServicePolicy['production']['waves'][number];

/** The analysis a wave bakes with: its own, or else the canary's (as the workflow runs it). */
const waveAnalysis = (p: ServicePolicy, wave: Wave): Analysis => wave.analysis ?? p.canary.analysis;

/** Fields a request may move in one direction only: longer bakes, more evidence, stricter limits, more gates. */
function loosenings(service: ServicePolicy, merged: ServicePolicy): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  // Durations are held in ms; an error quotes them as a person writes them.
  const shown = (path: string, v: number) => (/(duration|bake|interval)$/.test(path) ? formatDuration(v) : String(v));
  const notBelow = (path: string, was: number, now: number) =>
    now < was &&
    issues.push({
      path,
      message: `may only be raised by a request (service policy: ${shown(path, was)}, requested: ${shown(path, now)})`,
    });
  const notAbove = (path: string, was: number, now: number, note = '') =>
    now > was &&
    issues.push({
      path,
      message: `may only be lowered by a request (service policy: ${shown(path, was)}, requested: ${shown(path, now)})${note}`,
    });
  const notOff = (path: string, was: boolean, now: boolean) =>
    was &&
    !now &&
    issues.push({ path, message: 'is required by the service policy and cannot be turned off by a request' });
  const analysisNotLooser = (path: string, was: Analysis, now: Analysis, note = '') => {
    notAbove(`${path}.interval`, was.interval, now.interval, note);
    for (const check of was.checks) {
      const kept = now.checks.find((c) => c.name === check.name);
      if (!kept) {
        issues.push({ path: `${path}.checks`, message: `may not drop the service's check "${check.name}"${note}` });
      } else if (JSON.stringify(kept) !== JSON.stringify(check)) {
        issues.push({
          path: `${path}.checks`,
          message: `may not replace the service's check "${check.name}"; add a check with a new name${note}`,
        });
      }
    }
    notAbove(`${path}.failureLimit`, was.failureLimit, now.failureLimit, note);
    notAbove(`${path}.inconclusiveLimit`, was.inconclusiveLimit, now.inconclusiveLimit, note);
  };

  notBelow('policy.trafficCycle.duration', service.trafficCycle.duration, merged.trafficCycle.duration);
  notBelow(
    'policy.trafficCycle.minCanaryRequests',
    service.trafficCycle.minCanaryRequests,
    merged.trafficCycle.minCanaryRequests,
  );
  notBelow('policy.staging.bake', service.staging.bake, merged.staging.bake);
  notAbove('policy.canary.analysis.interval', service.canary.analysis.interval, merged.canary.analysis.interval);
  notAbove(
    'policy.canary.analysis.failureLimit',
    service.canary.analysis.failureLimit,
    merged.canary.analysis.failureLimit,
  );
  notAbove(
    'policy.canary.analysis.inconclusiveLimit',
    service.canary.analysis.inconclusiveLimit,
    merged.canary.analysis.inconclusiveLimit,
  );
  // More canary instances put more real traffic on an untested version: a request may only shrink the canary.
  notAbove('policy.canary.poolSize', service.canary.poolSize, merged.canary.poolSize);
  notOff('policy.canary.approval', service.canary.approval, merged.canary.approval);
  notOff('policy.production.approval', service.production.approval, merged.production.approval);
  notOff('policy.approvals.fourEyes', service.approvals.fourEyes, merged.approvals.fourEyes);

  const was = service.production.waves;
  const now = merged.production.waves;
  if (now.length < was.length) {
    issues.push({
      path: 'policy.production.waves',
      message: `may not have fewer waves than the service policy (${was.length})`,
    });
  }
  // Position by position, a request's wave may reach no more of the fleet, and bake no less, than the service's
  // wave there; so it never exposes more of the fleet sooner. Added waves go before the final one.
  for (const [i, wave] of now.entries()) {
    const path = `policy.production.waves[${i}]`;
    const theirs = was[i];
    if (theirs) {
      notAbove(`${path}.percent`, theirs.percent, wave.percent);
      notBelow(`${path}.bake`, theirs.bake, wave.bake);
    } else if (i === now.length - 1) {
      // The full-fleet bake before "stable" is the last evidence gathered; added waves may not shorten it.
      notBelow(`${path}.bake`, was.at(-1)?.bake ?? 0, wave.bake);
    }
    // Each baking wave is analysed at least as strictly as the service's wave at its position (past the service's
    // last wave, as strictly as that one). A wave that does not bake runs no analysis, so there is nothing to loosen.
    const counterpart = theirs ?? was.at(-1);
    if (!counterpart || counterpart.bake === 0 || wave.bake === 0) continue;
    // Both inheriting the canary's analysis: the canary's own guards above already cover it.
    if (!counterpart.analysis && !wave.analysis) continue;
    const note = wave.analysis ? '' : " (this wave has no analysis of its own, so it bakes with the canary's)";
    analysisNotLooser(`${path}.analysis`, waveAnalysis(service, counterpart), waveAnalysis(merged, wave), note);
  }
  return issues;
}

/** The org's floor for one analysis, wherever it is declared (the canary's, or a production wave's own). */
function analysisViolations(org: OrgPolicy, a: Analysis, add: (path: string, message: string) => void, at: string) {
  const min = org.minimums;
  const checks = a.checks.length;
  if (checks < min.analysisChecks)
    add(`${at}.checks`, `has ${checks} checks; the org requires at least ${min.analysisChecks}`);
  if (a.interval > min.maxAnalysisInterval) {
    add(`${at}.interval`, `is longer than the org maximum (${formatDuration(min.maxAnalysisInterval)})`);
  }
  if (a.interval < 1000) add(`${at}.interval`, 'must be at least 1s');
  if (a.failureLimit > min.maxFailureLimit)
    add(`${at}.failureLimit`, `is above the org maximum (${min.maxFailureLimit})`);
  if (a.inconclusiveLimit > min.maxInconclusiveLimit) {
    add(`${at}.inconclusiveLimit`, `is above the org maximum (${min.maxInconclusiveLimit})`);
  }
}

/** The org's floor, which no service file and no request can go below. */
export function orgViolations(org: OrgPolicy, p: ServicePolicy, prefix: string): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path: `${prefix}${path}`, message });
  const { trafficCycle: cycle, minimums: min } = org;
  if (p.trafficCycle.duration < cycle.minDuration) {
    add('trafficCycle.duration', `is below the org minimum traffic cycle (${formatDuration(cycle.minDuration)})`);
  }
  if (p.trafficCycle.minCanaryRequests < cycle.minCanaryRequests) {
    add('trafficCycle.minCanaryRequests', `is below the org minimum (${cycle.minCanaryRequests})`);
  }
  if (cycle.requirePeakWindow && p.trafficCycle.peakWindows.length === 0) {
    add('trafficCycle.peakWindows', 'the org requires every traffic cycle to include at least one peak window');
  }
  analysisViolations(org, p.canary.analysis, add, 'canary.analysis');
  // A wave without its own analysis bakes with the canary's, which is checked just above.
  for (const [i, wave] of p.production.waves.entries()) {
    if (wave.analysis) analysisViolations(org, wave.analysis, add, `production.waves[${i}].analysis`);
  }
  const watch = p.production.watch;
  if (watch) analysisViolations(org, watch.analysis, add, 'production.watch.analysis');
  if (min.productionWatch > 0 && (watch?.duration ?? 0) < min.productionWatch) {
    add(
      'production.watch.duration',
      `the org requires production to be watched for at least ${formatDuration(min.productionWatch)} after the last wave`,
    );
  }
  if (min.productionApproval && !p.production.approval)
    add('production.approval', 'the org requires approval before production');
  if (min.fourEyes && !p.approvals.fourEyes) add('approvals.fourEyes', 'the org requires four-eyes approval');
  signingViolations(org, p, add);
  return issues;
}

const listing = (names: readonly string[]) => names.join(', ').replace(/, ([^,]*)$/, ' and $1');

/** Signatures that could never be given, or that the org requires and the service does not ask for. */
function signingViolations(org: OrgPolicy, p: ServicePolicy, add: (path: string, message: string) => void) {
  const { signers, machines, signing, approvers } = p.approvals;
  for (const [i, signer] of signers.entries()) {
    const orgs = org.signers.find((s) => sameIdentity(s.name, signer.name));
    if (orgs)
      add(`approvals.signers[${i}].name`, `"${signer.name}" is one of the org's signers; their keys are kept there`);
  }
  const required = new Set(signing.require);
  if (org.minimums.requireSignedApprovals) {
    const missing = SIGNED_APPROVALS.filter((a) => !required.has(a));
    if (missing.length > 0)
      add(
        'approvals.signing.require',
        `the org requires signed ${listing(SIGNED_APPROVALS)} (missing: ${listing(missing)})`,
      );
  }
  const everyone = [...org.signers, ...signers];
  const controls = signing.require.filter((a) => a !== 'start');
  if (controls.length > 0 && everyone.length === 0)
    add('approvals.signers', `signed ${listing(controls)} need at least one signer, here or in the org's signers`);
  if (required.has('start') && everyone.length === 0 && machines.length === 0)
    add('approvals.signing.require', 'a signed start needs a signer or a machine in approvals');
  if ((required.has('approve') || required.has('promote')) && approvers) {
    for (const [i, approver] of approvers.entries()) {
      if (!everyone.some((s) => sameIdentity(s.name, approver)))
        add(`approvals.approvers[${i}]`, `${approver} has no key in the signers, so could never sign an approval`);
    }
  }
}

export interface PolicySources {
  org: string;
  service: string;
}

/** Service policy + optional request override → the release's effective policy, or a PolicyError naming every bad field. */
export function resolvePolicy(
  org: OrgPolicy,
  service: ServicePolicy,
  override: PolicyOverride | undefined,
  sources: PolicySources,
): ResolvedPolicy {
  const serviceIssues = orgViolations(org, service, '');
  if (serviceIssues.length > 0)
    throw new PolicyError(serviceIssues, `service policy ${sources.service} breaks the org policy`);
  // The org's metric names and rules are resolved with the rest, so editing them never changes a running release.
  if (!override)
    return withOrgRules(org, { ...service, metrics: org.metrics, sources: { ...sources, override: false } });
  const issues: PolicyIssue[] = [];
  const merged = applyOverride(service, override, issues);
  issues.push(...loosenings(service, merged), ...orgViolations(org, merged, 'policy.'));
  if (issues.length > 0) throw new PolicyError(issues, 'release policy rejected');
  return withOrgRules(org, { ...merged, metrics: org.metrics, sources: { ...sources, override: true } });
}

/**
 * What the org adds to every release: its alert rules join the service's (a rule can only strengthen what an alert
 * does), and its signers the service's, so the keys that verify a release are in its history with its policy.
 */
function withOrgRules(org: OrgPolicy, policy: ResolvedPolicy): ResolvedPolicy {
  const signers = org.signers.length > 0 ? [...org.signers, ...policy.approvals.signers] : policy.approvals.signers;
  const withSigners = { ...policy, approvals: { ...policy.approvals, signers } };
  if (!org.minimums.criticalCanaryAlertsRollBack) return withSigners;
  return { ...withSigners, alerts: { rules: [...policy.alerts.rules, { ...ORG_CRITICAL_CANARY_RULE }] } };
}
