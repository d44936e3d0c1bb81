import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ALERT_NAMES, renderAlertRules } from '../../src/domain/alert-rules';
import { alertmanagerWebhookSchema, webhookAlertSchema } from '../../src/domain/alerts';
import { REQUESTS_TOTAL } from '../../src/domain/metric-names';
import { startAlertmanager, type RunningAlertmanager } from '../helpers/alertmanager';
import { startPrometheus, type RunningPrometheus } from '../helpers/prometheus';

/**
 * The whole path a canary alert takes before `tollgate receiver`: a real Prometheus scrapes a canary and a stable
 * instance every second and evaluates Tollgate's rule file every second, a real Alertmanager groups what fires, and
 * its webhook lands on a loopback endpoint here that insists on the bearer token.
 */

const SERVICE = 'checkout';
const CANARY = { service: SERVICE, version: '1.2.0-bad', track: 'canary', instance: 'web-9' };
const STABLE = { service: SERVICE, version: '1.1.0', track: 'stable', instance: 'web-1' };

/** One instance's request counter, as prom-client shows it: the 5xx series exists once the first request failed. */
class FakeInstance {
  private ok = 0;
  private failed = 0;
  private last = Date.now();
  private errorShare = 0;
  /** When the instance started failing requests; the figure the lead needs starts here. */
  firstErrorAt: number | undefined;
  constructor(
    private readonly labels: Record<string, string>,
    private readonly perSecond: number,
  ) {}

  /** From now on, this share of requests fails; what was served until now is counted at the old share. */
  fail(share: number): void {
    this.count();
    this.errorShare = share;
    if (share > 0) this.firstErrorAt ??= Date.now();
  }

  /** Counts the requests served since the last count, as if served evenly at `perSecond`. */
  private count(): void {
    const now = Date.now();
    const served = (this.perSecond * (now - this.last)) / 1000;
    this.last = now;
    this.failed += served * this.errorShare;
    this.ok += served * (1 - this.errorShare);
  }

  metrics(): string {
    this.count();
    const labels = Object.entries(this.labels).map(([k, v]) => `${k}="${v}"`);
    const line = (code: string, value: number) =>
      `${REQUESTS_TOTAL}{${[...labels, `code="${code}"`].join(',')}} ${value}`;
    return [
      `# TYPE ${REQUESTS_TOTAL} counter`,
      line('200', this.ok),
      ...(this.failed > 0 ? [line('500', this.failed)] : []),
      '',
    ].join('\n');
  }
}

function metricsServer(instance: FakeInstance): Server {
  return createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(instance.metrics());
  });
}

/** A webhook as it arrived, every alert in it read. */
interface AlertmanagerWebhook {
  status: string;
  alerts: ReturnType<typeof webhookAlertSchema.parse>[];
}
interface Arrival {
  at: number;
  body: AlertmanagerWebhook;
}

/** Alertmanager's webhook target: refuses a wrong credential, keeps every parsed body with its arrival time. */
class WebhookSink {
  readonly arrivals: Arrival[] = [];
  refused = 0;
  unparsable: string[] = [];
  readonly server: Server;
  constructor(private readonly authorization: string) {
    this.server = createServer((req, res) => {
      void readBody(req).then((text) => {
        if (req.method !== 'POST' || req.url !== '/alertmanager' || req.headers.authorization !== this.authorization) {
          this.refused++;
          res.writeHead(401).end();
          return;
        }
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = text;
        }
        const parsed = alertmanagerWebhookSchema.safeParse(json);
        const alerts = parsed.success ? parsed.data.alerts.map((a) => webhookAlertSchema.safeParse(a)) : [];
        if (parsed.success && alerts.every((a) => a.success)) {
          this.arrivals.push({ at: Date.now(), body: { ...parsed.data, alerts: alerts.map((a) => a.data) } });
        } else if (!parsed.success) this.unparsable.push(parsed.error.message);
        else this.unparsable.push('an alert did not parse');
        res.writeHead(200).end();
      });
    });
  }

  /** The first arrival the predicate likes, waited for within a bound. */
  async first(
    what: string,
    like: (body: AlertmanagerWebhook) => boolean,
    timeoutMs: number,
    after = 0,
  ): Promise<Arrival> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.arrivals.find((a) => a.at > after && like(a.body));
      if (found) return found;
      if (Date.now() > deadline) {
        const seen = JSON.stringify(this.arrivals.map((a) => a.body));
        throw new Error(`no webhook with ${what} within ${timeoutMs} ms; got ${seen}, refused ${this.refused}`);
      }
      await sleep(50);
    }
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += (chunk as Buffer).toString();
  return text;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const close = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const isErrorAlert = (track: string, status: 'firing' | 'resolved') => (body: AlertmanagerWebhook) =>
  body.alerts.some(
    (a) => a.labels.alertname === ALERT_NAMES.errorRatio && a.labels.track === track && a.status === status,
  );

describe('canary alerts through a real Prometheus and Alertmanager', () => {
  const token = randomBytes(24).toString('base64url');
  const sink = new WebhookSink(`Bearer ${token}`);
  const canary = new FakeInstance(CANARY, 10);
  const stable = new FakeInstance(STABLE, 40);
  const servers = [metricsServer(canary), metricsServer(stable)];
  let alertmanager: RunningAlertmanager | undefined;
  let prometheus: RunningPrometheus | undefined;

  beforeAll(async () => {
    const webhookPort = await listen(sink.server);
    const [canaryPort, stablePort] = await Promise.all(servers.map(listen));
    alertmanager = await startAlertmanager({
      webhookUrl: `http://127.0.0.1:${webhookPort}/alertmanager`,
      bearerToken: token,
      groupWait: '0s',
      groupInterval: '1s',
      repeatInterval: '1h',
    });
    prometheus = await startPrometheus({
      scrapeIntervalSeconds: 1,
      evaluationIntervalSeconds: 1,
      // As the demo scrapes its fleet: the instances' own service/version/track labels are the truth.
      honorLabels: true,
      staticTargets: [{ targets: [`127.0.0.1:${canaryPort}`, `127.0.0.1:${stablePort}`] }],
      rules: renderAlertRules(),
      alertmanagerUrl: alertmanager.url,
    });
  }, 60_000);

  afterAll(async () => {
    await prometheus?.stop();
    await alertmanager?.stop();
    await Promise.all([...servers, sink.server].map(close));
  });

  test('healthy canary and stable fire nothing; a failing canary alerts as canary within seconds, then resolves', async () => {
    const { url } = prometheus!;
    // Healthy first: both series rated and the rules evaluated over them, several times, with nothing to say.
    const deadline = Date.now() + 30_000;
    while ((await rated(url)) < 2) {
      if (Date.now() > deadline) throw new Error('Prometheus has no request rate for both instances after 30 s');
      await sleep(250);
    }
    await sleep(3_000);
    expect(await ruleHealth(url)).toEqual(Array(4).fill('ok/inactive'));
    expect(sink.arrivals).toEqual([]);
    expect(await alertmanager!.alerts()).toEqual([]);

    canary.fail(0.2);
    const firing = await sink.first('the canary firing', isErrorAlert('canary', 'firing'), 30_000);
    const firstError = canary.firstErrorAt!;
    const alert = firing.body.alerts.find((a) => a.labels.alertname === ALERT_NAMES.errorRatio)!;
    console.log(
      `first 5xx served → webhook with ${ALERT_NAMES.errorRatio}: ${firing.at - firstError} ms ` +
        '(scrape 1 s, evaluation 1 s, rate window 10s, for 0s, group_wait 0s, group_interval 1s)',
    );
    expect(firing.body).toMatchObject({ version: '4', status: 'firing', receiver: 'tollgate' });
    expect(alert.labels).toEqual({
      alertname: ALERT_NAMES.errorRatio,
      service: SERVICE,
      version: CANARY.version,
      track: 'canary',
      severity: 'critical',
      tollgate: 'template',
    });
    expect(alert.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(alert.annotations.summary).toMatch(/^checkout 1\.2\.0-bad on the canary track: \d+(\.\d+)?% of requests/);
    expect(sink.refused).toBe(0);
    expect(sink.unparsable).toEqual([]);

    // The canary keeps failing until its errors fill the rate window (a 5xx series only seconds old is diluted over
    // the window, so the ratio can dip under the threshold at first), then recovers: once its errors leave the
    // window, the alert resolves, and says so (send_resolved).
    await sleep(12_000);
    canary.fail(0);
    const recoveredAt = Date.now();
    const whileFailing = sink.arrivals.length;
    const resolved = await sink.first('the canary resolved', isErrorAlert('canary', 'resolved'), 45_000, recoveredAt);
    console.log(
      `canary healthy again → resolved webhook: ${resolved.at - recoveredAt} ms; webhooks while failing: ` +
        `${whileFailing} (more than one: the alert flapped while the new 5xx series filled the rate window)`,
    );
    expect(resolved.body.alerts.find((a) => a.status === 'resolved')?.fingerprint).toBe(alert.fingerprint);

    // The stable instance never failed, so nothing about it ever arrived.
    const tracks = sink.arrivals.flatMap((a) => a.body.alerts.map((x) => x.labels.track));
    expect(new Set(tracks)).toEqual(new Set(['canary']));
  }, 120_000);
});

describe('alerts posted straight to Alertmanager', () => {
  test('arrive as webhook v4 with basic auth, and read back from /api/v2/alerts', async () => {
    const password = randomBytes(16).toString('hex');
    const sink = new WebhookSink(`Basic ${Buffer.from(`tollgate:${password}`).toString('base64')}`);
    const port = await listen(sink.server);
    const alertmanager = await startAlertmanager({
      webhookUrl: `http://127.0.0.1:${port}/alertmanager`,
      basicAuth: { username: 'tollgate', password },
      groupWait: '100ms',
      receiver: 'canary-alerts',
    });
    try {
      const labels = { alertname: ALERT_NAMES.crashLoop, ...CANARY, severity: 'critical' };
      const startsAt = new Date(Date.now() - 5_000).toISOString();
      await alertmanager.postAlerts([{ labels, annotations: { summary: 'web-9 restarting' }, startsAt }]);
      const arrival = await sink.first('the posted alert', (b) => b.alerts.length > 0, 15_000);
      expect(arrival.body).toMatchObject({ version: '4', status: 'firing', receiver: 'canary-alerts' });
      expect(arrival.body.alerts[0]?.labels).toEqual(labels);
      expect(new Date(arrival.body.alerts[0]!.startsAt).toISOString()).toBe(startsAt);
      const [stored, ...others] = await alertmanager.alerts();
      expect(others).toEqual([]);
      expect(stored).toMatchObject({ labels, fingerprint: arrival.body.alerts[0]?.fingerprint });
      expect(stored?.status.state).toBe('active');
      expect(sink.refused).toBe(0);
    } finally {
      await alertmanager.stop();
      await close(sink.server);
    }
  }, 60_000);
});

/** How many instances Prometheus has a request rate for, over the rules' own window. */
async function rated(url: string): Promise<number> {
  const query = encodeURIComponent(`sum by (track) (rate(${REQUESTS_TOTAL}[10s]))`);
  const response = await fetch(`${url}/api/v1/query?query=${query}`, { signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as { data?: { result?: unknown[] } };
  return body.data?.result?.length ?? 0;
}

/** Each rule's health and state: `ok/inactive` once evaluated without error and with nothing pending or firing. */
async function ruleHealth(url: string): Promise<string[]> {
  const response = await fetch(`${url}/api/v1/rules`, { signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as { data: { groups: { rules: { health: string; state: string }[] }[] } };
  return body.data.groups.flatMap((g) => g.rules.map((r) => `${r.health}/${r.state}`));
}
