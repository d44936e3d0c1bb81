import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { WorkerMessage, WorkerProcessConfig, WorkerSettings } from './worker-process';

type Usage = Extract<WorkerMessage, { type: 'usage' }>;

/** A bench worker in its own process, so its CPU and memory are its own and not the driver's. */
export class WorkerProcess {
  private readonly listeners = new Set<(m: WorkerMessage) => void>();

  /** The worker's effective settings, as it reported them once ready. */
  settings: WorkerSettings = { maxCachedWorkflows: NaN, maxConcurrentActivityTaskExecutions: NaN, bundleKiB: NaN };

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: WorkerMessage) => this.listeners.forEach((l) => l(m)));
  }

  static async start(config: WorkerProcessConfig, timeoutMs = 60_000): Promise<WorkerProcess> {
    const child = fork(join(__dirname, 'worker-process.js'), [], {
      env: { ...process.env, BENCH_WORKER: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const worker = new WorkerProcess(child);
    const ready = await worker.next(
      (m): m is Extract<WorkerMessage, { type: 'ready' }> => m.type === 'ready',
      timeoutMs,
      'worker start',
    );
    const { type: _ready, ...settings } = ready;
    worker.settings = settings;
    return worker;
  }

  onMessage(listener: (m: WorkerMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  next<M extends WorkerMessage>(match: (m: WorkerMessage) => m is M, timeoutMs: number, what: string): Promise<M>;
  next(match: (m: WorkerMessage) => boolean, timeoutMs: number, what: string): Promise<WorkerMessage>;
  next(match: (m: WorkerMessage) => boolean, timeoutMs: number, what: string): Promise<WorkerMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`${what}: nothing within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onMessage((m) => {
        if (!match(m)) return;
        clearTimeout(timer);
        off();
        resolve(m);
      });
    });
  }

  async usage(): Promise<Usage> {
    const answer = this.next((m): m is Usage => m.type === 'usage', 10_000, 'usage');
    this.child.send({ type: 'usage' });
    return answer;
  }

  /** Graceful shutdown, then SIGKILL if the worker has not gone within the bound. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.send({ type: 'stop' });
    const killer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(killer);
  }
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (!address || typeof address === 'string') throw new Error('no free port');
  return address.port;
}
