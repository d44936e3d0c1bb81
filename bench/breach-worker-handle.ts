import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import type { StepWorkerConfig, StepWorkerMessage } from './breach-worker';

/** The step-reporting bench worker ([`breach-worker.ts`](breach-worker.ts)) in its own process. */
export class StepWorker {
  private readonly listeners = new Set<(m: StepWorkerMessage) => void>();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: StepWorkerMessage) => this.listeners.forEach((l) => l(m)));
  }

  static async start(config: StepWorkerConfig, timeoutMs = 60_000): Promise<StepWorker> {
    const child = fork(join(__dirname, 'breach-worker.js'), [], {
      env: { ...process.env, BENCH_BREACH_WORKER: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const worker = new StepWorker(child);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`step worker: not ready within ${timeoutMs} ms`)), timeoutMs);
        child.once('exit', (code, signal) => reject(new Error(`step worker exited (${signal ?? code}) before ready`)));
        worker.onMessage((m) => {
          if (m.type !== 'ready') return;
          clearTimeout(timer);
          resolve();
        });
      });
    } catch (err) {
      await worker.stop(0);
      throw err;
    }
    return worker;
  }

  onMessage(listener: (m: StepWorkerMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Graceful shutdown, then SIGKILL if the worker has not gone within the bound. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    if (this.child.connected) this.child.send({ type: 'stop' });
    const killer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(killer);
  }
}
