import fc from 'fast-check';
import { alertSignalSchema } from '../../src/domain/alerts';
import { recordHostileRows, type HostileRow } from '../helpers/reliability-report';
import {
  amAlert,
  BASIC,
  basic,
  bearer,
  call,
  rawExchange,
  testReceiver,
  TOKEN,
  webhook,
  type Reply,
  type TestReceiver,
} from '../helpers/receiver';

/*
 * Whatever reaches the receiver's port is hostile: any method, path, header and body, with or without credentials,
 * and raw bytes that are not HTTP at all. Each class: the server answers and goes on answering (jams), nothing is
 * signalled without the right credentials (bypasses), and nothing signalled fails the `alert` signal's schema, no
 * alert of a 200 goes unaccounted, and no log line carries a character a terminal acts on (loosenings).
 */

const RUNS = { numRuns: 200, seed: 20261215 };
const FILE = 'test/unit/hostile-receiver.property.test.ts';
const rows: HostileRow[] = [];
afterAll(() => recordHostileRows('receiver', rows));
const tally = (label: string, cases: number, found: Partial<Pick<HostileRow, 'jams' | 'bypasses' | 'loosenings'>>) =>
  rows.push({ class: label, cases, jams: 0, bypasses: 0, loosenings: 0, ...found, seed: RUNS.seed, file: FILE });

const ACTS_ON_TERMINAL =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/u;
// 417: Node refuses an Expect header other than 100-continue before any handler runs; no signal either way.
const ANSWERS = new Set([200, 400, 401, 404, 405, 413, 415, 417]);

const attack = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 100 }),
  fc.constantFrom(
    '\u001b[2J\u001b[H',
    '\u009b31m',
    'ok\r\nforged: line',
    '\u202eevorppa',
    'checkout\u200b',
    '../../etc/passwd',
    'release-checkout',
    '__proto__',
    'constructor',
    'a'.repeat(70),
  ),
);
/** Header values a client library lets through: visible ASCII, spaces and tabs. */
const headerValue = fc.oneof(
  fc.stringMatching(/^[\x20-\x7e\t]{0,80}$/),
  fc.constantFrom(`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Bearer  ${TOKEN}`, 'Basic', 'Bearer'),
);
const headerName = fc.oneof(
  fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
  fc.constantFrom('content-type', 'content-length', 'transfer-encoding', 'authorization', 'expect', 'x-forwarded-for'),
);
const method = fc.oneof(
  fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE'),
  fc.stringMatching(/^[A-Z]{1,8}$/),
);
const path = fc.oneof(
  fc.constantFrom(
    '/alertmanager',
    '/healthz',
    '/',
    '/alertmanager/',
    '/ALERTMANAGER',
    '/alertmanager?x=1',
    '//alertmanager',
  ),
  fc.webPath(),
  fc.stringMatching(/^\/[\x21-\x7e]{0,60}$/),
);
const serviceValue = fc.oneof(fc.constantFrom('checkout', 'payments', 'Checkout', '', 'a'.repeat(64)), attack);
/** Hostile where the schema lets anything through (label and annotation values, the receiver), or anywhere. */
const webhookOf = (dirty: boolean) => {
  const anyWhere = <T>(clean: fc.Arbitrary<T>) => (dirty ? fc.oneof(clean, attack) : clean);
  const labelName = anyWhere(fc.stringMatching(/^[a-z_][a-z0-9_]{0,8}$/));
  return fc
    .record({
      alerts: fc.array(
        fc.record({
          service: fc.option(serviceValue),
          extra: fc.dictionary(labelName, attack, { maxKeys: 6 }),
          fingerprint: anyWhere(fc.stringMatching(/^[0-9a-f]{16}$/)),
          startsAt: anyWhere(
            fc.oneof(
              fc.constant('2026-01-01T00:00:00Z'),
              fc
                .date({ noInvalidDate: true, min: new Date(0), max: new Date(Date.UTC(9999, 11, 31)) })
                .map((d) => d.toISOString()),
            ),
          ),
          status: dirty ? fc.constantFrom('firing', 'resolved', 'pending') : fc.constantFrom('firing', 'resolved'),
          annotations: fc.option(fc.dictionary(anyWhere(fc.stringMatching(/^[a-z]{1,8}$/)), attack, { maxKeys: 3 })),
        }),
        { maxLength: 130 },
      ),
      receiver: fc.option(attack.map((t) => t.slice(0, 200))),
      version: dirty ? fc.constantFrom('4', 4, '3') : fc.constant('4'),
      truncatedAlerts: dirty ? fc.integer() : fc.nat(),
    })
    .map(({ alerts, receiver, version, truncatedAlerts }) =>
      webhook(
        alerts.map((a) =>
          amAlert(
            { ...a.extra, ...(a.service !== null && { service: a.service }) },
            {
              fingerprint: a.fingerprint,
              startsAt: a.startsAt,
              status: a.status,
              ...(a.annotations !== null && { annotations: a.annotations }),
            },
          ),
        ),
        { version, truncatedAlerts, ...(receiver !== null && { receiver }) },
      ),
    );
};
const anyBody = fc.oneof(
  { arbitrary: webhookOf(false).map((w) => JSON.stringify(w)), weight: 3 },
  { arbitrary: webhookOf(true).map((w) => JSON.stringify(w)), weight: 1 },
  { arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'), weight: 1 },
  { arbitrary: attack, weight: 1 },
);

/** The configured credentials, however spaced and cased the scheme (RFC 9110: one or more spaces after it). */
const isBearerRight = (header: string) => new RegExp(`^bearer +${TOKEN} *$`, 'i').test(header.trim());
function isBasicRight(header: string): boolean {
  const encoded = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header.trim())?.[1];
  return (
    encoded !== undefined && Buffer.from(encoded, 'base64').toString('utf8') === `${BASIC.username}:${BASIC.password}`
  );
}

/** The server still answers: a jam otherwise. */
const stillUp = async (r: TestReceiver) =>
  (await call(r.port, { method: 'GET', path: '/healthz' }, 2_000)).status === 200;
const rawLines = (r: TestReceiver) => r.raw.map((l) => l.replace(/\n$/, ''));

describe('hostile requests to the receiver', () => {
  let r: TestReceiver;
  beforeEach(async () => (r = await testReceiver()));
  afterEach(() => r.close());

  it('without valid credentials: any method, path, headers and body — answered, never signalled', async () => {
    let cases = 0;
    let jams = 0;
    let bypasses = 0;
    let leaks = 0;
    await fc.assert(
      fc.asyncProperty(
        method,
        path,
        fc.dictionary(headerName, headerValue, { maxKeys: 6 }),
        anyBody,
        async (m, p, h, body) => {
          cases++;
          const before = r.sink.calls.length;
          const logged = r.raw.length;
          const headers = { ...h };
          // Right credentials are the only thing this class may not send.
          if (headers.authorization === bearer()) delete headers.authorization;
          let reply: Reply | undefined;
          try {
            reply = await call(
              r.port,
              { method: m, path: p, headers, body: m === 'GET' || m === 'HEAD' ? undefined : body },
              5_000,
            );
          } catch {
            // A connection the server closed on a request it cannot parse (a bad content-length) is an answer too.
          }
          const isHealth = p === '/healthz' || p.startsWith('/healthz?');
          if (r.sink.calls.length !== before) bypasses++;
          if (reply !== undefined && !ANSWERS.has(reply.status)) jams++;
          if (reply !== undefined && !isHealth && ![400, 401, 417].includes(reply.status)) bypasses++;
          if (
            rawLines(r)
              .slice(logged)
              .some((l) => ACTS_ON_TERMINAL.test(l))
          )
            leaks++;
          expect(r.sink.calls.length).toBe(before);
          if (reply !== undefined && !isHealth) expect([400, 401, 417]).toContain(reply.status);
        },
      ),
      RUNS,
    );
    if (!(await stillUp(r))) jams++;
    tally('receiver: requests without valid credentials (any method, path, headers, body)', cases, {
      jams,
      bypasses,
      loosenings: leaks,
    });
    expect([jams, bypasses, leaks]).toEqual([0, 0, 0]);
  });

  it('Authorization headers: near-miss tokens, other schemes, basic with any user and password — all refused', async () => {
    let cases = 0;
    let bypasses = 0;
    let jams = 0;
    const body = JSON.stringify(webhook([amAlert({ service: 'checkout' })]));
    const basicReceiver = await testReceiver({ auth: BASIC });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            headerValue,
            fc.string({ maxLength: 40 }).map((t) => `Bearer ${TOKEN.slice(0, 10)}${t}`),
            fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 30 })).map(([u, pw]) => basic(u, pw)),
            fc.string({ maxLength: 30 }).map((pw) => basic(BASIC.username, `${BASIC.password.slice(0, -2)}${pw}`)),
            fc.constantFrom(basic(BASIC.username, BASIC.password), bearer(BASIC.password), basic(TOKEN, TOKEN)),
          ),
          fc.boolean(),
          async (authorization, toBasic) => {
            cases++;
            const target = toBasic ? basicReceiver : r;
            const right = toBasic ? isBasicRight(authorization) : isBearerRight(authorization);
            const before = target.sink.calls.length;
            const reply = await call(target.port, {
              headers: { 'content-type': 'application/json', authorization },
              body,
            }).catch(() => undefined);
            if (reply === undefined) jams++;
            const signalled = target.sink.calls.length > before;
            if (signalled && !right) bypasses++;
            expect(signalled).toBe(right);
            expect(reply?.status).toBe(right ? 200 : 401);
          },
        ),
        RUNS,
      );
    } finally {
      await basicReceiver.close();
    }
    tally('receiver: Authorization headers (near-miss tokens, other schemes, basic auth)', cases, { jams, bypasses });
    expect([jams, bypasses]).toEqual([0, 0]);
  });

  it('authenticated, any body: 200, 400 or 413 only; every signal fits the alert schema; no alert of a 200 lost', async () => {
    let cases = 0;
    let accepted = 0;
    let signalledCases = 0;
    let jams = 0;
    let loosenings = 0;
    await fc.assert(
      fc.asyncProperty(anyBody, async (body) => {
        cases++;
        const before = r.sink.calls.length;
        const logged = r.raw.length;
        const reply = await call(r.port, {
          headers: { 'content-type': 'application/json', authorization: bearer() },
          body,
        }).catch(() => undefined);
        if (reply === undefined || ![200, 400, 413].includes(reply.status)) jams++;
        const sent = r.sink.calls.slice(before);
        const invalid = sent.filter((c) => !alertSignalSchema.safeParse(c.payload).success).length;
        const leaked = rawLines(r)
          .slice(logged)
          .some((l) => ACTS_ON_TERMINAL.test(l));
        loosenings += invalid + (leaked ? 1 : 0);
        if (reply?.status === 200) {
          accepted++;
          if (sent.length > 0) signalledCases++;
          const { unrouted } = JSON.parse(reply.body) as { unrouted: number };
          const alerts = (JSON.parse(body) as { alerts: unknown[] }).alerts.length;
          const signalled = sent.reduce((n, c) => n + c.payload.alerts.length, 0);
          if (signalled + unrouted !== alerts) jams++;
          expect(signalled + unrouted).toBe(alerts);
          expect(sent.every((c) => c.payload.alerts.length <= 100)).toBe(true);
        } else {
          expect(sent).toEqual([]);
        }
        expect(invalid).toBe(0);
        expect(leaked).toBe(false);
      }),
      RUNS,
    );
    // The property says nothing unless the generated bodies reach the signalling path often.
    expect(accepted).toBeGreaterThan(RUNS.numRuns / 5);
    expect(signalledCases).toBeGreaterThan(RUNS.numRuns / 10);
    if (!(await stillUp(r))) jams++;
    tally('receiver: authenticated bodies (hostile JSON, webhook-shaped with hostile labels)', cases, {
      jams,
      loosenings,
    });
    expect([jams, loosenings]).toEqual([0, 0]);
  });

  it('raw bytes on the socket, HTTP or not: the server answers or closes, and goes on', async () => {
    let cases = 0;
    let jams = 0;
    let bypasses = 0;
    const requestLine = fc
      .tuple(method, fc.oneof(path, attack), fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'HTTP/9.9', ''))
      .map(([m, p, v]) => `${m} ${p} ${v}\r\n`);
    const header = fc
      .tuple(fc.oneof(headerName, attack), fc.oneof(headerValue, attack))
      .map(([k, v]) => `${k}: ${v}\r\n`);
    const raw = fc.oneof(
      fc
        .tuple(
          requestLine,
          fc.array(header, { maxLength: 6 }),
          fc.oneof(fc.constant('\r\n'), fc.constant(''), attack),
          anyBody,
        )
        .map(([l, hs, end, body]) => `${l}${hs.join('')}${end}${body}`),
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
    );
    await fc.assert(
      fc.asyncProperty(raw, async (bytes) => {
        cases++;
        const before = r.sink.calls.length;
        // Short: a request the server waits on the rest of is cut by the test, not by its 15 s request timeout.
        await rawExchange(r.port, [Buffer.from(bytes, 'latin1')], 200);
        if (r.sink.calls.length !== before) bypasses++;
        expect(r.sink.calls.length).toBe(before);
      }),
      { ...RUNS, numRuns: 100 },
    );
    if (!(await stillUp(r))) jams++;
    tally('receiver: raw bytes on the socket (request lines, headers, binary)', cases, { jams, bypasses });
    expect([jams, bypasses]).toEqual([0, 0]);
  });
});
