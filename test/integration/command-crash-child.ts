import pino from 'pino';
import { CommandTarget, type CommandTargetOptionsInput } from '../../src/providers/targets/command';
import type { DeployStep } from '../../src/providers/targets/types';

/**
 * A worker in the middle of a command step, run as its own process by command-target-crash.test.ts (compiled with
 * swc): it applies one step and waits. The test SIGKILLs it while the step's script runs, so the script is left
 * running with nobody to read its output — what a worker that died mid-step leaves behind.
 *
 * argv[2]: JSON { options: command target options, step: DeployStep }.
 */

interface Input {
  options: CommandTargetOptionsInput;
  step: DeployStep;
}

const input = JSON.parse(process.argv[2] ?? '{}') as Input;
new CommandTarget(input.options, { logger: pino({ level: 'silent' }) }).apply(input.step).then(
  // Reaching the end means the test never killed it: it says so.
  () => process.exit(3),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(4);
  },
);
