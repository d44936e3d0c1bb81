import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { analysisRound } from '../../src/activities/analysis';
import type { ReleaseContext } from '../../src/activities/types';
import { checkSchema, type Check } from '../../src/domain/policy';
import { ProcessRunner } from '../../src/providers/external/command-runner';
import { runJobCheck, type JobContext } from '../../src/providers/metrics/job';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import { canaryContext } from '../helpers/analysis';

const FIXTURES = resolve(__dirname, '../fixtures/checks');
const script = (name: string) => join(FIXTURES, name);

const jobCheck = (command: string[], job: Record<string, unknown> = {}, critical = false): Check =>
  checkSchema.parse({ name: 'synthetic', provider: { job: { command, ...job } }, critical });
const jobOf = (check: Check) => check.provider!.job!;

const context: JobContext = { ...canaryContext, windowSeconds: 30, at: '2026-12-02T10:00:00.000Z' };
const runner = new ProcessRunner();
const run = (check: Check, ctx: JobContext = context, signal?: AbortSignal) =>
  runJobCheck(runner, check, jobOf(check), ctx, signal ? { signal } : {});

const noPrometheus: MetricsProvider = {
  kind: 'none',
  isOnline: () => Promise.resolve(false),
  query: () => Promise.resolve(undefined),
  queryRange: () => Promise.resolve([]),
};

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'tollgate-job-check-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** What probe.sh recorded: its TOLLGATE_* environment (less TOLLGATE_RESULT, a temporary path) and its stdin. */
function recorded(file: string) {
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  const env = Object.fromEntries(
    lines
      .filter((l) => l.startsWith('TOLLGATE_') && !l.startsWith('TOLLGATE_RESULT='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const stdin = JSON.parse(lines.find((l) => l.startsWith('STDIN='))!.slice('STDIN='.length)) as unknown;
  return { env, stdin };
}

describe('job checks: the exit status is the verdict', () => {
  it('passes on exit 0, having given the command the round as environment variables and JSON on stdin', async () => {
    const record = join(dir, 'seen.txt');
    const result = await run(jobCheck([script('probe.sh'), '0', record]));
    expect(result).toMatchObject({ check: 'synthetic', verdict: 'pass', critical: false, at: context.at });
    expect(result.reason).toMatch(/^exit 0 after \d+\.\d s$/);
    const { env, stdin } = recorded(record);
    expect(env).toEqual({
      TOLLGATE_CHECK: 'synthetic',
      TOLLGATE_RELEASE_ID: 'r',
      TOLLGATE_SERVICE: 'checkout',
      TOLLGATE_VERSION: '2.0.0',
      TOLLGATE_STABLE_VERSION: '1.0.0',
      TOLLGATE_STAGE: 'canary',
      TOLLGATE_TRACK: 'canary',
      TOLLGATE_WINDOW_SECONDS: '30',
    });
    expect(stdin).toEqual({
      check: 'synthetic',
      releaseId: 'r',
      service: 'checkout',
      version: '2.0.0',
      stableVersion: '1.0.0',
      stage: 'canary',
      track: 'canary',
      windowSeconds: 30,
      at: context.at,
    });
  });

  it('leaves TOLLGATE_STABLE_VERSION unset (and null on stdin) when the release has none', async () => {
    const record = join(dir, 'seen.txt');
    await run(jobCheck([script('probe.sh'), '0', record]), { ...context, stableVersion: undefined });
    const { env, stdin } = recorded(record);
    expect(env.TOLLGATE_STABLE_VERSION).toBeUndefined();
    expect(stdin).toMatchObject({ stableVersion: null });
  });

  it('fails on any other status, with the last lines of output as the reason', async () => {
    const result = await run(jobCheck([script('probe.sh'), '1'], {}, true));
    expect(result).toMatchObject({ verdict: 'fail', critical: true });
    expect(result.reason).toBe('exited with status 1: checkout probe: GET /cart 200 | checkout probe: POST /pay 502');
  });

  it('is inconclusive on exit 75 (try again later)', async () => {
    const result = await run(jobCheck([script('probe.sh'), '75']));
    expect(result).toMatchObject({ verdict: 'inconclusive' });
    expect(result.reason).toMatch(/^exited with status 75 \(try again\): checkout probe/);
  });

  it('is inconclusive on a run past its timeout, its process group killed', async () => {
    const started = Date.now();
    const result = await run(jobCheck([script('slow.sh')], { timeout: '1s' }));
    expect(result).toMatchObject({ verdict: 'inconclusive' });
    expect(result.reason).toBe('timed out after 1s; its process group was killed: load test started');
    expect(Date.now() - started).toBeLessThan(8_000);
  });

  it('is inconclusive when the command cannot start: never a verdict on the canary', async () => {
    const missing = await run(jobCheck([join(dir, 'no-such-probe')]));
    expect(missing).toMatchObject({ verdict: 'inconclusive' });
    expect(missing.reason).toBe(`cannot run ${join(dir, 'no-such-probe')}: not found`);
    const notExecutable = await run(jobCheck([join(FIXTURES, 'metrics-api.ts')]));
    expect(notExecutable.verdict).toBe('inconclusive');
    expect(notExecutable.reason).toMatch(/permission denied/);
    const badCwd = await run(jobCheck([script('probe.sh'), '0'], { cwd: join(dir, 'gone') }));
    expect(badCwd.verdict).toBe('inconclusive');
    expect(badCwd.reason).toMatch(/working directory/);
  });

  it('quotes hostile output printable and bounded', async () => {
    const result = await run(jobCheck([script('hostile.sh')]));
    expect(result).toMatchObject({ verdict: 'fail' });
    expect(result.reason.startsWith('exited with status 3: ')).toBe(true);
    expect(result.reason).toContain('\\u{001b}[2J');
    expect(result.reason).toContain('\\u{009b} c1 csi');
    // eslint-disable-next-line no-control-regex
    expect(result.reason).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(result.reason).toContain(`${'x'.repeat(160)}… |`);
    expect(result.reason.length).toBeLessThanOrEqual(1001);
  });

  it('is inconclusive on a worker that runs no commands', async () => {
    const check = jobCheck([script('probe.sh'), '0']);
    expect(await runJobCheck(undefined, check, jobOf(check), context)).toMatchObject({
      verdict: 'inconclusive',
      reason: 'this worker runs no commands',
    });
  });
});

describe('job checks in an analysis round', () => {
  const round = (checks: Check[], ctx: ReleaseContext = canaryContext, signal?: AbortSignal) =>
    analysisRound(noPrometheus, ctx, checks, 30_000, new Date(), 3, undefined, {
      commands: runner,
      ...(signal && { signal }),
    });

  it('judges each job check by its own exit status, next to the others', async () => {
    const { results } = await round([
      { ...jobCheck([script('probe.sh'), '0']), name: 'cart' },
      { ...jobCheck([script('probe.sh'), '2']), name: 'pay' },
      { ...jobCheck([script('probe.sh'), '75']), name: 'later' },
    ]);
    expect(results.map((r) => `${r.check}:${r.verdict}`)).toEqual(['cart:pass', 'pay:fail', 'later:inconclusive']);
  });

  it('runs as a staging smoke check too, told its track', async () => {
    const record = join(dir, 'seen.txt');
    const staging = { ...canaryContext, stage: 'staging' as const, track: 'staging' as const };
    const { results } = await round([jobCheck([script('probe.sh'), '0', record])], staging);
    expect(results[0]?.verdict).toBe('pass');
    expect(recorded(record).env).toMatchObject({ TOLLGATE_STAGE: 'staging', TOLLGATE_TRACK: 'staging' });
  });

  it('stops the command and gives no verdict when the activity is cancelled', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('activity cancelled')), 300);
    const started = Date.now();
    await expect(
      round([jobCheck([script('slow.sh')], { timeout: '60s' })], canaryContext, controller.signal),
    ).rejects.toThrow('activity cancelled');
    expect(Date.now() - started).toBeLessThan(8_000);
  });
});
