/** Raised when a metrics backend cannot answer; the message says which query failed and why. */
export class MetricsQueryError extends Error {
  override readonly name = 'MetricsQueryError';
  constructor(
    readonly query: string,
    readonly why: string,
  ) {
    super(`query failed: ${why}: ${query}`);
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
