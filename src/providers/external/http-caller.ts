import type { HttpCall } from '../../domain/external';
import type { ExternalOutcome, ExternalRequest, HttpCaller } from './types';

export interface SignedHttpCallerOptions {
  /** Where `${NAME}` in header values and `secretEnv` are looked up. */
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
}

/** Calls a user's endpoint: JSON body, signed like the notifications, accepted-then-poll for long work. */
export class SignedHttpCaller implements HttpCaller {
  constructor(private readonly options: SignedHttpCallerOptions = {}) {}

  call(_call: HttpCall, _request: ExternalRequest): Promise<ExternalOutcome> {
    void this.options;
    return Promise.reject(new Error('SignedHttpCaller: not implemented yet'));
  }
}
