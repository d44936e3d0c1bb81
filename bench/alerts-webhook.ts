import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { ALERT_NAMES } from '../src/domain/alert-rules';

import { releaseWorkflowId, type ReleaseResult } from '../src/domain/release';
import { StepWorker } from './breach-worker-handle';
import { Arrivals, bakingInCanary, benchServices, servicePolicy, sleepMs, writePolicies } from './fixtures';
import { freePort } from '../scripts/ports';

/**
 * §8 part 2: Alertmanager's webhook → the first undo, on the dev server. Releases bake in canary on a dry-run target
 * with instant analysis (the step-reporting worker process), `tollgate receiver` runs as its own process as a team
 * runs it, and the bench posts each release's firing alert exactly as Alertmanager's webhook notifier would, one
 * release at a time.
 */

export const RECEIVER_COMMAND = 'node dist/src/client/cli.js receiver';
const CLI_JS = join(__dirname, '..', 'src', 'client', 'cli.js');
const SETPRIV = '/usr/bin/setpriv';
const VERSION = '2.0.0';
const KNOWN_ERROR = {
  name: 'canary-errors',
  matchers: [`alertname="${ALERT_NAMES.errorRatio}"`],
  action: 'rollback' as const,
};

export interface WebhookTrial {
  /** Just before the POST → the first undo activity started on the worker. */
  reactionMs: number;
  /** The POST → the receiver's 200 back at the bench (it answers once Temporal has taken the signal). */
  answerMs: number;
  /** The POST → the rolled-back release closed. */
  closedMs?: number;
}

export interface WebhookResult {
  receiver: string;
  trials: WebhookTrial[];
  failures: string[];
  batch: number;
  wallMs: number;
}

export interface WebhookOptions {
  env: TestWorkflowEnvironment;
  bundlePath: string;
  trials: number;
  /** Releases started together and baking side by side while their alerts go out one at a time. */
  batch: number;
  deadline: number;
  log: (line: string) => void;
}

/** One firing alert of `service`'s canary in the webhook body Alertmanager posts (version 4), field for field. */
export function webhookBody(service: string, version: string, externalURL: string) {
  const labels = {
    alertname: ALERT_NAMES.errorRatio,
    service,
    severity: 'critical',
    tollgate: 'template',
    track: 'canary',
    version,
  };
  const groupLabels = { alertname: labels.alertname, service, track: labels.track, version };
  const annotations = { summary: `${service} ${version} on the canary track: 20% of requests failed` };
  return {
    receiver: 'tollgate',
    status: 'firing',
    alerts: [
      {
        status: 'firing',
        labels,
        annotations,
        startsAt: new Date().toISOString(),
        endsAt: '0001-01-01T00:00:00Z',
        generatorURL: 'http://127.0.0.1:9090/graph?g0.expr=tollgate&g0.tab=1',
        fingerprint: randomBytes(8).toString('hex'),
      },
    ],
    groupLabels,
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL,
    version: '4',
    groupKey: `{}:{${Object.entries(groupLabels)
      .map(([k, v]) => `${k}="${v}"`)
      .join(', ')}}`,
    truncatedAlerts: 0,
  };
}

interface ReceiverProcess {
  url: string;
  stop(): Promise<void>;
}

/**
 * `tollgate receiver` from the compiled CLI, on a free loopback port. Under `setpriv --pdeathsig` when there is one,
 * so a bench that dies takes its receiver with it.
 */
async function startReceiverProcess(env: Record<string, string>): Promise<ReceiverProcess> {
  // The CLI comes from `npm run build`; the receiver code it runs (dist/src/receiver/) is compiled fresh by the bench's
  // own tsc step, since part 1 imports it.
  if (!existsSync(CLI_JS)) throw new Error(`${CLI_JS} is missing: run \`npm run build\` before the bench`);
  const port = await freePort();
  const argv = [process.execPath, CLI_JS, 'receiver'];
  const [command, ...args] = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'TERM', '--', ...argv] : argv;
  const child: ChildProcess = spawn(command!, args, {
    env: { ...process.env, ...env, TOLLGATE_RECEIVER_ADDRESS: `127.0.0.1:${port}`, TOLLGATE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 12_000);
    await exited;
    clearTimeout(killer);
  };
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`the receiver exited (${child.exitCode}) before it listened`);
    const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { url, stop };
    await sleepMs(50);
  }
  await stop();
  throw new Error('the receiver did not answer /healthz within 15 s');
}

export async function runWebhookBench(o: WebhookOptions): Promise<WebhookResult> {
  const t0 = Date.now();
  const token = randomBytes(24).toString('base64url');
  const taskQueue = `bench-alerts-webhook-${randomUUID().slice(0, 8)}`;
  const services = benchServices(o.trials);
  const policyDir = writePolicies({ ...servicePolicy('1h', '1m'), alerts: { rules: [KNOWN_ERROR] } }, services);
  const trials: WebhookTrial[] = [];
  const failures: string[] = [];
  const worker = await StepWorker.start({ address: o.env.address, taskQueue, bundlePath: o.bundlePath, policyDir });
  let receiver: ReceiverProcess | undefined;
  try {
    receiver = await startReceiverProcess({
      TOLLGATE_RECEIVER_TOKEN: token,
      TEMPORAL_ADDRESS: o.env.address,
      TOLLGATE_POLICY_DIR: policyDir,
    });
    const webhook = `${receiver.url}/alertmanager`;
    const post = (body: unknown) =>
      fetch(webhook, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'user-agent': 'Alertmanager' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
    // The receiver's Temporal connection is lazy: a first webhook for a service with nothing in flight opens it, as
    // a long-running receiver's is open by the time a canary fails.
    const warm = await post(webhookBody('bench-warm-up', VERSION, 'http://127.0.0.1:9093'));
    if (warm.status !== 200) throw new Error(`warm-up webhook: HTTP ${warm.status} ${await warm.text()}`);

    const arrivals = new Arrivals();
    worker.onMessage((m) => {
      if (m.type === 'analyze' || m.type === 'undo') arrivals.mark(`${m.type}:${m.workflowId}`, m.at);
    });
    let started = 0;
    while (started < o.trials && Date.now() < o.deadline && failures.length < 20) {
      const b0 = Date.now();
      const batch = services.slice(started, started + o.batch);
      started += batch.length;
      const handles = await Promise.all(
        batch.map((service) =>
          o.env.client.workflow.start('releaseWorkflow', {
            taskQueue,
            workflowId: releaseWorkflowId(service),
            args: [{ service, version: VERSION, initiator: 'bench' }],
          }),
        ),
      );
      try {
        await Promise.all(handles.map((h) => bakingInCanary(h, arrivals)));
        for (const [i, handle] of handles.entries()) {
          if (Date.now() >= o.deadline) break;
          const undone = arrivals.wait(`undo:${handle.workflowId}`, 10_000);
          const body = webhookBody(batch[i]!, VERSION, 'http://127.0.0.1:9093');
          const sent = Date.now();
          try {
            const response = await post(body);
            await response.text();
            const answerMs = Date.now() - sent;
            if (response.status !== 200) throw new Error(`receiver answered HTTP ${response.status}`);
            const undoAt = await undone;
            // One release at a time: the next alert never competes with this one's rollback.
            const result = await Promise.race([
              handle.result() as Promise<ReleaseResult>,
              sleepMs(10_000).then(() => undefined),
            ]);
            const closedAt = Date.now();
            if (result && !result.reason.startsWith('known error')) throw new Error(`rolled back: ${result.reason}`);
            trials.push({
              reactionMs: undoAt - sent,
              answerMs,
              ...(result !== undefined && { closedMs: closedAt - sent }),
            });
          } catch (err) {
            undone.catch(() => undefined);
            failures.push(err instanceof Error ? err.message : String(err));
          }
        }
      } finally {
        await Promise.all(handles.map((h) => h.terminate('bench over').catch(() => undefined)));
      }
      o.log(`alerts/webhook: ${trials.length}/${o.trials} trials (${Date.now() - b0} ms for this batch)`);
    }
  } finally {
    await receiver?.stop().catch(() => undefined);
    await worker.stop();
  }
  return { receiver: RECEIVER_COMMAND, trials, failures, batch: o.batch, wallMs: Date.now() - t0 };
}
