import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { runLoad, type LoadReport } from '../../demo/load';
import { commandLineOf, isAlive } from '../../src/providers/targets/fleet-process';
import { startFleet, type Fleet } from '../../src/providers/targets/haproxy-fleet-bootstrap';
import { HaproxyFleetTarget } from '../../src/providers/targets/haproxy-fleet';
import type { FileSdTarget } from '../../src/providers/targets/haproxy-fleet-state';
import { HaproxySocketError } from '../../src/providers/targets/haproxy-runtime';
import type { DeployStep } from '../../src/providers/targets/types';
import { eventually } from '../helpers/until';
import {
  NEXT,
  STABLE,
  compileDemo,
  nextBasePort,
  quietLogger,
  removeDir,
  serviceCommand,
  share,
  startDemoFleet,
  tempStateDir,
  versionsServing,
  type DemoFleet,
} from '../helpers/fleet';
import { freePort } from '../../scripts/ports';

// Real HAProxy 2.6 (Debian package) and real demo-service processes, compiled once with swc.
jest.setTimeout(30_000);

const SERVICE = 'web';
const step = (name: string, extra: Partial<DeployStep>): DeployStep => ({
  key: `r1/${name}`,
  releaseId: 'r1',
  service: SERVICE,
  version: NEXT,
  stableVersion: STABLE,
  track: 'production',
  ...extra,
});
const staging = step('staging', { track: 'staging' });
const canary = step('canary', { track: 'canary', canaryInstances: 1 });
const wave50 = step('production-50', { percent: 50 });
const wave100 = step('production-100', { percent: 100 });

let fleet: DemoFleet;
let serviceJs: string;
let buildDir: string | undefined;
const logger = quietLogger();

beforeAll(async () => {
  const { js, dir } = await compileDemo(['demo/service.ts']);
  buildDir = dir;
  serviceJs = js('demo/service.ts');
  // No HAProxy retries: a request cut by a replacement must show up as failed, not be retried away.
  fleet = await startDemoFleet({
    service: SERVICE,
    serviceJs,
    fileSd: true,
    retries: false,
  });
});

afterAll(async () => {
  try {
    await fleet?.stop();
  } finally {
    if (buildDir) await removeDir(buildDir);
  }
});

const fileSd = async () => JSON.parse(await readFile(fleet.fileSdPath!, 'utf8')) as FileSdTarget[];
const actionsFor = async (key: string) =>
  (await fleet.target.readActions()).filter((a) => a.key === key).map((a) => `${a.action} ${a.instance ?? ''}`);

test('a fleet of 4 starts on the stable version, listed for Prometheus with its labels', async () => {
  expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [STABLE]: 40 });
  expect(await fleet.target.stableVersion(SERVICE)).toBe(STABLE);
  const sd = await fileSd();
  expect(sd).toHaveLength(4);
  expect(new Set(sd.map((t) => t.labels.instance)).size).toBe(4);
  expect(
    sd.every((t) => t.labels.service === SERVICE && t.labels.version === STABLE && t.labels.track === 'stable'),
  ).toBe(true);
});

describe('under steady load', () => {
  const controller = new AbortController();
  let load: Promise<LoadReport>;

  beforeAll(() => {
    load = runLoad({
      url: fleet.frontendUrl,
      durationMs: 45_000,
      cycleMs: 10_000,
      baseRps: 80,
      peakRps: 160,
      maxRequests: 10_000,
      signal: controller.signal,
    });
  });
  afterAll(async () => {
    controller.abort();
    await load;
  });

  test('staging runs the new version on its own port, outside the production frontend', async () => {
    const receipt = await fleet.target.apply(staging);
    expect(receipt.applied).toBe(true);
    expect(await versionsServing(`http://127.0.0.1:${fleet.stagingPort}/`, 5, 1)).toEqual({ [NEXT]: 5 });
    expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [STABLE]: 40 });
    expect((await fileSd()).filter((t) => t.labels.track === 'staging').map((t) => t.labels.version)).toEqual([NEXT]);
  });

  test('a canary of 1 in 4 serves about a quarter of the traffic, labelled canary', async () => {
    const receipt = await fleet.target.apply(canary);
    expect(receipt).toMatchObject({ key: canary.key, applied: true });
    expect(receipt.changes).toHaveLength(1);
    const counts = await versionsServing(fleet.frontendUrl, 400);
    expect(Object.keys(counts).sort()).toEqual([STABLE, NEXT]);
    expect(share(counts, NEXT)).toBeGreaterThan(0.15);
    expect(share(counts, NEXT)).toBeLessThan(0.35);
    const canaries = (await fileSd()).filter((t) => t.labels.track === 'canary');
    expect(canaries.map((t) => t.labels.version)).toEqual([NEXT]);
  });

  test('applying the same step key twice is a no-op, and the action log holds each action once', async () => {
    const before = await actionsFor(canary.key);
    const again = await fleet.target.apply(canary);
    expect(again).toEqual({ key: canary.key, applied: false, changes: [] });
    expect(await actionsFor(canary.key)).toEqual(before);
    const actions = before.map((a) => a.split(' ')[0]);
    expect(actions).toEqual(['start', 'enable', 'drain', 'disable', 'stop', 'step-applied']);
  });

  test('production waves of 50% then 100% move the fleet to the new version', async () => {
    expect((await fleet.target.apply(wave50)).changes).toHaveLength(1);
    const half = await versionsServing(fleet.frontendUrl, 200);
    expect(share(half, NEXT)).toBeGreaterThan(0.35);
    expect(share(half, NEXT)).toBeLessThan(0.65);
    expect((await fleet.target.apply(wave100)).changes).toHaveLength(2);
    expect(await versionsServing(fleet.frontendUrl, 80)).toEqual({ [NEXT]: 80 });
  });

  test('undo of every step, newest first, puts only the stable version back (and a second undo does nothing)', async () => {
    for (const s of [wave100, wave50, canary, staging]) expect((await fleet.target.undo(s)).applied).toBe(true);
    for (const s of [wave100, canary])
      expect(await fleet.target.undo(s)).toMatchObject({ applied: false, changes: [] });
    expect(await versionsServing(fleet.frontendUrl, 80)).toEqual({ [STABLE]: 80 });
    expect(await versionsServing(`http://127.0.0.1:${fleet.stagingPort}/`, 3, 1)).toEqual({ [STABLE]: 3 });
    expect(
      (await fileSd()).filter((t) => t.labels.track !== 'staging').map((t) => `${t.labels.version} ${t.labels.track}`),
    ).toEqual(Array(4).fill(`${STABLE} stable`));
  });

  test('the load running through staging, canary, waves and rollback saw no failed request', async () => {
    controller.abort();
    const report = await load;
    await writeFile(join(__dirname, '..', '..', 'test-results', 'haproxy-fleet-load.json'), JSON.stringify(report));
    expect(report.sent).toBeGreaterThan(200);
    expect(report.failed).toBe(0);
    expect(report.skipped).toBe(0);
    expect(report.byStatus).toEqual({ '200': report.sent });
    expect(report.byVersion[NEXT]).toBeGreaterThan(0);
    await expect(isAlive(fleet.haproxyPid)).resolves.toBe(true);
  });
});

describe('a restarted worker (a new target over the same state dir)', () => {
  let restarted: HaproxyFleetTarget;

  test('re-adopts live instances, restarts one that died meanwhile, and redeploys nothing', async () => {
    const state = await fleet.target.readState();
    const victim = state.instances.find((i) => i.slot !== null);
    if (!victim) throw new Error('no fleet instance to kill');
    process.kill(victim.pid, 'SIGKILL');
    restarted = new HaproxyFleetTarget({ ...fleet.target.options, logger });
    const report = await restarted.reconcile();
    expect(report.restarted).toEqual([victim.id]);
    expect(report.adopted.sort()).toEqual(
      state.instances
        .filter((i) => i !== victim)
        .map((i) => i.id)
        .sort(),
    );
    const after = await restarted.readState();
    const pids = (s: typeof state) => s.instances.filter((i) => i.id !== victim.id).map((i) => `${i.id}:${i.pid}`);
    expect(pids(after)).toEqual(pids(state));
    expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [STABLE]: 40 });
  });

  /** Writes an instance record as a worker that died at the wrong moment would leave it, then reconciles it. */
  const plantAndReconcile = async (fields: {
    id: string;
    port: number;
    pid: number;
    status: 'starting' | 'retiring';
  }) => {
    const state = await fleet.target.readState();
    state.nextInstance += 1;
    state.instances.push({
      ...fields,
      version: NEXT,
      track: 'canary',
      slot: null,
      startedAt: new Date().toISOString(),
    });
    await writeFile(fleet.target.statePath, JSON.stringify(state));
    return new HaproxyFleetTarget({ ...fleet.target.options, logger }).reconcile();
  };

  test('an instance started by a worker killed before it saved the PID is found by its id and stopped', async () => {
    // What the state holds when the worker dies between saving a `starting` instance and saving its PID.
    const id = `${SERVICE}-${(await fleet.target.readState()).nextInstance}`;
    const orphan = spawn(
      process.execPath,
      ['-e', 'setInterval(() => {}, 1000)', '--', '--port', '59999', '--instance', id],
      {
        detached: true,
        stdio: 'ignore',
      },
    );
    orphan.unref();
    const pid = orphan.pid!;
    try {
      // Until it has exec'd, the child's command line is still its parent's: no id to find it by yet.
      await eventually(
        () => commandLineOf(pid) ?? [],
        (argv) => argv.includes(id),
        'the orphan running with its id',
        { timeoutMs: 10_000, everyMs: 20 },
      );
      const report = await plantAndReconcile({ id, port: 59_999, pid: 0, status: 'starting' });
      expect(report.dropped).toEqual([id]);
      expect(await isAlive(pid)).toBe(false);
      expect((await fleet.target.readState()).instances.map((i) => i.id)).not.toContain(id);
    } finally {
      if (await isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('a recorded PID that now belongs to another process is never signalled', async () => {
    // After a crash the kernel may hand a dead instance's PID to anything else (pid_max is often 32,768).
    const stranger = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    stranger.unref();
    const pid = stranger.pid!;
    try {
      const id = `${SERVICE}-${(await fleet.target.readState()).nextInstance}`;
      const report = await plantAndReconcile({ id, port: 59_998, pid, status: 'retiring' });
      expect(report.retired).toEqual([id]);
      expect(await isAlive(pid)).toBe(true);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  test('an already applied step stays applied: no new action', async () => {
    const before = (await restarted.readActions()).length;
    expect((await restarted.apply(wave100)).applied).toBe(false);
    expect((await restarted.readActions()).length).toBe(before);
  });

  test('markStable after a full rollout relabels the new version stable without dropping it', async () => {
    const r2 = (name: string, extra: Partial<DeployStep>) => ({
      ...step(name, extra),
      key: `r2/${name}`,
      releaseId: 'r2',
    });
    await restarted.apply(r2('canary', { track: 'canary', canaryInstances: 1 }));
    await restarted.apply(r2('production-100', { percent: 100 }));
    await restarted.markStable(SERVICE, NEXT);
    expect(await restarted.stableVersion(SERVICE)).toBe(NEXT);
    expect(await versionsServing(fleet.frontendUrl, 40)).toEqual({ [NEXT]: 40 });
    const fleetSd = (await fileSd()).filter((t) => t.labels.track !== 'staging');
    expect(fleetSd.map((t) => `${t.labels.version} ${t.labels.track}`)).toEqual(Array(4).fill(`${NEXT} stable`));
  });
});

test('an instance that cannot start fails the step with its log, and the fleet keeps serving', async () => {
  const broken = { ...canary, key: 'r3/canary', releaseId: 'r3', version: 'no such version' };
  const target = new HaproxyFleetTarget({ ...fleet.target.options, logger });
  await expect(target.apply(broken)).rejects.toThrow(/exited \(exit code 2\)[\s\S]*--version: expected a version/);
  const state = await target.readState();
  expect(state.instances.filter((i) => i.slot !== null && i.status === 'serving')).toHaveLength(4);
  expect(state.instances.every((i) => i.version !== broken.version)).toBe(true);
  expect(Object.values(await versionsServing(fleet.frontendUrl, 40)).reduce((a, b) => a + b)).toBe(40);
  expect((await target.readActions()).filter((a) => a.key === broken.key).map((a) => a.action)).toEqual([
    'start',
    'stop',
  ]);
});

test('a missing HAProxy admin socket is a clear, typed error', async () => {
  const target = new HaproxyFleetTarget({
    ...fleet.target.options,
    haproxySocket: join(fleet.stateDir, 'missing', 'admin.sock'),
    stateDir: join(fleet.stateDir, 'other'),
    logger,
  });
  const attempt = target.apply(canary);
  await expect(attempt).rejects.toBeInstanceOf(HaproxySocketError);
  await expect(attempt).rejects.toThrow(/admin socket .*missing\/admin\.sock does not exist.*level admin/);
});

test('a fleet stopped and started again on its state comes back as it was, canary included', async () => {
  const dir = await tempStateDir('restart');
  const options = {
    service: SERVICE,
    version: STABLE,
    fleetSize: 2,
    basePort: nextBasePort(),
    stagingPort: await freePort(),
    command: serviceCommand(serviceJs),
    stateDir: dir,
    fileSdPath: join(dir, 'file_sd.json'),
    retries: false,
    logger,
  };
  const first = await startFleet({ ...options, frontendPort: await freePort() });
  let second: Fleet | undefined;
  try {
    const canaryStep = { ...canary, key: 'r9/canary', releaseId: 'r9' };
    await first.target.apply(canaryStep);
    await first.stop();
    // By its command line, not its PID alone: on this machine PIDs wrap (pid_max 32,768) and get reused.
    expect(commandLineOf(first.haproxyPid)?.join(' ') ?? '').not.toContain(dir);

    // `version` is only where a new fleet starts: a fleet with state keeps its stable version and its canary.
    second = await startFleet({ ...options, version: '9.9.9', frontendPort: await freePort() });
    expect(await versionsServing(second.frontendUrl, 40)).toEqual({ [STABLE]: 20, [NEXT]: 20 });
    expect(await second.target.stableVersion(SERVICE)).toBe(STABLE);
    const sd = JSON.parse(await readFile(options.fileSdPath, 'utf8')) as FileSdTarget[];
    expect(sd.map((t) => `${t.labels.version} ${t.labels.track}`).sort()).toEqual([
      `${STABLE} stable`,
      `${NEXT} canary`,
    ]);
    // The step is still applied once: applying it again changes nothing, and undo still reverts it.
    expect(await second.target.apply(canaryStep)).toMatchObject({ applied: false });
    await second.target.undo(canaryStep);
    expect(await versionsServing(second.frontendUrl, 20)).toEqual({ [STABLE]: 20 });
  } finally {
    await first.stop();
    await second?.stop();
    await removeDir(dir);
  }
});

describe('the demo service', () => {
  const start = async (version: string) => {
    const port = await freePort();
    const argv = serviceCommand(serviceJs).map((a) =>
      a
        .replace('{service}', SERVICE)
        .replace('{version}', version)
        .replace('{port}', String(port))
        .replace('{instance}', 'solo-1')
        .replace('{track}', 'canary')
        .replace('warn', 'info'),
    );
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100 && !out.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
    return {
      child,
      url,
      logs: () =>
        out
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Record<string, unknown>),
    };
  };
  const body = (url: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      get(url, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      }).on('error', reject);
    });

  test('a bad version answers real 500s at its catalogued rate, counted by code in Prometheus text', async () => {
    const { child, url } = await start('1.2.0-bad');
    try {
      const counts = await versionsServing(`${url}/`, 200);
      const errors = counts['500:1.2.0-bad'] ?? 0;
      // errorRate 0.2, spread evenly: every fifth of 200 requests.
      expect(errors).toBe(40);
      const metrics = (await body(`${url}/metrics`)).text;
      const labels = 'service="web",version="1.2.0-bad",instance="solo-1",track="canary"';
      const counter = (code: number) =>
        metrics.match(new RegExp(`tollgate_demo_http_requests_total\\{(?=[^}]*code="${code}")[^}]*\\} (\\d+)`))?.[1];
      expect(counter(500)).toBe(String(errors));
      expect(counter(200)).toBe(String(counts['1.2.0-bad']));
      expect(metrics).toMatch(/tollgate_demo_http_request_duration_seconds_bucket\{le="0.3",/);
      for (const label of labels.split(',')) expect(metrics).toContain(label);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('SIGTERM lets the in-flight request finish, then exits 0; every log line names the instance', async () => {
    const { child, url, logs } = await start('1.3.0-slow');
    const inFlight = body(`${url}/`);
    await new Promise((r) => setTimeout(r, 40));
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect((await inFlight).status).toBe(200);
    expect(code).toBe(0);
    const lines = logs();
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['listening', 'stopped']));
    for (const line of lines)
      expect(line).toMatchObject({ service: SERVICE, version: '1.3.0-slow', instance: 'solo-1', track: 'canary' });
  });
});
