import { randomUUID } from 'node:crypto';
import { abortUpdate } from '../../src/domain/messages';
import type { ReleaseStatus } from '../../src/domain/status';
import { canaryBaking, tryStatus, type ReleaseHandle } from '../helpers/release-handle';
import {
  FULL,
  SEED,
  prng,
  progress,
  releaseNext,
  sleep,
  spawnWorker,
  startServices,
  stopServices,
  workerFiles,
  type Proc,
  reliabilityStack,
} from './support';
import { survived, tally, verifyRelease, type Verdict } from './verify';

/**
 * The real worker (a `node` child process) is SIGKILLed at seeded points — during a deploy, during the canary bake,
 * during a production wave, during a rollback — and started again, while three releases run on their own HAProxy
 * fleets: two that must be promoted, and one that holds in its first production wave until the test aborts it, so
 * its rollback undoes a wave too. The phases come in a release's own order each round (a phase that is over cannot
 * be waited for); the seed picks the delay into each phase and how long the worker stays down. A killed deploy or
 * undo is retried after its heartbeat timeout (20 s), which is what bounds a round's length.
 */

const KILLS = FULL ? 20 : 4;
const MAX_ROUNDS = FULL ? 8 : 1;
const CYCLE_MS = 8_000;
const HOLD_MS = 10 * 60_000;
const PHASES = ['deploy', 'bake', 'wave', 'rollback'] as const;
type Phase = (typeof PHASES)[number];

const inPhase: Record<Phase, (s: ReleaseStatus) => boolean> = {
  deploy: (s) => (s.stage === 'staging' || s.stage === 'canary') && s.state === 'deploying',
  bake: canaryBaking,
  wave: (s) => s.stage === 'production' && (s.state === 'deploying' || s.state === 'baking'),
  rollback: (s) => s.state === 'rolling-back',
};

const stack = reliabilityStack('crash');

test(
  `worker SIGKILLed ${KILLS} times at seeded points (seed ${SEED}): every release ends as it would have`,
  async () => {
    const started = Date.now();
    const rnd = prng(SEED);
    const client = await stack.server.client();
    const verdicts: Verdict[] = [];
    const killLog: string[] = [];
    let kills = 0;
    const deadline = started + (FULL ? 1_650 : 270) * 1000;
    try {
      for (let round = 0; round < MAX_ROUNDS && kills < KILLS && Date.now() < deadline; round++) {
        const id = randomUUID().slice(0, 5);
        const services = await startServices([`crash-${id}-a`, `crash-${id}-b`, `crash-${id}-x`]);
        let worker: Proc | undefined;
        try {
          const hold = services[2]!.name;
          const env = stack.workerEnv(
            `reliability-crash-${id}`,
            workerFiles(stack.dir, services, (name) => ({
              cycleMs: CYCLE_MS,
              waveBakeMs: name === hold ? HOLD_MS : 2_000,
            })),
          );
          worker = await spawnWorker(env);
          const handles: ReleaseHandle[] = [];
          for (const s of services) handles.push(await releaseNext(client, env.taskQueue, s.name));
          const finished = handles.map(() => false);
          const results = handles.map((h, i) => h.result().finally(() => (finished[i] = true)));
          for (const r of results) void r.catch(() => undefined);
          const held = handles[2]!;
          let aborted = false;
          /** Aborts the held release once it is in production (bounded), so its rollback undoes a wave. */
          const abortHeld = async () => {
            for (let i = 0; i < 600 && !aborted && !finished[2]; i++) {
              const st = await tryStatus(held, 1_000);
              if (st?.stage === 'production') {
                // An update returns once the workflow has taken the abort: from then on it is rolling back.
                await held.executeUpdate(abortUpdate, {
                  args: [{ by: 'reliability', reason: 'exercise the rollback' }],
                });
                aborted = true;
              } else await sleep(200);
            }
          };

          const perRound = Math.min(PHASES.length, KILLS - kills);
          for (let k = 0; k < perRound && finished.some((f) => !f); k++) {
            const phase = PHASES[k]!;
            const phaseDeadline = Math.min(deadline, Date.now() + 100_000);
            let hit: string | undefined;
            // A rollback of a few undo steps can be over between two status polls: kill right after the abort.
            if (phase === 'rollback') {
              await abortHeld();
              if (aborted && !finished[2]) hit = `${services[2]!.name} rolling-back (abort accepted)`;
            }
            // Bounded: polls until a running release is in the phase, or the deadline (then kills wherever it is).
            while (!hit && Date.now() < phaseDeadline && finished.some((f) => !f)) {
              for (const [i, h] of handles.entries()) {
                if (finished[i]) continue;
                const st = await tryStatus(h, 1_000);
                if (st && inPhase[phase](st)) hit = `${services[i]!.name} ${st.stage}/${st.state}`;
              }
              if (!hit) await sleep(100);
            }
            await sleep(rnd.int(0, phase === 'rollback' ? 200 : 700));
            await worker.stop('SIGKILL');
            if (phase === 'rollback' && finished[2]) hit = `${services[2]!.name} rollback over before the kill`;
            kills++;
            const down = rnd.int(200, 2_000);
            progress(`kill ${kills}: ${phase} ${hit ?? '-'}`);
            killLog.push(
              `${phase}: ${hit ?? 'phase not seen, killed anyway'} (+${Date.now() - started} ms, down ${down} ms)`,
            );
            await sleep(down);
            worker = await spawnWorker(env);
          }
          await abortHeld();
          progress('kills done; waiting for results');
          for (const [i, h] of handles.entries()) {
            verdicts.push(
              await verifyRelease(
                h,
                services[i]!,
                i === 2 ? 'aborted' : 'promoted',
                Math.max(5_000, deadline - Date.now()),
              ),
            );
            progress(`verdict ${JSON.stringify(verdicts.at(-1))}`);
          }
        } finally {
          await worker?.stop('SIGTERM');
          await stopServices(services);
        }
      }
    } finally {
      const bad = verdicts.filter((v) => !survived(v));
      const seconds = Math.round((Date.now() - started) / 1000);
      stack.rows.push({
        scenario: 'worker SIGKILL (deploy, bake, wave, rollback)',
        ...tally(verdicts),
        faults: kills,
        seconds,
        notes: `kills by phase: ${PHASES.map((p) => `${p} ${killLog.filter((l) => l.startsWith(`${p}:`)).length}`).join(', ')}; outside their phase: ${killLog.filter((l) => / not seen| over before/.test(l)).length}`,
        file: 'crash.test.ts',
      });
      progress(`crash suite: ${kills} kills in ${seconds} s\n${killLog.join('\n')}\n${JSON.stringify(bad, null, 1)}`);
    }
    expect(verdicts.filter((v) => !survived(v))).toEqual([]);
    expect(kills).toBeGreaterThanOrEqual(KILLS);
  },
  (FULL ? 1_800 : 330) * 1000,
);
