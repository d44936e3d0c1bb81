import type { DailyWindow } from '../../src/domain/policy';
import {
  activeFreeze,
  nextAllowedTime,
  observationTime,
  observedIn,
  occurrences,
  windowLabel,
  type Freeze,
} from '../../src/domain/windows';

// 2026-11-23 is a Monday.
const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
const span = (from: string, to: string) => ({ start: at(from), end: at(to) });

const lunch: DailyWindow = { name: 'lunch', start: '12:00', end: '14:00' };
const night: DailyWindow = { start: '22:00', end: '02:00' };
const fridayLunch: DailyWindow = { days: ['fri'], start: '12:00', end: '14:00' };
const freeze = (from: string, to: string, reason = 'holiday'): Freeze => ({ from, to, reason });

describe('occurrences', () => {
  it('lists one occurrence a day, from the day before `from` through `days` days later', () => {
    const list = occurrences(lunch, at('2026-11-23T10:00:00Z'), 1).map((o) => [iso(o.start), iso(o.end)]);
    expect(list).toEqual([
      ['2026-11-22T12:00:00.000Z', '2026-11-22T14:00:00.000Z'],
      ['2026-11-23T12:00:00.000Z', '2026-11-23T14:00:00.000Z'],
      ['2026-11-24T12:00:00.000Z', '2026-11-24T14:00:00.000Z'],
    ]);
  });

  it('ends a window that crosses midnight on the next day', () => {
    const list = occurrences(night, at('2026-11-23T10:00:00Z'), 0).map((o) => [iso(o.start), iso(o.end)]);
    expect(list).toEqual([
      ['2026-11-22T22:00:00.000Z', '2026-11-23T02:00:00.000Z'],
      ['2026-11-23T22:00:00.000Z', '2026-11-24T02:00:00.000Z'],
    ]);
  });

  it('keeps only the listed weekdays', () => {
    const list = occurrences({ days: ['tue', 'thu'], start: '09:00', end: '10:00' }, at('2026-11-23T00:00:00Z'), 8);
    expect(list.map((o) => iso(o.start))).toEqual([
      '2026-11-24T09:00:00.000Z',
      '2026-11-26T09:00:00.000Z',
      '2026-12-01T09:00:00.000Z',
    ]);
  });
});

describe('windowLabel', () => {
  it('prefers the name, else days and times', () => {
    expect(windowLabel(lunch)).toBe('lunch');
    expect(windowLabel(fridayLunch)).toBe('fri 12:00-14:00 UTC');
    expect(windowLabel(night)).toBe('22:00-02:00 UTC');
  });
});

describe('observationTime', () => {
  it('is the end of the same day’s occurrence when baking starts before it', () => {
    expect(iso(observationTime(lunch, at('2026-11-23T09:00:00Z')))).toBe('2026-11-23T14:00:00.000Z');
  });

  it('counts an occurrence that starts exactly when baking starts', () => {
    expect(iso(observationTime(lunch, at('2026-11-23T12:00:00Z')))).toBe('2026-11-23T14:00:00.000Z');
  });

  it('waits for the next whole occurrence when baking starts mid-window', () => {
    expect(iso(observationTime(lunch, at('2026-11-23T12:01:00Z')))).toBe('2026-11-24T14:00:00.000Z');
  });

  it('ends a midnight-crossing window the morning after', () => {
    expect(iso(observationTime(night, at('2026-11-23T21:00:00Z')))).toBe('2026-11-24T02:00:00.000Z');
    expect(iso(observationTime(night, at('2026-11-23T23:00:00Z')))).toBe('2026-11-25T02:00:00.000Z');
  });

  it('finds the next listed weekday', () => {
    expect(iso(observationTime(fridayLunch, at('2026-11-23T10:00:00Z')))).toBe('2026-11-27T14:00:00.000Z');
    expect(iso(observationTime(fridayLunch, at('2026-11-27T13:00:00Z')))).toBe('2026-12-04T14:00:00.000Z');
  });
});

describe('observedIn', () => {
  it('sees a peak when one unpaused interval holds a whole occurrence', () => {
    expect(observedIn(lunch, [span('2026-11-23T11:00:00Z', '2026-11-23T14:00:00Z')])).toBe(true);
  });

  it('does not see a peak the interval ends inside of', () => {
    expect(observedIn(lunch, [span('2026-11-23T11:00:00Z', '2026-11-23T13:59:00Z')])).toBe(false);
  });

  it('does not see a peak split by a pause, even though every minute of it was covered but the pause', () => {
    const beforePause = span('2026-11-23T11:00:00Z', '2026-11-23T12:30:00Z');
    const afterPause = span('2026-11-23T12:45:00Z', '2026-11-24T11:00:00Z');
    expect(observedIn(lunch, [beforePause, afterPause])).toBe(false);
  });

  it('sees the peak in a later interval that holds the next occurrence', () => {
    const beforePause = span('2026-11-23T11:00:00Z', '2026-11-23T12:30:00Z');
    const afterPause = span('2026-11-23T12:45:00Z', '2026-11-24T15:00:00Z');
    expect(observedIn(lunch, [beforePause, afterPause])).toBe(true);
  });

  it('sees a midnight-crossing peak only across the whole night', () => {
    expect(observedIn(night, [span('2026-11-23T21:00:00Z', '2026-11-24T02:00:00Z')])).toBe(true);
    expect(observedIn(night, [span('2026-11-23T21:00:00Z', '2026-11-24T01:00:00Z')])).toBe(false);
  });

  it('sees a weekday peak only on that weekday', () => {
    const mondayToThursday = span('2026-11-23T00:00:00Z', '2026-11-26T23:59:00Z');
    expect(observedIn(fridayLunch, [mondayToThursday])).toBe(false);
    expect(observedIn(fridayLunch, [span('2026-11-23T00:00:00Z', '2026-11-27T14:00:00Z')])).toBe(true);
  });

  it('sees nothing without intervals', () => {
    expect(observedIn(lunch, [])).toBe(false);
  });
});

describe('nextAllowedTime', () => {
  const now = at('2026-11-23T10:00:00Z');
  const workday: DailyWindow = { start: '09:00', end: '17:00' };

  it('is now when no windows or freezes are set', () => {
    expect(nextAllowedTime(now, [], [])).toBe(now);
  });

  it('is now inside an allowed window', () => {
    expect(nextAllowedTime(now, [workday], [])).toBe(now);
  });

  it('waits for the next opening of a deployment window', () => {
    expect(iso(nextAllowedTime(at('2026-11-23T17:00:00Z'), [workday], []))).toBe('2026-11-24T09:00:00.000Z');
    expect(iso(nextAllowedTime(at('2026-11-23T06:00:00Z'), [workday], []))).toBe('2026-11-23T09:00:00.000Z');
  });

  it('waits for the next listed weekday', () => {
    const midweek: DailyWindow = { days: ['tue', 'wed'], start: '09:00', end: '17:00' };
    expect(iso(nextAllowedTime(now, [midweek], []))).toBe('2026-11-24T09:00:00.000Z');
    expect(iso(nextAllowedTime(at('2026-11-25T18:00:00Z'), [midweek], []))).toBe('2026-12-01T09:00:00.000Z');
  });

  it('is inside a midnight-crossing window after midnight, on the day after its listed start day', () => {
    const fridayNight: DailyWindow = { days: ['fri'], start: '22:00', end: '02:00' };
    expect(iso(nextAllowedTime(at('2026-11-28T01:00:00Z'), [fridayNight], []))).toBe('2026-11-28T01:00:00.000Z');
    expect(iso(nextAllowedTime(at('2026-11-28T03:00:00Z'), [fridayNight], []))).toBe('2026-12-04T22:00:00.000Z');
  });

  it('takes the earliest of several windows', () => {
    const early: DailyWindow = { start: '06:00', end: '07:00' };
    const late: DailyWindow = { start: '20:00', end: '21:00' };
    expect(iso(nextAllowedTime(at('2026-11-23T08:00:00Z'), [early, late], []))).toBe('2026-11-23T20:00:00.000Z');
  });

  it('pushes past the end of a freeze', () => {
    const f = freeze('2026-11-23T00:00:00Z', '2026-11-23T18:30:00Z');
    expect(iso(nextAllowedTime(now, [], [f]))).toBe('2026-11-23T18:30:00.000Z');
  });

  it('pushes past back-to-back freezes', () => {
    const first = freeze('2026-11-23T00:00:00Z', '2026-11-24T00:00:00Z');
    const second = freeze('2026-11-24T00:00:00Z', '2026-11-25T00:00:00Z');
    expect(iso(nextAllowedTime(now, [], [first, second]))).toBe('2026-11-25T00:00:00.000Z');
  });

  it('after a freeze, waits for a window when the freeze ends outside one', () => {
    const f = freeze('2026-11-23T00:00:00Z', '2026-11-23T18:30:00Z');
    expect(iso(nextAllowedTime(now, [workday], [f]))).toBe('2026-11-24T09:00:00.000Z');
  });

  it('opens when a freeze ends inside a window', () => {
    const saturday: DailyWindow = { days: ['sat'], start: '09:00', end: '10:00' };
    const f = freeze('2026-11-23T00:00:00Z', '2026-12-05T09:30:00Z');
    expect(iso(nextAllowedTime(now, [saturday], [f]))).toBe('2026-12-05T09:30:00.000Z');
  });

  it('ignores a freeze that has not started yet', () => {
    expect(nextAllowedTime(now, [], [freeze('2026-11-24T00:00:00Z', '2026-11-25T00:00:00Z')])).toBe(now);
  });

  it('is undefined when nothing opens for two weeks', () => {
    const longFreeze = freeze('2026-11-01T00:00:00Z', '2026-12-31T00:00:00Z');
    expect(nextAllowedTime(now, [], [longFreeze])).toBeUndefined();
    expect(nextAllowedTime(now, [workday], [longFreeze])).toBeUndefined();
  });
});

describe('activeFreeze', () => {
  const f = freeze('2026-12-20T00:00:00+01:00', '2026-12-27T00:00:00+01:00', 'year end');

  it('finds the freeze in force, honouring offsets, with "to" exclusive', () => {
    expect(activeFreeze(at('2026-12-19T23:00:00Z'), [f])?.reason).toBe('year end');
    expect(activeFreeze(at('2026-12-19T22:59:59Z'), [f])).toBeUndefined();
    expect(activeFreeze(at('2026-12-26T23:00:00Z'), [f])).toBeUndefined();
  });

  it('finds nothing without freezes', () => {
    expect(activeFreeze(at('2026-12-21T00:00:00Z'), [])).toBeUndefined();
  });
});
