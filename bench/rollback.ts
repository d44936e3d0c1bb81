import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { stringify } from 'yaml';
import { runLoad, type LoadReport } from '../demo/load';
import { PROJECT_ROOT } from '../scripts/temporal-binaries';
import { createActivities } from '../src/activities';
import { TollgateClient } from '../src/client/tollgate-client';
import { PolicyStore } from '../src/config/policies';
import { statusQuery } from '../src/domain/messages';
import type { ServicePolicyInput } from '../src/domain/policy';
import type { ReleaseStatus } from '../src/domain/status';
import { PrometheusProvider } from '../src/providers/metrics/prometheus';
import { startFleet, type Fleet } from '../src/providers/targets/haproxy-fleet-bootstrap';
import type { FleetState } from '../src/providers/targets/haproxy-fleet-state';
import type { releaseWorkflow } from '../src/workflows';
import { nextBasePort, quietLogger, removeDir, serviceCommand, tempStateDir } from '../test/helpers/fleet';
import { freePort } from '../scripts/ports';
import { FLEET_ORG, writePolicies } from '../test/helpers/policies';
import { PROMETHEUS_BINARY, startPrometheus } from '../test/helpers/prometheus';
import { sleepMs } from './fixtures';
import { FrontendProbe, RotationWatch, rotationAt, switchedAt, type Answer } from './rollback-probe';
import { startDevServer } from './servers';

/**
 * §9, rollback after promotion (issue 16): the demo's fleet — 10 instances of the demo service behind a real HAProxy,
 * the demo's service command and catalogue — under steady load, scraped by a real Prometheus, released by a worker with
 * the real activities on the Temporal dev server. Each trial releases a version in two waves and, once production is
 * watched, takes it back: by `tollgate rollback` (TollgateClient.rollback) or by a watch SLO breach. The previous
 * version is kept warm (the watch's default, a traffic switch back) or not (`keepPrevious: false`, a start of every
 * instance), alternating trial by trial. The clock stops at the first request through the frontend after which every
 * answer names the previous version.
 */

export const SERVICE = 'checkout';
export const FLEET_SIZE = 10;
export const PREVIOUS = '1.0.0';
export const GOOD = '1.1.0';
/** demo/versions.yaml: one request in five answered 500. */
export const BAD = '1.2.0-bad';
export const PROBE_EVERY_MS = 20;
export const ROTATION_EVERY_MS = 50;
export const LOAD = { baseRps: 40, peakRps: 60 } as const;
export const WATCH = { interval: '2s', failureLimit: 2, maxErrorRatio: 0.05 } as const;
/** Answers kept coming after the rollback ended, so that "from then on, only the previous version" is seen to hold. */
const SETTLE_MS = 1_500;
const TO_WATCH_BOUND_MS = 120_000;
const ROLLBACK_BOUND_MS = 90_000;
/** A trial takes ≈ 40 s (cold) on 2 cores; none starts unless this much is left. */
const TRIAL_ROOM_MS = 100_000;

export type RollbackMode = 'warm' | 'cold';
export type RollbackTrigger = 'rollback' | 'breach';

export interface RollbackTrial {
  trigger: RollbackTrigger;
  mode: RollbackMode;
  version: string;
  /**
   * t0 → all production traffic on the previous version: the later of \`answersMs\` and \`drainedMs\`, so that the
   * answers' sampling cannot make a switch look shorter than it was.
   */
  toPreviousMs: number;
  /** t0 → the first request after which every answer through the frontend named the previous version. */
  answersMs: number;
  /** t0 → the last request answered by the new version: the switch ended between this and `toPreviousMs`. */
  lastNewMs?: number;
  /**
   * t0 → the last new-version instance drained (the fleet's actions log: its \`drain\` is recorded once HAProxy's
   * runtime API took it): HAProxy sends that version no request after this, so the switch ended by then.
   */
  drainedMs?: number;
  /** t0 → the first new-version instance drained: the first of the previous version's instances back in rotation. */
  firstDrainedMs?: number;
  /** t0 → HAProxy had only previous-version servers in rotation, for good (its admin socket). */
  rotationMs?: number;
  /** `rollback` only: t0 → TollgateClient.rollback returned (the update accepted, then a status read). */
  answeredMs?: number;
  /** `rollback` only: t0 → status.rollback.startedAt (the update's way into the workflow). */
  rollbackStartMs?: number;
  /** `breach` only: the watch's start → status.rollback.startedAt (how long its analysis took to fail). */
  detectMs?: number;
  /** The workflow's rollback start → its end (every step undone, the staging instance included). */
  rollbackMs: number;
  /** Instance processes started behind the frontend from t0 on, from the fleet's actions log. */
  fleetStarts: number;
  switchBacks: number;
  /** From the watch on (the switch and its settle time): requests sent by the load generator and the probe. */
  sent: number;
  /** Of those, without an answer, or answered by HAProxy itself (no x-version): each one a user let down. */
  failed: number;
  failedKinds: Record<string, number>;
  /** Non-2xx answers from any version but the bad one (whose own errors are the breach). */
  otherNon2xx: number;
}

export interface RollbackResult {
  fleetSize: number;
  probeEveryMs: number;
  rotationEveryMs: number;
  /** How long the probe ran on after the release closed. */
  settleMs: number;
  load: typeof LOAD;
  watch: typeof WATCH;
  haproxyRetries: boolean;
  prometheus: string;
  trials: RollbackTrial[];
  failures: string[];
  wallMs: number;
}

export interface RollbackOptions {
  releaseCode: string;
  /** `tollgate rollback` trials of each mode at most; fewer if the deadline comes first. */
  trialsPerMode: number;
  /** Watch-breach trials of each mode at most. */
  breachTrialsPerMode: number;
  deadline: number;
  log: (line: string) => void;
}

function policy(keepPrevious: boolean): ServicePolicyInput {
  return {
    service: SERVICE,
    trafficCycle: { duration: '3s' },
    staging: { bake: '0s' },
    // The canary and the waves check nothing: what is measured is the way back, not how a version gets to the watch.
    canary: { poolSize: 1, approval: false, analysis: { interval: '2s', checks: [] } },
    production: {
      approval: false,
      waves: [
        { percent: 50, bake: '1s' },
        { percent: 100, bake: '1s' },
      ],
      watch: {
        // Far longer than any trial: only a breach or a rollback ends it.
        duration: '10m',
        keepPrevious,
        analysis: {
          interval: WATCH.interval,
          failureLimit: WATCH.failureLimit,
          inconclusiveLimit: 5,
          checks: [{ name: 'error-slo', template: 'error-ratio', max: WATCH.maxErrorRatio }],
        },
      },
    },
  };
}

/** Bounded: the release's status until `ok`, polled every 100 ms. */
async function statusUntil(
  handle: WorkflowHandle<typeof releaseWorkflow>,
  ok: (s: ReleaseStatus) => boolean,
  what: string,
  boundMs: number,
): Promise<ReleaseStatus> {
  const deadline = Date.now() + boundMs;
  let last: ReleaseStatus | undefined;
  while (Date.now() < deadline) {
    last = await handle.query(statusQuery).catch(() => last);
    if (last && ok(last)) return last;
    if (last?.state === 'done') break;
    await sleepMs(100);
  }
  throw new Error(`${what} not within ${boundMs / 1000} s (last: ${last?.stage}/${last?.state}, ${last?.outcome})`);
}

/** What the fleet must look like between trials: every member the previous version, labelled stable, nothing warm. */
function fleetProblem(state: FleetState): string | undefined {
  const members = state.instances.filter((i) => i.slot !== null);
  const wrong = members.filter((i) => `${i.version} ${i.track} ${i.status}` !== `${PREVIOUS} stable serving`);
  if (members.length !== FLEET_SIZE || wrong.length > 0 || state.stableVersion !== PREVIOUS) {
    return `fleet not back on ${PREVIOUS}: ${members.map((i) => `${i.id} ${i.version} ${i.track} ${i.status}`).join(', ')}`;
  }
  return undefined;
}

function prometheusVersion(): string {
  try {
    const out = execFileSync(PROMETHEUS_BINARY, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: 'pipe' });
    return `${/version (\S+)/.exec(out)?.[1] ?? 'version unknown'}, ${PROMETHEUS_BINARY}`;
  } catch {
    return `${PROMETHEUS_BINARY} (version unknown)`;
  }
}

const bump = (counts: Record<string, number>, key: string) => (counts[key] = (counts[key] ?? 0) + 1);

/** Failed requests and stray errors during the switch, from the probe's answers and the load generator's report. */
function tally(answers: Answer[], report: LoadReport, bad: string | undefined) {
  const failedKinds: Record<string, number> = {};
  let otherNon2xx = 0;
  for (const a of answers) {
    if (a.error !== undefined) bump(failedKinds, `probe ${a.error}`);
    else if (a.version === undefined) bump(failedKinds, `probe ${a.status ?? 0} from HAProxy`);
    else if ((a.status ?? 0) >= 300 && a.version !== bad) otherNon2xx += 1;
  }
  for (const [kind, n] of Object.entries(report.errors)) failedKinds[`load ${kind}`] = n;
  if (report.skipped > 0) failedKinds['load skipped'] = report.skipped;
  const fromHaproxy = report.non2xxByVersion.none ?? 0;
  if (fromHaproxy > 0) failedKinds['load answered by HAProxy'] = fromHaproxy;
  for (const [version, n] of Object.entries(report.non2xxByVersion)) {
    if (version !== 'none' && version !== bad) otherNon2xx += n;
  }
  const failed = Object.values(failedKinds).reduce((a, b) => a + b, 0);
  return { failed, failedKinds, otherNon2xx };
}

export async function runRollbackBench(o: RollbackOptions): Promise<RollbackResult> {
  const t0 = Date.now();
  const trials: RollbackTrial[] = [];
  const failures: string[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    const env = await startDevServer();
    cleanups.push(() => env.teardown());
    const stateDir = await tempStateDir('rollback');
    cleanups.push(() => removeDir(stateDir));
    const fileSdPath = join(stateDir, 'targets.json');
    // As the demo scrapes its fleet: every second, the instances' own labels kept.
    const prometheus = await startPrometheus({ scrapeIntervalSeconds: 1, fileSdPath, honorLabels: true });
    cleanups.push(() => prometheus.stop());
    const policyDir = writePolicies(FLEET_ORG, [policy(true)]);
    cleanups.push(() => removeDir(policyDir));
    // The demo's command and catalogue (scripts/start.ts): the bench's own tsc step compiles dist/demo/service.js.
    const command = serviceCommand(
      join(__dirname, '..', 'demo', 'service.js'),
      join(PROJECT_ROOT, 'demo', 'versions.yaml'),
    );
    const fleet: Fleet = await startFleet({
      service: SERVICE,
      version: PREVIOUS,
      fleetSize: FLEET_SIZE,
      frontendPort: await freePort(),
      basePort: nextBasePort(),
      stagingPort: await freePort(),
      command,
      stateDir,
      fileSdPath,
      // Off, unlike the demo: a request a switch cut would otherwise be retried by HAProxy and never counted.
      retries: false,
      logger: quietLogger(),
    });
    cleanups.push(() => fleet.stop());

    const taskQueue = `bench-rollback-${randomUUID().slice(0, 8)}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: { code: o.releaseCode },
      activities: createActivities({
        target: fleet.target,
        metrics: new PrometheusProvider({ url: prometheus.url, timeoutMs: 2_000 }),
        policies: new PolicyStore(policyDir),
        logger: quietLogger(),
        heartbeatEveryMs: 1_000,
      }),
      shutdownGraceTime: '5s',
    });
    const running = worker.run();
    cleanups.push(async () => {
      worker.shutdown();
      await running;
    });
    const tollgate = new TollgateClient(env.client, taskQueue);

    const runTrial = async (trigger: RollbackTrigger, mode: RollbackMode): Promise<RollbackTrial> => {
      const problem = fleetProblem(await fleet.target.readState());
      if (problem) throw new Error(problem);
      writeFileSync(join(policyDir, 'services', `${SERVICE}.yaml`), stringify(policy(mode === 'warm')));
      const version = trigger === 'breach' ? BAD : GOOD;
      const loadFor = (boundMs: number, signal: AbortSignal) =>
        runLoad({
          url: fleet.frontendUrl,
          durationMs: boundMs,
          cycleMs: 60_000,
          ...LOAD,
          maxRequests: Math.ceil((LOAD.peakRps * boundMs) / 1000),
          timeoutMs: 5_000,
          signal,
        });
      const rollout = new AbortController();
      const rolloutLoad = loadFor(TO_WATCH_BOUND_MS + 10_000, rollout.signal);
      const during = new AbortController();
      let switchLoad: Promise<LoadReport> | undefined;
      let probe: FrontendProbe | undefined;
      let rotation: RotationWatch | undefined;
      try {
        const handle = await tollgate.start({ service: SERVICE, version, initiator: 'bench', reason: `§9 ${mode}` });
        const watching = await statusUntil(handle, (s) => s.state === 'watching', 'watching', TO_WATCH_BOUND_MS);
        // From here on the switch's own load: what it reports is what users met while production went back.
        rollout.abort();
        await rolloutLoad;
        switchLoad = loadFor(ROLLBACK_BOUND_MS + 10_000, during.signal);
        probe = new FrontendProbe(fleet.frontendUrl, PROBE_EVERY_MS);
        rotation = new RotationWatch(fleet, ROTATION_EVERY_MS);
        const watchStartedAt = Date.parse(watching.watch!.startedAt);

        let clock: number;
        let answeredMs: number | undefined;
        if (trigger === 'rollback') {
          // A second of answers first, so the new version is seen serving all of production before t0.
          await sleepMs(1_000);
          clock = Date.now();
          await tollgate.rollback(SERVICE, { by: 'bench', reason: `§9 ${mode} rollback` });
          answeredMs = Date.now() - clock;
        } else {
          const rolling = await statusUntil(handle, (s) => s.rollback !== undefined, 'watch breach', ROLLBACK_BOUND_MS);
          clock = Date.parse(rolling.rollback!.startedAt);
        }
        const result = await Promise.race([
          handle.result(),
          sleepMs(ROLLBACK_BOUND_MS).then(() => Promise.reject(new Error('rollback not done within 90 s'))),
        ]);
        await sleepMs(SETTLE_MS);
        const answers = await probe.stop();
        const looks = await rotation.stop();
        during.abort();
        const report = await switchLoad;
        const status = await handle.query(statusQuery);
        if (result.outcome !== 'rolled_back_after_promotion') {
          throw new Error(`${result.outcome}: ${result.reason.slice(0, 200)}`);
        }
        const switched = switchedAt(answers, PREVIOUS, clock);
        if (!switched) throw new Error('the frontend still answered with another version at the end');
        if (switched.lastOtherAt === undefined) throw new Error('no answer from the new version after t0');
        const rotated = rotationAt(looks, PREVIOUS, clock);
        const actions = (await fleet.target.readActions()).filter((a) => Date.parse(a.at) >= clock);
        const startedAt = Date.parse(status.rollback!.startedAt);
        const drains = actions.filter((a) => a.action === 'drain' && a.slot !== null && a.version !== PREVIOUS);
        const drainTimes = drains.map((a) => Date.parse(a.at));
        const drainedAt = drainTimes.length > 0 ? Math.max(...drainTimes) : undefined;
        const problemAfter = fleetProblem(await fleet.target.readState());
        if (problemAfter) throw new Error(problemAfter);
        return {
          trigger,
          mode,
          version,
          toPreviousMs: Math.max(switched.allPreviousAt, drainedAt ?? 0) - clock,
          answersMs: switched.allPreviousAt - clock,
          lastNewMs: switched.lastOtherAt - clock,
          ...(drainedAt !== undefined && {
            drainedMs: drainedAt - clock,
            firstDrainedMs: Math.min(...drainTimes) - clock,
          }),
          ...(rotated !== undefined && { rotationMs: rotated - clock }),
          ...(answeredMs !== undefined && { answeredMs, rollbackStartMs: startedAt - clock }),
          ...(trigger === 'breach' && { detectMs: startedAt - watchStartedAt }),
          rollbackMs: Date.parse(status.rollback!.finishedAt!) - startedAt,
          fleetStarts: actions.filter((a) => a.action === 'start' && a.slot !== null).length,
          switchBacks: actions.filter((a) => a.action === 'switch-back').length,
          sent: report.sent + answers.length,
          ...tally(answers, report, trigger === 'breach' ? BAD : undefined),
        };
      } finally {
        rollout.abort();
        during.abort();
        await probe?.stop();
        await rotation?.stop();
        await rolloutLoad.catch(() => undefined);
        await switchLoad?.catch(() => undefined);
        await tollgate.client.workflow
          .getHandle(`release-${SERVICE}`)
          .terminate('bench over')
          .catch(() => undefined);
      }
    };

    // Warm and cold alternate, so both see the same fleet, Prometheus and machine load over the run.
    const plan: (readonly [RollbackTrigger, RollbackMode])[] = [];
    for (let n = 0; n < o.trialsPerMode; n++) plan.push(['rollback', 'warm'], ['rollback', 'cold']);
    for (let n = 0; n < o.breachTrialsPerMode; n++) plan.push(['breach', 'warm'], ['breach', 'cold']);
    for (const [trigger, mode] of plan) {
      if (Date.now() + TRIAL_ROOM_MS > o.deadline || failures.length >= 3) break;
      try {
        const trial = await runTrial(trigger, mode);
        trials.push(trial);
        o.log(
          `rollback: ${trials.length}/${plan.length} (${trigger} ${mode}: all traffic on ${PREVIOUS} after ` +
            `${trial.toPreviousMs} ms (answers ${trial.answersMs} ms), ${trial.fleetStarts} starts, ${trial.failed} failed)`,
        );
      } catch (err) {
        failures.push(`${trigger} ${mode}: ${err instanceof Error ? err.message : String(err)}`);
        o.log(`rollback: ${trigger} ${mode} failed: ${failures.at(-1)}`);
        // A fleet not back where it started would make every later trial measure something else.
        if (fleetProblem(await fleet.target.readState())) break;
      }
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
  return {
    fleetSize: FLEET_SIZE,
    probeEveryMs: PROBE_EVERY_MS,
    rotationEveryMs: ROTATION_EVERY_MS,
    settleMs: SETTLE_MS,
    load: LOAD,
    watch: WATCH,
    haproxyRetries: false,
    prometheus: prometheusVersion(),
    trials,
    failures,
    wallMs: Date.now() - t0,
  };
}
