import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from '../../logger';
import { commandLineOf, isAlive, stopProcess, waitUntil } from './fleet-process';
import { HaproxyFleetTarget, type HaproxyFleetOptions } from './haproxy-fleet';
import { HaproxyRuntime } from './haproxy-runtime';

/**
 * Brings up a demo or test fleet: an HAProxy of its own (config, admin socket and logs in `stateDir`) with one
 * frontend and a backend of disabled server slots, then `fleetSize` instances of the stable version — or, when
 * `stateDir` holds a fleet from an earlier run, that fleet as it was. `stop()` stops every process the fleet runs,
 * including those started by later steps, and keeps its state.
 */

export class FleetBootstrapError extends Error {
  override readonly name = 'FleetBootstrapError';
}

export interface StartFleetOptions extends Omit<
  HaproxyFleetOptions,
  'haproxySocket' | 'backend' | 'stateDir' | 'fileSdPath'
> {
  /** The stable version the fleet starts on. */
  version: string;
  frontendPort: number;
  stateDir: string;
  fileSdPath?: string;
  /** Server slots in the backend; replacing needs one more than fleetSize. Default 2 × fleetSize. */
  slots?: number;
  haproxyBin?: string;
  /**
   * HAProxy retries a request whose connection failed or got no answer (default true, as in production).
   * Tests turn it off, so that zero failed requests proves the drain rather than HAProxy's retries.
   */
  retries?: boolean;
  logger: Logger;
}

export interface Fleet {
  frontendUrl: string;
  socketPath: string;
  backend: string;
  target: HaproxyFleetTarget;
  /** The HAProxy process id, and what it logs to. */
  haproxyPid: number;
  stop(): Promise<void>;
}

// sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH = 107;

export function haproxyConfig(o: {
  service: string;
  frontendPort: number;
  socketPath: string;
  slots: number;
  retries: boolean;
}): string {
  const slots = Array.from({ length: o.slots }, (_, i) => `  server s${i + 1} 127.0.0.1:1 disabled`);
  return [
    'global',
    `  stats socket ${o.socketPath} mode 600 level admin`,
    '  maxconn 4096',
    '',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  timeout http-keep-alive 10s',
    // A connection refused or closed before any answer is retried on another server; a real 5xx is not.
    ...(o.retries
      ? ['  retries 3', '  option redispatch 1', '  retry-on conn-failure empty-response']
      : ['  retries 0']),
    '',
    `frontend fe_${o.service}`,
    `  bind 127.0.0.1:${o.frontendPort}`,
    `  default_backend be_${o.service}`,
    '',
    `backend be_${o.service}`,
    '  balance roundrobin',
    '  option httpchk GET /healthz',
    '  default-server check inter 500ms fall 2 rise 1',
    ...slots,
    '',
  ].join('\n');
}

export async function startFleet(o: StartFleetOptions): Promise<Fleet> {
  const stateDir = resolve(o.stateDir);
  const socketPath = join(stateDir, 'haproxy.sock');
  if (socketPath.length > MAX_SOCKET_PATH) {
    throw new FleetBootstrapError(`state dir ${stateDir} is too long for a unix socket path (${socketPath})`);
  }
  const bin = o.haproxyBin ?? (existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy');
  const backend = `be_${o.service}`;
  const pidPath = join(stateDir, 'haproxy.pid');
  await mkdir(stateDir, { recursive: true });
  await stopLeftovers(stateDir, pidPath, o);

  const cfgPath = join(stateDir, 'haproxy.cfg');
  const slots = o.slots ?? 2 * o.fleetSize;
  await writeFile(
    cfgPath,
    haproxyConfig({ service: o.service, frontendPort: o.frontendPort, socketPath, slots, retries: o.retries ?? true }),
  );
  const logPath = join(stateDir, 'haproxy.log');
  const fd = openSync(logPath, 'a');
  // Foreground (-db) child: we know its PID without a pidfile race, and Node reaps it when it exits.
  const haproxy = spawn(bin, ['-db', '-f', cfgPath], { stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  haproxy.unref();
  let exited: string | undefined;
  haproxy.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
  haproxy.once('error', (err) => (exited = `${err.message} (is the Debian package "haproxy" installed?)`));
  const haproxyPid = haproxy.pid ?? -1;
  await writeFile(pidPath, String(haproxyPid));

  const { version, frontendPort: _p, slots: _s, haproxyBin: _b, retries: _r, logger, ...targetOptions } = o;
  const target = new HaproxyFleetTarget({ ...targetOptions, logger, haproxySocket: socketPath, backend, stateDir });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await target.stopAll();
    } finally {
      if (haproxyPid > 0) await stopProcess(haproxyPid, 5_000);
      await rm(pidPath, { force: true });
    }
  };

  try {
    const runtime = new HaproxyRuntime(socketPath, 1_000);
    const ready = await waitUntil(
      async () =>
        exited !== undefined ||
        (await runtime.command('show info').then(
          () => true,
          () => false,
        )),
      10_000,
      50,
    );
    if (!ready || exited !== undefined) {
      const log = await readFile(logPath, 'utf8').catch(() => '');
      throw new FleetBootstrapError(
        `HAProxy ${exited ? `exited (${exited})` : 'did not open its admin socket within 10 s'}; ${logPath}:\n${log.slice(-800)}`,
      );
    }
    await target.bootstrap(version);
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  o.logger.info({ service: o.service, frontendPort: o.frontendPort, haproxyPid, stateDir }, 'fleet started');
  return { frontendUrl: `http://127.0.0.1:${o.frontendPort}/`, socketPath, backend, target, haproxyPid, stop };
}

/**
 * A previous run's HAProxy and instance processes, if it died without stop(), are stopped; its fleet state is kept,
 * so bootstrap brings the fleet back as it was. A fresh HAProxy starts with every slot disabled.
 */
async function stopLeftovers(stateDir: string, pidPath: string, o: StartFleetOptions): Promise<void> {
  const pid = Number(await readFile(pidPath, 'utf8').catch(() => ''));
  if (
    Number.isInteger(pid) &&
    pid > 0 &&
    (await isAlive(pid)) &&
    (commandLineOf(pid)?.join(' ') ?? '').includes('haproxy')
  ) {
    await stopProcess(pid, 5_000);
  }
  const stale = new HaproxyFleetTarget({
    ...o,
    haproxySocket: join(stateDir, 'haproxy.sock'),
    backend: `be_${o.service}`,
    stateDir,
  });
  await stale.stopAll();
  await rm(join(stateDir, 'haproxy.sock'), { force: true });
}
