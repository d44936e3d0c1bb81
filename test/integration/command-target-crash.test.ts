import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { isAlive } from '../../src/providers/targets/fleet-process';
import { CommandTarget, type CommandTargetOptionsInput } from '../../src/providers/targets/command';
import type { DeployStep } from '../../src/providers/targets/types';
import { compileDemo, quietLogger, removeDir, tempStateDir } from '../helpers/fleet';
import { eventually } from '../helpers/until';

/**
 * A worker SIGKILLed while a command step's script runs (command-crash-child.ts, a process of its own), and the step
 * retried by a new worker over the same state dir, as Temporal would after the heartbeat timeout: the script the
 * dead worker left running is killed (its whole group) before the retry runs it again, and the step is applied
 * exactly once from Tollgate's side. The script (test/fixtures/commands/crash-deploy.sh) logs every start and
 * finish per key, so runs are counted, not guessed.
 */
jest.setTimeout(60_000);

const SCRIPT = resolve(__dirname, '..', 'fixtures', 'commands', 'crash-deploy.sh');
let childJs: string;
let buildDir: string | undefined;
let dir: string;

beforeAll(async () => {
  const build = await compileDemo(['test/integration/command-crash-child.ts']);
  buildDir = build.dir;
  childJs = build.js('test/integration/command-crash-child.ts');
});
afterAll(async () => {
  if (buildDir) await removeDir(buildDir);
});
beforeEach(async () => {
  dir = await tempStateDir('cmd-crash');
});
afterEach(() => removeDir(dir));

const step: DeployStep = {
  key: 'release-checkout/run-1/canary',
  releaseId: 'release-checkout/run-1',
  service: 'checkout',
  version: '1.4.2',
  stableVersion: '1.4.1',
  track: 'canary',
  canaryInstances: 1,
};

const options = (): CommandTargetOptionsInput => ({
  command: [SCRIPT],
  env: ['RUNS_DIR'],
  stateDir: join(dir, 'state'),
  timeout: 30_000,
});

/** The script's log for the step's key: "start <pid> <action>" and "done <pid> <action>" lines. */
const runsFile = () => join(dir, `${createHash('sha256').update(step.key).digest('hex').slice(0, 16)}.runs`);
const runs = () => (existsSync(runsFile()) ? readFileSync(runsFile(), 'utf8').trim().split('\n') : []);

/** Processes of group `pgid` still running (zombies, which nobody here reaps, do not count). */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') members.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return members;
}

it('a worker SIGKILLed mid-step: the orphaned script is killed before the retry, and the step applies once', async () => {
  process.env.RUNS_DIR = dir;
  try {
    const worker = spawn(process.execPath, [childJs, JSON.stringify({ options: options(), step })], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, RUNS_DIR: dir },
    });
    let stderr = '';
    worker.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [first] = await eventually(runs, (r) => r.length === 1, 'the first run started', { timeoutMs: 15_000 });
    const orphan = Number(first!.split(' ')[1]);
    // The script's group: bash and the sleep it waits on, both running.
    await eventually(
      () => groupMembers(orphan),
      (m) => m.length === 2,
      'the script and its sleep running',
    );
    // The worker records the script's group just after the spawn: the kill comes once it has (a worker killed in
    // the milliseconds between leaves an orphan no record names, the one window the guard cannot cover).
    const running = join(dir, 'state', 'running');
    await eventually(
      () => (existsSync(running) ? readdirSync(running).filter((f) => f.endsWith('.json')) : []),
      (files) => files.length === 1,
      'the running record',
    );
    worker.kill('SIGKILL');
    const [code, signal] = (await once(worker, 'exit')) as [number | null, NodeJS.Signals | null];
    expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });
    // The worker is gone; what it started is not.
    expect(await isAlive(orphan)).toBe(true);
    expect(readdirSync(running)).toHaveLength(1);

    const retried = await new CommandTarget(options(), { logger: quietLogger() }).apply(step);
    expect(retried).toEqual({ key: step.key, applied: true, changes: ['deploy 1.4.2'] });
    expect(groupMembers(orphan)).toEqual([]);
    const [, second] = runs();
    const rerun = Number(second!.split(' ')[1]);
    // Started twice, finished once: the dead attempt never reached its end.
    expect(runs()).toEqual([`start ${orphan} deploy`, `start ${rerun} deploy`, `done ${rerun} deploy`]);
    expect(readdirSync(running)).toEqual([]);

    // Another retry (a third worker): nothing runs.
    const again = await new CommandTarget(options(), { logger: quietLogger() }).apply(step);
    expect(again).toEqual({ key: step.key, applied: false, changes: [] });
    expect(runs()).toHaveLength(3);
    const ledger = JSON.parse(readFileSync(join(dir, 'state', 'checkout.ledger.json'), 'utf8')) as {
      steps: Record<string, { status: string }>;
    };
    expect(Object.entries(ledger.steps).map(([key, e]) => [key, e.status])).toEqual([[step.key, 'applied']]);
  } finally {
    delete process.env.RUNS_DIR;
  }
});
