/** How long a poll may go on. Every wait in a test is bounded, by wall-clock time and, optionally, by polls. */
export interface Patience {
  /** Wall-clock bound; 5 s by default. */
  timeoutMs?: number;
  /** At most this many polls. */
  polls?: number;
  /** Real time between polls; 5 ms by default. */
  everyMs?: number;
  /** What passes between polls instead of `everyMs` (e.g. server time on the time-skipping server). */
  pause?: () => Promise<unknown>;
  /** How the last value reads in the failure; JSON by default. */
  show?: (value: unknown) => string;
}

/**
 * Polls `probe` until `ok` holds of what it returns, and returns that. Past its bound it fails saying what it waited
 * for and what it saw last, instead of hanging until jest's own timeout reports nothing useful.
 */
export async function eventually<T>(
  probe: () => T | Promise<T>,
  ok: (value: T) => boolean,
  what: string,
  patience: Patience = {},
): Promise<T> {
  const {
    timeoutMs = 5_000,
    polls = Infinity,
    everyMs = 5,
    pause,
    show = (v) => String(JSON.stringify(v)).slice(0, 800),
  } = patience;
  const deadline = Date.now() + timeoutMs;
  for (let poll = 1; ; poll++) {
    const value = await probe();
    if (ok(value)) return value;
    if (poll >= polls || Date.now() >= deadline) {
      const bound = poll >= polls ? `${poll} polls` : `${timeoutMs} ms`;
      throw new Error(`timed out after ${bound} waiting for ${what}; last: ${show(value)}`);
    }
    await (pause ? pause() : new Promise((r) => setTimeout(r, everyMs)));
  }
}

/** `eventually` for a condition the test's own code makes true. */
export const until = (predicate: () => boolean, what: string, timeoutMs?: number): Promise<boolean> =>
  eventually(predicate, Boolean, what, { timeoutMs });
