import { CancelledFailure } from '@temporalio/common';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdtemp, open, readdir, readFile, readlink, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_TRY_AGAIN, type CommandCall } from '../../domain/external';
import { printable } from '../../domain/text';
import { writeAtomic } from '../targets/state-file';
import type { CommandRunner, ExternalOutcome, ExternalRequest } from './types';

/** A line longer than this is cut: one line can never hold more memory or log than this. */
export const LINE_MAX_BYTES = 4096;
/** Lines per call that reach `onLine`; the rest are counted, and drained so the child never blocks on a full pipe. */
export const LINES_MAX = 10_000;
/** The tail kept for an error message: whatever the child printed last, both streams in order. */
export const LAST_LINES = 20;
/** The largest result a command may write to TOLLGATE_RESULT. */
export const RESULT_MAX_BYTES = 1024 * 1024;
/** Between SIGTERM and SIGKILL to a process group that ran out of time or was cancelled. */
export const KILL_GRACE_MS = 5_000;
/** How long a retry waits for the process group a dead attempt left running to go, after SIGKILL. */
const ORPHAN_WAIT_MS = 5_000;
/** After the command exits, how long its output may keep coming (a background child holding the pipe open). */
const STDIO_DRAIN_MS = 2_000;
const POLL_MS = 25;
/** What a command sees of the worker's environment without asking: enough to find programs and format text. */
const WORKER_ENV = ['PATH', 'HOME', 'LANG', 'TZ'];

export interface ProcessRunnerOptions {
  /**
   * Where each running call's process group is recorded by its key, so a retry after a SIGKILLed worker kills what
   * the dead attempt left running before it starts again. Without it, nothing is recorded.
   */
  runningDir?: string;
}

type Stream = 'stdout' | 'stderr';
/** How a call ended, before its tail and duration are added. */
type Ended = ExternalOutcome extends infer O
  ? O extends ExternalOutcome
    ? Omit<O, 'durationMs' | 'lastLines'>
    : never
  : never;

/**
 * Cuts a byte stream into lines, holding at most LINE_MAX_BYTES of it: a longer line is handed on cut (`cut`
 * true) and the rest of it, up to the next line feed, dropped.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private cutting = false;

  constructor(private readonly emit: (line: Buffer, cut: boolean) => void) {}

  push(chunk: Buffer): void {
    for (let start = 0; ;) {
      const newline = chunk.indexOf(0x0a, start);
      this.take(chunk.subarray(start, newline === -1 ? chunk.length : newline));
      if (newline === -1) return;
      if (!this.cutting) this.flushLine(false);
      this.cutting = false;
      start = newline + 1;
    }
  }

  /** The stream ended: a last line without a line feed is a line too. */
  end(): void {
    if (!this.cutting && this.pendingBytes > 0) this.flushLine(false);
    this.cutting = false;
  }

  private take(part: Buffer): void {
    if (this.cutting || part.length === 0) return;
    const room = LINE_MAX_BYTES - this.pendingBytes;
    if (part.length <= room) {
      this.pending.push(part);
      this.pendingBytes += part.length;
      return;
    }
    this.pending.push(part.subarray(0, room));
    this.pendingBytes += room;
    this.flushLine(true);
    this.cutting = true;
  }

  private flushLine(cut: boolean): void {
    // A copy: the line must not keep a whole 64 KiB chunk alive in the ring of last lines.
    const line = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.emit(line, cut);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** Bytes as a line anyone may see: invalid UTF-8 replaced, a CR before the LF dropped, then the one sanitiser. */
export function lineText(bytes: Buffer, cut = false): string {
  const text = utf8.decode(bytes).replace(/\r$/, '');
  return printable(text, LINE_MAX_BYTES) + (cut ? '…' : '');
}

/** The output of one call: every line through the sanitiser to `onLine`, bounded in count, with a tail kept. */
class OutputLines {
  private seen = 0;
  private readonly tail: Array<{ bytes: Buffer; cut: boolean }> = [];

  constructor(private readonly onLine: ExternalRequest['onLine']) {}

  splitter(stream: Stream): LineSplitter {
    return new LineSplitter((bytes, cut) => {
      this.seen++;
      this.tail.push({ bytes, cut });
      if (this.tail.length > LAST_LINES) this.tail.shift();
      // Past the limit a line costs a counter increment and a small copy: decoding waits until it is needed.
      if (this.seen <= LINES_MAX) this.deliver(lineText(bytes, cut), stream);
    });
  }

  /** Says how many lines never reached `onLine`, once the output is over. */
  finish(): void {
    const dropped = this.seen - LINES_MAX;
    if (dropped > 0) this.deliver(`… ${dropped} more lines not shown (at most ${LINES_MAX} per call)`, 'stderr');
  }

  lastLines(): string[] {
    return this.tail.map((l) => lineText(l.bytes, l.cut));
  }

  private deliver(line: string, stream: Stream): void {
    try {
      this.onLine?.(line, stream);
    } catch {
      // A listener that throws (a closed log stream) must not take the call down with it.
    }
  }
}

/** Runs a user's executable: no shell, its own process group, stdin JSON, output streamed line by line. */
export class ProcessRunner implements CommandRunner {
  constructor(private readonly options: ProcessRunnerOptions = {}) {}

  async run(call: CommandCall, request: ExternalRequest): Promise<ExternalOutcome> {
    const startedAt = Date.now();
    throwIfCancelled(request.signal);
    const record = this.options.runningDir ? recordPath(this.options.runningDir, request.key) : undefined;
    if (record && !(await stopOrphan(record))) {
      return {
        kind: 'retry',
        message: `a previous attempt of ${printable(request.key, 200)} is still running after SIGKILL`,
        lastLines: [],
        durationMs: Date.now() - startedAt,
      };
    }
    throwIfCancelled(request.signal);
    const dir = await mkdtemp(join(tmpdir(), 'tollgate-call-'));
    try {
      const resultPath = join(dir, 'result.json');
      await writeFile(resultPath, '', { mode: 0o600 });
      const output = new OutputLines(request.onLine);
      const ended = await runProcess(call, request, resultPath, output, record);
      return { ...ended, lastLines: output.lastLines(), durationMs: Date.now() - startedAt };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

async function runProcess(
  call: CommandCall,
  request: ExternalRequest,
  resultPath: string,
  output: OutputLines,
  record: string | undefined,
): Promise<Ended> {
  const [file, ...args] = call.command as [string, ...string[]];
  const shown = printable(file, 200);
  const badCwd = call.cwd === undefined ? undefined : await cwdProblem(call.cwd);
  // Known before the spawn, so the record follows it as closely as it can: a worker killed in between leaves an
  // orphan no record names.
  if (record) await host();
  if (badCwd) return { kind: 'failed', message: `cannot run ${shown}: ${badCwd}` };

  const env: Record<string, string> = {};
  for (const name of [...WORKER_ENV, ...call.env]) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  Object.assign(env, request.env, { TOLLGATE_RESULT: resultPath });

  let child: ChildProcess;
  try {
    // detached: the command leads a process group of its own, so a kill reaches everything it started.
    child = spawn(file, args, { cwd: call.cwd, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    return { kind: 'failed', message: `cannot run ${shown}: ${startError(err)}` };
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const spawnError = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined));
    child.once('error', resolve);
  });
  if (spawnError || child.pid === undefined)
    return { kind: 'failed', message: `cannot run ${shown}: ${startError(spawnError)}` };
  const pid = child.pid;

  const streams = [
    collect(child.stdout!, output.splitter('stdout')),
    collect(child.stderr!, output.splitter('stderr')),
  ];
  child.stdin!.on('error', () => {
    // EPIPE: the command never reads its stdin, which it need not.
  });
  child.stdin!.end(`${JSON.stringify(request.payload)}\n`);

  let stopped: 'timeout' | 'cancelled' | undefined;
  let killing: Promise<void> | undefined;
  const stop = (why: 'timeout' | 'cancelled') => {
    if (stopped) return;
    stopped = why;
    killing = killGroup(pid);
  };
  const timer = setTimeout(() => stop('timeout'), call.timeout);
  const onAbort = () => stop('cancelled');
  request.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (record) await writeRecord(record, pid);
    // Aborted before the listener was added (while the record was written): the same as after.
    if (request.signal?.aborted) stop('cancelled');
    const { code, signal } = await exited;
    clearTimeout(timer);
    request.signal?.removeEventListener('abort', onAbort);
    await killing;
    await drain(streams, child);
    output.finish();
    if (stopped === 'cancelled') throwIfCancelled(request.signal, true);
    if (stopped === 'timeout')
      return { kind: 'timeout', message: `timed out after ${seconds(call.timeout)}; its process group was killed` };
    if (code === 0) return readResult(resultPath);
    if (code === EXIT_TRY_AGAIN) return { kind: 'retry', message: `exited with status ${code} (try again)` };
    if (code !== null) return { kind: 'failed', message: `exited with status ${code}` };
    return { kind: 'failed', message: `killed by ${signal ?? 'a signal'}` };
  } finally {
    clearTimeout(timer);
    request.signal?.removeEventListener('abort', onAbort);
    if (record) await removeRecord(record, pid);
  }
}

function collect(stream: NodeJS.ReadableStream, splitter: LineSplitter): Promise<void> {
  return new Promise((resolve) => {
    stream.on('data', (chunk: Buffer) => splitter.push(chunk));
    stream.once('end', () => {
      splitter.end();
      resolve();
    });
    stream.once('close', resolve);
    stream.once('error', resolve);
  });
}

/** The output still in the pipes, for a bounded time: a background child may hold them open for ever. */
async function drain(streams: Promise<void>[], child: ChildProcess): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, STDIO_DRAIN_MS)));
  await Promise.race([Promise.all(streams), late]);
  clearTimeout(timer);
  child.stdout?.destroy();
  child.stderr?.destroy();
}

/** The command's JSON result: absent or empty is no result; anything unreadable fails the call, named. */
async function readResult(path: string): Promise<Ended> {
  let text: string;
  try {
    // O_NOFOLLOW and O_NONBLOCK: a command that swapped the file for a symlink or a FIFO cannot make us block.
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const info = await handle.stat();
      if (!info.isFile()) return { kind: 'failed', message: 'TOLLGATE_RESULT is not a regular file' };
      if (info.size > RESULT_MAX_BYTES)
        return { kind: 'failed', message: `TOLLGATE_RESULT holds ${info.size} bytes, at most ${RESULT_MAX_BYTES}` };
      const buffer = Buffer.alloc(RESULT_MAX_BYTES + 1);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      if (bytesRead > RESULT_MAX_BYTES)
        return { kind: 'failed', message: `TOLLGATE_RESULT holds more than ${RESULT_MAX_BYTES} bytes` };
      text = utf8.decode(buffer.subarray(0, bytesRead));
    } finally {
      await handle.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'ok', result: undefined };
    return { kind: 'failed', message: `cannot read TOLLGATE_RESULT: ${printable((err as Error).message, 300)}` };
  }
  if (text.trim() === '') return { kind: 'ok', result: undefined };
  try {
    return { kind: 'ok', result: JSON.parse(text) as unknown };
  } catch (err) {
    return { kind: 'failed', message: `TOLLGATE_RESULT is not JSON: ${printable((err as Error).message, 300)}` };
  }
}

async function cwdProblem(cwd: string): Promise<string | undefined> {
  const shown = `working directory ${printable(cwd, 300)}`;
  return stat(cwd).then(
    (info) => (info.isDirectory() ? undefined : `${shown}: not a directory`),
    (err: unknown) => `${shown}: ${startError(err)}`,
  );
}

function startError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'not found';
  if (code === 'EACCES') return 'permission denied';
  return printable((err as Error | undefined)?.message ?? 'no process id', 300);
}

function throwIfCancelled(signal: AbortSignal | undefined, always = false): void {
  if (!signal?.aborted && !always) return;
  const reason: unknown = signal?.reason;
  throw reason instanceof Error ? reason : new CancelledFailure(typeof reason === 'string' ? reason : 'cancelled');
}

const seconds = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms} ms`);

// ---- process groups ----

interface ProcStat {
  state: string;
  pgrp: number;
  /** Clock ticks after boot the process started: with the pid, what tells it from a later one given the same pid. */
  starttime: string;
}

/** /proc/<pid>/stat: undefined when there is no such process. */
async function procStat(pid: number): Promise<ProcStat | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!text) return undefined;
  // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses, so count fields after the last ")".
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', pgrp: Number(fields[2]), starttime: fields[19] ?? '' };
}

const isZombie = (s: ProcStat) => s.state === 'Z' || s.state === 'X';

/** Whether any process of group `pgid` is still running (zombies nobody reaps do not count). */
async function groupAlive(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((e) => /^\d+$/.test(e));
  for (const pid of pids) {
    const s = await procStat(Number(pid));
    if (s && s.pgrp === pgid && !isZombie(s)) return true;
  }
  return false;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  // Never 0 or 1 (our own group, every process), never the worker's own.
  if (!Number.isInteger(pgid) || pgid <= 1 || pgid === process.pid) return;
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: already gone.
  }
}

async function waitUntil(done: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await done()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** SIGTERM to the whole group; what is left of it after the grace period, SIGKILL. Resolves once it is gone. */
async function killGroup(pgid: number): Promise<void> {
  signalGroup(pgid, 'SIGTERM');
  if (await waitUntil(async () => !(await groupAlive(pgid)), KILL_GRACE_MS)) return;
  signalGroup(pgid, 'SIGKILL');
  await waitUntil(async () => !(await groupAlive(pgid)), ORPHAN_WAIT_MS);
}

// ---- the record of running calls, by key ----

interface RunningRecord {
  pid: number;
  pgid: number;
  starttime: string;
  /** The boot and pid namespace the pid belongs to: a record another machine (or container) wrote names none of ours. */
  host: string;
}

let hostId: Promise<string> | undefined;
/** `<boot id>/<pid namespace>`; empty where /proc cannot say, and then nothing is recorded. */
function host(): Promise<string> {
  hostId ??= Promise.all([
    readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((t) => t.trim()),
    readlink('/proc/self/ns/pid'),
  ]).then(
    ([boot, ns]) => `${boot}/${ns}`,
    () => '',
  );
  return hostId;
}

/** Where the call with `key` records its process group: the key hashed, so any key makes a safe file name. */
export const recordPath = (dir: string, key: string) =>
  join(dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.json`);

async function readRecord(path: string): Promise<RunningRecord | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as Partial<RunningRecord>;
    // Written by us with pgid = pid (the command leads its group); anything else is not a record to act on.
    const valid = Number.isInteger(r.pid) && r.pid! > 1 && r.pgid === r.pid;
    if (valid && typeof r.starttime === 'string' && typeof r.host === 'string') return r as RunningRecord;
  } catch {
    // Half a file cannot happen (written by rename); a file someone else wrote is ignored.
  }
  return undefined;
}

async function writeRecord(path: string, pid: number): Promise<void> {
  const [s, here] = await Promise.all([procStat(pid), host()]);
  // Without a start time and a host to check against, a later call could only guess whose group it kills.
  if (!s?.starttime || !here) return;
  const record: RunningRecord = { pid, pgid: pid, starttime: s.starttime, host: here };
  await writeAtomic(path, JSON.stringify(record));
}

async function removeRecord(path: string, pid: number): Promise<void> {
  // Only our own: a later attempt that took over the key has written its process there.
  if ((await readRecord(path))?.pid === pid) await unlink(path).catch(() => undefined);
}

/**
 * Kills what an earlier attempt with the same key left running (its worker died mid-call). False when it is still
 * there after SIGKILL and the wait.
 */
async function stopOrphan(path: string): Promise<boolean> {
  const record = await readRecord(path);
  if (!record) return true;
  // Written on another machine or in another container (a shared state dir): its pid is not one of ours to kill.
  if (record.host !== (await host())) return true;
  const now = await procStat(record.pid);
  // Another process with that pid: ours ended long ago, and so did its group (a pid is not reused while its group
  // lives). No process at all: its group may live on in what it started, which is just what must go.
  if (!now || now.starttime === record.starttime) {
    signalGroup(record.pgid, 'SIGKILL');
    if (!(await waitUntil(async () => !(await groupAlive(record.pgid)), ORPHAN_WAIT_MS))) return false;
  }
  await unlink(path).catch(() => undefined);
  return true;
}
