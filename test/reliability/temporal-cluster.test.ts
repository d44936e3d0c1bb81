import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { TollgateClient } from '../../src/client/tollgate-client';
import { statusQuery } from '../../src/domain/messages';
import type { ReleaseStatus } from '../../src/domain/status';
import type { FleetPolicyOptions } from '../helpers/policies';
import { waitForStatus, canaryBaking, type ReleaseHandle } from '../helpers/release-handle';
import {
  FULL,
  SEED,
  clusterReliabilityStack,
  previousBuild,
  prng,
  progress,
  sleep,
  spawnWorker,
  startReleases,
  stopServices,
  type BakingRelease,
  type Proc,
  type WorkerEnv,
  type Service,
} from './support';
import { survived, tally, verifyRelease, type Verdict } from './verify';

/**
 * The reliability suite on the real Temporal cluster (PostgreSQL, frontend, history, matching and worker as four
 * processes — what `npm run cluster` runs): the engine itself fails under a release of the real worker on a real
 * HAProxy fleet. The history service is SIGKILLed in the canary bake; PostgreSQL is restarted in a production wave;
 * the frontend is restarted while a person approves the canary gate; three workers are rolled onto a new build in
 * the middle of a bake. Each release must come to its outcome with every step applied once and its timers on time.
 * CI runs each scenario once at a seeded moment; RELIABILITY_FULL=1 runs several.
 */

const stack = clusterReliabilityStack('temporal-cluster');
const random = prng(SEED);
const runsOf = (full: number) => (FULL ? full : 1);

/** Deploys after a bake and scheduling after a restart, on two loaded cores. */
const SLACK_MS = 10_000;
/** Each scenario's bound covers its own waits (30 s to its fault point, 90 s for the result) and the fleet's stop. */
const BOUND_MS = (runs: number) => runs * 150_000;

/** ms between the first actions on `from` and on `to` in the fleet's action log (the step keys end in them). */
async function gapMs(service: Service, from: string, to: string): Promise<number | undefined> {
  const actions = await service.fleet.target.readActions();
  const a = actions.find((x) => x.action === 'step-applied' && x.key.endsWith(`/${from}`));
  const b = actions.find((x) => x.key.endsWith(`/${to}`));
  return a && b ? Date.parse(b.at) - Date.parse(a.at) : undefined;
}

/** A bake as the action log shows it is at least its timer and less than twice it plus slack: not lost, not re-armed. */
function bakeProblem(what: string, ms: number | undefined, timerMs: number): string[] {
  if (ms === undefined) return [`no ${what} in the action log`];
  return ms < timerMs || ms >= 2 * timerMs + SLACK_MS
    ? [`${what} ${ms} ms, expected [${timerMs}, ${2 * timerMs + SLACK_MS})`]
    : [];
}

interface Scenario {
  scenario: string;
  runs: number;
  /** One run: its fault(s), then its verdict(s) and any problem of its own. */
  run: (i: number) => Promise<{ faults: number; verdicts: Verdict[]; problems: string[]; note: string }>;
}

/** Runs a scenario's runs, records its row (whatever happened) and fails the test on any wrong outcome. */
async function scenario(s: Scenario): Promise<void> {
  const started = Date.now();
  const verdicts: (Verdict | undefined)[] = [];
  const problems: string[] = [];
  const notes: string[] = [];
  let faults = 0;
  try {
    for (let i = 0; i < s.runs; i++) {
      const r = await s.run(i);
      faults += r.faults;
      verdicts.push(...r.verdicts);
      problems.push(...r.problems);
      notes.push(r.note);
    }
  } catch (err) {
    problems.push(`run failed: ${(err as Error).message.split('\n')[0]}`);
    if (verdicts.length === 0) verdicts.push(undefined);
    throw err;
  } finally {
    stack.rows.push({
      scenario: s.scenario,
      ...tally(verdicts, problems),
      faults,
      seconds: Math.round((Date.now() - started) / 1000),
      notes: `${notes.join('; ')}${problems.length ? ` — problems: ${problems.join('; ')}` : ''}`,
      file: 'temporal-cluster.test.ts',
    });
    // Whatever a failed run left down, the next scenario gets a whole cluster.
    const { cluster } = stack.server;
    for (const service of ['history', 'frontend'] as const)
      if (!cluster.pids()[service]) await cluster.restart(service);
    await cluster.ready(60_000).catch(() => undefined);
  }
  const wrong = verdicts.filter((v) => v && !survived(v));
  expect(wrong).toEqual([]);
  expect(problems).toEqual([]);
}

const fresh = (prefix: string) => `${prefix}-${randomUUID().slice(0, 5)}`;

async function finish(runs: BakingRelease[]): Promise<void> {
  await Promise.all([...new Set(runs.flatMap((r) => r.workers))].map((w) => w.stop('SIGTERM')));
  await stopServices(runs.map((r) => r.service));
}

/** A release of a fresh service on a worker of its own, `body` run on it; fleet and worker stopped whatever happened. */
async function withRelease<T>(
  prefix: string,
  pace: FleetPolicyOptions,
  body: (run: BakingRelease, env: WorkerEnv) => Promise<T>,
): Promise<T> {
  const { env, runs } = await startReleases(stack, [fresh(prefix)], pace, [`worker-${prefix}`]);
  try {
    return await body(runs[0]!, env);
  } finally {
    await finish(runs);
  }
}

test(
  'history SIGKILLed in the canary bake and restarted: promoted, each step once, the bake timer on time',
  async () => {
    const CYCLE_MS = 12_000;
    const DOWN_MS = 3_000;
    await scenario({
      scenario: 'cluster: history service SIGKILLed in the canary bake, restarted',
      runs: runsOf(3),
      run: () =>
        withRelease('hist', { cycleMs: CYCLE_MS }, async (run) => {
          const { cluster } = stack.server;
          await waitForStatus(run.handle, canaryBaking, { timeoutMs: 30_000, everyMs: 100 }, 'the canary bake');
          const into = random.int(1_000, CYCLE_MS - DOWN_MS - 2_000);
          await sleep(into);
          await cluster.kill('history', 'SIGKILL');
          await sleep(DOWN_MS);
          await cluster.restart('history');
          progress(`history SIGKILLed ${into} ms into the bake, back after ${DOWN_MS} ms`);
          const verdict = await verifyRelease(run.handle, run.service, 'promoted', 90_000);
          const bakeMs = await gapMs(run.service, 'canary', 'wave-1');
          return {
            faults: 1,
            verdicts: [verdict],
            problems: bakeProblem('canary bake', bakeMs, CYCLE_MS),
            note: `killed ${(into / 1000).toFixed(1)} s into a ${CYCLE_MS / 1000} s bake, down ${DOWN_MS / 1000} s, bake ${fmt(bakeMs)} s`,
          };
        }),
    });
  },
  BOUND_MS(runsOf(3)),
);

test(
  'PostgreSQL restarted in a production wave: promoted, each step once, the wave bake on time',
  async () => {
    const WAVE_BAKE_MS = 8_000;
    await scenario({
      scenario: 'cluster: PostgreSQL restarted in production wave 1',
      runs: runsOf(3),
      run: () =>
        withRelease('pg', { cycleMs: 3_000, waveBakeMs: WAVE_BAKE_MS }, async (run) => {
          const { cluster } = stack.server;
          const inWave1 = (s: ReleaseStatus) => s.stage === 'production' && s.waves[0]?.state !== 'pending';
          await waitForStatus(run.handle, inWave1, { timeoutMs: 30_000, everyMs: 100 }, 'production wave 1');
          const into = random.int(0, WAVE_BAKE_MS / 2);
          await sleep(into);
          const t0 = Date.now();
          await cluster.restartPostgres();
          const downMs = Date.now() - t0;
          progress(`PostgreSQL restarted ${into} ms into wave 1 (${downMs} ms)`);
          const verdict = await verifyRelease(run.handle, run.service, 'promoted', 90_000);
          const waveMs = await gapMs(run.service, 'wave-1', 'wave-2');
          return {
            faults: 1,
            verdicts: [verdict],
            problems: bakeProblem('wave-1 bake', waveMs, WAVE_BAKE_MS),
            note: `restarted ${(into / 1000).toFixed(1)} s into wave 1 (${(downMs / 1000).toFixed(1)} s), wave 1 → 2 ${fmt(waveMs)} s for an ${WAVE_BAKE_MS / 1000} s bake`,
          };
        }),
    });
  },
  BOUND_MS(runsOf(3)),
);

/** Accepted approve updates in the history and approvals in the audit: what a person's approve came to. */
async function approvals(client: Client, handle: ReleaseHandle): Promise<{ updates: number; audited: number }> {
  const history = await client.workflow.getHandle(handle.workflowId).fetchHistory();
  const updates = (history.events ?? []).filter(
    (e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'approve',
  ).length;
  const status = await handle.query(statusQuery);
  const audited = status.audit.filter((a) => a.action === 'approve' && a.accepted).length;
  return { updates, audited };
}

/**
 * How the frontend goes while the person approves: killed just after the approve was sent (it may be on the wire or
 * inside the frontend), killed just before it (the approve waits in the client's retries until the frontend is back),
 * or restarted gracefully under it.
 */
const FRONTEND_FAULTS = [
  { name: 'SIGKILLed just after the approve was sent', signal: 'SIGKILL', approveFirst: true },
  { name: 'SIGKILLed just before the approve, back 2 s later', signal: 'SIGKILL', approveFirst: false },
  { name: 'SIGTERMed just after the approve was sent', signal: 'SIGTERM', approveFirst: true },
] as const;

test(
  'frontend restarted while a person approves the canary gate: the approval lands once, the release is promoted',
  async () => {
    await scenario({
      scenario: 'cluster: frontend killed or restarted while a person approves the canary gate',
      runs: FULL ? 6 : 2,
      run: (i) =>
        withRelease('approve', { cycleMs: 3_000, canaryApproval: true }, async (run, env) => {
          const { cluster } = stack.server;
          const client = await stack.server.client();
          const fault = FRONTEND_FAULTS[i % FRONTEND_FAULTS.length]!;
          await waitForStatus(run.handle, (s) => s.gate?.name === 'canary', { timeoutMs: 30_000 }, 'the canary gate');
          // The person's approve, through the typed client as the CLI sends it.
          const tollgate = new TollgateClient(client, env.taskQueue);
          let answeredAt = Infinity;
          const approve = () =>
            tollgate.approve(run.service.name, { by: 'bob', comment: 'looks good' }).then(
              () => ((answeredAt = Date.now()), true),
              (err: Error) => (progress(`approve refused: ${err.message.split('\n')[0]}`), false),
            );
          let approving: Promise<boolean>;
          let faultAt: number;
          if (fault.approveFirst) {
            approving = approve();
            await sleep(random.int(0, 20));
            faultAt = Date.now();
            await cluster.kill('frontend', fault.signal);
          } else {
            faultAt = Date.now();
            await cluster.kill('frontend', fault.signal);
            approving = approve();
            await sleep(2_000);
          }
          await cluster.restart('frontend');
          let answered = await approving;
          // A person whose approve failed sends it again, as the CLI's error tells them to.
          if (!answered) {
            answered = await tollgate.approve(run.service.name, { by: 'bob', comment: 'again' }).then(
              () => true,
              () => false,
            );
          }
          const wasAnswered = answeredAt < faultAt;
          progress(`frontend ${fault.name}; answered before the fault: ${wasAnswered}`);
          const verdict = await verifyRelease(run.handle, run.service, 'promoted', 90_000);
          const { updates, audited } = await approvals(client, run.handle);
          const problems = [
            ...(updates !== 1 ? [`${updates} accepted approve updates in the history`] : []),
            ...(audited !== 1 ? [`${audited} accepted approvals in the audit`] : []),
            ...(answered ? [] : ['the approve was never answered, even sent again']),
          ];
          return {
            faults: 1,
            verdicts: [verdict],
            problems,
            note: `${fault.name}: ${wasAnswered ? 'answered before the fault' : 'in flight across it'}`,
          };
        }),
    });
  },
  BOUND_MS(FULL ? 6 : 2),
);

/** The identities (pid@host) of the workers that completed the workflow tasks of a release, in order. */
async function taskWorkers(client: Client, handle: ReleaseHandle): Promise<{ completed: string[]; failed: number }> {
  const history = await client.workflow.getHandle(handle.workflowId).fetchHistory();
  const events = history.events ?? [];
  return {
    completed: events.flatMap((e) => e.workflowTaskCompletedEventAttributes?.identity ?? []),
    failed: events.filter((e) => e.workflowTaskFailedEventAttributes).length,
  };
}

test(
  'three workers rolled onto a new build in the canary bake: the new build replays the old histories and promotes',
  async () => {
    const CYCLE_MS = 20_000;
    const previous = await previousBuild();
    await scenario({
      scenario: 'cluster: three workers, rolling restart onto a new build in the canary bake',
      runs: runsOf(2),
      run: async () => {
        const client = await stack.server.client();
        const names = ['roll-a', 'roll-b', 'roll-c'];
        const services = names.map((n) => fresh(n));
        const { env, runs } = await startReleases(stack, services, { cycleMs: CYCLE_MS }, names, previous);
        const replacements: Proc[] = [];
        try {
          for (const r of runs) await waitForStatus(r.handle, canaryBaking, { timeoutMs: 30_000 }, 'the canary bake');
          const old = runs[0]!.workers;
          // One at a time, as a rolling deploy does: the old worker drains and stops, the new build takes its place.
          for (const [i, worker] of old.entries()) {
            await worker.stop('SIGTERM');
            replacements.push(await spawnWorker(env, `${names[i]}-new`));
          }
          progress(`rolled ${old.length} workers from ${previous.name} onto this tree`);
          const verdicts = await Promise.all(runs.map((r) => verifyRelease(r.handle, r.service, 'promoted', 90_000)));
          const oldIds = old.map((w) => `${w.pid}@`);
          const newIds = replacements.map((w) => `${w.pid}@`);
          const problems: string[] = [];
          for (const r of runs) {
            const { completed, failed } = await taskWorkers(client, r.handle);
            const by = (ids: string[]) => completed.filter((c) => ids.some((id) => c.startsWith(id))).length;
            if (failed > 0) problems.push(`${r.service.name}: ${failed} workflow tasks failed`);
            if (by(oldIds) === 0) problems.push(`${r.service.name}: the old build completed no workflow task`);
            if (by(newIds) === 0) problems.push(`${r.service.name}: the new build completed no workflow task`);
            const last = completed.at(-1) ?? '';
            if (!newIds.some((id) => last.startsWith(id))) problems.push(`${r.service.name}: finished by ${last}`);
            problems.push(
              ...bakeProblem(`${r.service.name} canary bake`, await gapMs(r.service, 'canary', 'wave-1'), CYCLE_MS),
            );
          }
          return {
            faults: old.length,
            verdicts,
            problems,
            note: `${runs.length} releases started on the build of ${previous.name}, finished on this tree's`,
          };
        } finally {
          await Promise.all(replacements.map((w) => w.stop('SIGTERM')));
          await finish(runs);
        }
      },
    });
  },
  BOUND_MS(runsOf(2)) + 60_000,
);

const fmt = (ms: number | undefined) => (ms === undefined ? '?' : (ms / 1000).toFixed(1));
