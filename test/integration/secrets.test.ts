import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Runtime } from '@temporalio/worker';
import { connectionSettings } from '../../src/config/connection';
import { createLogger, PinoSdkLogger } from '../../src/logger';
import {
  createNotifiers,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  verifySignature,
} from '../../src/providers/notify/webhook';
import { writePolicies } from '../helpers/policies';
import { startRelease } from '../helpers/release-handle';
import { failing, healthy, releaseHarness } from '../helpers/release-harness';
import { startTimeSkipping } from '../helpers/temporal-servers';

/*
 * Secrets live in the worker's environment and reach only the code that uses them: never a workflow input,
 * never history, never a log line. Each planted value is unique, so finding it anywhere is a leak.
 */
const WEBHOOK_SECRET = `whsec-planted-${randomUUID()}`;
const PATH_TOKEN = `planted-path-token-${randomUUID()}`;
const API_KEY = `tgk_planted_${randomUUID().replace(/-/g, '')}`;
const TEMPORAL_API_KEY = `eyJhbGciOiJFUzI1NiJ9.planted-${randomUUID()}.c2lnbmF0dXJl`;
const PLANTED = { WEBHOOK_SECRET, PATH_TOKEN, API_KEY, TEMPORAL_API_KEY };

interface Delivery {
  headers: IncomingHttpHeaders;
  body: Buffer;
  status: number;
}

const logLines: string[] = [];
const logger = createLogger('trace', { write: (line: string) => void logLines.push(line) });

let env: TestWorkflowEnvironment;
let receiver: Server;
let receiverUrl: string;
const deliveries: Delivery[] = [];

beforeAll(async () => {
  // Workflow, worker and core logs go through the same pino logger as the activities', so all of them are captured.
  Runtime.install({ logger: new PinoSdkLogger(logger) });
  env = await startTimeSkipping();
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      // The first delivery fails, so the notifier's retry path (and its logging) runs too.
      const status = deliveries.length === 0 ? 503 : 204;
      deliveries.push({ headers: req.headers, body: Buffer.concat(chunks), status });
      res.writeHead(status).end(status === 503 ? 'try again' : undefined);
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/T000/B000/${PATH_TOKEN}`;
});

afterAll(async () => {
  receiver?.closeAllConnections();
  await new Promise((resolve) => receiver?.close(resolve));
  await env?.teardown();
});

function expectNoSecret(where: string, text: string): void {
  const found = Object.entries(PLANTED)
    .filter(([, value]) => text.includes(value))
    .map(([name]) => name);
  expect({ where, found }).toEqual({ where, found: [] });
}

it('a release with signed webhooks keeps every planted secret out of history and logs', async () => {
  // Configuration as the worker reads it: the secret by the name of its environment variable, never its value.
  const workerEnv = { TOLLGATE_WEBHOOK_SECRET: WEBHOOK_SECRET } as NodeJS.ProcessEnv;
  const notifier = createNotifiers(
    { webhooks: [{ url: receiverUrl, format: 'json', secretEnv: 'TOLLGATE_WEBHOOK_SECRET', retries: 2 }] },
    { logger, env: workerEnv },
  );
  // What a worker's start-up and providers log: credentials in objects the redact list must catch.
  const settings = connectionSettings({
    TEMPORAL_ADDRESS: '127.0.0.1:7233',
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_API_KEY,
    TEMPORAL_TLS: 'false',
  } as Parameters<typeof connectionSettings>[0]);
  expect(settings.apiKey).toBe(TEMPORAL_API_KEY);
  logger.info({ connection: settings, env: { TEMPORAL_API_KEY } }, 'connecting to Temporal');
  logger.info({ apiKey: API_KEY, metrics: { kind: 'prometheus', apiKey: API_KEY } }, 'metrics provider configured');
  logger.info(
    { secret: WEBHOOK_SECRET, webhook: { secret: WEBHOOK_SECRET, secretEnv: 'TOLLGATE_WEBHOOK_SECRET' } },
    'webhook configured',
  );

  const policyDir = writePolicies({ minimums: { productionApproval: false } }, [
    {
      service: 'checkout',
      trafficCycle: { duration: '4h' },
      canary: { analysis: { interval: '1m', checks: [{ name: 'errors', template: 'error-ratio', max: 0.01 }] } },
      production: { approval: false },
    },
  ]);
  const harness = await releaseHarness(env, {
    policyDir,
    analysis: [healthy(), failing('error ratio 0.2 > max 0.01')],
    notifier,
    logger,
  });
  const { result, historyJson } = await harness.worker.runUntil(async () => {
    const handle = await startRelease(env.client, harness.taskQueue, {
      service: 'checkout',
      version: '2.0.0',
      initiator: 'alice',
      reason: 'secrets test',
    });
    try {
      const result = await handle.result();
      return { result, historyJson: historyToJSON(await handle.fetchHistory()) };
    } finally {
      await handle.terminate('test over').catch(() => undefined);
    }
  });
  expect(result).toMatchObject({ outcome: 'rolled_back', stage: 'canary' });

  // Every event arrived, signed with the secret, on the attempt after the failed one for the first.
  const events = harness.notifications.map((n) => n.event);
  expect(events).toEqual(['release-started', 'canary-started', 'check-failed', 'rolled-back']);
  for (let i = 0; i < 50 && deliveries.filter((d) => d.status === 204).length < events.length; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const delivered = deliveries.filter((d) => d.status === 204);
  expect(delivered.map((d) => (JSON.parse(d.body.toString('utf8')) as { event: string }).event).sort()).toEqual(
    [...events].sort(),
  );
  expect(deliveries[0]?.status).toBe(503);
  for (const d of deliveries) {
    const signature = d.headers[SIGNATURE_HEADER] as string | undefined;
    const timestamp = d.headers[TIMESTAMP_HEADER] as string | undefined;
    expect(signature).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(verifySignature(WEBHOOK_SECRET, timestamp, d.body, signature, { maxAgeSeconds: 300 })).toBe(true);
    expect(verifySignature(`${WEBHOOK_SECRET}x`, timestamp, d.body, signature)).toBe(false);
    expectNoSecret('delivered body', d.body.toString('utf8'));
  }

  // The history is real and complete (so the search means something), and holds none of the secrets.
  const payloads = decodedPayloads(historyJson);
  expect(historyJson).toContain('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED');
  expect(payloads).toContain('error ratio 0.2');
  expect(payloads).toContain('"event":"check-failed"');
  expectNoSecret('history', historyJson);
  expectNoSecret('history (base64 payloads decoded)', payloads);

  // The logs hold the activities', the workflow's and the notifier's lines, with every planted value redacted.
  const logs = logLines.join('');
  expect(logs).toContain('"msg":"deploy step"');
  expect(logs).toContain('"msg":"retrying notification"');
  expect(logs).toMatch(/"msg":"release rolled_back: /);
  expect(logs).toContain('"apiKey":"[redacted]"');
  expect(logs).toContain('"TEMPORAL_API_KEY":"[redacted]"');
  expect(logs).toContain('"secret":"[redacted]"');
  expectNoSecret('logs', logs);
});

/** Payload data is base64 in history JSON; a secret inside a payload would not show as plain text. */
function decodedPayloads(historyJson: string): string {
  const decoded: string[] = [];
  JSON.parse(historyJson, (key, value: unknown) => {
    if (key === 'data' && typeof value === 'string') decoded.push(Buffer.from(value, 'base64').toString('utf8'));
    return value;
  });
  expect(decoded.length).toBeGreaterThan(10);
  return decoded.join('\n');
}
