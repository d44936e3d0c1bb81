import { randomUUID } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { abortSignal, abortUpdate, statusQuery } from '../src/domain/messages';
import { servicePolicy, SERVICE, sleepMs, writePolicies } from './fixtures';
import { WorkerProcess } from './worker-handle';

export type AbortKind = 'update' | 'signal';

export interface ReactionTrial {
  kind: AbortKind;
  /** Sending abort → the first undo activity starting on the worker. */
  reactionMs: number;
  /** Update only: sending → the update's answer back at the client. */
  answerMs?: number;
  /** Sending abort → the rolled-back release closed (every undo done, result recorded). */
  closedMs?: number;
}

export interface ReactionResult {
  trials: ReactionTrial[];
  failures: string[];
  wallMs: number;
  batch: number;
}

export interface ReactionOptions {
  env: TestWorkflowEnvironment;
  bundlePath: string;
  trialsPerKind: number;
  /** Releases started together and baking side by side while their aborts go out one at a time. */
  batch: number;
  deadline: number;
  log: (line: string) => void;
}

/** First time each workflow reached a point, and whoever waits for it. */
class Arrivals {
  private readonly seen = new Map<string, number>();
  private readonly waiting = new Map<string, (at: number) => void>();
  mark(key: string, at: number) {
    if (this.seen.has(key)) return;
    this.seen.set(key, at);
    this.waiting.get(key)?.(at);
    this.waiting.delete(key);
  }
  wait(key: string, timeoutMs: number): Promise<number> {
    const at = this.seen.get(key);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new Error(`${key}: not within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(key, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
  }
}

async function bakingInCanary(handle: WorkflowHandle, arrivals: Arrivals): Promise<void> {
  await arrivals.wait(`analyze:${handle.workflowId}`, 30_000);
  for (let i = 0; i < 100; i++) {
    const status = await handle.query(statusQuery);
    if (status.stage === 'canary' && status.state === 'baking') return;
    await sleepMs(20);
  }
  throw new Error(`${handle.workflowId} never settled into canary baking`);
}

export async function runReactionBench(opts: ReactionOptions): Promise<ReactionResult> {
  const t0 = Date.now();
  const taskQueue = `bench-reaction-${randomUUID().slice(0, 8)}`;
  const policyDir = writePolicies(servicePolicy('1h', '1m'));
  const worker = await WorkerProcess.start({
    address: opts.env.address,
    taskQueue,
    bundlePath: opts.bundlePath,
    policyDir,
    reportActivities: true,
  });
  const arrivals = new Arrivals();
  worker.onMessage((m) => {
    if (m.type === 'analyze' || m.type === 'undo') arrivals.mark(`${m.type}:${m.workflowId}`, m.at);
  });
  const trials: ReactionTrial[] = [];
  const failures: string[] = [];
  const total = 2 * opts.trialsPerKind;
  try {
    while (trials.length + failures.length < total && Date.now() < opts.deadline && failures.length < 20) {
      const b0 = Date.now();
      const size = Math.min(opts.batch, total - trials.length - failures.length);
      const handles = await Promise.all(
        Array.from({ length: size }, () =>
          opts.env.client.workflow.start('releaseWorkflow', {
            taskQueue,
            workflowId: `bench-reaction-${randomUUID()}`,
            args: [{ service: SERVICE, version: '2.0.0', initiator: 'bench' }],
          }),
        ),
      );
      await Promise.all(handles.map((h) => bakingInCanary(h, arrivals)));
      for (const handle of handles) {
        if (Date.now() >= opts.deadline) break;
        const kind: AbortKind = (trials.length + failures.length) % 2 === 0 ? 'update' : 'signal';
        const undone = arrivals.wait(`undo:${handle.workflowId}`, 10_000);
        const sent = Date.now();
        try {
          let answerMs: number | undefined;
          const input = { by: 'bench', reason: 'reaction trial' };
          if (kind === 'update') {
            await handle.executeUpdate(abortUpdate, { args: [input] });
            answerMs = Date.now() - sent;
          } else {
            await handle.signal(abortSignal, input);
          }
          const undoAt = await undone;
          // One release at a time: the next abort never competes with this one's rollback.
          const closed = await Promise.race([
            handle.result().then(() => Date.now()),
            sleepMs(10_000).then(() => undefined),
          ]);
          trials.push({
            kind,
            reactionMs: undoAt - sent,
            ...(answerMs !== undefined && { answerMs }),
            ...(closed !== undefined && { closedMs: closed - sent }),
          });
        } catch (err) {
          undone.catch(() => undefined);
          failures.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      await Promise.all(handles.map((h) => h.terminate('bench over').catch(() => undefined)));
      opts.log(`reaction: ${trials.length}/${total} trials (${Date.now() - b0} ms for this batch)`);
    }
  } finally {
    await worker.stop();
  }
  return { trials, failures, wallMs: Date.now() - t0, batch: opts.batch };
}
