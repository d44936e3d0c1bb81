import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** Processes of the fleet: start them detached (they outlive a worker restart), find them again, stop them. */

export class InstanceStartError extends Error {
  override readonly name = 'InstanceStartError';
}

export type Placeholders = Record<'service' | 'version' | 'port' | 'instance' | 'track', string>;

/** `{name}` in each argv element, replaced as a whole value: no shell, so nothing in a value is interpreted. */
export function renderCommand(template: readonly string[], values: Placeholders): string[] {
  return template.map((arg) =>
    arg.replace(/\{(service|version|port|instance|track)\}/g, (_, name: keyof Placeholders) => values[name]),
  );
}

export interface SpawnedInstance {
  pid: number;
  logPath: string;
  /** Resolves with the exit code (or signal) if the process ends; used to fail fast while waiting for health. */
  exited: Promise<string>;
}

export function spawnInstance(
  argv: readonly string[],
  opts: { logDir: string; id: string; cwd?: string; env?: NodeJS.ProcessEnv },
): SpawnedInstance {
  const [file, ...args] = argv;
  if (!file) throw new InstanceStartError('empty instance command');
  mkdirSync(opts.logDir, { recursive: true });
  const logPath = join(opts.logDir, `${opts.id}.log`);
  const fd = openSync(logPath, 'a');
  try {
    // Own process group and unref'd: the instance serves on when the worker that started it restarts.
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    const exited = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => resolve(signal ?? `exit code ${code}`));
      child.once('error', (err) => resolve(err.message));
    });
    child.unref();
    if (child.pid === undefined) throw new InstanceStartError(`cannot start ${file}: no process id`);
    return { pid: child.pid, logPath, exited };
  } finally {
    closeSync(fd);
  }
}

/** Alive and not a zombie: a stopped instance whose parent (init, after a worker restart) never reaps it is gone. */
export async function isAlive(pid: number): Promise<boolean> {
  // 0 is an instance whose process was never recorded; signalling it would reach the worker's own process group.
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // "pid (comm) S ..." — comm may hold spaces and parentheses, so read the state after the last ")".
  const state = stat?.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** The process's argv on Linux; undefined where /proc does not exist (the caller then trusts the health check). */
export function commandLineOf(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

/** Every other process's argv (Linux /proc), read once; undefined where /proc does not exist. */
export async function processTable(): Promise<Map<number, string[]> | undefined> {
  const entries = await readdir('/proc').catch(() => undefined);
  if (!entries) return undefined;
  const table = new Map<number, string[]>();
  for (const pid of entries.filter((e) => /^\d+$/.test(e)).map(Number)) {
    const argv = pid === process.pid ? undefined : commandLineOf(pid);
    if (argv) table.set(pid, argv);
  }
  return table;
}

/** Is `pid` still the process we started for `instanceId` (and not a recycled PID)? */
export async function isOurInstance(pid: number, instanceId: string): Promise<boolean> {
  if (!(await isAlive(pid))) return false;
  const argv = commandLineOf(pid);
  return argv === undefined || argv.includes(instanceId);
}

/** SIGTERM (the service drains itself), then SIGKILL after `graceMs`. Resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs: number): Promise<'terminated' | 'killed' | 'absent'> {
  if (!(await isAlive(pid))) return 'absent';
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'absent';
  }
  if (await waitUntil(async () => !(await isAlive(pid)), graceMs, 25)) return 'terminated';
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return 'terminated';
  }
  await waitUntil(async () => !(await isAlive(pid)), 5_000, 25);
  return 'killed';
}

export function httpStatus(url: string, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

/** Waits until GET healthUrl answers 200; fails early, with the end of the instance's log, if it exits. */
export async function waitHealthy(instance: SpawnedInstance, healthUrl: string, timeoutMs: number): Promise<void> {
  let exit: string | undefined;
  void instance.exited.then((how) => (exit = how));
  const ok = await waitUntil(async () => exit !== undefined || (await httpStatus(healthUrl, 1_000)) === 200, timeoutMs);
  if (ok && exit === undefined) return;
  const log = await readFile(instance.logPath, 'utf8').catch(() => '');
  const tail = log.trim().split('\n').slice(-5).join('\n');
  const why = exit !== undefined ? `exited (${exit})` : `not healthy within ${timeoutMs} ms`;
  throw new InstanceStartError(`instance ${instance.pid} ${why} at ${healthUrl}; log ${instance.logPath}:\n${tail}`);
}

/** Can we bind the port right now? Guards against ports taken by processes the state file does not know. */
export function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Polls `check` until it holds or `timeoutMs` passes; every wait in the fleet target goes through here. */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const maxRounds = Math.ceil(timeoutMs / intervalMs) + 1;
  for (let round = 0; round < maxRounds; round++) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return check();
}
