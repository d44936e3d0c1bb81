import type { StepWorkerConfig, StepWorkerMessage } from './breach-worker';
import { ForkedProcess } from './worker-handle';

/** The step-reporting bench worker ([`breach-worker.ts`](breach-worker.ts)) in its own process. */
export class StepWorker extends ForkedProcess<StepWorkerMessage> {
  static async start(config: StepWorkerConfig, timeoutMs = 60_000): Promise<StepWorker> {
    const worker = new StepWorker(ForkedProcess.fork('breach-worker.js', 'BENCH_BREACH_WORKER', config));
    await worker.ready(timeoutMs, 'step worker start');
    return worker;
  }
}
