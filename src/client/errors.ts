/** Errors a person can act on; the CLI prints `message` as one line. */
export class TollgateError extends Error {
  override readonly name: string = 'TollgateError';
  constructor(
    message: string,
    readonly code: 'invalid-input' | 'release-in-flight' | 'unknown-release' | 'rejected' | 'unreachable',
  ) {
    super(message);
  }
}
