import { ALPHA, judgeCheck, mannWhitneyU } from '../../src/domain/judge';
import { checkSchema, type Check } from '../../src/domain/policy';

const AT = '2026-01-05T12:00:00.000Z';
const check = (input: Record<string, unknown>): Check =>
  checkSchema.parse({ name: 'c', template: 'latency-p99', ...input });

describe('mannWhitneyU', () => {
  // Reference p-values from scipy 1.17.1: mannwhitneyu(a, b, alternative=..., method='asymptotic').
  it('matches a hand-counted U and scipy without ties', () => {
    // Pairs with a > b: 19→3, 22→4, 16→2, 29→4, 24→4.
    const r = mannWhitneyU([19, 22, 16, 29, 24], [20, 11, 17, 12]);
    expect(r.u).toBe(17);
    expect(r.z).toBeCloseTo(7 / Math.sqrt((20 / 12) * 10), 10);
    expect(r.pTwoSided).toBeCloseTo(0.11134688653314041, 6);
    expect(r.pGreater).toBeCloseTo(0.055673443266570206, 6);
    expect(r.pLess).toBeCloseTo(0.9669037101389033, 6);
  });

  it('matches scipy with ties (tie-corrected variance)', () => {
    const r = mannWhitneyU([1, 2, 2, 3, 3, 3, 4, 5], [2, 3, 4, 4, 5, 5, 6, 7, 7]);
    expect(r.u).toBe(13.5);
    expect(r.z).toBeLessThan(0);
    expect(r.pTwoSided).toBeCloseTo(0.03175895714806371, 6);
    expect(r.pGreater).toBeCloseTo(0.9876172774448116, 6);
    expect(r.pLess).toBeCloseTo(0.015879478574031856, 6);
  });

  it('matches scipy on fully separated samples', () => {
    const canary = [0.31, 0.29, 0.35, 0.33, 0.3, 0.32, 0.34, 0.36];
    const stable = [0.2, 0.22, 0.19, 0.21, 0.23, 0.18, 0.2, 0.22];
    const r = mannWhitneyU(canary, stable);
    expect(r.u).toBe(64);
    expect(r.pTwoSided).toBeCloseTo(0.0009228863794545132, 7);
    expect(r.pGreater).toBeCloseTo(0.0004614431897272566, 7);
    expect(r.pLess).toBeCloseTo(0.9996848314377933, 6);
  });

  it('is symmetric: swapping the samples swaps the one-sided p-values', () => {
    const a = [3, 1, 4, 1, 5, 9, 2, 6];
    const b = [2, 7, 1, 8, 2, 8, 1, 8, 2];
    const ab = mannWhitneyU(a, b);
    const ba = mannWhitneyU(b, a);
    expect(ab.u + ba.u).toBe(a.length * b.length);
    expect(ab.pGreater).toBeCloseTo(ba.pLess, 12);
    expect(ab.pTwoSided).toBeCloseTo(ba.pTwoSided, 12);
  });

  it('treats all-tied samples as no evidence of a difference', () => {
    expect(mannWhitneyU([5, 5, 5], [5, 5])).toEqual({ u: 3, z: 0, pTwoSided: 1, pGreater: 1, pLess: 1 });
  });

  it('refuses an empty side', () => {
    expect(() => mannWhitneyU([], [1])).toThrow(RangeError);
  });
});

describe('judgeCheck: absolute thresholds', () => {
  it('fails above max with the numbers in the reason, judging the mean of the canary samples', () => {
    const r = judgeCheck(check({ name: 'error-ratio', max: 0.01 }), { canary: [0.2, 0.22, 0.21], baseline: [] }, AT);
    expect(r).toMatchObject({ check: 'error-ratio', verdict: 'fail', reason: 'mean 0.21 > max 0.01', at: AT });
    expect(r.canary).toBeCloseTo(0.21, 10);
    expect(r.threshold).toEqual({ max: 0.01 });
    expect(r.samples).toEqual({ canary: 3, baseline: 0 });
  });

  it('passes when the mean is within bounds although one interval spiked', () => {
    const r = judgeCheck(check({ max: 0.01 }), { canary: [0, 0, 0.02, 0, 0], baseline: [] }, AT);
    expect(r.verdict).toBe('pass');
    expect(r.canary).toBeCloseTo(0.004, 10);
  });

  it('fails below min', () => {
    const r = judgeCheck(check({ name: 'requests', min: 100 }), { canary: [40, 60], baseline: [] }, AT);
    expect(r).toMatchObject({ verdict: 'fail', reason: 'mean 50 < min 100', threshold: { min: 100 } });
  });

  it('is inconclusive, never pass, without canary data (NaN samples count as missing)', () => {
    for (const canary of [[], [Number.NaN, Number.NaN]]) {
      const r = judgeCheck(check({ max: 0.01 }), { canary, baseline: [] }, AT);
      expect(r.verdict).toBe('inconclusive');
      expect(r.reason).toMatch(/no data/);
      expect(r.canary).toBeUndefined();
    }
  });

  it('copies critical from the check', () => {
    expect(judgeCheck(check({ max: 1, critical: true }), { canary: [0], baseline: [] }, AT).critical).toBe(true);
    expect(judgeCheck(check({ max: 1 }), { canary: [0], baseline: [] }, AT).critical).toBe(false);
  });
});

describe('judgeCheck: baseline comparison', () => {
  const stable = [0.2, 0.22, 0.19, 0.21, 0.23, 0.18, 0.2, 0.22];
  const slower = [0.31, 0.29, 0.35, 0.33, 0.3, 0.32, 0.34, 0.36];

  it('exports alpha 0.05', () => {
    expect(ALPHA).toBe(0.05);
  });

  it('passes identical populations', () => {
    const r = judgeCheck(check({ baseline: { direction: 'either' } }), { canary: stable, baseline: stable }, AT);
    expect(r.verdict).toBe('pass');
    expect(r.pValue).toBeGreaterThan(0.9);
    expect(r.samples).toEqual({ canary: 8, baseline: 8 });
    expect(r.canary).toBeCloseTo(0.205, 12);
    expect(r.baseline).toBe(r.canary);
  });

  it('fails clearly higher latency when an increase is bad', () => {
    const r = judgeCheck(check({ baseline: { direction: 'increase' } }), { canary: slower, baseline: stable }, AT);
    expect(r.verdict).toBe('fail');
    expect(r.pValue).toBeCloseTo(0.0004614431897272566, 7);
    expect(r.canary).toBeCloseTo(0.325, 10);
    expect(r.baseline).toBeCloseTo(0.205, 10);
    expect(r.reason).toMatch(
      /canary higher than baseline: canary median 0.325 vs baseline 0.205 \(\+58.5%, p=0.000461\)/,
    );
  });

  it('passes the same higher latency when only a decrease is bad', () => {
    const r = judgeCheck(check({ baseline: { direction: 'decrease' } }), { canary: slower, baseline: stable }, AT);
    expect(r.verdict).toBe('pass');
    expect(r.pValue).toBeGreaterThan(0.99);
  });

  it('fails a drop when a decrease is bad, and either direction when "either"', () => {
    const decrease = judgeCheck(
      check({ baseline: { direction: 'decrease' } }),
      { canary: stable, baseline: slower },
      AT,
    );
    expect(decrease.verdict).toBe('fail');
    expect(decrease.reason).toMatch(/canary lower than baseline/);
    const either = judgeCheck(check({ baseline: { direction: 'either' } }), { canary: stable, baseline: slower }, AT);
    expect(either.verdict).toBe('fail');
    expect(either.pValue).toBeCloseTo(0.0009228863794545132, 7);
  });

  it('passes a significant shift smaller than the tolerance', () => {
    // A tight population, so 5% slower is clearly significant yet inside a 10% tolerance.
    const steady = [100, 101, 99, 100.5, 99.5, 100.2, 99.8, 100.1];
    const nudged = steady.map((v) => v * 1.05);
    const r = judgeCheck(
      check({ baseline: { direction: 'increase', tolerance: 0.1 } }),
      { canary: nudged, baseline: steady },
      AT,
    );
    expect(r.pValue).toBeLessThan(ALPHA);
    expect(r.verdict).toBe('pass');
    expect(r.reason).toMatch(/within tolerance 10%/);
    const strict = judgeCheck(
      check({ baseline: { direction: 'increase', tolerance: 0.01 } }),
      { canary: nudged, baseline: steady },
      AT,
    );
    expect(strict.verdict).toBe('fail');
  });

  it('passes a large but insignificant difference', () => {
    const r = judgeCheck(
      check({ baseline: { direction: 'increase', minSamples: 3 } }),
      { canary: [0.1, 0.5, 0.2], baseline: [0.2, 0.1, 0.15] },
      AT,
    );
    expect(r.pValue).toBeGreaterThan(ALPHA);
    expect(r.verdict).toBe('pass');
    expect(r.reason).toMatch(/no significant increase/);
  });

  it('treats any rise from a zero baseline as beyond tolerance', () => {
    const zeros = [0, 0, 0, 0, 0, 0];
    const r = judgeCheck(
      check({ baseline: { direction: 'increase' } }),
      { canary: [0.05, 0.1, 0.04, 0.06, 0.07, 0.08], baseline: zeros },
      AT,
    );
    expect(r.verdict).toBe('fail');
    expect(r.reason).toMatch(/up from zero/);
  });

  it('is inconclusive with fewer than minSamples on either side', () => {
    const rule = { baseline: { direction: 'increase', minSamples: 5 } };
    const fewCanary = judgeCheck(check(rule), { canary: slower.slice(0, 4), baseline: stable }, AT);
    expect(fewCanary.verdict).toBe('inconclusive');
    expect(fewCanary.reason).toMatch(/canary 4, baseline 8, need 5 each/);
    expect(fewCanary.pValue).toBeUndefined();
    const noBaseline = judgeCheck(check(rule), { canary: slower, baseline: [] }, AT);
    expect(noBaseline.verdict).toBe('inconclusive');
    const noData = judgeCheck(check(rule), { canary: [], baseline: stable }, AT);
    expect(noData).toMatchObject({ verdict: 'inconclusive', reason: 'no data' });
  });
});

describe('judgeCheck: absolute and baseline together', () => {
  const stable = [0.2, 0.22, 0.19, 0.21, 0.23, 0.18, 0.2, 0.22];
  const both = check({ max: 0.3, baseline: { direction: 'increase' } });

  it('fails when only the threshold fails', () => {
    // One 2 s spike lifts the mean over max; the ranks, and so the baseline comparison, barely move.
    const canary = [0.1, 0.15, 2.0, 0.12, 0.18, 0.2, 0.19, 0.21];
    const r = judgeCheck(both, { canary, baseline: stable }, AT);
    expect(r).toMatchObject({ verdict: 'fail', reason: 'mean 0.394 > max 0.3' });
    expect(r.canary).toBeCloseTo(0.185, 12);
    expect(r.baseline).toBeCloseTo(0.205, 12);
    expect(r.pValue).toBeGreaterThan(ALPHA);
  });

  it('fails when only the baseline comparison fails', () => {
    const canary = stable.map((v) => v * 1.3);
    const r = judgeCheck(both, { canary, baseline: stable }, AT);
    expect(r.verdict).toBe('fail');
    expect(r.reason).toMatch(/^canary higher than baseline/);
  });

  it('is inconclusive when the threshold passes but the baseline lacks data', () => {
    const r = judgeCheck(both, { canary: stable, baseline: [0.2] }, AT);
    expect(r.verdict).toBe('inconclusive');
    expect(r.reason).toMatch(/not enough samples/);
  });

  it('fails when the threshold fails even though the baseline lacks data', () => {
    const r = judgeCheck(both, { canary: [0.4, 0.5], baseline: [] }, AT);
    expect(r).toMatchObject({ verdict: 'fail', reason: 'mean 0.45 > max 0.3' });
  });

  it('passes when both pass, naming both', () => {
    const r = judgeCheck(both, { canary: stable, baseline: stable }, AT);
    expect(r.verdict).toBe('pass');
    expect(r.reason).toMatch(/^mean 0.206 within max 0.3; no significant increase/);
  });
});
