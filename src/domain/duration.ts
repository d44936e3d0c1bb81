import { z } from 'zod';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DURATION = /^(\d+(?:ms|s|m|h|d|w))+$/;

/** Parses "90s", "15m", "1h30m", "7d" into milliseconds; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) {
    total += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  }
  return total;
}

export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.slice(0, 2).join('') || `${ms}ms`;
}

/**
 * The longest duration anything in a policy may have. Bakes, cycles and intervals are added to the clock and
 * turned into timers: unbounded, `99999999d` made an invalid date after staging and canary had deployed, and a
 * number too long to read became Infinity.
 */
export const MAX_DURATION_MS = 365 * 86_400_000;
const MAX_DURATION_TEXT = 32;
const tooLong = `must be at most ${formatDuration(MAX_DURATION_MS)}`;

/** A duration written as text ("24h") in policies and messages; held as milliseconds everywhere else. */
export const durationSchema = z
  .union([z.number().int().nonnegative().max(MAX_DURATION_MS, tooLong), z.string()])
  .transform((value, ctx) => {
    if (typeof value === 'number') return value;
    const text = value.trim();
    const ms = text.length <= MAX_DURATION_TEXT ? parseDuration(text) : undefined;
    if (ms === undefined) {
      const shown = text.length > MAX_DURATION_TEXT ? `${text.slice(0, MAX_DURATION_TEXT)}…` : text;
      ctx.addIssue({
        code: 'custom',
        message: `expected a duration such as "90s", "15m", "24h" or "7d", got "${shown}"`,
      });
      return z.NEVER;
    }
    if (ms > MAX_DURATION_MS) {
      ctx.addIssue({ code: 'custom', message: `${tooLong}, got "${text}"` });
      return z.NEVER;
    }
    return ms;
  });
