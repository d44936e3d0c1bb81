import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { progress, releaseInCanaryBake, stopServices, type BakingRelease, reliabilityStack } from './support';
import { survived, tally, verifyRelease, type Verdict } from './verify';

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
  const names = ['worker-a', 'worker-b'] as const;
  let run: BakingRelease | undefined;
  let verdict: Verdict | undefined;
  let killedName: string | undefined;
  let identified = false;
  const problems: string[] = [];
  try {
    run = await releaseInCanaryBake(stack, `fleet-${randomUUID().slice(0, 5)}`, CYCLE_MS, [...names]);
    const { service, handle, workers } = run;

    // The worker whose log shows the canary deploy ran the release's activities.
    const ran = names.map((n) => logLines(n, service.name, '"deploy step"').some((l) => l.includes('"canary"')));
    identified = ran.filter(Boolean).length === 1;
    const victim = identified ? ran.indexOf(true) : 0;
    killedName = names[victim];
    const survivorName = names[1 - victim]!;
    await workers[victim]!.stop('SIGKILL');
    progress(`killed ${killedName} (pid ${workers[victim]!.pid}) in the canary bake; ${survivorName} is left`);

    verdict = await verifyRelease(handle, service, 'promoted', 60_000);
    progress(`verdict ${JSON.stringify(verdict)}`);

    // The production waves and the mark-stable ran on the survivor: the killed worker never came back.
    // (Step keys are redacted in logs — `key` is a redacted path — so the waves are counted by stage.)
    const waves = logLines(survivorName, service.name, '"deploy step"').filter((l) => l.includes('"production"'));
    if (waves.length !== 2) problems.push(`${survivorName} deployed ${waves.length} production waves, expected 2`);
    if (logLines(survivorName, service.name, '"marked stable"').length === 0) {
      problems.push(`${survivorName} did not mark the release stable`);
    }
    if (!workers[victim]!.exited()) problems.push(`${killedName} still running`);
    if (workers[1 - victim]!.exited()) problems.push(`${survivorName} exited`);
  } finally {
    stack.rows.push({
      scenario: 'two workers, one SIGKILLed in the canary bake (not restarted)',
      ...tally([verdict], problems),
      faults: killedName ? 1 : 0,
      seconds: Math.round((Date.now() - started) / 1000),
      notes:
        `killed ${identified ? 'the worker that ran the canary deploy' : 'worker-a (canary deploy not attributed)'}; ` +
        `the survivor deployed both waves and marked stable${problems.length ? ` — problems: ${problems.join('; ')}` : ''}`,
      file: 'worker-fleet.test.ts',
    });
    if (run) await stopServices([run.service]);
  }
  expect(verdict && survived(verdict) ? [] : verdict).toEqual([]);
  expect(problems).toEqual([]);
  expect(identified).toBe(true);
}, 85_000);
