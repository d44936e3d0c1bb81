import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../../src/config/env';
import { NOTIFY_ACTIVITY_TIMEOUT_MS } from '../../src/domain/notify-budget';
import { createLogger, type Logger } from '../../src/logger';
import type { Notifier, ReleaseNotification } from '../../src/providers/notify/types';
import {
  createNotifiers,
  MultiNotifier,
  verifySignature,
  WebhookNotifier,
  worstCaseDeliveryMs,
  type WebhookNotifierOptions,
} from '../../src/providers/notify/webhook';
import { freePort } from '../../scripts/ports';

/** A webhook receiver on a random local port; each test sets how it answers. */
interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}
type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

const SECRET = 'whsec-5f0d1c2e-never-log-me';
const PASSWORD = 'pw-7c1e-never-log-me';
let server: Server;
let url: string;
let handler: Handler;
const deliveries: Delivery[] = [];
let logLines: string[] = [];
let logger: Logger;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      deliveries.push({ path: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      handler(req, res, deliveries.length);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/T000/B000/path-token`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  deliveries.length = 0;
  logLines = [];
  logger = createLogger('debug', { write: (line: string) => void logLines.push(line) });
  handler = (_req, res) => res.writeHead(204).end();
});

afterEach(() => {
  const logs = logLines.join('');
  expect(logs).not.toContain(SECRET);
  expect(logs).not.toContain(PASSWORD);
  expect(logs).not.toContain('path-token');
});

const notification = (over: Partial<ReleaseNotification> = {}): ReleaseNotification => ({
  event: 'check-failed',
  service: 'checkout',
  version: '1.4.2',
  stage: 'canary',
  track: 'canary',
  releaseId: 'checkout-1.4.2-a1b2',
  message: 'error-ratio 0.21 > 0.01',
  at: '2025-03-04T10:15:00.000Z',
  stableVersion: '1.4.1',
  ...over,
});

const notifier = (over: Partial<WebhookNotifierOptions> = {}) =>
  new WebhookNotifier({ url, format: 'json', logger, backoffMs: 10, ...over });

const warnings = () => logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === 40);

/** The warning `notification()` leaves when it is not delivered: the release it is about, where it went, and why. */
const notDelivered = (target: string, why: string): unknown => {
  const { event, service, version, stage, track, releaseId } = notification();
  const msg = 'release notification not delivered';
  return expect.objectContaining({ msg, event, service, version, stage, track, releaseId, target, why });
};

const header = (d: Delivery | undefined, name: string): string | undefined => {
  const value = d?.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

describe('json format', () => {
  it('posts the notification with source and canary flag', async () => {
    const n = notification({ details: { check: 'error-ratio', value: 0.21, threshold: 0.01 } });
    await notifier().notify(n);

    expect(deliveries).toHaveLength(1);
    const [d] = deliveries;
    expect(d?.path).toBe('/hooks/T000/B000/path-token');
    expect(header(d, 'content-type')).toBe('application/json');
    expect(header(d, 'x-tollgate-event')).toBe('check-failed');
    expect(JSON.parse(d?.body ?? '')).toEqual({ ...n, source: 'tollgate', canary: true });
    expect(header(d, 'x-tollgate-signature')).toBeUndefined();
    expect(warnings()).toEqual([]);
  });

  it('marks production events as not canary', async () => {
    await notifier().notify(notification({ event: 'promoted', stage: 'done', track: 'production', message: '' }));

    const body = JSON.parse(deliveries[0]?.body ?? '') as Record<string, unknown>;
    expect(body).toMatchObject({ event: 'promoted', track: 'production', canary: false, source: 'tollgate' });
  });
});

describe('slack format', () => {
  it('labels canary events [CANARY] in one line', async () => {
    await notifier({ format: 'slack' }).notify(notification());

    const body = JSON.parse(deliveries[0]?.body ?? '') as { text: string; blocks: unknown[] };
    // Slack wants &, < and > escaped; it renders "&gt;" as ">".
    expect(body.text).toBe(':rotating_light: [CANARY] checkout 1.4.2 check failed: error-ratio 0.21 &gt; 0.01');
    expect(body.blocks[0]).toEqual({ type: 'section', text: { type: 'mrkdwn', text: body.text } });
    expect(JSON.stringify(body.blocks[1])).toContain('checkout-1.4.2-a1b2');
  });

  it('leaves the label off production events', async () => {
    const n = notification({ event: 'promoted', stage: 'done', track: 'production', message: 'all waves baked' });
    await notifier({ format: 'slack' }).notify(n);

    const { text } = JSON.parse(deliveries[0]?.body ?? '') as { text: string };
    expect(text).toBe(':white_check_mark: checkout 1.4.2 promoted: all waves baked');
    expect(text).not.toContain('CANARY');
  });

  it('names the stable version on rollback and keeps the text to one line without mentions', async () => {
    const n = notification({ event: 'rolled-back', message: 'error ratio\nabove <!channel> limit' });
    await notifier({ format: 'slack' }).notify(n);

    const { text } = JSON.parse(deliveries[0]?.body ?? '') as { text: string };
    expect(text).toBe(
      ':rewind: [CANARY] checkout 1.4.2 rolled back to 1.4.1: error ratio above &lt;!channel&gt; limit',
    );
  });

  it('says [DRY RUN] first, and shows control characters as escapes', async () => {
    const n = notification({ event: 'promoted', track: 'production', dryRun: true, message: 'ok\u001b[2J\u009b31m' });
    await notifier({ format: 'slack' }).notify(n);

    const { text } = JSON.parse(deliveries[0]?.body ?? '') as { text: string };
    expect(text).toBe(':white_check_mark: [DRY RUN] checkout 1.4.2 promoted: ok\\u{001b}[2J\\u{009b}31m');
  });
});

describe('signature', () => {
  it('signs the exact body bytes with the timestamp', async () => {
    const before = Math.floor(Date.now() / 1000);
    await notifier({ secret: SECRET, format: 'slack' }).notify(notification({ message: 'ünïcode ✓' }));

    const d = deliveries[0];
    const timestamp = header(d, 'x-tollgate-timestamp');
    const signature = header(d, 'x-tollgate-signature');
    expect(Number(timestamp)).toBeGreaterThanOrEqual(before);
    expect(Number(timestamp)).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    expect(signature).toMatch(/^sha256=[0-9a-f]{64}$/);

    expect(verifySignature(SECRET, timestamp, d?.body ?? '', signature)).toBe(true);
    expect(verifySignature(SECRET, timestamp, Buffer.from(d?.body ?? ''), signature, { maxAgeSeconds: 300 })).toBe(
      true,
    );
    expect(verifySignature('wrong-secret', timestamp, d?.body ?? '', signature)).toBe(false);
    expect(verifySignature(SECRET, Number(timestamp) + 1, d?.body ?? '', signature)).toBe(false);
    expect(verifySignature(SECRET, timestamp, `${d?.body ?? ''} `, signature)).toBe(false);
    expect(verifySignature(SECRET, timestamp, d?.body ?? '', 'sha256=00')).toBe(false);
    expect(verifySignature(SECRET, timestamp, d?.body ?? '', undefined)).toBe(false);
    const later = Number(timestamp) + 3600;
    expect(
      verifySignature(SECRET, timestamp, d?.body ?? '', signature, { maxAgeSeconds: 300, nowSeconds: later }),
    ).toBe(false);
  });
});

describe('event filter', () => {
  it('sends only the chosen events', async () => {
    const filtered = notifier({ events: ['check-failed', 'rolled-back'] });
    await filtered.notify(notification({ event: 'canary-started' }));
    await filtered.notify(notification({ event: 'check-failed' }));
    await filtered.notify(notification({ event: 'promoted', track: 'production', stage: 'done' }));

    expect(deliveries.map((d) => header(d, 'x-tollgate-event'))).toEqual(['check-failed']);
  });
});

describe('failures never reach the release', () => {
  it('retries a 500 and delivers on the next attempt, with the same delivery id', async () => {
    handler = (_req, res, n) => (n === 1 ? res.writeHead(500).end('busy') : res.writeHead(200).end('ok'));
    await notifier({ secret: SECRET }).notify(notification());

    expect(deliveries).toHaveLength(2);
    const [first, second] = deliveries;
    expect(header(first, 'x-tollgate-delivery')).toBe(header(second, 'x-tollgate-delivery'));
    expect(first?.body).toBe(second?.body);
    expect(
      verifySignature(
        SECRET,
        header(second, 'x-tollgate-timestamp'),
        second?.body ?? '',
        header(second, 'x-tollgate-signature'),
      ),
    ).toBe(true);
    expect(warnings()).toEqual([]);
  });

  it('gives up after the retries, logs a warning and resolves', async () => {
    handler = (_req, res) => res.writeHead(503).end('down for maintenance');
    await expect(notifier({ retries: 2 }).notify(notification())).resolves.toBeUndefined();

    expect(deliveries).toHaveLength(3);
    expect(warnings()).toEqual([
      expect.objectContaining({ event: 'check-failed', why: 'HTTP 503: down for maintenance' }),
    ]);
  });

  it('does not retry a 4xx the receiver will refuse again', async () => {
    handler = (_req, res) => res.writeHead(404).end('no_service');
    await notifier({ format: 'slack' }).notify(notification());

    expect(deliveries).toHaveLength(1);
    expect(warnings()[0]?.why).toBe('HTTP 404: no_service');
  });

  it('resolves when the receiver hangs, within the timeout of each attempt', async () => {
    handler = () => undefined;
    const started = Date.now();
    await expect(notifier({ timeoutMs: 200, retries: 1 }).notify(notification())).resolves.toBeUndefined();
    const elapsed = Date.now() - started;

    expect(elapsed).toBeGreaterThanOrEqual(2 * 200 - 20);
    expect(elapsed).toBeLessThan(2 * 200 + 800);
    expect(deliveries).toHaveLength(2);
    expect(warnings()[0]?.why).toBe('timed out after 200 ms');
  });

  it('resolves when the connection is refused and logs what was lost, without the secret', async () => {
    const port = await freePort();
    const refused = new WebhookNotifier({
      url: `http://127.0.0.1:${port}/hooks/path-token`,
      format: 'slack',
      secret: SECRET,
      retries: 1,
      backoffMs: 10,
      logger,
    });
    await expect(refused.notify(notification())).resolves.toBeUndefined();

    expect(warnings()).toEqual([notDelivered(`http://127.0.0.1:${port}`, 'connection refused')]);
  });

  it('resolves when the details cannot be serialised', async () => {
    await notifier().notify(notification({ details: { big: 10n } }));

    expect(deliveries).toHaveLength(0);
    expect(warnings()).toEqual([expect.objectContaining({ event: 'check-failed' })]);
  });
});

describe('credentials in the URL', () => {
  const withCredentials = () => url.replace('http://', `http://bob:${encodeURIComponent(PASSWORD)}@`);

  it('sends user:password as basic auth, not in the URL, and keeps them out of the warning', async () => {
    handler = (_req, res) => res.writeHead(401).end('bad credentials');
    await notifier({ url: withCredentials() }).notify(notification());

    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]?.path).toBe('/hooks/T000/B000/path-token');
    expect(header(deliveries[0], 'authorization')).toBe(`Basic ${Buffer.from(`bob:${PASSWORD}`).toString('base64')}`);
    expect(warnings()).toEqual([notDelivered(new URL(url).origin, 'HTTP 401: bad credentials')]);
  });

  it('shows only the origin of a URL quoted in a fetch error', async () => {
    const quoting: typeof fetch = (input) =>
      Promise.reject(new TypeError(`fetch failed: ${(input as URL).href} (was ${withCredentials()})`));
    await notifier({ url: withCredentials(), fetch: quoting, retries: 0 }).notify(notification());

    const origin = new URL(url).origin;
    expect(warnings()[0]?.why).toBe(
      `cannot reach the receiver: TypeError: fetch failed: ${origin}/… (was http://***@${new URL(url).host}/…)`,
    );
  });
});

describe('delivery budget', () => {
  it('computes the worst case as notify spends it: every attempt timing out, every backoff slept', async () => {
    handler = () => undefined;
    const timing = { timeoutMs: 150, retries: 2, backoffMs: 100 };
    const worst = worstCaseDeliveryMs(timing);
    expect(worst).toBe(3 * 150 + 100 + 200);

    const started = Date.now();
    await notifier(timing).notify(notification());
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(worst - 20);
    expect(elapsed).toBeLessThan(worst + 800);
  });

  it('refuses at start, naming the field, a webhook that could outlast the notify activity', () => {
    const build =
      (...webhooks: Record<string, unknown>[]) =>
      () =>
        createNotifiers({ webhooks }, { logger, env: {} });
    expect(NOTIFY_ACTIVITY_TIMEOUT_MS).toBe(300_000);

    expect(build({ url, format: 'json', timeoutMs: 60_000, retries: 3 })).not.toThrow();
    const tooLong = build({ url, format: 'json' }, { url, format: 'json', timeoutMs: 60_000, retries: 10 });
    expect(tooLong).toThrow(ConfigError);
    expect(tooLong).toThrow(
      'invalid configuration: notifications: webhooks.1.retries: 10 retries of up to 60000 ms each, with backoff, ' +
        'can take 915.75 s: more than the 300 s a notification may take; at most 3 retries fit with this timeout',
    );
  });

  it('holds for a notifier built in code too', () => {
    expect(() => notifier({ retries: 10, backoffMs: 60_000 })).toThrow(/^webhook notifier: retries: 10 retries/);
    expect(() => notifier({ retries: 9, backoffMs: 1_000, timeoutMs: 1_000 })).toThrow(/retries: .*at most 8 retries/);
  });
});

describe('MultiNotifier', () => {
  it('delivers to the others when one fails or throws', async () => {
    const throwing: Notifier = { kind: 'broken', notify: () => Promise.reject(new Error('bug elsewhere')) };
    const down = notifier({ url: `http://127.0.0.1:${await freePort()}/`, retries: 0 });
    const multi = new MultiNotifier([throwing, down, notifier()], logger);

    await expect(multi.notify(notification())).resolves.toBeUndefined();
    expect(deliveries).toHaveLength(1);
    expect(warnings().map((w) => w.why)).toEqual(expect.arrayContaining(['connection refused', 'bug elsewhere']));
  });
});

describe('createNotifiers', () => {
  it('builds signed, filtered webhooks from config', async () => {
    const notifiers = createNotifiers(
      {
        webhooks: [
          { url, format: 'slack', secretEnv: 'TOLLGATE_HOOK_SECRET', events: ['rolled-back'] },
          { url, format: 'json' },
        ],
      },
      { logger, env: { TOLLGATE_HOOK_SECRET: SECRET } },
    );
    expect(notifiers.notifiers).toHaveLength(2);

    await notifiers.notify(notification({ event: 'check-failed' }));
    expect(deliveries).toHaveLength(1);
    expect(JSON.parse(deliveries[0]?.body ?? '')).toMatchObject({ source: 'tollgate' });

    deliveries.length = 0;
    await notifiers.notify(notification({ event: 'rolled-back' }));
    const slack = deliveries.find((d) => 'text' in (JSON.parse(d.body) as object));
    expect(deliveries).toHaveLength(2);
    expect(
      verifySignature(
        SECRET,
        header(slack, 'x-tollgate-timestamp'),
        slack?.body ?? '',
        header(slack, 'x-tollgate-signature'),
      ),
    ).toBe(true);
  });

  it('names a missing secret variable', () => {
    const config = { webhooks: [{ url, format: 'json', secretEnv: 'TOLLGATE_HOOK_SECRET' }] };
    expect(() => createNotifiers(config, { logger, env: {} })).toThrow(ConfigError);
    expect(() => createNotifiers(config, { logger, env: { TOLLGATE_HOOK_SECRET: ' ' } })).toThrow(
      /webhooks\.0\.secretEnv: environment variable TOLLGATE_HOOK_SECRET is not set/,
    );
  });

  it('refuses unknown formats, events and fields', () => {
    const build = (hook: Record<string, unknown>) => () => createNotifiers({ webhooks: [hook] }, { logger, env: {} });
    expect(build({ url, format: 'teams' })).toThrow(/webhooks\.0\.format/);
    expect(build({ url, format: 'json', events: ['deployed'] })).toThrow(/webhooks\.0\.events\.0/);
    expect(build({ url, format: 'json', secret: SECRET })).toThrow(ConfigError);
    expect(build({ url: 'ftp://example.test/', format: 'json' })).toThrow(
      /webhooks\.0\.url: expected an http\(s\) URL/,
    );
  });

  it('treats no config as no webhooks', async () => {
    const none = createNotifiers(undefined, { logger });
    expect(none.notifiers).toHaveLength(0);
    await expect(none.notify(notification())).resolves.toBeUndefined();
  });
});
