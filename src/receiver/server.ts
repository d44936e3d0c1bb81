import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ReceiverAuth } from '../config/receiver-config';
import { alertmanagerWebhookSchema } from '../domain/alerts';
import { oneLine } from '../domain/text';
import { describeZodError } from '../domain/zod-errors';
import type { Logger } from '../logger';
import { challenge, checkAuthorization } from './auth';
import { readRequestBounded } from './body';
import { deliverAll, DeliveryError } from './deliver';
import { routeAlerts } from './routing';
import type { AlertSink } from './sink';

export const WEBHOOK_PATH = '/alertmanager';
export const HEALTH_PATH = '/healthz';
/** Alertmanager's largest groups (1,000 alerts with their labels and annotations) fit well within this. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface ReceiverOptions {
  auth: ReceiverAuth;
  /** The label naming an alert's service (the org policy's `metrics.labels.service`). */
  serviceLabel: string;
  sink: AlertSink;
  logger: Logger;
  maxBodyBytes?: number;
  /** Time for all of one call's signals; past it the call is answered 503. */
  budgetMs?: number;
}

type Answer = { status: number; body: Record<string, unknown>; headers?: Record<string, string> };

const problem = (status: number, error: string, headers?: Record<string, string>): Answer => ({
  status,
  body: { error },
  ...(headers && { headers }),
});

function send(res: ServerResponse, { status, body, headers }: Answer): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

const isJson = (type: string | undefined) => (type ?? '').split(';')[0]?.trim().toLowerCase() === 'application/json';

/** The receiver's HTTP server: nothing a request carries makes it throw, hang or signal without credentials. */
export function createReceiverServer(opts: ReceiverOptions): Server {
  const maxBodyBytes = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  const budgetMs = opts.budgetMs ?? 15_000;

  async function answer(req: IncomingMessage, log: Logger, path: string): Promise<Answer> {
    const method = req.method ?? '';
    if (path === HEALTH_PATH) {
      return method === 'GET' || method === 'HEAD'
        ? { status: 200, body: { ok: true } }
        : problem(405, 'method not allowed', { allow: 'GET, HEAD' });
    }
    const auth = checkAuthorization(req.headers.authorization, opts.auth);
    if (!auth.ok) {
      log.warn({ why: auth.why }, 'request refused: not authenticated');
      return problem(401, 'authentication required', { 'www-authenticate': challenge(opts.auth) });
    }
    if (path !== WEBHOOK_PATH) return problem(404, `no such path; Alertmanager posts to ${WEBHOOK_PATH}`);
    if (method !== 'POST') return problem(405, 'method not allowed', { allow: 'POST' });
    if (!isJson(req.headers['content-type'])) return problem(415, 'expected content-type application/json');

    const read = await readRequestBounded(req, maxBodyBytes);
    if (read.kind === 'too-large') {
      log.warn({ maxBodyBytes }, 'request refused: body too large');
      return problem(413, `body larger than ${maxBodyBytes} bytes`, { connection: 'close' });
    }
    if (read.kind === 'aborted') return problem(400, 'request aborted');
    let data: unknown;
    try {
      data = JSON.parse(read.text);
    } catch (err) {
      return problem(400, `body is not valid JSON: ${oneLine((err as Error).message, 200)}`);
    }
    const parsed = alertmanagerWebhookSchema.safeParse(data);
    if (!parsed.success) {
      const why = describeZodError(parsed.error);
      log.warn({ why: oneLine(why, 1000) }, 'request refused: not an Alertmanager webhook (version 4)');
      return problem(400, `not an Alertmanager webhook (version 4): ${why}`);
    }
    const webhook = parsed.data;
    const receiver = oneLine(webhook.receiver, 200);
    if (webhook.truncatedAlerts > 0) {
      // Alertmanager's max_alerts left these out; they come again in a later notification or never.
      log.warn({ receiver, truncatedAlerts: webhook.truncatedAlerts }, 'alertmanager truncated the group');
    }
    const { deliveries, unrouted } = routeAlerts(webhook, opts.serviceLabel);
    if (unrouted.length > 0) {
      log.warn(
        {
          receiver,
          label: opts.serviceLabel,
          unrouted: unrouted.length,
          examples: unrouted.slice(0, 5).map((u) => ({
            fingerprint: oneLine(u.fingerprint, 128),
            value: u.value === undefined ? null : oneLine(u.value, 80),
            ...(u.invalid !== undefined && { invalid: oneLine(u.invalid, 300) }),
          })),
        },
        'alerts malformed or without a valid service label: acknowledged, not signalled',
      );
    }
    try {
      const done = await deliverAll(deliveries, opts.sink, budgetMs);
      for (const service of done.delivered) {
        const alerts = deliveries.filter((d) => d.service === service).reduce((n, d) => n + d.payload.alerts.length, 0);
        log.info({ service, receiver, alerts }, 'alerts signalled to the release');
      }
      for (const service of done.nothingInFlight) {
        log.info({ service, receiver }, 'nothing in flight: no release of the service is running');
      }
      return { status: 200, body: { ...done, unrouted: unrouted.length } };
    } catch (err) {
      const service = err instanceof DeliveryError ? err.service : undefined;
      const why = oneLine(err instanceof Error ? err.message : String(err), 500);
      log.error({ service, receiver, why }, 'alerts not taken by Temporal; answering 503 so Alertmanager retries');
      return problem(503, `Temporal did not take the alerts${service ? ` of ${service}` : ''}: ${why}`, {
        'retry-after': '5',
      });
    }
  }

  const server = createServer(
    // Slow senders are cut off: headers within 5 s, the whole request within 15 s.
    { headersTimeout: 5_000, requestTimeout: 15_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 },
    (req, res) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const log = opts.logger.child({
        remote: oneLine(req.socket.remoteAddress ?? 'unknown', 64),
        method: oneLine(req.method ?? '', 16),
        path: oneLine(path, 200),
      });
      answer(req, log, path)
        .then((a) => send(res, a))
        .catch((err: unknown) => {
          log.error({ why: oneLine(String(err), 500) }, 'receiver failed on a request');
          send(res, problem(500, 'internal error'));
        });
    },
  );
  server.maxHeadersCount = 100;
  // An idle connection is dropped after 30 s whatever it is doing; a webhook call's signals take at most budgetMs.
  server.timeout = Math.max(30_000, budgetMs * 2);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    opts.logger.debug({ why: oneLine(err.code ?? err.message, 100) }, 'malformed HTTP request');
    if (socket.writable && !socket.writableEnded) {
      const status =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? '431 Request Header Fields Too Large'
            : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, () => socket.destroy());
    } else {
      socket.destroy();
    }
  });
  return server;
}
