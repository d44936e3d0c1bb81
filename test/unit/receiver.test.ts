import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/env';
import { loadReceiverConfig } from '../../src/config/receiver-config';
import { alertSignalSchema } from '../../src/domain/alerts';
import { createLogger } from '../../src/logger';
import { serviceLabelFrom, startReceiver } from '../../src/receiver/main';
import { writePolicies } from '../helpers/policies';
import {
  amAlert,
  BASIC,
  basic,
  bearer,
  call,
  postWebhook,
  rawExchange,
  RecordingSink,
  testReceiver,
  TOKEN,
  webhook,
  type TestReceiver,
} from '../helpers/receiver';

const json = (body: string) => JSON.parse(body) as Record<string, unknown>;
const refusals = (r: TestReceiver) => r.logs.filter((l) => l.msg === 'request refused: not authenticated');

describe('receiver: authentication', () => {
  let r: TestReceiver;
  afterEach(() => r.close());

  it('answers /healthz without credentials, and refuses everything else without them (bearer)', async () => {
    r = await testReceiver();
    expect((await call(r.port, { method: 'GET', path: '/healthz' })).status).toBe(200);
    const post = await call(r.port, { method: 'POST', path: '/healthz' });
    expect([post.status, post.headers.allow]).toEqual([405, 'GET, HEAD']);

    const body = JSON.stringify(webhook([amAlert({ service: 'checkout' })]));
    const cases: [string | undefined, string][] = [
      [undefined, 'no Authorization header'],
      [bearer('tok-0123456789abcdef-receivex'), 'wrong token'],
      [bearer(''), 'malformed Authorization header'],
      [basic('alertmanager', TOKEN), 'basic credentials where bearer is configured'],
      [TOKEN, 'malformed Authorization header'],
    ];
    for (const [authorization, why] of cases) {
      const reply = await call(r.port, {
        headers: { 'content-type': 'application/json', ...(authorization !== undefined && { authorization }) },
        body,
      });
      expect([reply.status, reply.headers['www-authenticate']]).toEqual([401, 'Bearer realm="tollgate-receiver"']);
      expect(refusals(r).at(-1)).toMatchObject({ why, path: '/alertmanager', remote: '127.0.0.1', level: 40 });
    }
    // Unknown paths are not told apart from known ones before authentication.
    expect((await call(r.port, { method: 'GET', path: '/admin' })).status).toBe(401);
    expect(r.sink.calls).toEqual([]);
    expect(r.raw.join('')).not.toContain(TOKEN);
  });

  it('takes the right token, the scheme name in any case', async () => {
    r = await testReceiver();
    const ok = await postWebhook(r.port, webhook([amAlert({ service: 'checkout' })]), {
      authorization: `bearer ${TOKEN}`,
    });
    expect(ok.status).toBe(200);
    expect(r.sink.calls.map((c) => c.service)).toEqual(['checkout']);
  });

  it('basic auth: only the right user and password, as Alertmanager basic_auth sends them', async () => {
    r = await testReceiver({ auth: BASIC });
    const body = JSON.stringify(webhook([amAlert({ service: 'checkout' })]));
    const send = (authorization: string) =>
      call(r.port, { headers: { 'content-type': 'application/json', authorization }, body });
    for (const [authorization, why] of [
      [basic('alertmanager', 'pw-0123456789abcdeX'), 'wrong username or password'],
      [basic('alertmanageR', BASIC.password), 'wrong username or password'],
      [basic('', ''), 'wrong username or password'],
      ['Basic !!!notbase64', 'malformed basic credentials'],
      [`Basic ${Buffer.from('no-colon').toString('base64')}`, 'malformed basic credentials'],
      [bearer(BASIC.password), 'bearer credentials where basic is configured'],
    ] as const) {
      const reply = await send(authorization);
      expect([reply.status, reply.headers['www-authenticate']]).toEqual([
        401,
        'Basic realm="tollgate-receiver", charset="UTF-8"',
      ]);
      expect(refusals(r).at(-1)?.why).toBe(why);
    }
    expect(r.sink.calls).toEqual([]);
    expect((await send(basic(BASIC.username, BASIC.password))).status).toBe(200);
    expect(r.sink.calls).toHaveLength(1);
    expect(r.raw.join('')).not.toContain(BASIC.password);
  });
});

describe('receiver: what it refuses', () => {
  let r: TestReceiver;
  beforeEach(async () => (r = await testReceiver()));
  afterEach(() => r.close());
  const authed = { authorization: bearer() };

  it('404 for another path, 405 with Allow for another method, 415 for a body that is not JSON', async () => {
    expect((await call(r.port, { method: 'GET', path: '/metrics', headers: authed })).status).toBe(404);
    const get = await call(r.port, { method: 'GET', headers: authed });
    expect([get.status, get.headers.allow]).toEqual([405, 'POST']);
    const put = await call(r.port, { method: 'PUT', headers: { ...authed, 'content-type': 'application/json' } });
    expect(put.status).toBe(405);
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx']) {
      const reply = await call(r.port, { headers: { ...authed, 'content-type': type }, body: '{}' });
      expect(reply.status).toBe(415);
    }
    expect((await call(r.port, { headers: authed, body: '{}' })).status).toBe(415);
    // Parameters are allowed.
    const charset = await call(r.port, {
      headers: { ...authed, 'content-type': 'Application/JSON; charset=utf-8' },
      body: JSON.stringify(webhook([])),
    });
    expect(charset.status).toBe(200);
    expect(r.sink.calls).toEqual([]);
  });

  it('413 beyond 1 MiB, declared or streamed, without reading the rest; the server goes on', async () => {
    const head = (extra: string) =>
      `POST /alertmanager HTTP/1.1\r\nhost: x\r\nauthorization: ${bearer()}\r\ncontent-type: application/json\r\n${extra}\r\n`;
    const declared = await rawExchange(r.port, [head(`content-length: ${2 * 1024 * 1024}\r\n`)]);
    expect(declared).toMatch(/^HTTP\/1\.1 413 /);
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const chunked = (c: Buffer) => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]);
    const streamed = await rawExchange(r.port, [
      head('transfer-encoding: chunked\r\n'),
      ...Array.from({ length: 17 }, () => chunked(chunk)),
    ]);
    expect(streamed).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.logs.filter((l) => l.msg === 'request refused: body too large')).toHaveLength(2);
    expect((await postWebhook(r.port, webhook([amAlert({ service: 'checkout' })]))).status).toBe(200);
  });

  it('400 naming the field for bad JSON or a body that is not a version-4 webhook', async () => {
    const bad = await postWebhook(r.port, '{"version": "4",');
    expect(bad.status).toBe(400);
    expect(json(bad.body).error).toMatch(/^body is not valid JSON: /);
    const cases: [unknown, RegExp][] = [
      [webhook([], { version: '3' }), /version: expected Alertmanager webhook version "4"/],
      [[], /\(input\): /],
      ['"just a string"', /\(input\): /],
    ];
    for (const [body, message] of cases) {
      const reply = await postWebhook(r.port, body);
      expect(reply.status).toBe(400);
      expect(json(reply.body).error).toMatch(message);
    }
    expect(r.sink.calls).toEqual([]);
  });

  it('a malformed alert is logged and skipped, naming its field; the good ones of the same call are signalled', async () => {
    // Alertmanager never retries a 4xx: refusing the call for one bad alert would drop every good one with it.
    const good = amAlert({ service: 'checkout' }, { fingerprint: 'good' });
    const reply = await postWebhook(
      r.port,
      webhook([
        amAlert({ service: 'checkout' }, { startsAt: 'yesterday' }),
        amAlert({ service: 'checkout' }, { fingerprint: 'a b' }),
        amAlert({ 'bad-label': 'x', service: 'checkout' }, { fingerprint: 'f3' }),
        'not an alert',
        good,
        ...Array.from({ length: 1100 }, (_, i) => amAlert({ service: 'checkout' }, { fingerprint: `f${i}` })),
      ]),
    );
    expect(reply.status).toBe(200);
    expect(json(reply.body)).toMatchObject({ delivered: ['checkout'], unrouted: 4 });
    const sent = r.sink.calls.flatMap((c) => c.payload.alerts.map((a) => a.fingerprint));
    expect(sent).toHaveLength(1101);
    expect(sent[0]).toBe('good');
    const logged = JSON.stringify(r.logs.find((l) => String(l.msg).startsWith('alerts malformed')));
    expect(logged).toContain('alerts.0.startsAt');
    expect(logged).toContain('alerts.1.fingerprint: expected an Alertmanager fingerprint');
    expect(logged).toContain('alerts.2.labels.bad-label');
  });

  it('a malformed request line or header is answered 400 and the server goes on', async () => {
    expect(await rawExchange(r.port, ['GARBAGE\r\n\r\n'])).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawExchange(r.port, ['GET /healthz HTTP/1.1\r\nbad header\r\n\r\n'])).toMatch(/^HTTP\/1\.1 400 /);
    expect((await call(r.port, { method: 'GET', path: '/healthz' })).status).toBe(200);
  });
});

describe('receiver: routing alerts to releases', () => {
  let r: TestReceiver;
  afterEach(() => r.close());

  it("groups by the service label and sends only an Alert's fields, with the receiver's name", async () => {
    r = await testReceiver();
    const reply = await postWebhook(
      r.port,
      webhook([
        amAlert({ service: 'checkout', alertname: 'A' }),
        amAlert({ service: 'payments', alertname: 'B' }),
        amAlert({ service: 'checkout', alertname: 'C' }),
        amAlert({ alertname: 'NoService' }),
        amAlert({ service: 'Not A Service\u009b31m', alertname: 'D' }),
      ]),
    );
    expect(reply.status).toBe(200);
    expect(json(reply.body)).toEqual({ delivered: ['checkout', 'payments'], nothingInFlight: [], unrouted: 2 });
    expect(r.sink.calls.map((c) => [c.service, c.payload.alerts.map((a) => a.labels.alertname)])).toEqual([
      ['checkout', ['A', 'C']],
      ['payments', ['B']],
    ]);
    const first = r.sink.calls[0]!.payload;
    expect(first.receiver).toBe('tollgate');
    expect(Object.keys(first.alerts[0]!).sort()).toEqual([
      'annotations',
      'fingerprint',
      'labels',
      'startsAt',
      'status',
    ]);
    for (const c of r.sink.calls) expect(alertSignalSchema.safeParse(c.payload).success).toBe(true);
    const unrouted = r.logs.find(
      (l) => l.msg === 'alerts malformed or without a valid service label: acknowledged, not signalled',
    );
    expect(unrouted).toMatchObject({ unrouted: 2, label: 'service' });
    // The label's value is shown, escaped: a C1 control (a CSI on many terminals) never reaches the log raw.
    expect(JSON.stringify(unrouted)).toContain('\\\\u{009b}31m');
    expect(r.raw.join('')).not.toContain('\u009b');
    const delivered = r.logs.filter((l) => l.msg === 'alerts signalled to the release');
    expect(delivered.map((l) => [l.service, l.alerts])).toEqual([
      ['checkout', 2],
      ['payments', 1],
    ]);
  });

  it('sends a large group in signals of at most 100 alerts, in order', async () => {
    r = await testReceiver();
    const alerts = Array.from({ length: 250 }, (_, i) => amAlert({ service: 'checkout' }, { fingerprint: `fp${i}` }));
    const reply = await postWebhook(r.port, webhook(alerts, { receiver: '' }));
    expect(reply.status).toBe(200);
    expect(r.sink.calls.map((c) => c.payload.alerts.length)).toEqual([100, 100, 50]);
    expect(r.sink.calls.flatMap((c) => c.payload.alerts.map((a) => a.fingerprint))).toEqual(
      alerts.map((a) => a.fingerprint),
    );
    // No receiver named: none sent.
    expect(r.sink.calls.every((c) => !('receiver' in c.payload))).toBe(true);
  });

  it("routes by the org's service label", async () => {
    r = await testReceiver({ serviceLabel: 'app' });
    const reply = await postWebhook(r.port, webhook([amAlert({ app: 'checkout' }), amAlert({ service: 'payments' })]));
    expect(json(reply.body)).toEqual({ delivered: ['checkout'], nothingInFlight: [], unrouted: 1 });
  });

  it('a service without a release in flight is acknowledged and logged; an empty group is acknowledged', async () => {
    r = await testReceiver({ sink: new RecordingSink({ payments: 'nothing-in-flight' }) });
    const alerts = [
      ...Array.from({ length: 150 }, (_, i) => amAlert({ service: 'payments' }, { fingerprint: `p${i}` })),
      amAlert({ service: 'checkout' }),
    ];
    const reply = await postWebhook(r.port, webhook(alerts));
    expect([reply.status, json(reply.body)]).toEqual([
      200,
      { delivered: ['checkout'], nothingInFlight: ['payments'], unrouted: 0 },
    ]);
    // The second chunk of payments is not sent: there is nobody to tell.
    expect(r.sink.calls.map((c) => c.service)).toEqual(['payments', 'checkout']);
    expect(r.logs.find((l) => String(l.msg).startsWith('nothing in flight'))).toMatchObject({
      service: 'payments',
      level: 30,
    });
    const empty = await postWebhook(r.port, webhook([]));
    expect(json(empty.body)).toEqual({ delivered: [], nothingInFlight: [], unrouted: 0 });
  });

  it('answers 503 when the sink fails, naming the service, so Alertmanager retries the whole call', async () => {
    const down = new Error('14 UNAVAILABLE: No connection established');
    r = await testReceiver({ sink: new RecordingSink({ payments: down }) });
    const reply = await postWebhook(r.port, webhook([amAlert({ service: 'payments' })]));
    expect([reply.status, reply.headers['retry-after']]).toEqual([503, '5']);
    expect(json(reply.body).error).toBe(
      'Temporal did not take the alerts of payments: 14 UNAVAILABLE: No connection established',
    );
    expect(r.logs.find((l) => l.level === 50)).toMatchObject({ service: 'payments', receiver: 'tollgate' });
    // Another service's alerts in the same call are sent again with it: nothing is half-acknowledged.
    const mixed = await postWebhook(
      r.port,
      webhook([amAlert({ service: 'checkout' }), amAlert({ service: 'payments' })]),
    );
    expect(mixed.status).toBe(503);
  });
});

describe('receiver: configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-receiver-config-'));
  const refused = (env: NodeJS.ProcessEnv) => {
    try {
      loadReceiverConfig(env);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('accepted');
  };

  it('refuses to start without credentials, or with both schemes, naming the variable', () => {
    expect(refused({})).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_TOKEN: required: the receiver never runs open/,
    );
    expect(refused({ TOLLGATE_RECEIVER_TOKEN: TOKEN, TOLLGATE_RECEIVER_USERNAME: 'am' })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_TOKEN: set a token or a username and password, not both/,
    );
    expect(refused({ TOLLGATE_RECEIVER_USERNAME: 'am' })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_PASSWORD: required/,
    );
    expect(refused({ TOLLGATE_RECEIVER_PASSWORD: BASIC.password })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_USERNAME: required/,
    );
    expect(refused({ TOLLGATE_RECEIVER_USERNAME: 'a:m', TOLLGATE_RECEIVER_PASSWORD: BASIC.password })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_USERNAME: must not contain ":"/,
    );
  });

  it('refuses a short or spaced secret without showing it, a bad address or timeout', () => {
    const short = refused({ TOLLGATE_RECEIVER_TOKEN: 'hunter2' });
    expect(short).toBe('invalid configuration: TOLLGATE_RECEIVER_TOKEN: at least 16 characters (got "[redacted]")');
    expect(refused({ TOLLGATE_RECEIVER_USERNAME: 'am', TOLLGATE_RECEIVER_PASSWORD: 'a b c d e f g h i j' })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_PASSWORD: must not contain spaces/,
    );
    const env = { TOLLGATE_RECEIVER_TOKEN: TOKEN };
    expect(refused({ ...env, TOLLGATE_RECEIVER_ADDRESS: '9095' })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_ADDRESS: expected host:port/,
    );
    expect(refused({ ...env, TOLLGATE_RECEIVER_ADDRESS: '127.0.0.1:70000' })).toMatch(
      /TOLLGATE_RECEIVER_ADDRESS: port must be/,
    );
    expect(refused({ ...env, TOLLGATE_RECEIVER_SIGNAL_TIMEOUT: '5' })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_SIGNAL_TIMEOUT: /,
    );
    expect(refused({ ...env, TEMPORAL_ADDRESS: 'nowhere' })).toMatch(/^invalid configuration: TEMPORAL_ADDRESS: /);
  });

  it('reads secrets from files (a trailing line break is not part of them), never both ways', () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const config = loadReceiverConfig({ TOLLGATE_RECEIVER_TOKEN_FILE: tokenFile });
    expect(config.auth).toEqual({ scheme: 'bearer', token: TOKEN });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.auth)).toBe(true);
    expect([config.host, config.port, config.TOLLGATE_RECEIVER_SIGNAL_TIMEOUT]).toEqual(['127.0.0.1', 9095, 5000]);
    expect(JSON.stringify(config)).not.toMatch(/TOLLGATE_RECEIVER_TOKEN/);
    expect(refused({ TOLLGATE_RECEIVER_TOKEN_FILE: tokenFile, TOLLGATE_RECEIVER_TOKEN: TOKEN })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_TOKEN_FILE: set either/,
    );
    expect(refused({ TOLLGATE_RECEIVER_TOKEN_FILE: join(dir, 'missing') })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_TOKEN_FILE: cannot read .*missing \(ENOENT\)/,
    );
    const passwordFile = join(dir, 'password');
    writeFileSync(passwordFile, BASIC.password);
    const basicConfig = loadReceiverConfig({
      TOLLGATE_RECEIVER_USERNAME: BASIC.username,
      TOLLGATE_RECEIVER_PASSWORD_FILE: passwordFile,
      TOLLGATE_RECEIVER_ADDRESS: '[::1]:0',
      TOLLGATE_RECEIVER_SIGNAL_TIMEOUT: '750ms',
    });
    expect(basicConfig.auth).toEqual(BASIC);
    expect([basicConfig.host, basicConfig.port, basicConfig.TOLLGATE_RECEIVER_SIGNAL_TIMEOUT]).toEqual(['::1', 0, 750]);
    writeFileSync(passwordFile, 'short\n');
    expect(refused({ TOLLGATE_RECEIVER_USERNAME: 'am', TOLLGATE_RECEIVER_PASSWORD_FILE: passwordFile })).toMatch(
      /^invalid configuration: TOLLGATE_RECEIVER_PASSWORD_FILE: .*password: at least 16 characters$/,
    );
  });

  it("takes the service label from the org policy, 'service' without one, and refuses a broken one", async () => {
    expect(await serviceLabelFrom(writePolicies({ metrics: { labels: { service: 'app' } } }, []))).toBe('app');
    expect(await serviceLabelFrom(writePolicies({}, []))).toBe('service');
    expect(await serviceLabelFrom(join(dir, 'no-policies'))).toBe('service');
    await expect(serviceLabelFrom(writePolicies({ metrics: { labels: { service: '__x' } } }, []))).rejects.toThrow(
      /^invalid configuration: TOLLGATE_POLICY_DIR: .*org\.yaml: metrics\.labels\.service: /,
    );
  });

  it('starts on the configured address, says where in one line, and closes the sink when stopped', async () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (l: string) => lines.push(l) });
    const sink = new RecordingSink();
    const config = loadReceiverConfig({
      TOLLGATE_RECEIVER_TOKEN: TOKEN,
      TOLLGATE_RECEIVER_ADDRESS: '127.0.0.1:0',
      TOLLGATE_POLICY_DIR: join(dir, 'none'),
    });
    const receiver = await startReceiver(config, logger, sink);
    try {
      expect(receiver.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(lines.filter((l) => l.includes(`"receiver listening on ${receiver.address}"`))).toHaveLength(1);
      const port = Number(receiver.address.split(':')[1]);
      expect((await postWebhook(port, webhook([amAlert({ service: 'checkout' })]))).status).toBe(200);
      // A second receiver on the same port fails naming the variable.
      const taken = loadReceiverConfig({ TOLLGATE_RECEIVER_TOKEN: TOKEN, TOLLGATE_RECEIVER_ADDRESS: receiver.address });
      await expect(startReceiver(taken, logger, new RecordingSink())).rejects.toThrow(
        /^invalid configuration: TOLLGATE_RECEIVER_ADDRESS: cannot listen on .*EADDRINUSE/,
      );
    } finally {
      await receiver.stop();
    }
    expect(sink.closed).toBe(true);
    expect(lines.at(-1)).toContain('"receiver stopped"');
  });
});
