import { CancelledFailure } from '@temporalio/common';
import fc from 'fast-check';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { CommandCall } from '../../src/domain/external';
import { hasUnsafeCharacters } from '../../src/domain/text';
import {
  KILL_GRACE_MS,
  LAST_LINES,
  LINE_MAX_BYTES,
  LINES_MAX,
  LineSplitter,
  ProcessRunner,
  lineText,
  recordPath,
} from '../../src/providers/external/command-runner';
import type { ExternalOutcome, ExternalRequest } from '../../src/providers/external/types';
import { isAlive } from '../../src/providers/targets/fleet-process';
import { until } from '../helpers/until';

/** ProcessRunner against real processes: the fixtures in test/fixtures/commands/, each a small executable script. */

jest.setTimeout(60_000);

const FIXTURES = resolve(__dirname, '..', 'fixtures', 'commands');
const fixture = (name: string, ...args: string[]) => [join(FIXTURES, name), ...args];
const call = (command: string[], extra: Partial<CommandCall> = {}): CommandCall => ({
  command,
  env: [],
  timeout: 20_000,
  ...extra,
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tg-runner-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface Heard {
  line: string;
  stream: 'stdout' | 'stderr';
}

async function run(
  command: string[],
  extra: Partial<CommandCall> = {},
  request: Partial<ExternalRequest> = {},
  runner = new ProcessRunner(),
): Promise<{ outcome: ExternalOutcome; heard: Heard[] }> {
  const heard: Heard[] = [];
  const outcome = await runner.run(call(command, extra), {
    payload: { action: 'deploy', version: '1.2.3' },
    env: { TOLLGATE_ACTION: 'deploy', TOLLGATE_VERSION: '1.2.3' },
    key: 'release-x/run/canary',
    onLine: (line, stream) => heard.push({ line, stream }),
    ...request,
  });
  return { outcome, heard };
}

/** The pids a sleep-group.sh run wrote: its own and its grandchild sleep's. */
async function groupPids(pidFile: string): Promise<number[]> {
  await until(() => existsSync(pidFile), `${pidFile} written`, 10_000);
  return readFileSync(pidFile, 'utf8').trim().split(' ').map(Number);
}

async function allGone(pids: number[]): Promise<boolean> {
  return (await Promise.all(pids.map((p) => isAlive(p)))).every((alive) => !alive);
}

describe('a command that finishes', () => {
  it('gets the step on stdin and as env, sees only the worker variables it names, and answers with its result', async () => {
    process.env.TG_TEST_PASSED = 'passed';
    process.env.TG_TEST_HIDDEN = 'hidden';
    try {
      const { outcome, heard } = await run(fixture('echo-step.sh'), { env: ['TG_TEST_PASSED'], cwd: dir });
      expect(outcome.kind).toBe('ok');
      const result = (outcome as Extract<ExternalOutcome, { kind: 'ok' }>).result as Record<string, unknown>;
      expect(result).toEqual({
        changes: ['deploy 1.2.3'],
        stdin: { action: 'deploy', version: '1.2.3' },
        cwd: dir,
      });
      const env = heard.filter((h) => h.line.startsWith('env: ')).map((h) => h.line.slice(5).split('=')[0]);
      expect(env).toEqual(
        expect.arrayContaining(['PATH', 'TG_TEST_PASSED', 'TOLLGATE_ACTION', 'TOLLGATE_VERSION', 'TOLLGATE_RESULT']),
      );
      expect(env).not.toContain('TG_TEST_HIDDEN');
      expect(heard).toContainEqual({ line: 'env: TG_TEST_PASSED=passed', stream: 'stdout' });
      expect(heard).toContainEqual({ line: 'to stderr', stream: 'stderr' });
      expect(heard[0]).toEqual({ line: 'stdin: {"action":"deploy","version":"1.2.3"}', stream: 'stdout' });
      // The result file is a fresh temp file, gone once the call is over.
      const resultPath = heard.find((h) => h.line.startsWith('env: TOLLGATE_RESULT='))!.line.split('=')[1]!;
      expect(existsSync(resultPath)).toBe(false);
      expect(outcome.lastLines.at(-1)).toBe('to stderr');
    } finally {
      delete process.env.TG_TEST_PASSED;
      delete process.env.TG_TEST_HIDDEN;
    }
  });

  it.each([
    ['none', undefined],
    ['blank', undefined],
    ['removed', undefined],
    ['json', { changes: ['a'], applied: false }],
  ])('reads a result written as %s', async (mode, expected) => {
    const { outcome } = await run(fixture('write-result.sh', mode));
    expect(outcome).toMatchObject({ kind: 'ok', result: expected });
  });

  it.each([
    ['not-json', /^TOLLGATE_RESULT is not JSON: /],
    ['huge', /^TOLLGATE_RESULT holds 1048577 bytes, at most 1048576$/],
    ['fifo', /^TOLLGATE_RESULT is not a regular file$/],
    ['symlink', /^cannot read TOLLGATE_RESULT: ELOOP/],
  ])('fails a command whose result is %s, saying so, without blocking', async (mode, message) => {
    const { outcome } = await run(fixture('write-result.sh', mode));
    expect(outcome.kind).toBe('failed');
    expect((outcome as { message: string }).message).toMatch(message);
  });
});

describe('exit statuses', () => {
  it('75 is "try again"', async () => {
    const { outcome } = await run(fixture('exit-with.sh', '75', '2'));
    expect(outcome).toMatchObject({
      kind: 'retry',
      message: 'exited with status 75 (try again)',
      lastLines: ['line 1', 'line 2', 'giving up'],
    });
  });

  it('any other status is final, with the last lines of both streams', async () => {
    const { outcome, heard } = await run(fixture('exit-with.sh', '3'));
    expect(outcome.kind).toBe('failed');
    expect((outcome as { message: string }).message).toBe('exited with status 3');
    expect(outcome.lastLines).toHaveLength(LAST_LINES);
    expect(outcome.lastLines.slice(-2)).toEqual(['line 25', 'giving up']);
    expect(outcome.lastLines[0]).toBe('line 7');
    expect(heard).toHaveLength(26);
  });

  it('a signal is named', async () => {
    const { outcome } = await run(['bash', '-c', 'echo about to crash; kill -SEGV $$']);
    expect(outcome).toMatchObject({ kind: 'failed', message: 'killed by SIGSEGV', lastLines: ['about to crash'] });
  });

  it('a command that cannot start says why, by name', async () => {
    const notExecutable = join(dir, 'deploy.sh');
    writeFileSync(notExecutable, '#!/bin/sh\nexit 0\n');
    chmodSync(notExecutable, 0o644);
    expect((await run(['./no-such-script'], { cwd: dir })).outcome).toMatchObject({
      kind: 'failed',
      message: 'cannot run ./no-such-script: not found',
    });
    expect((await run([notExecutable])).outcome).toMatchObject({
      kind: 'failed',
      message: `cannot run ${notExecutable}: permission denied`,
    });
    expect((await run(['true'], { cwd: join(dir, 'gone') })).outcome).toMatchObject({
      kind: 'failed',
      message: `cannot run true: working directory ${join(dir, 'gone')}: not found`,
    });
  });
});

describe('stopping a command', () => {
  it('a timeout kills the whole process group: the grandchild sleep is gone too', async () => {
    const pidFile = join(dir, 'pids');
    const started = Date.now();
    const running = run(fixture('sleep-group.sh', pidFile), { timeout: 1_000 });
    const pids = await groupPids(pidFile);
    expect(await Promise.all(pids.map((p) => isAlive(p)))).toEqual([true, true]);
    const { outcome } = await running;
    expect(outcome).toMatchObject({ kind: 'timeout', message: 'timed out after 1s; its process group was killed' });
    expect(Date.now() - started).toBeLessThan(1_000 + KILL_GRACE_MS);
    expect(await allGone(pids)).toBe(true);
  });

  it('a group that ignores SIGTERM gets SIGKILL after the grace period', async () => {
    const pidFile = join(dir, 'pids');
    const started = Date.now();
    const running = run(fixture('sleep-group.sh', pidFile, 'ignore-term'), { timeout: 1_000 });
    const pids = await groupPids(pidFile);
    const { outcome } = await running;
    expect(outcome.kind).toBe('timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000 + KILL_GRACE_MS);
    expect(await allGone(pids)).toBe(true);
  });

  it('a cancel kills the group, then rejects with the cancellation reason', async () => {
    const pidFile = join(dir, 'pids');
    const abort = new AbortController();
    const running = run(fixture('sleep-group.sh', pidFile), {}, { signal: abort.signal });
    const pids = await groupPids(pidFile);
    const reason = new CancelledFailure('activity cancelled');
    abort.abort(reason);
    await expect(running).rejects.toBe(reason);
    expect(await allGone(pids)).toBe(true);
  });

  it('a cancel without an Error reason rejects with a CancelledFailure; one before the start runs nothing', async () => {
    const abort = new AbortController();
    const pidFile = join(dir, 'pids');
    const running = run(fixture('sleep-group.sh', pidFile), {}, { signal: abort.signal });
    const pids = await groupPids(pidFile);
    abort.abort('stop');
    await expect(running).rejects.toBeInstanceOf(CancelledFailure);
    expect(await allGone(pids)).toBe(true);
    const marker = join(dir, 'ran');
    await expect(run(['touch', marker], {}, { signal: abort.signal })).rejects.toBeInstanceOf(CancelledFailure);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('hostile output', () => {
  it('escape sequences, C1 and bidi controls, NUL, CR and invalid UTF-8 reach onLine escaped, never raw', async () => {
    const { outcome, heard } = await run(fixture('hostile.sh'));
    expect(outcome.kind).toBe('ok');
    for (const { line } of heard) {
      expect(hasUnsafeCharacters(line)).toBe(false);
      expect(line).not.toContain('\u001b');
    }
    const lines = heard.map((h) => h.line);
    expect(lines).toContain('\\u{001b}[31mred\\u{001b}[0m \\u{001b}[2J\\u{001b}[H cleared');
    expect(lines).toContain('\\u{001b}]52;c;ZXZpbA==\\u{0007}clipboard');
    expect(lines).toContain('c1 \\u{009b} 31m');
    expect(lines).toContain('bidi \\u{202e}txet desrever\\u{202c} \\u{2066}iso\\u{2069}');
    expect(lines).toContain('nul \\u{0000} byte');
    expect(lines).toContain('fake\\u{000d}forged line');
    expect(lines).toContain('bad utf8 \ufffd\ufffd \ufffd\ufffd');
    expect(heard).toContainEqual({ line: 'stderr \ufffd c1 raw byte', stream: 'stderr' });
    expect(outcome.lastLines.every((l) => !hasUnsafeCharacters(l))).toBe(true);
  });

  it('50 MB of output: 10,000 lines reach onLine, then a count of the rest; lines cut at 4 KiB; memory bounded', async () => {
    const heardCount = { lines: 0, longest: 0 };
    let last = '';
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 20);
    const runner = new ProcessRunner();
    const outcome = await runner
      .run(call(fixture('flood.sh', String(50 * 1024 * 1024))), {
        payload: {},
        env: {},
        key: 'flood',
        onLine: (line) => {
          heardCount.lines++;
          heardCount.longest = Math.max(heardCount.longest, line.length);
          last = line;
        },
      })
      .finally(() => clearInterval(sampler));
    expect(outcome.kind).toBe('ok');
    expect(heardCount.lines).toBe(LINES_MAX + 1);
    // 50 MiB in 100-byte lines, a line of 1 MiB, "the end"; the first 10,000 were shown.
    const total = Math.ceil((50 * 1024 * 1024) / 100) + 2;
    expect(last).toBe(`… ${total - LINES_MAX} more lines not shown (at most ${LINES_MAX} per call)`);
    expect(outcome.lastLines.at(-1)).toBe('the end');
    expect(outcome.lastLines.at(-2)).toBe(`${'y'.repeat(LINE_MAX_BYTES)}…`);
    expect(outcome.lastLines).toHaveLength(LAST_LINES);
    expect(heardCount.longest).toBeLessThanOrEqual(LINE_MAX_BYTES + 1);
    expect(rssPeak - rssBefore).toBeLessThan(64 * 1024 * 1024);
  });

  const RUNS = { numRuns: 40, seed: 20261202 };
  /** Bytes a hostile child might write: anything, with ESC, C1 lead bytes, CR, LF, NUL and bidi pieces favoured. */
  const hostileBytes = fc
    .array(
      fc.oneof(
        fc.integer({ min: 0, max: 255 }),
        fc.constantFrom(0x1b, 0x9b, 0xc2, 0x0d, 0x0a, 0x00, 0x07, 0xe2, 0x80, 0xae, 0x5b, 0x5d),
      ),
      { maxLength: 600 },
    )
    .map((bytes) => Buffer.from(bytes));

  it('property: whatever bytes a real child writes, onLine never receives an unsafe character', async () => {
    await fc.assert(
      fc.asyncProperty(hostileBytes, async (bytes) => {
        const { outcome, heard } = await run(
          fixture('emit-bytes.sh'),
          {},
          { env: { BYTES_B64: bytes.toString('base64') } },
        );
        expect(outcome.kind).toBe('ok');
        for (const { line } of heard) expect(hasUnsafeCharacters(line)).toBe(false);
        for (const line of outcome.lastLines) expect(hasUnsafeCharacters(line)).toBe(false);
      }),
      RUNS,
    );
  });

  it('property: the line splitter keeps every line (cut at 4 KiB) however the bytes are chunked, and shows them safe', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 6_000 }), { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 5_000 }), { minLength: 1, maxLength: 10 }),
        (parts, cuts) => {
          const bytes = Buffer.concat(parts.map((p, i) => Buffer.concat([p, Buffer.from(i % 2 ? '\n' : '')])));
          const lines: Buffer[] = [];
          const splitter = new LineSplitter((line) => lines.push(line));
          for (let at = 0, i = 0; at < bytes.length; i++) {
            const size = cuts[i % cuts.length]!;
            splitter.push(bytes.subarray(at, at + size));
            at += size;
          }
          splitter.end();
          const expected = bytes.length === 0 ? [] : splitLines(bytes);
          expect(lines.map((l) => l.toString('hex'))).toEqual(expected.map((l) => l.toString('hex')));
          for (const line of lines) expect(hasUnsafeCharacters(lineText(line))).toBe(false);
        },
      ),
      { numRuns: 300, seed: 20261202 },
    );
  });
});

/** The reference the splitter must agree with: split on LF, a last unterminated line kept, each cut at 4 KiB. */
function splitLines(bytes: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let nl = bytes.indexOf(0x0a); nl !== -1; nl = bytes.indexOf(0x0a, start)) {
    lines.push(bytes.subarray(start, nl));
    start = nl + 1;
  }
  if (start < bytes.length) lines.push(bytes.subarray(start));
  return lines.map((l) => l.subarray(0, LINE_MAX_BYTES));
}

describe('the orphan guard (runningDir)', () => {
  it('a second call with the same key kills the group the first left running before it starts', async () => {
    const runner = new ProcessRunner({ runningDir: join(dir, 'running') });
    const pidFile = join(dir, 'pids');
    const first = run(fixture('sleep-group.sh', pidFile), {}, {}, runner);
    const pids = await groupPids(pidFile);
    // Recorded just after the spawn (written aside, then renamed), so possibly a moment after the script's first lines.
    const recorded = recordPath(join(dir, 'running'), 'release-x/run/canary');
    await until(() => existsSync(recorded), 'the record of the first call');
    const second = await run(['bash', '-c', 'echo second run'], {}, {}, runner);
    expect(await allGone(pids)).toBe(true);
    expect(second.outcome).toMatchObject({ kind: 'ok', lastLines: ['second run'] });
    expect((await first).outcome).toMatchObject({ kind: 'failed', message: 'killed by SIGKILL' });
    // Each call removes its own record once it is over.
    expect(readdirSync(join(dir, 'running'))).toEqual([]);
  });

  /** The record a call would write for `pid`, with what the test wants changed. */
  const recordFor = (pid: number, over: Record<string, string> = {}) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const starttime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    const host = `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}/${readlinkSync('/proc/self/ns/pid')}`;
    return JSON.stringify({ pid, pgid: pid, starttime, host, ...over });
  };

  it.each([
    ['started at another time (a reused pid)', { starttime: '1' }],
    ['recorded on another machine or container', { host: 'another-boot/pid:[1]' }],
  ])('leaves alone a process whose pid a record names but which %s', async (_what, over) => {
    const bystander = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    await once(bystander, 'spawn');
    try {
      const runningDir = join(dir, 'running');
      const key = 'release-x/run/canary';
      const pid = bystander.pid!;
      mkdirSync(runningDir);
      writeFileSync(recordPath(runningDir, key), recordFor(pid, over));
      const { outcome } = await run(['true'], {}, { key }, new ProcessRunner({ runningDir }));
      expect(outcome.kind).toBe('ok');
      expect(await isAlive(pid)).toBe(true);
    } finally {
      bystander.kill('SIGKILL');
    }
  });

  it('kills the group a record of this machine names, same pid and start time, though no call of ours started it', async () => {
    const orphan = spawn('bash', ['-c', 'sleep 30 & wait'], { detached: true, stdio: 'ignore' });
    await once(orphan, 'spawn');
    const pid = orphan.pid!;
    try {
      const runningDir = join(dir, 'running');
      const key = 'release-x/run/canary';
      mkdirSync(runningDir);
      writeFileSync(recordPath(runningDir, key), recordFor(pid));
      const { outcome } = await run(['true'], {}, { key }, new ProcessRunner({ runningDir }));
      expect(outcome.kind).toBe('ok');
      expect(await isAlive(pid)).toBe(false);
    } finally {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Gone, as it should be.
      }
    }
  });
});
