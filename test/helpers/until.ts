/**
 * Polls `predicate` until it holds. Every wait in a test is bounded: after `timeoutMs` it fails saying what it waited
 * for, instead of hanging until jest's own timeout reports nothing useful.
 */
export async function until(predicate: () => boolean, what: string, timeoutMs = 5_000, everyMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
