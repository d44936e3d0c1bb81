import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { isAlive } from '../../src/providers/targets/fleet-process';
import { HaproxyFleetTarget } from '../../src/providers/targets/haproxy-fleet';
import type { DeployStep } from '../../src/providers/targets/types';
import {
  FLEET_SIZE,
  NEXT,
  STABLE,
  compileDemo,
  quietLogger,
  removeDir,
  serversUp,
  startDemoFleet,
  strayInstances,
  versionsServing,
  type DemoFleet,
} from '../helpers/fleet';
import { freePort } from '../../scripts/ports';

/**
 * A worker SIGKILLed in the middle of a replacement — the new instance serving, the one it replaces not yet retired —
 * and the step retried by a restarted worker (a new target over the same state dir), as the crash suite does at
 * random: the fleet must come out with fleetSize members, not one more. Real HAProxy and demo-service processes;
 * the dying worker is fleet-crash-child.ts in a process of its own.
 */
jest.setTimeout(60_000);

const SERVICE = 'crashfleet';
const step = (release: string, name: string, extra: Partial<DeployStep>): DeployStep => ({
  key: `${release}/${name}`,
  releaseId: release,
  service: SERVICE,
  version: NEXT,
  stableVersion: STABLE,
  track: 'production',
  ...extra,
});

let fleet: DemoFleet;
let buildDir: string | undefined;
let childJs: string;
let serviceJs: string;
const logger = quietLogger();

beforeAll(async () => {
  const { js, dir } = await compileDemo(['demo/service.ts', 'test/integration/fleet-crash-child.ts']);
  buildDir = dir;
  childJs = js('test/integration/fleet-crash-child.ts');
  serviceJs = js('demo/service.ts');
});

afterAll(async () => {
  if (buildDir) await removeDir(buildDir);
});

// A fleet of its own for each test: what one crash leaves behind must not decide what the next test sees.
beforeEach(async () => {
  fleet = await startDemoFleet({ service: SERVICE, serviceJs });
});

afterEach(async () => {
  await fleet?.stop();
});

/** Runs `op(step)` in a worker process that SIGKILLs itself once an instance it started is a serving member. */
async function killedDuring(op: 'apply' | 'undo', s: DeployStep): Promise<void> {
  const child = spawn(process.execPath, [childJs, JSON.stringify({ options: fleet.target.options, op, step: s })], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });
}

const restartedWorker = () => new HaproxyFleetTarget({ ...fleet.target.options, logger });

/** The fleet as the crash suite's check sees it: members behind the frontend (any status), UP slots, strays. */
async function fleetView() {
  const state = await fleet.target.readState();
  const members = state.instances
    .filter((i) => i.slot !== null)
    .map((i) => `${i.version} ${i.track} ${i.status}`)
    .sort();
  const up = (await serversUp(fleet)).length;
  const strays = strayInstances(SERVICE, new Set(state.instances.map((i) => i.id)));
  return { members, up, strays };
}

const times = (n: number, member: string): string[] => Array.from({ length: n }, () => member);
const onStable = { members: times(FLEET_SIZE, `${STABLE} stable serving`), up: FLEET_SIZE, strays: [] };

test('a wave killed as its new instance starts serving, then applied again and undone, keeps 4 members', async () => {
  const canary = step('r1', 'canary', { track: 'canary', canaryInstances: 1 });
  const wave50 = step('r1', 'production-50', { percent: 50 });
  await fleet.target.apply(canary);
  await killedDuring('apply', wave50);

  const restarted = restartedWorker();
  // The instance being replaced was already handed over: the restarted worker finishes its retirement.
  expect(await restarted.reconcile()).toMatchObject({ dropped: [], restarted: [], retired: [expect.any(String)] });
  expect(await restarted.apply(wave50)).toMatchObject({ applied: true });
  const applied = await fleetView();
  for (const s of [wave50, canary]) expect((await restarted.undo(s)).applied).toBe(true);
  expect({ applied, undone: await fleetView() }).toEqual({
    applied: {
      members: [...times(2, `${STABLE} stable serving`), ...times(2, `${NEXT} canary serving`)],
      up: FLEET_SIZE,
      strays: [],
    },
    undone: onStable,
  });
  expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [STABLE]: 40 });
});

test('an undo killed as the stable instance it starts begins serving, then retried, keeps 4 members', async () => {
  const canary = step('r2', 'canary', { track: 'canary', canaryInstances: 1 });
  const wave50 = step('r2', 'production-50', { percent: 50 });
  const first = restartedWorker();
  await first.apply(canary);
  await first.apply(wave50);
  await killedDuring('undo', wave50);

  const restarted = restartedWorker();
  for (const s of [wave50, canary]) expect((await restarted.undo(s)).applied).toBe(true);
  expect(await fleetView()).toEqual(onStable);
  expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [STABLE]: 40 });
});

test('an instance alive but not answering its health check is stopped when reconcile restarts it, not left running', async () => {
  const state = await fleet.target.readState();
  const id = `${SERVICE}-${state.nextInstance}`;
  const port = await freePort();
  // Its command line names its id and port, as an instance's does; it never listens, like a hung instance.
  const hung = spawn(
    process.execPath,
    ['-e', 'setInterval(() => {}, 1000)', '--', '--port', String(port), '--instance', id],
    { detached: true, stdio: 'ignore' },
  );
  hung.unref();
  const pid = hung.pid!;
  try {
    state.nextInstance += 1;
    state.instances.push({
      id,
      version: STABLE,
      track: 'staging',
      port,
      pid,
      slot: null,
      status: 'serving',
      startedAt: new Date().toISOString(),
    });
    await writeFile(fleet.target.statePath, JSON.stringify(state));
    expect(await restartedWorker().reconcile()).toMatchObject({ restarted: [id] });
    expect(await isAlive(pid)).toBe(false);
  } finally {
    if (await isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
});
