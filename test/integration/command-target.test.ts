import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CommandTarget } from '../../src/providers/targets/command';
import {
  NEXT,
  STABLE,
  compileDemo,
  fleetProblems,
  quietLogger,
  removeDir,
  startDemoFleet,
  tempStateDir,
  versionsServing,
  type DemoFleet,
} from '../helpers/fleet';
import { FLEET_ORG, fleetPolicy } from '../helpers/policies';
import { canaryBaking, waitForStatus } from '../helpers/release-handle';
import { runRelease } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';

/**
 * Command targets through whole releases on the dev server, with Temporal's own retries: the demo-fleet example
 * (examples/command-targets/demo-fleet.js) releasing a real HAProxy fleet of demo-service processes, and a user's
 * tool (test/fixtures/commands/tool.sh) that answers "try again" or fails for good.
 */
jest.setTimeout(180_000);

const ROOT = resolve(__dirname, '..', '..');
const DEMO_FLEET = join(ROOT, 'examples', 'command-targets', 'demo-fleet.js');
const TOOL = join(ROOT, 'test', 'fixtures', 'commands', 'tool.sh');
const server = devServerForTests();
let build: { dir: string; js: (p: string) => string };
let dir: string;
let fleet: DemoFleet | undefined;

beforeAll(async () => {
  // The fleet provider the example loads, compiled as `npm run build` would (its --dist), and the demo service.
  build = await compileDemo(['demo/service.ts', 'src/providers/targets/haproxy-fleet.ts']);
});
afterAll(async () => {
  if (build) await removeDir(build.dir);
});
beforeEach(async () => {
  dir = await tempStateDir('cmd');
});
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
  await removeDir(dir);
});

const policy = (service: string) => fleetPolicy(service, { cycleMs: 2_000, waveBakeMs: 1_000 });

it('the demo-fleet example releases a real HAProxy fleet: canary, waves, stable, each step applied once', async () => {
  const service = `cmdfleet-${randomUUID().slice(0, 4)}`;
  fleet = await startDemoFleet({ service, serviceJs: build.js('demo/service.ts') });
  const fleetJson = join(dir, 'fleet.json');
  writeFileSync(fleetJson, JSON.stringify(fleet.target.options));
  const target = new CommandTarget(
    { command: [process.execPath, DEMO_FLEET, fleetJson, '--dist', build.dir], stateDir: join(dir, 'state') },
    { logger: quietLogger() },
  );
  expect(await target.stableVersion(service)).toBe(STABLE);
  let canaryServed: Record<string, number> = {};
  const { result } = await runRelease(
    server.env,
    { target, policy: policy(service), org: FLEET_ORG, version: NEXT },
    async (handle) => {
      await waitForStatus(handle, canaryBaking, { timeoutMs: 60_000 }, 'canary baking');
      canaryServed = await versionsServing(fleet!.frontendUrl, 200, 4);
    },
  );
  expect(result).toMatchObject({ outcome: 'promoted', version: NEXT, stableVersion: NEXT });
  // One instance of four on the new version behind the frontend, the rest stable: both answered.
  expect(Object.keys(canaryServed).sort()).toEqual([STABLE, NEXT].sort());
  expect(await fleetProblems(fleet, NEXT)).toEqual([]);
  expect(await versionsServing(fleet.frontendUrl, 100, 4)).toEqual({ [NEXT]: 100 });
  expect(await target.stableVersion(service)).toBe(NEXT);
  // The fleet's own ledger: every step of the release applied exactly once.
  const applied = (await fleet.target.readActions())
    .filter((a) => a.action === 'step-applied')
    .map((a) => a.key.split('/').pop());
  expect(applied).toEqual(['staging', 'canary', 'wave-1', 'wave-2']);
});

/** What tool.sh ran, "<action> <last part of the key>" per run. */
const toolRuns = (log: string) =>
  existsSync(log)
    ? readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.replace(/ .*\//, ' '))
    : [];

it('exit 75 is retried by Temporal until the tool succeeds; the release goes on', async () => {
  const service = `cmdretry-${randomUUID().slice(0, 4)}`;
  const log = join(dir, 'runs.log');
  const target = new CommandTarget(
    { command: [TOOL, log, 'deploy=flaky:1'], stateDir: join(dir, 'state') },
    { logger: quietLogger() },
  );
  const { result, status } = await runRelease(server.env, { target, policy: policy(service), org: FLEET_ORG });
  expect(result.outcome).toBe('promoted');
  expect(status.rollback).toBeUndefined();
  expect(toolRuns(log)).toEqual([
    `read ${service}`,
    'deploy staging',
    'deploy staging',
    'deploy canary',
    'deploy wave-1',
    'deploy wave-2',
    'mark-stable 2.0.0',
  ]);
});

it('any other exit status fails the step at once (no retry), rolls back, and says why in status', async () => {
  const service = `cmdfail-${randomUUID().slice(0, 4)}`;
  const log = join(dir, 'runs.log');
  const target = new CommandTarget(
    { command: [TOOL, log, 'deploy=exit:3'], stateDir: join(dir, 'state') },
    { logger: quietLogger() },
  );
  const { result, status } = await runRelease(server.env, { target, policy: policy(service), org: FLEET_ORG });
  expect(result.outcome).toBe('rolled_back');
  expect(status.rollback?.reason).toBe('deploy: exited with status 3; last lines: running deploy | failing with 3');
  // Run once, not retried; the step it may have half done is undone.
  expect(toolRuns(log)).toEqual([`read ${service}`, 'deploy staging', 'undo staging']);
});
