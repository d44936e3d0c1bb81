import { randomUUID } from 'node:crypto';
import {
  progress,
  releaseInCanaryBake,
  sleep,
  stopServices,
  type BakingRelease,
  type Service,
  reliabilityStack,
} from './support';
import { survived, tally, verifyRelease, type Verdict } from './verify';

/**
 * The dev server is stopped in the middle of the canary bake (SIGTERM, then SIGKILL in a second release), stays
 * down for a couple of seconds and is started again on the same SQLite file and ports, while the worker keeps
 * running. The release must resume and be promoted, and the bake timer must have fired when it should: the canary
 * bake as the fleet's action log shows it (canary step applied → first wave-1 action) is at least one traffic
 * cycle and less than two cycles plus slack (a timer lost with the server would never fire; one re-armed from
 * scratch after the restart would show as a bake of well over a cycle).
 */

const CYCLE_MS = 8_000;
const DOWN_MS = 2_000;
/** Deploy time of the first wave up to its first action, plus scheduling after the restart. */
const SLACK_MS = 5_000;

const stack = reliabilityStack('server-restart');

/** Canary bake as the action log shows it: canary step applied → the first action of wave 1 (ms). */
async function canaryBakeMs(service: Service): Promise<number | undefined> {
  const actions = await service.fleet.target.readActions();
  const canary = actions.find((a) => a.action === 'step-applied' && a.key.endsWith('/canary'));
  const wave = actions.find((a) => a.key.endsWith('/wave-1'));
  if (!canary || !wave) return undefined;
  return Date.parse(wave.at) - Date.parse(canary.at);
}

async function serverStoppedInBake(signal: NodeJS.Signals): Promise<void> {
  const started = Date.now();
  const name = `restart-${signal.toLowerCase()}-${randomUUID().slice(0, 5)}`;
  let run: BakingRelease | undefined;
  let verdict: Verdict | undefined;
  let bakeMs: number | undefined;
  let faults = 0;
  const problems: string[] = [];
  try {
    run = await releaseInCanaryBake(stack, name, CYCLE_MS, [`worker-${signal.toLowerCase()}`]);
    const { service, handle, workers } = run;

    // Middle of the bake: the server goes away with the bake timer pending, and comes back on the same file.
    await sleep(CYCLE_MS / 2 - DOWN_MS / 2);
    await stack.server.stop(signal);
    faults++;
    progress(`${signal}: dev server stopped in the canary bake`);
    await sleep(DOWN_MS);
    await stack.server.start();
    await stack.server.client(); // answers once the namespace is served again
    progress(`${signal}: dev server back`);

    verdict = await verifyRelease(handle, service, 'promoted', 60_000);
    bakeMs = await canaryBakeMs(service);
    progress(`${signal}: canary bake ${bakeMs} ms; verdict ${JSON.stringify(verdict)}`);
    if (bakeMs === undefined) problems.push('no canary bake in the action log');
    else if (bakeMs < CYCLE_MS || bakeMs >= 2 * CYCLE_MS + SLACK_MS) {
      problems.push(`canary bake ${bakeMs} ms, expected [${CYCLE_MS}, ${2 * CYCLE_MS + SLACK_MS})`);
    }
    if (workers[0]!.exited()) problems.push('worker exited while the server was down');
  } finally {
    stack.rows.push({
      scenario: `dev server ${signal} in the canary bake, restarted on the same SQLite file`,
      ...tally([verdict], problems),
      faults,
      seconds: Math.round((Date.now() - started) / 1000),
      notes:
        `down ${DOWN_MS / 1000} s; canary bake ${bakeMs === undefined ? '?' : (bakeMs / 1000).toFixed(1)} s ` +
        `for a ${CYCLE_MS / 1000} s cycle (action log)${problems.length ? ` — problems: ${problems.join('; ')}` : ''}`,
      file: 'server-restart.test.ts',
    });
    await run?.workers[0]!.stop('SIGTERM');
    if (run) await stopServices([run.service]);
  }
  expect(verdict && survived(verdict) ? [] : verdict).toEqual([]);
  expect(problems).toEqual([]);
}

// The test's bound covers its own waits (up to 30 s to reach the bake, 60 s for the result): on a loaded machine a
// release that resumes correctly can take longer than a quiet run's 30 s, and a timeout would hide the verdict.
const BOUND_MS = 120_000;

test(
  'dev server SIGTERMed in the canary bake: the release resumes, the bake timer fires on time',
  async () => {
    await serverStoppedInBake('SIGTERM');
  },
  BOUND_MS,
);

test(
  'dev server SIGKILLed in the canary bake: the release resumes, the bake timer fires on time',
  async () => {
    await serverStoppedInBake('SIGKILL');
  },
  BOUND_MS,
);
