import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadReceiverConfig } from '../../src/config/receiver-config';
import { startReceiver, type RunningReceiver } from '../../src/receiver/main';
import { startAlertmanager, type RunningAlertmanager } from '../helpers/alertmanager';
import { NEXT, STABLE, fleetProblems } from '../helpers/fleet';
import { freePort } from '../../scripts/ports';
import { canaryBaking, resultWithin, waitForStatus } from '../helpers/release-handle';
import {
  doubleApplications,
  progress,
  releaseNext,
  reliabilityStack,
  sleep,
  spawnWorker,
  startServices,
  stopServices,
  workerFiles,
  type Proc,
  type Service,
} from './support';

/**
 * Temporal is down when a canary's alert fires. Alertmanager sends it to `tollgate receiver`, which cannot signal
 * the release and answers 503; Alertmanager keeps the notification and tries again. Once the dev server is back on
 * the same SQLite file, the alert is delivered and the release rolls back on it: the alert is never lost, and no
 * step is applied twice.
 */

const CYCLE_MS = 60_000;
const stack = reliabilityStack('alert-delivery');

/** The receiver's log lines, to see Alertmanager's calls answered 503 while Temporal is down. */
function capturedLogger(lines: string[]) {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

test('an alert that fires while Temporal is down is delivered once it is back, and rolls the canary back', async () => {
  const started = Date.now();
  const name = `alert-down-${randomUUID().slice(0, 5)}`;
  const token = randomBytes(24).toString('base64url');
  const problems: string[] = [];
  const lines: string[] = [];
  let service: Service | undefined;
  let worker: Proc | undefined;
  let receiver: RunningReceiver | undefined;
  let alertmanager: RunningAlertmanager | undefined;
  let outcome = 'none';
  let appliedTwice: string[] = [];
  let lost = false;
  try {
    const port = await freePort();
    receiver = await startReceiver(
      loadReceiverConfig({
        TOLLGATE_RECEIVER_ADDRESS: `127.0.0.1:${port}`,
        TOLLGATE_RECEIVER_TOKEN: token,
        TEMPORAL_ADDRESS: stack.server.address,
        TOLLGATE_RECEIVER_SIGNAL_TIMEOUT: '2s',
      }),
      capturedLogger(lines),
    );
    alertmanager = await startAlertmanager({
      webhookUrl: `http://127.0.0.1:${port}/alertmanager`,
      bearerToken: token,
      groupWait: '0s',
      groupInterval: '1s',
      repeatInterval: '1h',
    });
    [service] = await startServices([name]);
    const rules = [
      { name: 'canary-errors', matchers: ['alertname="TollgateErrorRatioHigh"'], action: 'rollback' as const },
    ];
    const env = stack.workerEnv(
      `reliability-${name}`,
      workerFiles(stack.dir, [service!], { cycleMs: CYCLE_MS }, { alerts: { rules } }),
    );
    worker = await spawnWorker(env, `worker-${name}`);
    const handle = await releaseNext(await stack.server.client(), env.taskQueue, name, 'alert delivery');
    await waitForStatus(handle, canaryBaking, { timeoutMs: 30_000, everyMs: 100 }, 'the canary bake');

    await stack.server.stop('SIGKILL');
    progress('dev server killed in the canary bake; the canary alert fires');
    await alertmanager.postAlerts([
      {
        labels: {
          alertname: 'TollgateErrorRatioHigh',
          service: name,
          version: NEXT,
          track: 'canary',
          severity: 'critical',
        },
        annotations: { summary: `${name} ${NEXT} on the canary: 20% of requests failed` },
      },
    ]);
    // Bounded: Alertmanager's first call reaches the receiver at once, and its answer waits out the signal deadline.
    const refusedBy = Date.now() + 20_000;
    while (Date.now() < refusedBy && !lines.some((l) => l.includes('answering 503'))) await sleep(200);
    if (!lines.some((l) => l.includes('answering 503')))
      problems.push('the receiver never answered 503 while Temporal was down');
    await stack.server.start();
    await stack.server.client();
    progress('dev server back');

    const result = await resultWithin(handle, 60_000);
    outcome = result?.outcome ?? 'none';
    if (!result) lost = true;
    else if (!result.reason.startsWith('known error: alert TollgateErrorRatioHigh on the canary')) {
      problems.push(`rolled back for another reason: ${result.reason}`);
      lost = true;
    }
    appliedTwice = await doubleApplications(service!);
    problems.push(...(await fleetProblems(service!.fleet, STABLE)));
  } finally {
    stack.rows.push({
      scenario: 'Temporal down while a canary alert arrives (Alertmanager → receiver 503 → retried)',
      runs: 1,
      faults: 1,
      survived: outcome === 'rolled_back' && !lost && appliedTwice.length === 0 && problems.length === 0 ? 1 : 0,
      wrongOutcomes: outcome === 'rolled_back' ? 0 : 1,
      appliedTwice: appliedTwice.length,
      dataLost: lost ? 1 : 0,
      seconds: Math.round((Date.now() - started) / 1000),
      notes:
        `dev server SIGKILLed in the canary bake, the alert posted to Alertmanager, the server restarted once the ` +
        `receiver had answered 503${problems.length ? ` — problems: ${problems.join('; ')}` : ''}`,
      file: 'alert-delivery.test.ts',
    });
    await worker?.stop('SIGTERM');
    if (service) await stopServices([service]);
    await alertmanager?.stop();
    await receiver?.stop();
  }
  expect({ outcome, lost, appliedTwice, problems }).toEqual({
    outcome: 'rolled_back',
    lost: false,
    appliedTwice: [],
    problems: [],
  });
}, 150_000);
