import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Check } from '../../src/domain/policy';
import { STABLE, fleetProblems } from '../helpers/fleet';
import { FLEET_ORG } from '../helpers/policies';
import { doubleApplications, sleep, type Service } from './support';

/**
 * What the provider-fault scenarios need beyond support.ts: a loopback stand-in for Prometheus' HTTP API that
 * misbehaves on purpose (closed by `closeFakePrometheuses()`), an org that requires analysis checks, and targets
 * files with per-fleet extras.
 */

// ---- a Prometheus that misbehaves ----

/** How the stand-in answers one query: after `delayMs`, or with the headers at once and the body only later. */
export interface Answer {
  status?: number;
  contentType?: string;
  body: string;
  delayMs?: number;
  /** Headers and the first bytes at once, the rest after this long: a body that stalls. */
  stallBodyMs?: number;
}

export interface FakePrometheus {
  url: string;
  /** Queries received, by the first marker (`probe_<name>`) they contain, or "other". */
  seen: Map<string, number>;
  close(): Promise<void>;
}

const servers = new Set<Server>();

/** An empty range answer: valid, and no series. */
export const noSeries = (): Answer => ({
  body: JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: [] } }),
});

/**
 * A stand-in for Prometheus' HTTP API on a loopback port. `answer` gets the PromQL of each query (form-encoded POST,
 * as the provider sends it) and says how to answer; `/-/ready` is always 200.
 */
export async function fakePrometheus(answer: (query: string) => Answer): Promise<FakePrometheus> {
  const seen = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const reply = (res: ServerResponse, a: Answer) => {
    const head = () =>
      res.writeHead(a.status ?? 200, { 'content-type': a.contentType ?? 'application/json' }).on('error', () => {});
    if (a.stallBodyMs !== undefined) {
      head();
      res.write(a.body.slice(0, 10));
      later(a.stallBodyMs, () => res.end(a.body.slice(10)));
    } else if (a.delayMs !== undefined) {
      later(a.delayMs, () => head().end(a.body));
    } else {
      head().end(a.body);
    }
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    res.on('error', () => {});
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/-/ready') return void res.writeHead(200).end('ready');
      const query = new URLSearchParams(Buffer.concat(chunks).toString()).get('query') ?? '';
      const marker = /probe_[a-z_]+/.exec(query)?.[0] ?? 'other';
      seen.set(marker, (seen.get(marker) ?? 0) + 1);
      reply(res, answer(query));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.add(server);
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      servers.delete(server);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Every stand-in server this module started, whatever state a test left them in. */
export function closeFakePrometheuses(): void {
  for (const s of [...servers]) {
    s.closeAllConnections();
    s.close();
    servers.delete(s);
  }
}

// ---- policies and targets ----

/** The org file for releases judged by analysis: at least one check, limits small enough for seconds-long runs. */
export const ORG_WITH_CHECKS = { ...FLEET_ORG, minimums: { ...FLEET_ORG.minimums, analysisChecks: 1 } };

export type CheckInput = Pick<Check, 'name'> & Partial<Omit<Check, 'name'>>;

/** The worker's targets file for one fleet, with `extra` merged into its haproxy-fleet options. */
export function targetsFile(dir: string, service: Service, extra: Record<string, unknown> = {}): string {
  const path = join(dir, `targets-${service.name}.yaml`);
  const spec = { kind: 'haproxy-fleet', ...service.fleet.target.options, ...extra };
  writeFileSync(path, stringify({ services: { [service.name]: spec } }));
  return path;
}

// ---- what a release left behind ----

/** Waits (bounded) until a line of the log file at `path` satisfies `ok`. */
export async function waitForLog(path: string, ok: (line: string) => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const log = await readFile(path, 'utf8').catch(() => '');
    if (log.split('\n').some(ok)) return true;
    await sleep(200);
  }
  return false;
}

/** What the fleet came to: problems with its end state on `version`, and step keys applied (or undone) twice. */
export async function fleetVerdict(service: Service, version = STABLE): Promise<{ fleet: string[]; twice: string[] }> {
  return {
    fleet: await fleetProblems(service.fleet, version).catch((err: unknown) => [`fleet: ${(err as Error).message}`]),
    twice: await doubleApplications(service),
  };
}

/** Step names (staging, canary, wave-1…) the fleet's action log shows applied. */
export async function stepsApplied(service: Service): Promise<string[]> {
  return (await service.fleet.target.readActions())
    .filter((a) => a.action === 'step-applied')
    .map((a) => a.key.split('/').pop() ?? a.key);
}
