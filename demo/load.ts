import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseDuration } from '../src/domain/duration';

/** Below HAProxy's `timeout http-keep-alive` (10 s, haproxy-fleet-bootstrap.ts). */
const IDLE_SOCKET_MS = 4_000;

/**
 * Load for the demo fleet: a compressed daily pattern (quiet → peak → quiet within one `cycle`), so a
 * canary that bakes for a full traffic cycle sees both the quiet hours and the peak in a few minutes.
 */

export interface LoadOptions {
  url: string;
  durationMs: number;
  cycleMs: number;
  baseRps: number;
  peakRps: number;
  /** Hard stop on the number of requests sent, whatever the duration. */
  maxRequests: number;
  /** A request without an answer after this long counts as failed. */
  timeoutMs?: number;
  /** More in flight than this and the next ones are skipped (counted), so a stuck target cannot pile up sockets. */
  maxInFlight?: number;
  signal?: AbortSignal;
}

export interface LoadReport {
  url: string;
  durationMs: number;
  sent: number;
  /** Answers by HTTP status ("200", "500", …): a 5xx is an answer, not a failed request. */
  byStatus: Record<string, number>;
  /** Answers by the `x-version` header, to see what share each version served. */
  byVersion: Record<string, number>;
  /** Answers outside 2xx by `x-version` ("none" without one, as from HAProxy itself): whose errors they were. */
  non2xxByVersion: Record<string, number>;
  /** When the first answer outside 2xx arrived (ISO 8601): the moment a faulty version's errors became visible. */
  firstNon2xxAt?: string;
  /** Requests without an HTTP answer: connection refused/reset, timeout. */
  failed: number;
  errors: Record<string, number>;
  skipped: number;
}

const optionsSchema = z.object({
  url: z.url(),
  durationMs: z
    .number()
    .int()
    .positive()
    .max(7 * 86_400_000),
  cycleMs: z.number().int().positive(),
  baseRps: z.number().nonnegative().max(10_000),
  peakRps: z.number().nonnegative().max(10_000),
  maxRequests: z.number().int().positive(),
  timeoutMs: z.number().int().positive().default(5_000),
  maxInFlight: z.number().int().positive().default(256),
});

const TICK_MS = 10;

/** Requests due by `t` ms: the integral of base + (peak − base)·(1 − cos 2πt/cycle)/2, peaking mid-cycle. */
export function requestsDue(t: number, o: Pick<LoadOptions, 'cycleMs' | 'baseRps' | 'peakRps'>): number {
  const s = t / 1000;
  const cycle = o.cycleMs / 1000;
  const swing = (o.peakRps - o.baseRps) / 2;
  return o.baseRps * s + swing * (s - (cycle / (2 * Math.PI)) * Math.sin((2 * Math.PI * s) / cycle));
}

export async function runLoad(input: LoadOptions): Promise<LoadReport> {
  const parsed = optionsSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`load options: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  const o = parsed.data;
  // Idle connections are closed here well before HAProxy's 10 s http-keep-alive timeout closes them: a request sent
  // on a connection the proxy is closing at that moment fails (ECONNRESET), which is the client's race, not a drain's.
  const agent = new Agent({ keepAlive: true, maxSockets: o.maxInFlight, timeout: IDLE_SOCKET_MS });
  const report: LoadReport = {
    url: o.url,
    durationMs: 0,
    sent: 0,
    byStatus: {},
    byVersion: {},
    non2xxByVersion: {},
    failed: 0,
    errors: {},
    skipped: 0,
  };
  const bump = (counts: Record<string, number>, key: string) => (counts[key] = (counts[key] ?? 0) + 1);
  const inFlight = new Set<Promise<void>>();

  const fire = () => {
    report.sent += 1;
    const done = new Promise<void>((resolve) => {
      const req = request(o.url, { agent, timeout: o.timeoutMs }, (res) => {
        bump(report.byStatus, String(res.statusCode ?? 0));
        const version = res.headers['x-version'];
        if (typeof version === 'string') bump(report.byVersion, version);
        const ok = res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300;
        if (!ok) {
          report.firstNon2xxAt ??= new Date().toISOString();
          bump(report.non2xxByVersion, typeof version === 'string' ? version : 'none');
        }
        res.resume();
        res.on('error', (err: NodeJS.ErrnoException) => {
          report.failed += 1;
          bump(report.errors, `response ${err.code ?? err.message}`);
        });
        res.on('close', resolve);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => {
        report.failed += 1;
        bump(report.errors, err.code ?? err.message);
        resolve();
      });
      req.end();
    });
    inFlight.add(done);
    void done.then(() => inFlight.delete(done));
  };

  const started = Date.now();
  for (;;) {
    const elapsed = Date.now() - started;
    if (elapsed >= o.durationMs || report.sent + report.skipped >= o.maxRequests || input.signal?.aborted) break;
    const due = Math.min(o.maxRequests, Math.floor(requestsDue(elapsed, o)));
    while (report.sent + report.skipped < due) {
      if (inFlight.size >= o.maxInFlight) report.skipped += 1;
      else fire();
    }
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
  // Every request has its own timeout, so this wait is bounded by timeoutMs.
  await Promise.all(inFlight);
  agent.destroy();
  report.durationMs = Date.now() - started;
  return report;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:8080/' },
      duration: { type: 'string' },
      cycle: { type: 'string', default: '5m' },
      'base-rps': { type: 'string', default: '20' },
      'peak-rps': { type: 'string', default: '60' },
      'max-requests': { type: 'string', default: '1000000' },
      timeout: { type: 'string', default: '5s' },
    },
    strict: true,
  });
  const ms = (name: string, text: string | undefined) => {
    const value = text === undefined ? undefined : parseDuration(text);
    if (value === undefined)
      throw new Error(`--${name}: expected a duration such as 90s or 5m, got ${text ?? 'nothing'}`);
    return value;
  };
  const controller = new AbortController();
  process.on('SIGINT', () => controller.abort());
  process.on('SIGTERM', () => controller.abort());
  const report = await runLoad({
    url: values.url,
    durationMs: ms('duration', values.duration),
    cycleMs: ms('cycle', values.cycle),
    baseRps: Number(values['base-rps']),
    peakRps: Number(values['peak-rps']),
    maxRequests: Number(values['max-requests']),
    timeoutMs: ms('timeout', values.timeout),
    signal: controller.signal,
  });
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(2);
  });
}
