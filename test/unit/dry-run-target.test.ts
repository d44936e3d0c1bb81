import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DryRunStateError, DryRunTarget } from '../../src/providers/targets/dry-run';
import { StateLockBusyError } from '../../src/providers/targets/state-file';
import type { DeployStep } from '../../src/providers/targets/types';

/**
 * Workers on one machine given the same state dir are one dry-run target: one stable version per service, and a
 * step key applied once, whichever worker runs the (retried) step.
 */

const step = (key: string): DeployStep => ({
  key,
  releaseId: key.split('/')[0] ?? key,
  service: 'checkout',
  version: '1.1.0',
  stableVersion: '1.0.0',
  track: 'canary',
  canaryInstances: 1,
});

/** Above Linux's largest pid_max: never a live process. */
const DEAD_PID = 4_194_305;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tollgate-dry-run-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('dry-run targets sharing a state dir', () => {
  it('agree on the stable version, over what each was told at start', async () => {
    const one = new DryRunTarget({ checkout: '1.0.0' }, { stateDir: dir });
    const two = new DryRunTarget({ checkout: '1.0.0' }, { stateDir: dir });
    await one.markStable('checkout', '1.1.0');
    await expect(two.stableVersion('checkout')).resolves.toBe('1.1.0');
    // A worker started later, with the targets file's initial versions, still sees what was marked since.
    await expect(new DryRunTarget({ checkout: '0.9.0' }, { stateDir: dir }).stableVersion('checkout')).resolves.toBe(
      '1.1.0',
    );
    await expect(two.stableVersion('payments')).resolves.toBeUndefined();
  });

  it('apply a key once: a retry on another worker is a no-op, and undo reverts it wherever it runs', async () => {
    const one = new DryRunTarget({}, { stateDir: dir });
    const two = new DryRunTarget({}, { stateDir: dir });
    await expect(one.apply(step('r1/canary'))).resolves.toMatchObject({ applied: true });
    await expect(two.apply(step('r1/canary'))).resolves.toEqual({ key: 'r1/canary', applied: false, changes: [] });
    await expect(two.undo(step('r1/canary'))).resolves.toMatchObject({ applied: true });
    await expect(one.undo(step('r1/canary'))).resolves.toMatchObject({ applied: false });
    // Never again after undo either: a late retry must not redeploy a rolled-back version.
    await expect(one.apply(step('r1/canary'))).resolves.toMatchObject({ applied: false });
    expect(one.actions.map((a) => a.action)).toEqual(['apply']);
    expect(two.actions.map((a) => a.action)).toEqual(['undo']);
  });

  it('apply a key once when workers race for it', async () => {
    const targets = [new DryRunTarget({}, { stateDir: dir }), new DryRunTarget({}, { stateDir: dir })];
    const receipts = await Promise.all(
      Array.from({ length: 20 }, (_, i) => targets[i % 2]!.apply(step(i < 10 ? 'r1/canary' : 'r2/canary'))),
    );
    expect(receipts.filter((r) => r.applied).map((r) => r.key)).toEqual(['r1/canary', 'r2/canary']);
    expect(await readdir(dir)).toEqual(['dry-run.state.json']);
  });

  it('take over a lock left by a worker that died, and give up on a live one, naming the lock', async () => {
    await writeFile(join(dir, 'dry-run.lock'), `${DEAD_PID} crashed`);
    await expect(new DryRunTarget({}, { stateDir: dir }).apply(step('r1/canary'))).resolves.toMatchObject({
      applied: true,
    });

    await writeFile(join(dir, 'dry-run.lock'), `${process.pid} still-working`);
    const started = Date.now();
    const blocked = new DryRunTarget({}, { stateDir: dir, lockWaitMs: 100 }).apply(step('r2/canary'));
    await expect(blocked).rejects.toThrow(StateLockBusyError);
    await expect(blocked).rejects.toThrow(`${join(dir, 'dry-run.lock')} is held by process ${process.pid}`);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('refuse a state file they cannot read rather than start from nothing', async () => {
    await writeFile(join(dir, 'dry-run.state.json'), '{"schemaVersion": 1, "stable": {"checkout": "1.1.0"}');
    await expect(new DryRunTarget({}, { stateDir: dir }).stableVersion('checkout')).rejects.toThrow(DryRunStateError);
  });
});

describe('a dry-run target without a state dir', () => {
  it('keeps its state in memory, for itself only', async () => {
    const one = new DryRunTarget({ checkout: '1.0.0' });
    const two = new DryRunTarget({ checkout: '1.0.0' });
    await one.markStable('checkout', '1.1.0');
    await expect(one.stableVersion('checkout')).resolves.toBe('1.1.0');
    await expect(two.stableVersion('checkout')).resolves.toBe('1.0.0');
    await expect(one.apply(step('r1/canary'))).resolves.toMatchObject({ applied: true });
    await expect(two.apply(step('r1/canary'))).resolves.toMatchObject({ applied: true });
    expect(await readdir(dir)).toEqual([]);
  });
});

it.each([
  ['in memory', () => undefined],
  ['in a state dir', () => dir],
])('a dry-run target keeps services named like object properties apart, %s', async (_, stateDir) => {
  const target = new DryRunTarget({ constructor: '1.0.0' }, { stateDir: stateDir() });
  await target.markStable('__proto__', '2.0.0');
  await expect(target.stableVersion('constructor')).resolves.toBe('1.0.0');
  await expect(target.stableVersion('__proto__')).resolves.toBe('2.0.0');
  await expect(new DryRunTarget({}, { stateDir: stateDir() }).stableVersion('toString')).resolves.toBeUndefined();
});
