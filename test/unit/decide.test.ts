import { decide, type AnalysisCounters, type CheckResult, type Verdict } from '../../src/domain/analysis';

const zero: AnalysisCounters = { rounds: 0, failures: 0, inconclusive: 0, requests: 0 };
const limits = { failureLimit: 3, inconclusiveLimit: 2 };
const result = (check: string, verdict: Verdict, critical = false, reason = `${check} ${verdict}`): CheckResult => ({
  check,
  verdict,
  critical,
  reason,
  at: '2026-11-23T12:00:00.000Z',
});
const pass = result('errors', 'pass');
const fail = result('errors', 'fail', false, 'error ratio 0.2 > max 0.01');
const unsure = result('latency', 'inconclusive', false, 'no data');

/** Runs rounds in order from zero counters; answers the last decision. */
function run(rounds: CheckResult[][], l = limits) {
  let counters = zero;
  let last: ReturnType<typeof decide> | undefined;
  for (const results of rounds) {
    last = decide(counters, results, 10, l);
    counters = last.counters;
  }
  return last!;
}

describe('decide', () => {
  it('calls a passing round healthy and counts it', () => {
    expect(decide(zero, [pass], 120, limits)).toEqual({
      counters: { rounds: 1, failures: 0, inconclusive: 0, requests: 120 },
      decision: 'healthy',
      reason: 'healthy',
    });
  });

  it('sums the requests over rounds', () => {
    const first = decide(zero, [pass], 120, limits);
    const second = decide(first.counters, [pass], 80, limits);
    expect(second.counters.requests).toBe(200);
    expect(second.counters.rounds).toBe(2);
  });

  it('keeps going below the failure limit, naming the failed check', () => {
    const out = decide(zero, [pass, fail], 0, limits);
    expect(out.decision).toBe('healthy');
    expect(out.counters.failures).toBe(1);
    expect(out.reason).toBe('errors: error ratio 0.2 > max 0.01');
  });

  it('fails the stage when failed rounds reach the limit, even if not consecutive', () => {
    const out = run([[fail], [pass], [fail], [pass], [fail]]);
    expect(out.decision).toBe('failed');
    expect(out.counters.failures).toBe(3);
    expect(out.reason).toBe('3 failed analysis rounds (limit 3) — errors: error ratio 0.2 > max 0.01');
  });

  it('counts a round with several failed checks as one failed round', () => {
    const out = decide(zero, [fail, result('latency', 'fail')], 0, limits);
    expect(out.counters.failures).toBe(1);
    expect(out.decision).toBe('healthy');
  });

  it('stops at once on a failed critical check, whatever the limit', () => {
    const crit = result('5xx', 'fail', true, 'error ratio 0.5 > max 0.01');
    const out = decide(zero, [pass, crit], 0, { failureLimit: 100, inconclusiveLimit: 100 });
    expect(out.decision).toBe('critical');
    expect(out.reason).toBe('critical check failed — 5xx: error ratio 0.5 > max 0.01');
  });

  it('puts critical before the failure limit', () => {
    const crit = result('5xx', 'fail', true);
    const out = decide({ ...zero, failures: 2 }, [crit], 0, limits);
    expect(out.decision).toBe('critical');
  });

  it('does not treat an inconclusive critical check as critical', () => {
    const out = decide(zero, [result('5xx', 'inconclusive', true)], 0, limits);
    expect(out.decision).toBe('healthy');
    expect(out.counters.inconclusive).toBe(1);
  });

  it('stops after the limit of consecutive inconclusive rounds', () => {
    const out = run([[pass, unsure], [unsure]]);
    expect(out.decision).toBe('inconclusive');
    expect(out.counters.inconclusive).toBe(2);
    expect(out.reason).toBe('2 inconclusive analysis rounds in a row (limit 2) — latency: no data');
  });

  it('resets the inconclusive count on a healthy round', () => {
    const out = run([[unsure], [pass], [unsure]]);
    expect(out.decision).toBe('healthy');
    expect(out.counters.inconclusive).toBe(1);
  });

  it('neither resets nor raises the inconclusive count on a failed round', () => {
    const out = decide({ ...zero, inconclusive: 1 }, [fail, unsure], 0, { failureLimit: 5, inconclusiveLimit: 5 });
    expect(out.counters).toEqual({ rounds: 1, failures: 1, inconclusive: 1, requests: 0 });
  });

  it('does not change the counters it was given', () => {
    const counters = { ...zero };
    decide(counters, [fail], 5, limits);
    expect(counters).toEqual(zero);
  });
});
