import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canKeepWarm, warmPreference } from '../../src/providers/targets/haproxy-fleet-ops';
import { FleetStateStore, fileSdTargets, type Instance } from '../../src/providers/targets/haproxy-fleet-state';

const instance = (id: string, extra: Partial<Instance> = {}): Instance => ({
  id,
  version: '1.0.0',
  track: 'stable',
  port: 20_001,
  pid: 4242,
  slot: 's1',
  status: 'serving',
  startedAt: '2026-01-01T00:00:00.000Z',
  ...extra,
});

describe('the fleet state file', () => {
  let dir: string;
  beforeEach(async () => void (dir = await mkdtemp(join(tmpdir(), 'tollgate-fleet-state-'))));
  afterEach(() => rm(dir, { recursive: true, force: true }));
  const store = () => new FleetStateStore(dir, 'web', 20_000, undefined, '127.0.0.1');

  it('still reads a schemaVersion 1 file written before instances could be warm', async () => {
    const old = {
      schemaVersion: 1,
      service: 'web',
      stableVersion: '1.0.0',
      nextInstance: 3,
      nextPort: 20_002,
      instances: [instance('web-1'), instance('web-2', { slot: null, track: 'staging' })],
      steps: { 'r1/staging': { version: '1.1.0', status: 'applied', startedAt: 'x', replaced: [], changes: [] } },
    };
    await writeFile(join(dir, 'web.state.json'), JSON.stringify(old));
    await expect(store().load()).resolves.toEqual(old);
  });

  it('keeps a warm instance and who kept it across a save and a load', async () => {
    const s = store();
    const state = await s.load();
    const kept = { by: 'r1/production-100', releaseId: 'r1', since: '2026-01-01T00:00:00.000Z' };
    state.instances.push(instance('web-1', { status: 'warm', kept }), instance('web-2', { slot: 's2' }));
    await s.save(state);
    expect((await s.load()).instances[0]).toMatchObject({ status: 'warm', kept });
  });

  it('lists a warm instance for Prometheus as its process labels itself: it still runs', () => {
    const state = {
      schemaVersion: 1 as const,
      service: 'web',
      nextInstance: 2,
      nextPort: 20_002,
      instances: [instance('web-1', { status: 'warm', kept: { by: 'r1/canary', releaseId: 'r1', since: 'x' } })],
      steps: {},
    };
    expect(fileSdTargets(state, '127.0.0.1')).toEqual([
      {
        targets: ['127.0.0.1:20001'],
        labels: { service: 'web', version: '1.0.0', instance: 'web-1', track: 'stable' },
      },
    ]);
  });
});

describe('keeping the previous version warm', () => {
  it('keeps an instance only while a slot stays free for the next replacement, or when it is the last one', () => {
    // 2 × fleetSize slots: every replacement of a fleet of 4 keeps its instance (free slots 4, 3, 2, 1).
    expect([4, 3, 2, 1].map((free, n) => canKeepWarm(free, 4 - n))).toEqual([true, true, true, true]);
    // fleetSize + 1 slots: keeping one would leave the next replacement without a slot.
    expect(canKeepWarm(1, 2)).toBe(false);
    expect(canKeepWarm(1, 1)).toBe(true);
    expect(canKeepWarm(0, 1)).toBe(false);
  });

  it('switches back first to what the step kept, then to what its release kept, then to anything else', () => {
    const kept = (id: string, by: string, releaseId: string) =>
      instance(id, { status: 'warm', kept: { by, releaseId, since: 'x' } });
    const pool = [
      kept('other', 'r0/canary', 'r0'),
      kept('release', 'r1/canary', 'r1'),
      instance('unkept', { status: 'warm' }),
      kept('step', 'r1/production-100', 'r1'),
    ];
    const order = pool.sort(warmPreference({ by: 'r1/production-100', releaseId: 'r1' })).map((i) => i.id);
    expect(order.slice(0, 2)).toEqual(['step', 'release']);
    expect(order.slice(2).sort()).toEqual(['other', 'unkept']);
  });
});
