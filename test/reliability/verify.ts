import type { ReleaseResult } from '../../src/domain/release';
import { FLEET_SIZE, NEXT, STABLE, fleetProblems } from '../helpers/fleet';
import { resultWithin, type ReleaseHandle } from '../helpers/release-handle';
import { doubleApplications, type Service } from './support';

/** What one release came to, judged against what it should have come to without any fault. */
export interface Verdict {
  service: string;
  expected: 'promoted' | 'aborted';
  outcome: string;
  wrongOutcome: boolean;
  appliedTwice: string[];
  fleet: string[];
  dataLost: string[];
}

export const survived = (v: Verdict) =>
  !v.wrongOutcome && v.appliedTwice.length === 0 && v.fleet.length === 0 && v.dataLost.length === 0;

/**
 * What a RELIABILITY.md row counts of its releases: one per verdict (undefined when the test failed before one),
 * none surviving a scenario that found `problems` of its own.
 */
export function tally(verdicts: (Verdict | undefined)[], problems: string[] = []) {
  const judged = verdicts.filter((v) => v !== undefined);
  return {
    runs: verdicts.length,
    survived: problems.length > 0 ? 0 : judged.filter(survived).length,
    wrongOutcomes: judged.filter((v) => v.wrongOutcome).length,
    appliedTwice: judged.reduce((n, v) => n + v.appliedTwice.length, 0),
    dataLost: judged.filter((v) => v.dataLost.length > 0).length,
  };
}

/** Waits for the result (bounded), then checks outcome, fleet, action log and that the run is the one we started. */
export async function verifyRelease(
  handle: ReleaseHandle,
  service: Service,
  expected: 'promoted' | 'aborted',
  timeoutMs: number,
): Promise<Verdict> {
  const dataLost: string[] = [];
  let result: ReleaseResult | undefined;
  try {
    result = await resultWithin(handle, timeoutMs);
    if (!result) dataLost.push(`result: no result within ${timeoutMs} ms`);
  } catch (err) {
    dataLost.push(`result: ${(err as Error).message}`);
  }
  try {
    const description = await handle.describe();
    if (description.runId !== handle.firstExecutionRunId) dataLost.push(`run changed to ${description.runId}`);
  } catch (err) {
    dataLost.push(`describe: ${(err as Error).message}`);
  }
  const version = expected === 'promoted' ? NEXT : STABLE;
  const verdict: Verdict = {
    service: service.name,
    expected,
    outcome: result?.outcome ?? 'none',
    wrongOutcome: result?.outcome !== expected || (expected === 'promoted' && result.stableVersion !== NEXT),
    appliedTwice: await doubleApplications(service),
    fleet: await fleetProblems(service.fleet, version).catch((err: unknown) => [`fleet: ${(err as Error).message}`]),
    dataLost,
  };
  if (expected === 'promoted' && result) {
    // Every step ran to completion exactly once: the fleet's record says so.
    const state = await service.fleet.target.readState();
    const applied = Object.entries(state.steps)
      .filter(([, s]) => s.status === 'applied')
      .map(([k]) => k.split('/').pop());
    if (applied.sort().join(',') !== 'canary,staging,wave-1,wave-2') {
      verdict.fleet.push(`steps applied: ${applied.join(',')} (fleet of ${FLEET_SIZE})`);
    }
  }
  return verdict;
}
