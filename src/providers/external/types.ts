import type { CommandCall, HttpCall } from '../../domain/external';

/**
 * How a user's command or HTTP endpoint answered one call. The same four answers for every use (targets, hooks, job
 * checks), so each use decides only what they mean for it.
 */
export type ExternalOutcome =
  /** Exit 0, or HTTP 2xx (after polling, for an accepted-then-poll answer). */
  | { kind: 'ok'; result: unknown; lastLines: string[]; durationMs: number }
  /** Exit 75, HTTP 408/429/5xx or a connection that failed: worth another attempt (Temporal's retry). */
  | { kind: 'retry'; message: string; lastLines: string[]; durationMs: number }
  /** Any other exit status or HTTP answer: final, with the message the user's tool gave. */
  | { kind: 'failed'; message: string; lastLines: string[]; durationMs: number }
  /** The call ran past its timeout; the command's whole process group was killed. */
  | { kind: 'timeout'; message: string; lastLines: string[]; durationMs: number };

/** One call: what it is about, as JSON and as environment variables, and who hears its output. */
export interface ExternalRequest {
  /** The JSON document sent: a command's stdin, a request's body. */
  payload: Record<string, unknown>;
  /** `TOLLGATE_*` variables for a command (service, version, stage, track, the step's key...). */
  env: Record<string, string>;
  /** Keys a retried call repeats: the step's idempotency key; it also names a command's process-group record. */
  key: string;
  /** Cancels the call (the activity was cancelled): the command's process group is killed. */
  signal?: AbortSignal;
  /** Each line of output, already through the one sanitiser; called as it arrives. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface CommandRunner {
  run(call: CommandCall, request: ExternalRequest): Promise<ExternalOutcome>;
}

export interface HttpCaller {
  call(call: HttpCall, request: ExternalRequest): Promise<ExternalOutcome>;
}

/** Both, as the activities get them. */
export interface ExternalRunners {
  commands: CommandRunner;
  http: HttpCaller;
}
