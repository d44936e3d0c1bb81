import { join } from 'node:path';
import { z } from 'zod';
import { commandCallSchema, type CommandCall } from '../../domain/external';
import type { Logger } from '../../logger';
import { ProcessRunner } from '../external/command-runner';
import type { CommandRunner } from '../external/types';
import { ExternalTarget, LOOKUP_TIMEOUT_MAX_MS, type ExternalAction } from './external';

/**
 * `kind: command`: every step runs the user's executable (ExternalTarget's contract: the step as JSON on stdin and
 * as TOLLGATE_* variables, the result in the file TOLLGATE_RESULT names, exit 0 / 75 / anything else). One entry may
 * serve any number of services, `default` included: the service comes with each step, and the ledger is kept per
 * service.
 */

export const commandTargetOptionsSchema = commandCallSchema.extend({
  /**
   * The ledger of step keys (`<service>.ledger.json`) and the record of running commands (`running/`): shared by the
   * workers of one machine, so a restarted worker knows what a dead one applied and stops what it left running.
   */
  stateDir: z.string().min(1).max(4096),
});
export type CommandTargetOptions = z.output<typeof commandTargetOptionsSchema>;
export type CommandTargetOptionsInput = z.input<typeof commandTargetOptionsSchema>;

/** The variables `env` names that the worker's environment lacks (or holds empty), each named by its field. */
export function unsetCommandVariables(options: Pick<CommandTargetOptions, 'env'>, env = process.env): string[] {
  return options.env.flatMap((name, i) =>
    env[name] === undefined || env[name] === '' ? [`env.${i}: environment variable ${name} is not set`] : [],
  );
}

/** The call as `action` runs it: lookups within LOOKUP_TIMEOUT_MAX_MS. */
export function callFor(call: CommandCall, action: ExternalAction): CommandCall {
  const lookup = action === 'read' || action === 'mark-stable';
  return lookup && call.timeout > LOOKUP_TIMEOUT_MAX_MS ? { ...call, timeout: LOOKUP_TIMEOUT_MAX_MS } : call;
}

export class CommandTarget extends ExternalTarget {
  readonly options: CommandTargetOptions;

  constructor(input: CommandTargetOptionsInput, deps: { logger: Logger; runner?: CommandRunner; lockWaitMs?: number }) {
    const options = commandTargetOptionsSchema.parse(input);
    const { stateDir, ...call } = options;
    const runner = deps.runner ?? new ProcessRunner({ runningDir: join(stateDir, 'running') });
    super((action, request) => runner.run(callFor(call, action), request), {
      kind: 'command',
      stateDir,
      logger: deps.logger,
      ...(deps.lockWaitMs !== undefined && { lockWaitMs: deps.lockWaitMs }),
    });
    this.options = options;
  }
}
