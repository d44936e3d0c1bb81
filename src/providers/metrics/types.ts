import { redactUrlCredentials } from '../../domain/redact';

/**
 * Raised when a metrics backend cannot answer; the message says which query failed and why. It reaches a release's
 * `status` as a check's reason, so a URL quoted in it (a backend's, a response's) loses its credentials here.
 */
export class MetricsQueryError extends Error {
  override readonly name = 'MetricsQueryError';
  readonly why: string;
  constructor(
    readonly query: string,
    why: string,
  ) {
    super(redactUrlCredentials(`query failed: ${why}: ${query}`));
    this.why = redactUrlCredentials(why);
  }
}

export interface RangeWindow {
  start: Date;
  end: Date;
  stepSeconds: number;
}

/** A metrics backend (Flagger's RunQuery/IsOnline spirit). No data is `undefined` / `[]`, never zero. */
export interface MetricsProvider {
  readonly kind: string;
  isOnline(): Promise<boolean>;
  /** Instant value of a single-series query. */
  query(query: string): Promise<number | undefined>;
  /** Values of a single-series query over a window, one per step (NaN samples dropped). */
  queryRange(query: string, window: RangeWindow): Promise<number[]>;
}
