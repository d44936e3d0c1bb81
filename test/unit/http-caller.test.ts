import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { httpCallSchema, type HttpCallInput } from '../../src/domain/external';
import { hasUnsafeCharacters } from '../../src/domain/text';
import { SignedHttpCaller, type SignedHttpCallerOptions } from '../../src/providers/external/http-caller';
import { verifySignature } from '../../src/providers/external/signing';
import type { ExternalOutcome, ExternalRequest } from '../../src/providers/external/types';
import { refused, startDeployApi, unavailable, type DeployApi, type Plan } from '../helpers/deploy-api';

/** The HTTP caller against a real deploy API on 127.0.0.1: every answer the contract names, and hostile ones. */

const SECRET = 'hmac-3f9a7c1e-never-shown';
const TOKEN = 'tok-8d2b6e4a-never-shown';
const ENV = { DEPLOY_SECRET: SECRET, DEPLOY_TOKEN: TOKEN, TEAM: 'payments' };
/** Polls 20-200 ms apart instead of 1-60 s: what the bounds do is tested on its own below. */
const FAST_POLLS = { minMs: 20, maxMs: 200, defaultMs: 20 };

let api: DeployApi;
beforeAll(async () => {
  api = await startDeployApi({ secret: SECRET, token: TOKEN });
});
afterAll(() => api.close());
beforeEach(() => {
  api.requests.length = 0;
  api.plan = () => undefined;
});

const httpCall = (over: Partial<HttpCallInput> = {}) =>
  httpCallSchema.parse({
    url: api.url,
    secretEnv: 'DEPLOY_SECRET',
    headers: { Authorization: 'Bearer ${DEPLOY_TOKEN}', 'X-Team': '${TEAM}' },
    ...over,
  });
const caller = (over: SignedHttpCallerOptions = {}) => new SignedHttpCaller({ env: ENV, poll: FAST_POLLS, ...over });

let keys = 0;
const request = (over: Partial<ExternalRequest> = {}): ExternalRequest => {
  const key = `release-checkout/run-1/canary-${++keys}`;
  return {
    payload: { action: 'deploy', key, service: 'checkout', version: '2.0.0', stableVersion: '1.0.0', track: 'canary' },
    env: {},
    key,
    ...over,
  };
};

/** Planned for every POST. */
const answering = (plan: Plan | ((attempt: number) => Plan)) => {
  api.plan = (_body, attempt) => (typeof plan === 'function' ? plan(attempt) : plan);
};

/** Nothing the caller says may carry a secret or a character a terminal acts on. */
function expectShowable(outcome: ExternalOutcome): void {
  const said = [...('message' in outcome ? [outcome.message] : []), ...outcome.lastLines];
  for (const text of said) {
    expect(hasUnsafeCharacters(text)).toBe(false);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(TOKEN);
  }
}

describe('a synchronous answer', () => {
  it('POSTs the payload signed, with the key, a delivery id and the headers resolved from the environment', async () => {
    const req = request();
    const outcome = await caller().call(httpCall(), req);
    expect(outcome).toMatchObject({ kind: 'ok', result: { applied: true, changes: ['checkout canary → 2.0.0'] } });
    const [sent] = api.requestsFor(req.key);
    expect(api.requestsFor(req.key)).toHaveLength(1);
    expect(sent).toMatchObject({ method: 'POST', path: '/steps', signed: true });
    expect(JSON.parse(sent!.body)).toEqual(req.payload);
    expect(sent!.headers).toMatchObject({
      'content-type': 'application/json',
      'idempotency-key': req.key,
      authorization: `Bearer ${TOKEN}`,
      'x-team': 'payments',
    });
    expect(sent!.delivery).toMatch(/^[0-9a-f-]{36}$/);
    const ts = sent!.headers['x-tollgate-timestamp'] as string;
    expect(verifySignature(SECRET, ts, sent!.body, sent!.headers['x-tollgate-signature'] as string)).toBe(true);
    expect(verifySignature('another-key', ts, sent!.body, sent!.headers['x-tollgate-signature'] as string)).toBe(false);
  });

  it('takes an empty 2xx as done with no result, and refuses a 2xx that is not JSON', async () => {
    answering({ kind: 'answer', status: 204 });
    await expect(caller().call(httpCall(), request())).resolves.toMatchObject({ kind: 'ok', result: undefined });
    answering({ kind: 'answer', status: 200, body: '<html>welcome to nginx</html>' });
    await expect(caller().call(httpCall(), request())).resolves.toMatchObject({
      kind: 'failed',
      message: 'HTTP 200: the answer is not JSON: <html>welcome to nginx</html>',
    });
  });

  it('keeps the signature and key its own when a configured header names them', async () => {
    const req = request();
    const call = httpCall({ headers: { 'Idempotency-Key': 'forged', 'X-Tollgate-Signature': 'sha256=00' } });
    await expect(caller().call(call, req)).resolves.toMatchObject({ kind: 'failed', message: 'HTTP 401: bad token' });
    expect(api.requests[0]).toMatchObject({ key: req.key, signed: true });
  });

  it('is refused by the API when it is not signed (no secretEnv)', async () => {
    const outcome = await caller().call(httpCall({ secretEnv: undefined }), request());
    expect(outcome).toMatchObject({ kind: 'failed', message: 'HTTP 401: signature missing or wrong' });
  });
});

describe('accepted, then polled', () => {
  it('polls the Location with signed GETs until the final answer, reporting each progress message', async () => {
    answering({ kind: 'accepted', polls: 3 });
    const req = request();
    const lines: string[] = [];
    const outcome = await caller().call(httpCall(), { ...req, onLine: (line) => lines.push(line) });
    expect(outcome).toMatchObject({ kind: 'ok', result: { applied: true } });
    expect(lines).toEqual(['deploying 2.0.0 (0/3)', 'deploying 2.0.0 (1/3)', 'deploying 2.0.0 (2/3)']);
    expect(outcome.lastLines).toEqual(lines);
    const sent = api.requestsFor(req.key);
    expect(sent.map((r) => `${r.method} ${r.path.replace(/[0-9a-f-]{36}/, 'ID')}`)).toEqual([
      'POST /steps',
      'GET /operations/ID',
      'GET /operations/ID',
      'GET /operations/ID',
    ]);
    // Signed over the empty body, with the call's key, delivery id and credentials; applied once.
    expect(sent.every((r) => r.signed && r.delivery === sent[0]!.delivery)).toBe(true);
    expect(sent.every((r) => r.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(sent[1]!.headers['content-type']).toBeUndefined();
    expect(api.applied.get(req.key)).toBe(1);
  });

  it('keeps the last five progress messages, and says the last one when the deadline passes', async () => {
    answering({ kind: 'accepted', polls: 1000, retryAfter: '0', message: (n) => `copying image, layer ${n}` });
    const outcome = await caller({ deadlineMs: 2_000 }).call(httpCall(), request());
    expect(outcome.kind).toBe('timeout');
    expect(outcome.lastLines).toHaveLength(5);
    const last = outcome.lastLines.at(-1)!;
    expect(last).toMatch(/^copying image, layer \d+$/);
    expect(outcome).toMatchObject({ message: `no final answer within 2s (last: ${last})` });
    expect(outcome.durationMs).toBeLessThan(2_000);
  });

  it('waits as long as Retry-After says, within 1 s and 60 s: never spun, never parked', async () => {
    // Real bounds: a Retry-After of 0 still waits a second.
    answering({ kind: 'accepted', polls: 2, retryAfter: '0' });
    const started = Date.now();
    await expect(new SignedHttpCaller({ env: ENV }).call(httpCall(), request())).resolves.toMatchObject({ kind: 'ok' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    // An hour is cut to the maximum (here 200 ms), and an HTTP date is read as one.
    for (const retryAfter of ['3600', new Date(Date.now() + 3_600_000).toUTCString(), 'soon']) {
      answering({ kind: 'accepted', polls: 2, retryAfter });
      const t0 = Date.now();
      await expect(caller().call(httpCall(), request())).resolves.toMatchObject({ kind: 'ok' });
      expect(Date.now() - t0).toBeLessThan(1_000);
    }
  });

  it('cuts a wait that would cross the deadline, so one last poll still fits before it', async () => {
    answering({ kind: 'accepted', polls: 1, retryAfter: '60' });
    const t0 = Date.now();
    const slowPolls = caller({ deadlineMs: 1_500, poll: { ...FAST_POLLS, maxMs: 60_000 } });
    await expect(slowPolls.call(httpCall(), request())).resolves.toMatchObject({
      kind: 'ok',
      result: { applied: true },
    });
    expect(Date.now() - t0).toBeLessThan(1_500);
  });

  it.each([
    ['on another host', 'https://evil.example/operations/1', 'a Location on https://evil.example'],
    ['protocol-relative', '//evil.example/steal', 'a Location on http://evil.example'],
    ['on another port', 'http://127.0.0.1:1/operations/1', 'a Location on http://127.0.0.1:1'],
    ['with credentials', '/operations/1'.replace('/', '//u:p@127.0.0.1:PORT/'), 'carries credentials'],
    ['missing', undefined, 'without a Location header to poll'],
  ])('refuses to poll a Location %s: no signed request or token leaves for it', async (_what, location, expected) => {
    const port = new URL(api.origin).port;
    const headers: Record<string, string> = location ? { location: location.replace('PORT', port) } : {};
    answering({ kind: 'answer', status: 202, headers, body: '{}' });
    const req = request();
    const outcome = await caller().call(httpCall(), req);
    expect(outcome.kind).toBe('failed');
    expect(outcome).toMatchObject({ message: expect.stringContaining(expected) as string });
    expect(api.requestsFor(req.key)).toHaveLength(1);
  });

  it("follows a poll's 202 to a new Location on the same origin, and refuses one that moves elsewhere", async () => {
    const moved = request();
    answering({ kind: 'accepted', polls: 3, relocate: '/operations/none' });
    await expect(caller().call(httpCall(), moved)).resolves.toMatchObject({
      kind: 'failed',
      message: 'HTTP 404: no operation none',
    });
    expect(api.requestsFor(moved.key).map((r) => r.path.replace(/[0-9a-f-]{36}/, 'ID'))).toEqual([
      '/steps',
      '/operations/ID',
      '/operations/none',
    ]);

    const stolen = request();
    answering({ kind: 'accepted', polls: 3, relocate: 'https://evil.example/operations/1' });
    await expect(caller().call(httpCall(), stolen)).resolves.toMatchObject({
      kind: 'failed',
      message: expect.stringContaining('a Location on https://evil.example') as string,
    });
    expect(api.requestsFor(stolen.key)).toHaveLength(2);
  });

  it('follows an absolute Location on its own origin', async () => {
    answering({ kind: 'accepted', polls: 2, absolute: true });
    const req = request();
    await expect(caller().call(httpCall(), req)).resolves.toMatchObject({ kind: 'ok', result: { applied: true } });
    expect(api.requestsFor(req.key).map((r) => r.method)).toEqual(['POST', 'GET', 'GET']);
  });
});

describe('answers that are not done', () => {
  it.each<[string, string, string, Plan]>([
    ['503 with {error}', 'retry', 'HTTP 503: deploy API under maintenance', unavailable()],
    [
      '429 with {message}',
      'retry',
      'HTTP 429: slow down',
      { kind: 'answer', status: 429, body: '{"message":"slow down"}' },
    ],
    ['408, empty', 'retry', 'HTTP 408: (empty body)', { kind: 'answer', status: 408, body: '' }],
    [
      '422 with {error}',
      'failed',
      'HTTP 422: image registry.example.com/checkout:2.0.0 not found',
      refused('image registry.example.com/checkout:2.0.0 not found'),
    ],
    [
      '400 with {error: {message}}',
      'failed',
      'HTTP 400: bad track',
      { kind: 'answer', status: 400, body: '{"error":{"message":"bad track"}}' },
    ],
    [
      '404 as HTML',
      'failed',
      'HTTP 404: Not Found <hr>nginx',
      { kind: 'answer', status: 404, body: 'Not Found\n\n<hr>nginx' },
    ],
  ])('%s → %s', async (_what, kind, message, plan) => {
    answering(plan);
    await expect(caller().call(httpCall(), request())).resolves.toMatchObject({ kind, message });
  });

  it('does not follow a redirect', async () => {
    answering({ kind: 'answer', status: 307, headers: { location: '/steps-v2' } });
    const outcome = await caller().call(httpCall(), request());
    expect(outcome).toMatchObject({ kind: 'failed', message: 'HTTP 307 (redirects are not followed): (empty body)' });
    expect(api.requests.map((r) => r.path)).toEqual(['/steps']);
  });

  it('tries again after a request that timed out, and gives up with timeout once the deadline passed', async () => {
    answering({ kind: 'hang' });
    const slow = await caller().call(httpCall({ timeout: '1s' }), request());
    expect(slow).toMatchObject({ kind: 'retry', message: `timed out after 1000 ms at ${api.origin}` });
    expect(slow.durationMs).toBeGreaterThanOrEqual(1_000);
    const late = await caller({ deadlineMs: 300 }).call(httpCall({ timeout: '1s' }), request());
    expect(late).toMatchObject({ kind: 'timeout', message: 'no final answer within 300ms' });
    expect(late.durationMs).toBeLessThan(1_000);
  });

  it('tries again when the connection is refused or reset', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/steps`;
    await new Promise((resolve) => closed.close(resolve));
    await expect(caller().call(httpCall({ url }), request())).resolves.toMatchObject({
      kind: 'retry',
      message: `connection refused at ${new URL(url).origin}`,
    });

    const resetting: Server = createServer((req) => req.socket.destroy());
    await new Promise<void>((resolve) => resetting.listen(0, '127.0.0.1', resolve));
    try {
      const reset = `http://127.0.0.1:${(resetting.address() as AddressInfo).port}/steps`;
      await expect(caller().call(httpCall({ url: reset }), request())).resolves.toMatchObject({ kind: 'retry' });
    } finally {
      await new Promise((resolve) => resetting.close(resolve));
    }
  });

  it.each([true, false])('refuses an answer larger than 1 MiB (Content-Length declared: %s)', async (declared) => {
    answering({ kind: 'huge', declared });
    await expect(caller().call(httpCall(), request())).resolves.toMatchObject({
      kind: 'failed',
      message: 'HTTP 200: answer larger than 1 MiB',
    });
  });
});

describe('hostile words and secrets', () => {
  it('shows binary and escape sequences from the API as visible escapes, in messages and progress lines', async () => {
    const hostile = 'ok\u001b[2J\u001b]0;pwned\u0007\r\nFAKE: promoted\u202e\u0000\u009b';
    answering({ kind: 'accepted', polls: 2, message: () => hostile });
    const lines: string[] = [];
    const accepted = await caller().call(httpCall(), { ...request(), onLine: (l) => lines.push(l) });
    expect(lines[0]).toBe('ok\\u{001b}[2J\\u{001b}]0;pwned\\u{0007} FAKE: promoted\\u{202e}\\u{0000}\\u{009b}');
    expectShowable(accepted);

    answering({
      kind: 'answer',
      status: 422,
      body: Buffer.concat([Buffer.from('{"error":"'), Buffer.from([0xff, 0xfe]), Buffer.from('\\u001b[31mboom"}')]),
    });
    const binary = await caller().call(httpCall(), request());
    expect(binary).toMatchObject({ kind: 'failed', message: 'HTTP 422: \ufffd\ufffd\\u{001b}[31mboom' });
    expectShowable(binary);
  });

  it('hides every value taken from the environment when the API quotes it back', async () => {
    answering({
      kind: 'answer',
      status: 403,
      body: JSON.stringify({
        error: `token ${TOKEN} (signed with ${SECRET}) cannot deploy https://ci:${TOKEN}@example.com`,
      }),
    });
    const outcome = await caller().call(httpCall(), request());
    expect(outcome).toMatchObject({
      kind: 'failed',
      message: 'HTTP 403: token *** (signed with ***) cannot deploy https://***@example.com',
    });
  });

  it('fails before sending anything when a variable is not set, naming it but never a value', async () => {
    const noToken = new SignedHttpCaller({ env: { DEPLOY_SECRET: SECRET, TEAM: 'payments' } });
    await expect(noToken.call(httpCall(), request())).resolves.toMatchObject({
      kind: 'failed',
      message: 'header "Authorization": environment variable DEPLOY_TOKEN is not set',
    });
    const noSecret = new SignedHttpCaller({ env: { DEPLOY_TOKEN: TOKEN, TEAM: 'payments' } });
    await expect(noSecret.call(httpCall(), request())).resolves.toMatchObject({
      kind: 'failed',
      message: 'secretEnv: environment variable DEPLOY_SECRET is not set (it should hold the signing key)',
    });
    const broken = new SignedHttpCaller({ env: { ...ENV, DEPLOY_TOKEN: `${TOKEN}\r\nX-Evil: 1` } });
    const outcome = await broken.call(httpCall(), request());
    expect(outcome).toMatchObject({
      kind: 'failed',
      message: 'header "Authorization": environment variable DEPLOY_TOKEN holds characters a header cannot carry',
    });
    expect(api.requests).toHaveLength(0);
  });
});

describe('cancellation', () => {
  it('rejects with the signal’s reason, in flight or between polls, and sends nothing once aborted', async () => {
    const reason = new Error('activity cancelled');
    answering({ kind: 'hang' });
    const inFlight = new AbortController();
    const hung = caller().call(httpCall({ timeout: '30s' }), { ...request(), signal: inFlight.signal });
    setTimeout(() => inFlight.abort(reason), 100);
    await expect(hung).rejects.toBe(reason);

    answering({ kind: 'accepted', polls: 100, retryAfter: '60' });
    const polling = new AbortController();
    const t0 = Date.now();
    const lines: string[] = [];
    const waiting = new SignedHttpCaller({ env: ENV }).call(httpCall(), {
      ...request(),
      signal: polling.signal,
      onLine: (line) => {
        lines.push(line);
        polling.abort(reason);
      },
    });
    await expect(waiting).rejects.toBe(reason);
    expect(Date.now() - t0).toBeLessThan(5_000);

    const sent = api.requests.length;
    await expect(caller().call(httpCall(), { ...request(), signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(api.requests).toHaveLength(sent);
  });
});

describe('whatever the API answers', () => {
  const hostileText = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.constantFrom('\u001b[31m', '\u202e', '\r\n', '\u0000', SECRET, TOKEN, `Bearer ${TOKEN}`, `x${SECRET}y`),
  );
  const body = fc.oneof(
    hostileText,
    hostileText.map((error) => JSON.stringify({ error })),
    hostileText.map((message) => JSON.stringify({ message })),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
  );
  const headerText = fc.string({ maxLength: 60 }).filter((s) => /^[\x20-\x7e]*$/.test(s));
  const answer = fc.record({
    status: fc.oneof(
      fc.constantFrom(200, 202, 204, 301, 400, 408, 422, 429, 500, 503),
      fc.integer({ min: 200, max: 999 }),
    ),
    body,
    location: fc.option(
      fc.oneof(headerText, fc.constantFrom('/steps', '//evil.example/', 'https://evil.example/x', '/operations/none')),
      { nil: undefined },
    ),
    retryAfter: fc.option(headerText, { nil: undefined }),
  });

  it('resolves an outcome, its words printable and free of secrets; it never throws', async () => {
    await fc.assert(
      fc.asyncProperty(answer, async ({ status, body, location, retryAfter }) => {
        const headers: Record<string, string> = {};
        if (location !== undefined) headers.location = location;
        if (retryAfter !== undefined) headers['retry-after'] = retryAfter;
        answering({ kind: 'answer', status, body, headers });
        const outcome = await caller({ deadlineMs: 2_000 }).call(httpCall({ timeout: '1s' }), request());
        expect(['ok', 'retry', 'failed', 'timeout']).toContain(outcome.kind);
        expectShowable(outcome);
      }),
      { numRuns: 150, seed: 20261202 },
    );
  });
});
