import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import type { WorkerMessage, WorkerProcessConfig, WorkerSettings } from './worker-process';

type Usage = Extract<WorkerMessage, { type: 'usage' }>;

/**
 * A bench process forked with IPC, so its CPU and memory are its own and not the driver's: its messages, awaited
 * with a bound, and a graceful stop. It says `ready` once it serves and stops on a `stop` message.
 */
export class ForkedProcess<M extends { type: string }> {
  private readonly listeners = new Set<(m: M) => void>();

  protected constructor(protected readonly child: ChildProcess) {
    child.on('message', (m: M) => this.listeners.forEach((l) => l(m)));
  }

  /** `script` (compiled, next to this file) with its JSON config in `envVar`. */
  protected static fork(script: string, envVar: string, config: unknown): ChildProcess {
    return fork(join(__dirname, script), [], {
      env: { ...process.env, [envVar]: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
  }

  /** Its `ready` message; a process that does not get there in time (or exits first) is stopped. */
  protected async ready(timeoutMs: number, what: string): Promise<Extract<M, { type: 'ready' }>> {
    try {
      return await this.next((m): m is Extract<M, { type: 'ready' }> => m.type === 'ready', timeoutMs, what);
    } catch (err) {
      await this.stop(0);
      throw err;
    }
  }

  onMessage(listener: (m: M) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  next<N extends M>(match: (m: M) => m is N, timeoutMs: number, what: string): Promise<N>;
  next(match: (m: M) => boolean, timeoutMs: number, what: string): Promise<M>;
  next(match: (m: M) => boolean, timeoutMs: number, what: string): Promise<M> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        off();
        this.child.off('exit', exited);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${what}: nothing within ${timeoutMs} ms`));
      }, timeoutMs);
      const exited = (code: number | null, signal: string | null) => {
        done();
        reject(new Error(`${what}: the process exited (${signal ?? code})`));
      };
      this.child.once('exit', exited);
      const off = this.onMessage((m) => {
        if (!match(m)) return;
        done();
        resolve(m);
      });
    });
  }

  /** Graceful shutdown, then SIGKILL if the process has not gone within the bound. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    if (this.child.connected) this.child.send({ type: 'stop' });
    const killer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(killer);
  }
}

/** A bench worker ([`worker-process.ts`](worker-process.ts)) in its own process. */
export class WorkerProcess extends ForkedProcess<WorkerMessage> {
  /** The worker's effective settings, as it reported them once ready. */
  settings: WorkerSettings = { maxCachedWorkflows: NaN, maxConcurrentActivityTaskExecutions: NaN, bundleKiB: NaN };

  static async start(config: WorkerProcessConfig, timeoutMs = 60_000): Promise<WorkerProcess> {
    const worker = new WorkerProcess(ForkedProcess.fork('worker-process.js', 'BENCH_WORKER', config));
    const { type: _ready, ...settings } = await worker.ready(timeoutMs, 'worker start');
    worker.settings = settings;
    return worker;
  }

  async usage(): Promise<Usage> {
    const answer = this.next((m): m is Usage => m.type === 'usage', 10_000, 'usage');
    this.child.send({ type: 'usage' });
    return answer;
  }
}
