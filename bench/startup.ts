import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { sleepMs } from './fixtures';

export type StartupMode = 'prebuilt' | 'bundle';

export interface StartupRun {
  mode: StartupMode;
  /** Process start (performance.timeOrigin) → the first workflow task handed to this worker's poller. */
  processToTaskMs: number;
  /** Worker.create called (connection included) → the first workflow task handed to the poller. */
  createToTaskMs: number;
}

export interface StartupResult {
  runs: StartupRun[];
  bundleKiB: number;
  wallMs: number;
}

export interface StartupOptions {
  env: TestWorkflowEnvironment;
  /** Compiled workflows entry (what a worker without a bundle would bundle at start). */
  workflowsPath: string;
  code: string;
  runsPerMode: number;
  deadline: number;
  log: (line: string) => void;
}

const firstTaskStarted = async (env: TestWorkflowEnvironment, workflowId: string): Promise<number> => {
  const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
  const started = history.events?.find(
    (e) => e.eventType === temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
  );
  const t = started?.eventTime;
  if (!t) throw new Error('no workflow task started');
  return Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
};

async function oneRun(opts: StartupOptions, mode: StartupMode, codePath: string): Promise<StartupRun> {
  const taskQueue = `bench-startup-${mode}-${randomUUID().slice(0, 8)}`;
  const workflowId = `bench-startup-${randomUUID()}`;
  // Waiting before the worker exists, so the first poll finds a task at once. An invalid request fails the
  // release on its first workflow task, which is all this measures: the request is refused before the workflow-ID
  // check (`release-<service>` needs a service), so any ID does, and a unique one never meets a run still open.
  const handle = await opts.env.client.workflow.start('releaseWorkflow', { taskQueue, workflowId, args: [{}] });
  const child = spawn(
    process.execPath,
    [
      join(__dirname, 'startup-worker.js'),
      mode,
      opts.env.address,
      taskQueue,
      mode === 'prebuilt' ? codePath : opts.workflowsPath,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = once(child, 'exit');
  try {
    const done = await Promise.race([
      handle.result().then(
        () => 'done',
        () => 'done',
      ),
      sleepMs(60_000).then(() => 'timeout'),
    ]);
    if (done === 'timeout') throw new Error(`${mode} worker did not take its first task within 60 s`);
    const taskAt = await firstTaskStarted(opts.env, workflowId);
    for (let i = 0; i < 100 && !out.includes('\n'); i++) await sleepMs(20);
    const milestones = JSON.parse(out.split('\n')[0] ?? '{}') as { processStart: number; createStart: number };
    return { mode, processToTaskMs: taskAt - milestones.processStart, createToTaskMs: taskAt - milestones.createStart };
  } finally {
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
    await handle.terminate('bench over').catch(() => undefined);
  }
}

/** Alternates the two modes, so drift in machine load touches both alike. */
export async function runStartupBench(opts: StartupOptions): Promise<StartupResult> {
  const t0 = Date.now();
  const codePath = join(tmpdir(), `tollgate-bench-bundle-${randomUUID().slice(0, 8)}.js`);
  writeFileSync(codePath, opts.code);
  const runs: StartupRun[] = [];
  for (let i = 0; i < opts.runsPerMode && Date.now() < opts.deadline; i++) {
    for (const mode of ['prebuilt', 'bundle'] as const) {
      const run = await oneRun(opts, mode, codePath);
      runs.push(run);
      opts.log(`start-up: ${mode} run ${i + 1}: ${run.processToTaskMs} ms from process start`);
    }
  }
  return { runs, bundleKiB: Math.round(opts.code.length / 1024), wallMs: Date.now() - t0 };
}
