import pino from 'pino';
import { HaproxyFleetTarget, type HaproxyFleetOptions } from '../../src/providers/targets/haproxy-fleet';
import { FleetStateStore, type FleetState } from '../../src/providers/targets/haproxy-fleet-state';
import type { DeployStep } from '../../src/providers/targets/types';

/**
 * A worker that dies at the worst moment of a replacement, run as its own process by haproxy-fleet-crash.test.ts
 * (compiled with swc): it applies or undoes one step on the fleet and SIGKILLs itself right after the first save
 * in which an instance it started has become a serving member. That is the instant the new instance takes traffic
 * and the one it replaces has not been retired yet; whatever the state file says then is all a restarted worker has.
 *
 * argv[2]: JSON { options: target options without the logger, op: 'apply' | 'undo', step: DeployStep }.
 */

interface Input {
  options: Omit<HaproxyFleetOptions, 'logger'>;
  op: 'apply' | 'undo';
  step: DeployStep;
}

const input = JSON.parse(process.argv[2] ?? '{}') as Input;
const started = new Set<string>();
const { save } = FleetStateStore.prototype as { save: (this: FleetStateStore, state: FleetState) => Promise<void> };
FleetStateStore.prototype.save = async function (this: FleetStateStore, state: FleetState): Promise<void> {
  await save.call(this, state);
  for (const i of state.instances) {
    if (i.status === 'starting') started.add(i.id);
    else if (i.status === 'serving' && i.slot !== null && started.has(i.id)) process.kill(process.pid, 'SIGKILL');
  }
};

const target = new HaproxyFleetTarget({ ...input.options, logger: pino({ level: 'silent' }) });
(input.op === 'apply' ? target.apply(input.step) : target.undo(input.step)).then(
  // Reaching the end means the kill point never came: the test says so.
  () => process.exit(3),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(4);
  },
);
