import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  progress,
  sleep,
  spawnWorker,
  startRelease,
  startServices,
  stopServices,
  tryStatus,
  workerFiles,
  type Proc,
  reliabilityStack,
} from './support';
import { survived, verifyRelease, type Verdict } from './verify';

/**
 * Two worker processes poll one task queue. During the canary bake the worker that ran the release's canary deploy
 * (known from its own log file) is SIGKILLed and never restarted: the other one must carry the release to
 * `promoted` on its own. The kill is in the bake, not in a deploy, because a deploy killed mid-flight is retried only
 * after its 20 s heartbeat timeout (crash.test.ts covers that); here the survivor takes over the workflow once the
 * dead worker's sticky queue times out (10 s).
 */

const CYCLE_MS = 10_000;

const stack = reliabilityStack('worker-fleet');

/** Log lines of a worker's log file that concern `service` and contain `text`. */
function logLines(name: string, service: string, text: string): string[] {
  const log = readFileSync(join(stack.dir, `${name}.log`), 'utf8');
  return log.split('\n').filter((l) => l.includes(text) && l.includes(`"service":"${service}"`));
}

test('one of two workers SIGKILLed in the canary bake: the other promotes the release', async () => {
  const started = Date.now();
  const client = await stack.server.client();
  const id = randomUUID().slice(0, 5);
  const [service] = await startServices([`fleet-${id}`]);
  const names = ['worker-a', 'worker-b'] as const;
  let verdict: Verdict | undefined;
  let killedName: string | undefined;
  let identified = false;
  const problems: string[] = [];
  try {
    const { targetsFile, policyDir } = workerFiles(stack.dir, [service!], CYCLE_MS);
    const env = {
      address: stack.server.address,
      taskQueue: `reliability-fleet-${id}`,
      targetsFile,
      policyDir,
      logDir: stack.dir,
    };
    const workers: Proc[] = await Promise.all(names.map((n) => spawnWorker(env, n)));
    const handle = await startRelease(client, env.taskQueue, service!.name);

    let baking = false;
    for (let i = 0; i < 300 && !baking; i++) {
      const st = await tryStatus(handle, 1_000);
      baking = st?.stage === 'canary' && st.state === 'baking';
      if (!baking) await sleep(100);
    }
    if (!baking) throw new Error('release never reached the canary bake');

    // The worker whose log shows the canary deploy ran the release's activities.
    const ran = names.map((n) => logLines(n, service!.name, '"deploy step"').some((l) => l.includes('"canary"')));
    identified = ran.filter(Boolean).length === 1;
    const victim = identified ? ran.indexOf(true) : 0;
    killedName = names[victim];
    const survivorName = names[1 - victim]!;
    await workers[victim]!.stop('SIGKILL');
    progress(`killed ${killedName} (pid ${workers[victim]!.pid}) in the canary bake; ${survivorName} is left`);

    verdict = await verifyRelease(handle, service!, 'promoted', 60_000);
    progress(`verdict ${JSON.stringify(verdict)}`);

    // The production waves and the mark-stable ran on the survivor: the killed worker never came back.
    // (Step keys are redacted in logs — `key` is a redacted path — so the waves are counted by stage.)
    const waves = logLines(survivorName, service!.name, '"deploy step"').filter((l) => l.includes('"production"'));
    if (waves.length !== 2) problems.push(`${survivorName} deployed ${waves.length} production waves, expected 2`);
    if (logLines(survivorName, service!.name, '"marked stable"').length === 0) {
      problems.push(`${survivorName} did not mark the release stable`);
    }
    if (!workers[victim]!.exited()) problems.push(`${killedName} still running`);
    if (workers[1 - victim]!.exited()) problems.push(`${survivorName} exited`);
  } finally {
    const seconds = Math.round((Date.now() - started) / 1000);
    const ok = verdict !== undefined && survived(verdict) && problems.length === 0;
    stack.rows.push({
      scenario: 'two workers, one SIGKILLed in the canary bake (not restarted)',
      runs: 1,
      faults: killedName ? 1 : 0,
      survived: ok ? 1 : 0,
      wrongOutcomes: verdict?.wrongOutcome ? 1 : 0,
      appliedTwice: verdict?.appliedTwice.length ?? 0,
      dataLost: verdict && verdict.dataLost.length > 0 ? 1 : 0,
      seconds,
      notes:
        `killed ${identified ? 'the worker that ran the canary deploy' : 'worker-a (canary deploy not attributed)'}; ` +
        `the survivor deployed both waves and marked stable${problems.length ? ` — problems: ${problems.join('; ')}` : ''}`,
      file: 'worker-fleet.test.ts',
    });
    await stopServices([service!]);
  }
  expect(verdict && survived(verdict) ? [] : verdict).toEqual([]);
  expect(problems).toEqual([]);
  expect(identified).toBe(true);
}, 85_000);
