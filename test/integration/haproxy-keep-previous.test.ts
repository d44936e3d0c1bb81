import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { runLoad } from '../../demo/load';
import { isAlive } from '../../src/providers/targets/fleet-process';
import { startFleet, type Fleet } from '../../src/providers/targets/haproxy-fleet-bootstrap';
import { HaproxyFleetTarget } from '../../src/providers/targets/haproxy-fleet';
import type { FleetState, Instance } from '../../src/providers/targets/haproxy-fleet-state';
import { HaproxyRuntime } from '../../src/providers/targets/haproxy-runtime';
import type { DeployReceipt, DeployStep } from '../../src/providers/targets/types';
import {
  FLEET_SIZE,
  NEXT,
  STABLE,
  compileDemo,
  fleetProblems,
  nextBasePort,
  quietLogger,
  removeDir,
  serviceCommand,
  serversUp,
  startDemoFleet,
  tempStateDir,
  versionsServing,
  type DemoFleet,
} from '../helpers/fleet';
import { freePort } from '../../scripts/ports';

/**
 * `keepPrevious` on real HAProxy 2.6 and demo-service processes: the previous version's instances a release replaces
 * stay running with their slots drained, an undo switches them back without starting anything, and `retirePrevious`
 * stops them. A fleet of its own for each test, without HAProxy retries, so a request cut by a switch would fail.
 */
jest.setTimeout(60_000);

const SERVICE = 'warmfleet';
const logger = quietLogger();

const stepsOf = (release: string, extra: Partial<DeployStep> = { keepPrevious: true }) => {
  const step = (name: string, fields: Partial<DeployStep>): DeployStep => ({
    key: `${release}/${name}`,
    releaseId: release,
    service: SERVICE,
    version: NEXT,
    stableVersion: STABLE,
    track: 'production',
    ...fields,
    ...extra,
  });
  return {
    canary: step('canary', { track: 'canary', canaryInstances: 1 }),
    wave50: step('production-50', { percent: 50 }),
    wave100: step('production-100', { percent: 100 }),
    retire: step('retire-previous', { percent: 100, keepPrevious: undefined }),
  };
};

let fleet: DemoFleet;
let serviceJs: string;
let childJs: string;
let buildDir: string | undefined;

beforeAll(async () => {
  const { js, dir } = await compileDemo(['demo/service.ts', 'test/integration/fleet-crash-child.ts']);
  buildDir = dir;
  serviceJs = js('demo/service.ts');
  childJs = js('test/integration/fleet-crash-child.ts');
});

afterAll(async () => {
  if (buildDir) await removeDir(buildDir);
});

beforeEach(async () => {
  fleet = await startDemoFleet({ service: SERVICE, serviceJs, retries: false });
});

afterEach(async () => {
  await fleet?.stop();
});

const restartedWorker = () => new HaproxyFleetTarget({ ...fleet.target.options, logger });
const warmOf = (state: FleetState) => state.instances.filter((i) => i.status === 'warm');
const membersOf = (state: FleetState) => state.instances.filter((i) => i.slot !== null && i.status === 'serving');
const startsSoFar = async () => (await fleet.target.readActions()).filter((a) => a.action === 'start').length;
const slotStatus = async (f: Fleet, slot: string | null) =>
  (await new HaproxyRuntime(f.socketPath).serverStats(f.backend)).find((s) => s.name === slot)?.status;

/** Answers through the frontend, counted by the instance (x-instance) that gave them. */
async function instancesServing(url: string, count: number): Promise<Record<string, number>> {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const counts: Record<string, number> = {};
  try {
    for (let n = 0; n < count; n++) {
      const id = await new Promise<string>((resolve, reject) => {
        const req = request(url, { agent, timeout: 5_000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(String(res.headers['x-instance'])));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        req.end();
      });
      counts[id] = (counts[id] ?? 0) + 1;
    }
  } finally {
    agent.destroy();
  }
  return counts;
}

async function applyAll(target: HaproxyFleetTarget, steps: ReturnType<typeof stepsOf>) {
  const receipts = [];
  for (const s of [steps.canary, steps.wave50, steps.wave100]) receipts.push(await target.apply(s));
  return receipts;
}

async function undoAll(target: HaproxyFleetTarget, steps: ReturnType<typeof stepsOf>) {
  const receipts = [];
  for (const s of [steps.wave100, steps.wave50, steps.canary]) receipts.push(await target.undo(s));
  return receipts;
}

/** The new version is gone, the old one is back in rotation, and its processes are the ones from before. */
async function expectBackOnStable(previous: Instance[], newVersion: Instance[]) {
  expect(await versionsServing(fleet.frontendUrl, 80)).toEqual({ [STABLE]: 80 });
  expect(await fleetProblems(fleet, STABLE)).toEqual([]);
  for (const i of newVersion) expect(await isAlive(i.pid)).toBe(false);
  const after = await fleet.target.readState();
  expect(warmOf(after)).toEqual([]);
  expect(
    membersOf(after)
      .map((i) => `${i.id}:${i.pid}`)
      .sort(),
  ).toEqual(previous.map((i) => `${i.id}:${i.pid}`).sort());
}

test('canary and production steps with keepPrevious leave the previous version running, out of rotation', async () => {
  const steps = stepsOf('r1');
  const before = membersOf(await fleet.target.readState());
  const receipts = await applyAll(fleet.target, steps);
  expect(receipts.flatMap((r) => r.changes)).toHaveLength(FLEET_SIZE);
  for (const change of receipts.flatMap((r) => r.changes)) expect(change).toMatch(/kept warm\)$/);

  const state = await fleet.target.readState();
  const warm = warmOf(state);
  expect(warm.map((i) => i.id).sort()).toEqual(before.map((i) => i.id).sort());
  expect(warm.map((i) => `${i.version} ${i.track} ${i.kept?.releaseId}`)).toEqual(
    Array(FLEET_SIZE).fill(`${STABLE} stable r1`),
  );
  expect(warm.map((i) => i.kept?.by).sort()).toEqual(
    [steps.canary.key, steps.wave50.key, steps.wave100.key, steps.wave100.key].sort(),
  );
  // Traffic reaches only the new version; HAProxy still checks the old instances, in drain.
  expect(await versionsServing(fleet.frontendUrl, 80)).toEqual({ [NEXT]: 80 });
  expect(await serversUp(fleet)).toEqual(
    membersOf(state)
      .map((i) => `127.0.0.1:${i.port}`)
      .sort(),
  );
  for (const i of warm) {
    expect(await isAlive(i.pid)).toBe(true);
    expect(await slotStatus(fleet, i.slot)).toBe('DRAIN');
    expect(await versionsServing(`http://127.0.0.1:${i.port}/`, 2, 1)).toEqual({ [STABLE]: 2 });
  }
  // Applying a step again keeps nothing more.
  expect(await fleet.target.apply(steps.wave100)).toMatchObject({ applied: false });
  expect(warmOf(await fleet.target.readState())).toHaveLength(FLEET_SIZE);
});

test('undo of every step switches back to the warm instances without starting a process', async () => {
  const steps = stepsOf('r1');
  const previous = membersOf(await fleet.target.readState());
  // Steady load through the steps and their undo: a switch back must not cut a request (HAProxy does not retry here).
  const controller = new AbortController();
  const load = runLoad({
    url: fleet.frontendUrl,
    durationMs: 30_000,
    cycleMs: 10_000,
    baseRps: 60,
    peakRps: 120,
    maxRequests: 5_000,
    signal: controller.signal,
  });
  let newVersion: Instance[];
  let starts: number;
  let receipts: DeployReceipt[];
  try {
    await applyAll(fleet.target, steps);
    newVersion = membersOf(await fleet.target.readState());
    starts = await startsSoFar();
    receipts = await undoAll(fleet.target, steps);
  } finally {
    controller.abort();
    await load;
  }
  const report = await load;
  expect(report.sent).toBeGreaterThan(50);
  expect({ failed: report.failed, skipped: report.skipped }).toEqual({ failed: 0, skipped: 0 });
  expect(report.byStatus).toEqual({ '200': report.sent });
  expect(receipts.map((r) => r.changes.length)).toEqual([2, 1, 1]);
  for (const change of receipts.flatMap((r) => r.changes)) expect(change).toMatch(/switched back from warm\)$/);
  expect(await startsSoFar()).toBe(starts);
  await expectBackOnStable(previous, newVersion);
  // A second undo changes nothing.
  for (const s of [steps.wave100, steps.canary]) expect(await fleet.target.undo(s)).toMatchObject({ applied: false });

  // The same steps without keepPrevious: their undo starts a process for every instance it puts back.
  const cold = stepsOf('r2', {});
  await applyAll(fleet.target, cold);
  const coldStarts = await startsSoFar();
  await undoAll(fleet.target, cold);
  expect((await startsSoFar()) - coldStarts).toBe(FLEET_SIZE);
  expect(await fleetProblems(fleet, STABLE)).toEqual([]);
});

test('retirePrevious stops the warm instances, once; markStable then relabels the new version', async () => {
  const steps = stepsOf('r1');
  await applyAll(fleet.target, steps);
  const warm = warmOf(await fleet.target.readState());
  const other = { ...steps.retire, key: 'r0/retire-previous', releaseId: 'r0' };
  expect(await fleet.target.retirePrevious(other)).toEqual({ key: other.key, applied: false, changes: [] });

  const receipt = await fleet.target.retirePrevious(steps.retire);
  expect(receipt).toMatchObject({ key: steps.retire.key, applied: true });
  expect(receipt.changes.sort()).toEqual(
    warm.map((i) => expect.stringContaining(`${i.id} ${STABLE} stopped`) as string),
  );
  for (const i of warm) expect(await isAlive(i.pid)).toBe(false);
  for (const i of warm) expect(await slotStatus(fleet, i.slot)).toBe('MAINT');
  expect(warmOf(await fleet.target.readState())).toEqual([]);

  const logged = async () => (await fleet.target.readActions()).filter((a) => a.key === steps.retire.key);
  const actions = await logged();
  expect(actions.filter((a) => a.action === 'retire-previous')).toHaveLength(1);
  expect(actions.filter((a) => a.action === 'stop')).toHaveLength(FLEET_SIZE);
  expect(await fleet.target.retirePrevious(steps.retire)).toEqual({
    key: steps.retire.key,
    applied: false,
    changes: [],
  });
  expect(await logged()).toEqual(actions);

  await fleet.target.markStable(SERVICE, NEXT);
  expect(await fleetProblems(fleet, NEXT)).toEqual([]);
  expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [NEXT]: 40 });
});

test('markStable still relabels when warm instances hold every slot, and retirePrevious stops the rest', async () => {
  const steps = stepsOf('r1');
  await applyAll(fleet.target, steps);
  await fleet.target.markStable(SERVICE, NEXT);
  expect(membersOf(await fleet.target.readState()).map((i) => `${i.version} ${i.track}`)).toEqual(
    Array(FLEET_SIZE).fill(`${NEXT} stable`),
  );
  expect((await fleet.target.retirePrevious(steps.retire)).changes).toHaveLength(FLEET_SIZE - 1);
  expect(await fleetProblems(fleet, NEXT)).toEqual([]);
});

test('a restarted worker re-adopts the warm instances and can still switch back', async () => {
  const steps = stepsOf('r1');
  const previous = membersOf(await fleet.target.readState());
  await applyAll(fleet.target, steps);
  const state = await fleet.target.readState();
  const starts = await startsSoFar();

  const restarted = restartedWorker();
  const report = await restarted.reconcile();
  expect(report).toMatchObject({ restarted: [], dropped: [], retired: [] });
  expect(report.adopted.sort()).toEqual(state.instances.map((i) => i.id).sort());
  expect(warmOf(await restarted.readState())).toEqual(warmOf(state));
  expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [NEXT]: 40 });

  await undoAll(restarted, steps);
  expect(await startsSoFar()).toBe(starts);
  await expectBackOnStable(previous, membersOf(state));
});

test('a warm instance that died is dropped on reconcile, and undo starts its version cold', async () => {
  const steps = stepsOf('r1');
  await applyAll(fleet.target, steps);
  const state = await fleet.target.readState();
  const victim = warmOf(state).find((i) => i.kept?.by === steps.wave50.key);
  if (!victim) throw new Error('no warm instance kept by the 50% wave');
  process.kill(victim.pid, 'SIGKILL');

  const restarted = restartedWorker();
  const report = await restarted.reconcile();
  expect(report).toMatchObject({ dropped: [victim.id], restarted: [], retired: [] });
  expect((await restarted.readState()).instances.map((i) => i.id)).not.toContain(victim.id);
  expect(await slotStatus(fleet, victim.slot)).toBe('MAINT');
  expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [NEXT]: 40 });

  const starts = await startsSoFar();
  const receipts = await undoAll(restarted, steps);
  expect(await startsSoFar()).toBe(starts + 1);
  // Three switches and one cold start, whichever step's undo found no warm instance left for it.
  const changes = receipts.flatMap((r) => r.changes);
  expect(changes.filter((c) => c.endsWith('(stable, switched back from warm)'))).toHaveLength(FLEET_SIZE - 1);
  expect(changes.filter((c) => new RegExp(`→ ${SERVICE}-\\d+ ${STABLE} \\(stable\\)$`).test(c))).toHaveLength(1);
  expect(await versionsServing(fleet.frontendUrl, 80)).toEqual({ [STABLE]: 80 });
  expect(await fleetProblems(fleet, STABLE)).toEqual([]);
  for (const i of membersOf(state)) expect(await isAlive(i.pid)).toBe(false);
});

test('a worker killed as a wave hands over leaves the replaced instance warm; the restarted one drains and reuses it', async () => {
  const steps = stepsOf('r1');
  await fleet.target.apply(steps.canary);
  // fleet-crash-child SIGKILLs its worker right after the save in which the instance it started serves: the one it
  // replaces is warm in the state, and its slot not drained yet.
  const child = spawn(
    process.execPath,
    [childJs, JSON.stringify({ options: fleet.target.options, op: 'apply', step: steps.wave50 })],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });

  const left = await fleet.target.readState();
  const handedOver = warmOf(left).find((i) => i.kept?.by === steps.wave50.key);
  if (!handedOver) throw new Error('the killed wave left no warm instance');
  const restarted = restartedWorker();
  expect(await restarted.reconcile()).toMatchObject({ dropped: [], restarted: [], retired: [] });
  expect(await slotStatus(fleet, handedOver.slot)).toBe('DRAIN');
  const served = await instancesServing(fleet.frontendUrl, 60);
  expect(Object.keys(served).sort()).toEqual(
    membersOf(left)
      .map((i) => i.id)
      .sort(),
  );
  expect(await restarted.apply(steps.wave50)).toMatchObject({ applied: true });
  expect(membersOf(await restarted.readState()).filter((i) => i.version === NEXT)).toHaveLength(2);

  const starts = await startsSoFar();
  for (const s of [steps.wave50, steps.canary]) await restarted.undo(s);
  expect(await startsSoFar()).toBe(starts);
  expect(await fleetProblems(fleet, STABLE)).toEqual([]);
});

test('with fewer slots than 2 × fleetSize, an instance that would take the last free one is stopped, and said so', async () => {
  const dir = await tempStateDir('fewslots');
  let small: Fleet | undefined;
  try {
    small = await startFleet({
      service: SERVICE,
      version: STABLE,
      fleetSize: 2,
      slots: 3,
      frontendPort: await freePort(),
      basePort: nextBasePort(),
      stagingPort: await freePort(),
      command: serviceCommand(serviceJs),
      stateDir: dir,
      retries: false,
      logger,
    });
    const steps = stepsOf('r1');
    const canary = await small.target.apply(steps.canary);
    expect(canary.changes).toEqual([expect.stringMatching(/stopped: no free server slot to keep it warm\)$/)]);
    const rollout = await small.target.apply(steps.wave100);
    expect(rollout.changes).toEqual([expect.stringMatching(/kept warm\)$/)]);
    expect(await versionsServing(small.frontendUrl, 20)).toEqual({ [NEXT]: 20 });

    const receipts = [await small.target.undo(steps.wave100), await small.target.undo(steps.canary)];
    expect(receipts.map((r) => r.changes)).toEqual([
      [expect.stringMatching(/switched back from warm\)$/)],
      [expect.stringMatching(/\(stable\)$/)],
    ]);
    expect(await versionsServing(small.frontendUrl, 20)).toEqual({ [STABLE]: 20 });
  } finally {
    await small?.stop();
    await removeDir(dir);
  }
});
