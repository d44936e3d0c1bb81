import { randomUUID } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { abortSignal, abortUpdate, approveSignal, approveUpdate, statusQuery } from '../src/domain/messages';
import { releaseWorkflowId } from '../src/domain/release';
import { runBreachBench, type BreachResult } from './breach';
import { StepWorker } from './breach-worker-handle';
import { Arrivals, bakingInCanary, benchServices, servicePolicy, sleepMs, writePolicies } from './fixtures';
import { WorkerProcess } from './worker-handle';

/**
 * A release of each of `services` started at once, each as `release-<service>` (the only ID the workflow accepts).
 * Every release of a part has a service of its own, so its workflow ID, which keys the bookkeeping, is its alone.
 */
function startReleases(env: TestWorkflowEnvironment, taskQueue: string, services: string[]) {
  return Promise.all(
    services.map((service) =>
      env.client.workflow.start('releaseWorkflow', {
        taskQueue,
        workflowId: releaseWorkflowId(service),
        args: [{ service, version: '2.0.0', initiator: 'bench' }],
      }),
    ),
  );
}

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

export interface AbortResult {
  trials: ReactionTrial[];
  failures: string[];
  wallMs: number;
  batch: number;
}

export interface ApproveTrial {
  kind: AbortKind;
  /** Sending approve → the next deploy activity (the canary's) starting on the worker. */
  reactionMs: number;
  /** Update only: sending → the update's answer back at the client. */
  answerMs?: number;
}

export interface ApproveResult {
  trials: ApproveTrial[];
  failures: string[];
  wallMs: number;
  batch: number;
}

export interface Part<T> {
  result?: T;
  error?: string;
}

export interface ReactionResult {
  abort: Part<AbortResult>;
  approve: Part<ApproveResult>;
  breach: Part<BreachResult>;
  wallMs: number;
}

export interface ReactionOptions {
  env: TestWorkflowEnvironment;
  bundlePath: string;
  trialsPerKind: number;
  /** Releases started together and waiting side by side while their messages go out one at a time. */
  batch: number;
  breachTrials: number;
  deadline: number;
  log: (line: string) => void;
}

/** Each part's own bound (never past the section's deadline), so one slow part cannot starve the next. */
const PART_BOUND_MS = { abort: 150_000, approve: 150_000, breach: 100_000 } as const;
type PartName = keyof typeof PART_BOUND_MS;
/** BENCH_REACTION=approve,breach runs only those parts (a partial run, for working on one of them). */
const PARTS = new Set((process.env.BENCH_REACTION ?? 'abort,approve,breach').split(','));

async function runAbortBench(opts: ReactionOptions): Promise<AbortResult> {
  const t0 = Date.now();
  const taskQueue = `bench-reaction-${randomUUID().slice(0, 8)}`;
  const total = 2 * opts.trialsPerKind;
  const services = benchServices(total);
  const policyDir = writePolicies(servicePolicy('1h', '1m'), services);
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
  let started = 0;
  try {
    while (trials.length + failures.length < total && Date.now() < opts.deadline && failures.length < 20) {
      const b0 = Date.now();
      const size = Math.min(opts.batch, total - trials.length - failures.length);
      const handles = await startReleases(opts.env, taskQueue, services.slice(started, started + size));
      started += size;
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

/** Until the status query shows the release waiting at the canary gate. */
async function awaitingCanaryApproval(handle: WorkflowHandle, arrivals: Arrivals): Promise<void> {
  await arrivals.wait(`deploy:staging:${handle.workflowId}`, 30_000);
  for (let i = 0; i < 250; i++) {
    const status = await handle.query(statusQuery);
    if (status.state === 'awaiting-approval' && status.gate?.name === 'canary') return;
    await sleepMs(20);
  }
  throw new Error(`${handle.workflowId} never reached the canary approval gate`);
}

/**
 * Approve → next deploy: releases whose policy gates the canary on approval (no four-eyes; the approver is not the
 * initiator anyway) wait at that gate, and one at a time get `approve`; the clock stops when the canary's deploy
 * activity starts on the worker. The next approve waits until the approved release is baking, so trials do not
 * overlap.
 */
async function runApproveBench(opts: ReactionOptions): Promise<ApproveResult> {
  const t0 = Date.now();
  const taskQueue = `bench-approve-${randomUUID().slice(0, 8)}`;
  const base = servicePolicy('1h', '1m');
  const total = 2 * opts.trialsPerKind;
  const services = benchServices(total);
  const policyDir = writePolicies({ ...base, canary: { ...base.canary, approval: true } }, services);
  const worker = await StepWorker.start({
    address: opts.env.address,
    taskQueue,
    bundlePath: opts.bundlePath,
    policyDir,
  });
  const arrivals = new Arrivals();
  worker.onMessage((m) => {
    if (m.type === 'deploy') arrivals.mark(`deploy:${m.step}:${m.workflowId}`, m.at);
    if (m.type === 'analyze') arrivals.mark(`analyze:${m.workflowId}`, m.at);
  });
  const trials: ApproveTrial[] = [];
  const failures: string[] = [];
  let started = 0;
  try {
    while (trials.length + failures.length < total && Date.now() < opts.deadline && failures.length < 20) {
      const b0 = Date.now();
      const size = Math.min(opts.batch, total - trials.length - failures.length);
      const handles = await startReleases(opts.env, taskQueue, services.slice(started, started + size));
      started += size;
      try {
        await Promise.all(handles.map((h) => awaitingCanaryApproval(h, arrivals)));
        for (const handle of handles) {
          if (Date.now() >= opts.deadline) break;
          const kind: AbortKind = (trials.length + failures.length) % 2 === 0 ? 'update' : 'signal';
          const deployed = arrivals.wait(`deploy:canary:${handle.workflowId}`, 10_000);
          const input = { by: 'bench-approver', comment: 'reaction trial' };
          const sent = Date.now();
          try {
            let answerMs: number | undefined;
            if (kind === 'update') {
              await handle.executeUpdate(approveUpdate, { args: [input] });
              answerMs = Date.now() - sent;
            } else {
              await handle.signal(approveSignal, input);
            }
            const deployAt = await deployed;
            trials.push({ kind, reactionMs: deployAt - sent, ...(answerMs !== undefined && { answerMs }) });
            await arrivals.wait(`analyze:${handle.workflowId}`, 10_000).catch(() => undefined);
          } catch (err) {
            deployed.catch(() => undefined);
            failures.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
      } finally {
        await Promise.all(handles.map((h) => h.terminate('bench over').catch(() => undefined)));
      }
      opts.log(`approve: ${trials.length}/${total} trials (${Date.now() - b0} ms for this batch)`);
    }
  } finally {
    await worker.stop();
  }
  return { trials, failures, wallMs: Date.now() - t0, batch: opts.batch };
}

/** Abort → undo, approve → deploy and breach → rollback, one after the other, each bounded on its own. */
export async function runReactionBench(opts: ReactionOptions): Promise<ReactionResult> {
  const t0 = Date.now();
  const part = async <T>(name: PartName, run: (deadline: number) => Promise<T>): Promise<Part<T>> => {
    if (!PARTS.has(name)) return { error: 'skipped (BENCH_REACTION)' };
    try {
      return { result: await run(Math.min(opts.deadline, Date.now() + PART_BOUND_MS[name])) };
    } catch (err) {
      opts.log(`reaction/${name}: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      return { error: err instanceof Error ? err.message : String(err) };
    }
  };
  const abort = await part('abort', (deadline) => runAbortBench({ ...opts, deadline }));
  const approve = await part('approve', (deadline) => runApproveBench({ ...opts, deadline }));
  const breach = await part('breach', (deadline) =>
    runBreachBench({
      env: opts.env,
      bundlePath: opts.bundlePath,
      trials: opts.breachTrials,
      lanes: 4,
      deadline,
      log: opts.log,
    }),
  );
  return { abort, approve, breach, wallMs: Date.now() - t0 };
}
