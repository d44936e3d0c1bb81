import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Counter, Histogram, Registry } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/**
 * The service Tollgate releases in the demo and the integration tests. Each version behaves as the
 * version catalogue (demo/versions.yaml) says, so a release can be good, failing or slow on purpose.
 */

const behaviourSchema = z.strictObject({
  errorRate: z.number().min(0).max(1),
  latencyMs: z.number().int().min(0).max(60_000),
});
export type Behaviour = z.infer<typeof behaviourSchema>;
const catalogueSchema = z.record(z.string(), behaviourSchema);
export type Catalogue = z.infer<typeof catalogueSchema>;

/** What a version missing from the catalogue does: a fresh version number is a good build unless listed. */
export const DEFAULT_BEHAVIOUR: Behaviour = Object.freeze({ errorRate: 0, latencyMs: 20 });

export const TRACKS = ['stable', 'canary', 'staging'] as const;
export type InstanceTrack = (typeof TRACKS)[number];

const argsSchema = z.object({
  service: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'expected a lower-case service name'),
  version: z.string().regex(/^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/, 'expected a version such as 1.4.2'),
  port: z.coerce.number().int().min(1).max(65_535),
  host: z.string().default('127.0.0.1'),
  instance: z.string().regex(/^[A-Za-z0-9_.-]{1,80}$/, 'expected an instance id such as web-3'),
  track: z.enum(TRACKS),
  catalogue: z.string().min(1),
  'log-level': z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
});
export type ServiceArgs = z.infer<typeof argsSchema>;

// Seconds; 5 ms .. 2 s with extra resolution around a 300 ms latency SLO.
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2];
// In-flight requests get this long after SIGTERM before their connections are cut.
const SHUTDOWN_GRACE_MS = 10_000;

export class CatalogueError extends Error {
  override readonly name = 'CatalogueError';
}

/** Reads a JSON or YAML catalogue (YAML is a superset of JSON, so one parser reads both). */
export function loadCatalogue(path: string): Catalogue {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CatalogueError(
      `cannot read version catalogue ${path}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const parsed = catalogueSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CatalogueError(`version catalogue ${path}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`);
  }
  return parsed.data;
}

export function behaviourFor(catalogue: Catalogue, version: string): Behaviour {
  return catalogue[version] ?? DEFAULT_BEHAVIOUR;
}

export function parseServiceArgs(argv: string[]): ServiceArgs {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.keys(argsSchema.shape).map((k) => [k, { type: 'string' as const }])),
    strict: true,
  });
  const parsed = argsSchema.safeParse(values);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`--${issue?.path.join('.') ?? '?'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

export interface DemoService {
  server: Server;
  /** Stops accepting, lets in-flight requests finish (cut after a grace period), then resolves. */
  close: () => Promise<void>;
}

export function createDemoService(args: ServiceArgs, catalogue: Catalogue, logger: pino.Logger): DemoService {
  const behaviour = behaviourFor(catalogue, args.version);
  const identity = { service: args.service, version: args.version, instance: args.instance, track: args.track };
  const registry = new Registry();
  registry.setDefaultLabels(identity);
  const labelNames = ['service', 'version', 'instance', 'track', 'code'] as const;
  const requests = new Counter({
    name: 'tollgate_demo_http_requests_total',
    help: 'Requests served by the demo service (health and metrics endpoints excluded).',
    labelNames,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tollgate_demo_http_request_duration_seconds',
    help: 'Time to answer a request, including the latency the version catalogue adds.',
    labelNames,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  // Series that exist from the first scrape: a 5xx series born with the first failure would need a second scrape
  // before rate() sees it, and a young canary's first round would then read its error ratio as 0.
  for (const code of ['200', '500']) requests.inc({ code }, 0);

  let closing = false;
  // Failures are spread evenly, not drawn at random: every window of n requests holds errorRate·n of them (±1), so a
  // round judged on a canary's first few dozen requests sees the version's real rate, and tests can count exactly.
  let pageRequests = 0;
  const injectFailure = (): boolean => {
    const n = pageRequests++;
    return Math.floor((n + 1) * behaviour.errorRate) > Math.floor(n * behaviour.errorRate);
  };
  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    // Version and instance on every answer, so a caller can tell which fleet member served it.
    res.setHeader('x-version', args.version);
    res.setHeader('x-instance', args.instance);
    res.setHeader('x-track', args.track);
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok', ...identity });
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          logger.error({ err }, 'cannot render metrics');
          sendJson(res, 500, { error: 'metrics unavailable' });
        },
      );
      return;
    }
    const stopTimer = duration.startTimer();
    const finish = (code: number, body: object) => {
      // Once closing, a keep-alive connection would hold the process up to keepAliveTimeout after this answer.
      if (closing) res.setHeader('connection', 'close');
      sendJson(res, code, body);
      const labels = { code: String(code) };
      requests.inc(labels);
      stopTimer(labels);
      if (code >= 500) logger.error({ path, code }, 'request failed (error injected by the version catalogue)');
      else logger.debug({ path, code }, 'request served');
    };
    // Jitter of ±20% so latency histograms look like a real service, not a single spike.
    const delay = behaviour.latencyMs * (0.8 + Math.random() * 0.4);
    const fails = path === '/' && injectFailure();
    setTimeout(() => {
      if (path !== '/') finish(404, { error: 'not found', ...identity });
      else if (fails) finish(500, { error: 'injected failure', ...identity });
      else finish(200, { message: 'hello', ...identity });
    }, delay);
  };

  const server = createServer(serve);

  const close = () =>
    new Promise<void>((resolve) => {
      closing = true;
      const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
      force.unref();
      // close() stops accepting and, on Node ≥ 19, also closes idle keep-alive connections.
      server.close(() => {
        clearTimeout(force);
        resolve();
      });
      server.closeIdleConnections();
    });
  return { server, close };
}

function sendJson(res: ServerResponse, code: number, body: object): void {
  if (res.headersSent) return;
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function main(): void {
  const args = parseServiceArgs(process.argv.slice(2));
  const logger = pino({
    level: args['log-level'],
    base: {
      service: args.service,
      version: args.version,
      instance: args.instance,
      track: args.track,
      pid: process.pid,
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
  const catalogue = loadCatalogue(args.catalogue);
  const { server, close } = createDemoService(args, catalogue, logger);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    void close().then(() => {
      logger.info('stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  server.on('error', (err) => {
    logger.fatal({ err }, 'cannot listen');
    process.exit(1);
  });
  server.listen(args.port, args.host, () => {
    logger.info({ port: args.port, host: args.host, behaviour: behaviourFor(catalogue, args.version) }, 'listening');
  });
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(2);
  }
}
