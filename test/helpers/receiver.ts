import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import type { ReceiverAuth } from '../../src/config/receiver-config';
import type { AlertSignal } from '../../src/domain/alerts';
import { createLogger } from '../../src/logger';
import { createReceiverServer, type ReceiverOptions } from '../../src/receiver/server';
import type { AlertSink } from '../../src/receiver/sink';

export const TOKEN = 'tok-0123456789abcdef-receiver';
export const BEARER: ReceiverAuth = { scheme: 'bearer', token: TOKEN };
export const BASIC: Extract<ReceiverAuth, { scheme: 'basic' }> = {
  scheme: 'basic',
  username: 'alertmanager',
  password: 'pw-0123456789abcdef',
};
export const bearer = (token = TOKEN) => `Bearer ${token}`;
export const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;

export type SinkAnswer = 'delivered' | 'nothing-in-flight' | Error;

/** An AlertSink double: records every signal, answers per service (delivered unless told otherwise). */
export class RecordingSink implements AlertSink {
  readonly calls: { service: string; payload: AlertSignal }[] = [];
  closed = false;
  constructor(private readonly answers: Record<string, SinkAnswer> = {}) {}

  signal(service: string, payload: AlertSignal): Promise<'delivered' | 'nothing-in-flight'> {
    this.calls.push({ service, payload: structuredClone(payload) });
    const answer = this.answers[service] ?? 'delivered';
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

export interface TestReceiver {
  port: number;
  sink: RecordingSink;
  /** Every log line, parsed. */
  logs: Record<string, unknown>[];
  /** Every log line as written. */
  raw: string[];
  close(): Promise<void>;
}

/** The receiver's server on 127.0.0.1 with a sink double and a logger whose lines the test reads. */
export async function testReceiver(
  opts: Partial<Omit<ReceiverOptions, 'logger' | 'sink'>> & { sink?: RecordingSink } = {},
): Promise<TestReceiver> {
  const raw: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger('debug', {
    write: (line: string) => {
      raw.push(line);
      logs.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  const sink = opts.sink ?? new RecordingSink();
  const server = createReceiverServer({ auth: BEARER, serviceLabel: 'service', ...opts, sink, logger });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    sink,
    logs,
    raw,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request on a fresh connection, bounded by `timeoutMs`. */
export function call(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer },
  timeoutMs = 10_000,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'POST',
        path: opts.path ?? '/alertmanager',
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A webhook call with JSON and the token, as Alertmanager sends it. */
export const postWebhook = (port: number, body: unknown, headers: Record<string, string> = {}) =>
  call(port, {
    headers: { 'content-type': 'application/json', authorization: bearer(), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** Bytes on a raw connection; what came back before the server closed it (or `timeoutMs` passed). */
export function rawExchange(port: number, chunks: (string | Buffer)[], timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(got).toString('latin1'));
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('data', (c: Buffer) => got.push(c));
    socket.on('close', done);
    // A server that closes mid-write resets the connection: what it answered first is what counts.
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c);
    });
  });
}

/** One alert as Alertmanager's webhook carries it. */
export function amAlert(labels: Record<string, string>, over: Record<string, unknown> = {}) {
  return {
    status: 'firing',
    labels: { alertname: 'TollgateErrorRatioHigh', track: 'canary', version: '2.0.0', ...labels },
    annotations: { summary: 'errors on the canary' },
    startsAt: '2026-01-01T00:00:00Z',
    endsAt: '0001-01-01T00:00:00Z',
    generatorURL: 'http://prometheus.example/graph',
    fingerprint: `fp${Object.values(labels)
      .join('')
      .replace(/[^0-9A-Za-z]/g, '')}`,
    ...over,
  };
}

/** Alertmanager's webhook body (version 4) around `alerts`. */
export function webhook(alerts: unknown[], over: Record<string, unknown> = {}) {
  return {
    version: '4',
    groupKey: '{}:{alertname="TollgateErrorRatioHigh"}',
    truncatedAlerts: 0,
    status: 'firing',
    receiver: 'tollgate',
    groupLabels: { alertname: 'TollgateErrorRatioHigh' },
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager.example',
    alerts,
    ...over,
  };
}
