import type { DailyWindow, Day } from './policy';

/** Daily UTC windows: when a peak happens, when production may change. Pure arithmetic on epoch milliseconds. */

const DAY_MS = 86_400_000;
const DAY_NAMES: Day[] = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

export interface Occurrence {
  start: number;
  end: number;
}

/** Occurrences of `window` whose start falls on the UTC days from `from`'s day through `days` days later. */
export function occurrences(window: DailyWindow, from: number, days: number): Occurrence[] {
  const startMin = minutesOf(window.start);
  let endMin = minutesOf(window.end);
  if (endMin <= startMin) endMin += 24 * 60; // crosses midnight
  const firstDay = Math.floor(from / DAY_MS) * DAY_MS;
  const result: Occurrence[] = [];
  for (let d = -1; d <= days; d++) {
    const day = firstDay + d * DAY_MS;
    if (window.days && !window.days.includes(DAY_NAMES[new Date(day).getUTCDay()]!)) continue;
    result.push({ start: day + startMin * 60_000, end: day + endMin * 60_000 });
  }
  return result;
}

export const windowLabel = (w: DailyWindow) =>
  w.name ?? `${w.days ? `${w.days.join(',')} ` : ''}${w.start}-${w.end} UTC`;

/**
 * When the canary, baking since `intervalStart` without a pause, will have observed a whole occurrence of
 * `window` — the end of the first occurrence that starts no earlier than `intervalStart`.
 */
export function observationTime(window: DailyWindow, intervalStart: number): number | undefined {
  return occurrences(window, intervalStart, 8).find((o) => o.start >= intervalStart)?.end;
}

/** Whether some whole occurrence of `window` lies inside one of the (unpaused) baking intervals. */
export function observedIn(window: DailyWindow, intervals: Occurrence[]): boolean {
  return intervals.some((iv) => {
    const seenAt = observationTime(window, iv.start);
    return seenAt !== undefined && seenAt <= iv.end;
  });
}

export interface Freeze {
  from: string;
  to: string;
  reason: string;
}

/**
 * The earliest moment at or after `now` when production may change: inside an allowed window (any time when
 * none are set) and outside every freeze. Undefined when nothing opens in the next 15 days.
 */
export function nextAllowedTime(now: number, allowed: DailyWindow[], freezes: Freeze[]): number | undefined {
  const frozen = freezes.map((f) => ({ start: Date.parse(f.from), end: Date.parse(f.to) }));
  const windows = allowed.flatMap((w) => occurrences(w, now, 15));
  const inAllowed = (t: number) => allowed.length === 0 || windows.some((o) => o.start <= t && t < o.end);
  const freezeAt = (t: number) => frozen.find((f) => f.start <= t && t < f.end);
  const candidates = [now, ...windows.map((o) => o.start), ...frozen.map((f) => f.end)]
    .filter((t) => t >= now && t <= now + 15 * DAY_MS)
    .sort((a, b) => a - b);
  return candidates.find((t) => inAllowed(t) && !freezeAt(t));
}

/** The freeze in force at `now`, for telling people why production waits. */
export function activeFreeze(now: number, freezes: Freeze[]): Freeze | undefined {
  return freezes.find((f) => Date.parse(f.from) <= now && now < Date.parse(f.to));
}
