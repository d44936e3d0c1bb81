import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature } from '../../src/providers/external/signing';

/**
 * A user's deploy API as the HTTP target's contract describes it, in-process on 127.0.0.1: it verifies every
 * request's signature (401 otherwise), applies each step once per Idempotency-Key, and answers as the test plans —
 * at once, accepted-then-poll, "try again", a final refusal, never, or with something hostile.
 */

export interface StepBody {
  action: 'deploy' | 'undo' | 'mark-stable' | 'read';
  key: string;
  service: string;
  version?: string;
  stableVersion: string | null;
  track?: string;
  percent?: number;
  canaryInstances?: number;
  [field: string]: unknown;
}

/** How the API answers one POST. */
export type Plan =
  /** 200 with the step's result, applied now. */
  | { kind: 'sync' }
  /** 202 and a Location; the step is applied at the `polls`-th poll, which answers 200 with the result. */
  | {
      kind: 'accepted';
      polls: number;
      retryAfter?: string;
      message?: (poll: number) => string;
      /** The Location written out whole (as a proxy may), not relative. */
      absolute?: boolean;
      /** A Location the polls' own 202 answers move the operation to. */
      relocate?: string;
    }
  /** Exactly this answer; nothing is applied. */
  | { kind: 'answer'; status: number; body?: string | Buffer; headers?: Record<string, string> }
  /** 2 MiB of body, with or without a Content-Length. */
  | { kind: 'huge'; declared: boolean }
  /** Headers never sent: the request hangs until the caller gives up. */
  | { kind: 'hang' };

export const SYNC: Plan = { kind: 'sync' };
export const unavailable = (error = 'deploy API under maintenance'): Plan => ({
  kind: 'answer',
  status: 503,
  body: JSON.stringify({ error }),
});
export const refused = (error: string, status = 422): Plan => ({
  kind: 'answer',
  status,
  body: JSON.stringify({ error }),
});

/** Which plan a POST gets: its body, and how many POSTs with its Idempotency-Key came so far (this one included). */
export type Planner = (body: StepBody, attempt: number) => Plan | undefined;

export interface RecordedRequest {
  method: string;
  path: string;
  /** The Idempotency-Key header. */
  key: string | undefined;
  delivery: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
  /** The signature checked out. */
  signed: boolean;
}

interface Operation {
  key: string;
  body: StepBody;
  pollsLeft: number;
  polls: number;
  plan: Extract<Plan, { kind: 'accepted' }>;
  result?: unknown;
}

export interface DeployApiOptions {
  secret: string;
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  token?: string;
}

export interface DeployApi {
  /** Where steps are POSTed. */
  readonly url: string;
  readonly origin: string;
  readonly requests: RecordedRequest[];
  /** How many times each Idempotency-Key changed anything. */
  readonly applied: Map<string, number>;
  /** What each service runs per track, and its stable version, as the steps left them. */
  readonly services: Map<string, { stable: string | null; tracks: Record<string, string> }>;
  /** How POSTs are answered; SYNC where it says nothing. */
  plan: Planner;
  /** The requests (POSTs and polls) that carried `key`. */
  requestsFor(key: string): RecordedRequest[];
  close(): Promise<void>;
}

export async function startDeployApi(options: DeployApiOptions): Promise<DeployApi> {
  const requests: RecordedRequest[] = [];
  const applied = new Map<string, number>();
  const services = new Map<string, { stable: string | null; tracks: Record<string, string> }>();
  /** A finished key's result, answered again to a repeated POST (applied: false). */
  const done = new Map<string, unknown>();
  const operations = new Map<string, Operation>();
  const opFor = new Map<string, string>();
  const attempts = new Map<string, number>();
  const hanging = new Set<ServerResponse>();
  let origin = '';

  const serviceState = (name: string) => {
    let s = services.get(name);
    if (!s) services.set(name, (s = { stable: '1.0.0', tracks: {} }));
    return s;
  };

  /** Carries out a step: the only place state changes, once per key. */
  const apply = (key: string, body: StepBody): unknown => {
    const previous = done.get(key);
    if (previous !== undefined) return { ...(previous as object), applied: false };
    const s = serviceState(body.service);
    let result: unknown;
    switch (body.action) {
      case 'read':
        return { stableVersion: s.stable };
      case 'deploy': {
        const track = body.track ?? 'production';
        s.tracks[track] = body.version ?? '';
        result = { changes: [`${body.service} ${track} → ${body.version}`], applied: true };
        break;
      }
      case 'undo': {
        const track = body.track ?? 'production';
        if (track === 'canary' || body.stableVersion === null) delete s.tracks[track];
        else s.tracks[track] = body.stableVersion;
        result = { changes: [`${body.service} ${track} → ${body.stableVersion ?? '(nothing)'}`], applied: true };
        break;
      }
      case 'mark-stable':
        s.stable = body.version ?? null;
        s.tracks = { production: body.version ?? '' };
        result = { changes: [`${body.service} stable → ${body.version}`] };
        break;
    }
    applied.set(key, (applied.get(key) ?? 0) + 1);
    done.set(key, result);
    return result;
  };

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));

  /** A POST's 202 says where to poll; a poll's own 202 does not need to (the same URL again). */
  const accepted = (res: ServerResponse, id: string, op: Operation, polled: boolean) =>
    json(
      res,
      202,
      { message: op.plan.message?.(op.polls) ?? `deploying ${op.body.version ?? ''} (${op.polls}/${op.plan.polls})` },
      {
        ...(!polled && { location: `${op.plan.absolute ? origin : ''}/operations/${id}` }),
        ...(polled && op.plan.relocate !== undefined && { location: op.plan.relocate }),
        'retry-after': op.plan.retryAfter ?? '1',
      },
    );

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer) => {
    const header = (name: string) => req.headers[name] as string | undefined;
    const key = header('idempotency-key');
    const signed = verifySignature(options.secret, header(TIMESTAMP_HEADER), raw, header(SIGNATURE_HEADER), {
      maxAgeSeconds: 300,
    });
    const path = req.url ?? '/';
    requests.push({
      method: req.method ?? '',
      path,
      key,
      delivery: header('x-tollgate-delivery'),
      headers: req.headers,
      body: raw.toString('utf8'),
      signed,
    });
    if (!signed) return json(res, 401, { error: 'signature missing or wrong' });
    if (options.token !== undefined && header('authorization') !== `Bearer ${options.token}`) {
      return json(res, 401, { error: 'bad token' });
    }
    if (key === undefined) return json(res, 400, { error: 'Idempotency-Key required' });

    if (req.method === 'GET' && path.startsWith('/operations/')) {
      const id = path.slice('/operations/'.length);
      const op = operations.get(id);
      if (!op) return json(res, 404, { error: `no operation ${id}` });
      if (op.result !== undefined) return json(res, 200, op.result);
      op.polls++;
      if (--op.pollsLeft > 0) return accepted(res, id, op, true);
      op.result = apply(op.key, op.body);
      return json(res, 200, op.result);
    }
    if (req.method !== 'POST') return json(res, 405, { error: 'POST steps here' });

    let body: StepBody;
    try {
      body = JSON.parse(raw.toString('utf8')) as StepBody;
    } catch {
      return json(res, 400, { error: 'body is not JSON' });
    }
    const attempt = (attempts.get(key) ?? 0) + 1;
    attempts.set(key, attempt);
    // A step already in flight is not started again: the same operation, polled where it was.
    const running = opFor.get(key);
    if (running !== undefined) {
      const op = operations.get(running)!;
      return op.result !== undefined
        ? json(res, 200, { ...(op.result as object), applied: false })
        : accepted(res, running, op, false);
    }
    const plan = api.plan(body, attempt) ?? SYNC;
    switch (plan.kind) {
      case 'sync':
        return json(res, 200, apply(key, body));
      case 'accepted': {
        const id = randomUUID();
        const op: Operation = { key, body, pollsLeft: plan.polls, polls: 0, plan };
        operations.set(id, op);
        opFor.set(key, id);
        return accepted(res, id, op, false);
      }
      case 'answer':
        res.writeHead(plan.status, plan.headers ?? {});
        return res.end(plan.body ?? '');
      case 'huge': {
        const chunk = Buffer.alloc(64 * 1024, 'x');
        res.writeHead(200, plan.declared ? { 'content-length': String(32 * chunk.length) } : {});
        for (let i = 0; i < 32; i++) res.write(chunk);
        return res.end();
      }
      case 'hang':
        hanging.add(res);
        return;
    }
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const api: DeployApi = {
    url: `${origin}/steps`,
    origin,
    requests,
    applied,
    services,
    plan: () => undefined,
    requestsFor: (key) => requests.filter((r) => r.key === key),
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  return api;
}
