import type { CommandCall } from '../../domain/external';
import type { CommandRunner, ExternalOutcome, ExternalRequest } from './types';

export interface ProcessRunnerOptions {
  /**
   * Where each running call's process group is recorded by its key, so a retry after a SIGKILLed worker kills what
   * the dead attempt left running before it starts again. Without it, nothing is recorded.
   */
  runningDir?: string;
}

/** Runs a user's executable: no shell, its own process group, stdin JSON, output streamed line by line. */
export class ProcessRunner implements CommandRunner {
  constructor(private readonly options: ProcessRunnerOptions = {}) {}

  run(_call: CommandCall, _request: ExternalRequest): Promise<ExternalOutcome> {
    void this.options;
    return Promise.reject(new Error('ProcessRunner: not implemented yet'));
  }
}
