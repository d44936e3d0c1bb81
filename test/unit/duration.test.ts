import { durationSchema, formatDuration, parseDuration } from '../../src/domain/duration';

describe('parseDuration', () => {
  it.each([
    ['0s', 0],
    ['250ms', 250],
    ['90s', 90_000],
    ['15m', 900_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['2w', 1_209_600_000],
    ['1h30m', 5_400_000],
    ['1d2h3m4s5ms', 93_784_005],
    ['1w2d', 777_600_000],
  ])('reads %s as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', 'forever', '24', 'h', '1.5h', '-5m', '1H', '1h 30m', ' 1h', '1m30', '1y', '10sec'])(
    'answers undefined for %j',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [-1_000, '0s'],
    [400, '400ms'],
    [1_000, '1s'],
    [90_000, '1m30s'],
    [5_400_000, '1h30m'],
    [86_400_000, '1d'],
    [604_800_000, '7d'],
  ])('writes %d ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('keeps the two largest units only', () => {
    expect(formatDuration(93_784_000)).toBe('1d2h');
  });

  it('rounds to whole seconds', () => {
    expect(formatDuration(1_499)).toBe('1s');
    expect(formatDuration(59_600)).toBe('1m');
  });

  it('round-trips through parseDuration for two-unit durations', () => {
    for (const ms of [90_000, 5_400_000, 93_600_000, 3_600_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});

describe('durationSchema', () => {
  it('turns text into milliseconds and passes whole milliseconds through', () => {
    expect(durationSchema.parse('24h')).toBe(86_400_000);
    expect(durationSchema.parse('  15m  ')).toBe(900_000);
    expect(durationSchema.parse(1_500)).toBe(1_500);
  });

  it('names the offending text', () => {
    const result = durationSchema.safeParse('forever');
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toBe(
      'expected a duration such as "90s", "15m", "24h" or "7d", got "forever"',
    );
  });

  it.each([-1, 1.5, Number.NaN, null, true, {}])('refuses %p', (value) => {
    expect(durationSchema.safeParse(value).success).toBe(false);
  });
});
