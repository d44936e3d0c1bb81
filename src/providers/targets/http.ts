import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { envReferences, EXTERNAL_TIMEOUT_MAX_MS, httpCallSchema, timeoutSchema } from '../../domain/external';
import type { Logger } from '../../logger';
import { SignedHttpCaller, type SignedHttpCallerOptions } from '../external/http-caller';
import type { ExternalRequest } from '../external/types';
import { ExternalTarget, LOOKUP_TIMEOUT_MAX_MS, type ExternalAction } from './external';

/**
 * `kind: http`: every step is a signed POST to the user's deploy API (see SignedHttpCaller for the wire contract and
 * ExternalTarget for the steps), answered at once or accepted and then polled.
 */

export const httpTargetOptionsSchema = httpCallSchema
  .extend({
    /** The ledger of step keys, shared by every worker that serves the same services. */
    stateDir: z.string().min(1, 'expected the directory of the step ledger'),
    /** One step, polls included: under the deploy activity's 10-minute start-to-close timeout. */
    pollTimeout: timeoutSchema.default(EXTERNAL_TIMEOUT_MAX_MS),
  })
  .refine((o) => o.pollTimeout >= o.timeout, {
    path: ['pollTimeout'],
    message: 'must be at least "timeout": the whole step cannot be shorter than its first request',
  });
export type HttpTargetOptions = z.output<typeof httpTargetOptionsSchema>;
export type HttpTargetOptionsInput = z.input<typeof httpTargetOptionsSchema>;

/**
 * What a worker's environment lacks for `options`, one problem per field (`headers.Authorization: …`, `secretEnv: …`).
 * Checked when the worker starts, so a missing token stops it there instead of failing every release.
 */
export function unsetVariables(options: HttpTargetOptions, env: NodeJS.ProcessEnv = process.env): string[] {
  const unset = (name: string) => env[name] === undefined || env[name] === '';
  const problems: string[] = [];
  for (const [header, value] of Object.entries(options.headers)) {
    for (const name of envReferences(value).filter(unset)) {
      problems.push(`headers.${header}: environment variable ${name} is not set`);
    }
  }
  if (options.secretEnv !== undefined && unset(options.secretEnv)) {
    problems.push(`secretEnv: environment variable ${options.secretEnv} is not set (it should hold the signing key)`);
  }
  return problems;
}

/**
 * The Idempotency-Key each action sends. A deploy and its undo share the step's key in the payload, but they are two
 * operations: an API that replays the answer it stored for a key must not answer an undo with the deploy's. A read
 * changes nothing and must never be answered from such a store, so each read gets a key of its own.
 */
export function idempotencyKey(action: ExternalAction, key: string): string {
  if (action === 'undo') return `${key}/undo`;
  if (action === 'read') return `${key}/${randomUUID()}`;
  return key;
}

export interface HttpTargetDeps {
  logger: Logger;
  /** The caller's environment, fetch and poll bounds (tests); its deadline is the target's own. */
  caller?: Omit<SignedHttpCallerOptions, 'deadlineMs'>;
  lockWaitMs?: number;
}

export class HttpTarget extends ExternalTarget {
  readonly options: HttpTargetOptions;

  constructor(input: HttpTargetOptionsInput, deps: HttpTargetDeps) {
    const options = httpTargetOptionsSchema.parse(input);
    const { stateDir, pollTimeout, ...call } = options;
    const steps = new SignedHttpCaller({ ...deps.caller, deadlineMs: pollTimeout });
    // `read` and `mark-stable` run in the workflow's quick activities (one minute, no heartbeat): cut short first.
    const lookups = new SignedHttpCaller({ ...deps.caller, deadlineMs: Math.min(pollTimeout, LOOKUP_TIMEOUT_MAX_MS) });
    super(
      (action: ExternalAction, request: ExternalRequest) => {
        const lookup = action === 'read' || action === 'mark-stable';
        return (lookup ? lookups : steps).call(call, { ...request, key: idempotencyKey(action, request.key) });
      },
      {
        kind: 'http',
        stateDir,
        logger: deps.logger,
        ...(deps.lockWaitMs !== undefined && { lockWaitMs: deps.lockWaitMs }),
      },
    );
    this.options = options;
  }
}
