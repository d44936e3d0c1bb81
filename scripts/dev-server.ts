import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { SEARCH_ATTRIBUTES } from '../src/domain/search-attributes';
import { PROJECT_ROOT, requireBinary, TEMPORAL_CLI } from './temporal-binaries';

export const STATE_DIR = join(PROJECT_ROOT, '.tollgate');

export interface DevServerOptions {
  port?: number;
  uiPort?: number;
  dbFile?: string;
}

/** `temporal server start-dev` with durable SQLite state and Tollgate's search attributes registered. */
export function devServerArgs({
  port = 7233,
  uiPort = 8233,
  dbFile = join(STATE_DIR, 'temporal.db'),
}: DevServerOptions = {}): string[] {
  return [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--db-filename',
    dbFile,
    '--log-level',
    'warn',
    ...SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]),
  ];
}

/**
 * In a process group of its own: a terminal's Ctrl-C goes to the whole foreground group, and the server must outlive
 * the worker's graceful shutdown (a worker reports its cut-short activities to it), so whoever started it stops it.
 */
export function spawnDevServer(options: DevServerOptions = {}): ChildProcess {
  mkdirSync(STATE_DIR, { recursive: true });
  return spawn(requireBinary(TEMPORAL_CLI), devServerArgs(options), {
    stdio: ['ignore', 'inherit', 'inherit'],
    detached: true,
  });
}

/** Whether something accepts TCP connections on host:port right now. */
export function isListening(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = createConnection({ host, port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** Resolves once something accepts TCP connections on host:port, or rejects after timeoutMs. */
export async function waitForPort(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await isListening(port, host)) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

if (require.main === module) {
  const server = spawnDevServer();
  console.log('Temporal dev server: 127.0.0.1:7233, Web UI http://127.0.0.1:8233 (state in .tollgate/temporal.db)');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.kill('SIGTERM'));
  server.on('exit', (code) => process.exit(code ?? 0));
}
