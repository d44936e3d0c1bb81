import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PrometheusProvider } from '../../src/providers/metrics/prometheus';
import { MetricsQueryError } from '../../src/providers/metrics/types';

/** A stand-in for Prometheus' HTTP API on a random local port; each test sets how it answers. */
interface Seen {
  method: string;
  path: string;
  params: URLSearchParams;
  authorization: string | undefined;
}
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

let server: Server;
let url: string;
let handler: Handler;
const seen: Seen[] = [];

const json =
  (body: unknown, status = 200): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
const vector = (...values: string[]) =>
  json({
    status: 'success',
    data: {
      resultType: 'vector',
      result: values.map((v, i) => ({ metric: { i: String(i) }, value: [1700000000, v] })),
    },
  });
const matrix = (...series: string[][]) =>
  json({
    status: 'success',
    data: {
      resultType: 'matrix',
      result: series.map((values, i) => ({
        metric: { i: String(i) },
        values: values.map((v, t) => [1700000000 + t, v]),
      })),
    },
  });

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = new URL(req.url ?? '/', 'http://x');
      const params =
        req.method === 'POST' ? new URLSearchParams(Buffer.concat(chunks).toString()) : target.searchParams;
      seen.push({ method: req.method ?? '', path: target.pathname, params, authorization: req.headers.authorization });
      handler(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  seen.length = 0;
  handler = (_req, res) => res.writeHead(500).end();
});

async function queryError(promise: Promise<unknown>): Promise<MetricsQueryError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MetricsQueryError);
  return error as MetricsQueryError;
}

describe('query', () => {
  it('returns the value of a single series, posting the query form-encoded', async () => {
    handler = vector('0.21');
    await expect(new PrometheusProvider({ url }).query('sum(rate(x[1m]))')).resolves.toBe(0.21);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'POST', path: '/api/v1/query' });
    expect(seen[0]?.params.get('query')).toBe('sum(rate(x[1m]))');
  });

  it('answers undefined for no series and for NaN', async () => {
    const provider = new PrometheusProvider({ url });
    handler = vector();
    await expect(provider.query('q')).resolves.toBeUndefined();
    handler = vector('NaN');
    await expect(provider.query('q')).resolves.toBeUndefined();
  });

  it('reads infinities and scalars', async () => {
    const provider = new PrometheusProvider({ url });
    handler = vector('+Inf');
    await expect(provider.query('q')).resolves.toBe(Infinity);
    handler = json({ status: 'success', data: { resultType: 'scalar', result: [1700000000, '3'] } });
    await expect(provider.query('q')).resolves.toBe(3);
  });

  it('refuses more than one series', async () => {
    handler = vector('1', '2');
    const error = await queryError(new PrometheusProvider({ url }).query('rate(x[1m])'));
    expect(error.query).toBe('rate(x[1m])');
    expect(error.message).toMatch(/^query failed: expected one series, got 2 .*: rate\(x\[1m\]\)$/);
  });

  it("reports Prometheus' own error with the HTTP status", async () => {
    handler = json({ status: 'error', errorType: 'bad_data', error: '1:5: parse error: unexpected "}"' }, 400);
    const error = await queryError(new PrometheusProvider({ url }).query('sum(x})'));
    expect(error.message).toBe(
      'query failed: HTTP 400 from Prometheus: bad_data: 1:5: parse error: unexpected "}": sum(x})',
    );
  });

  it('reports a non-JSON error page by its status and body', async () => {
    handler = (_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>Bad Gateway</h1>\n');
    const error = await queryError(new PrometheusProvider({ url }).query('q'));
    expect(error.why).toBe(`HTTP 502 from ${url}: <h1>Bad Gateway</h1>`);
  });

  it('quotes a body as one printable line, cut at 200 characters', async () => {
    handler = (_req, res) => res.writeHead(502).end(`\u001b[2Jgone\r\n${'x'.repeat(300)}`);
    const error = await queryError(new PrometheusProvider({ url }).query('q'));
    expect(error.why).toBe(`HTTP 502 from ${url}: \\u{001b}[2Jgone ${'x'.repeat(200 - 16)}…`);
  });

  it('reports a garbage body and a JSON body of the wrong shape as malformed', async () => {
    const provider = new PrometheusProvider({ url });
    handler = (_req, res) => res.writeHead(200).end('definitely not json');
    expect((await queryError(provider.query('q'))).why).toBe(
      `malformed response from ${url} (not JSON): definitely not json`,
    );
    handler = json({ status: 'success', data: { resultType: 'vector', result: [{ value: [1, 'lots'] }] } });
    expect((await queryError(provider.query('q'))).why).toBe(
      `malformed response from ${url} at data.result.0.value.1: expected a sample value`,
    );
    handler = json({ hello: 'world' });
    expect((await queryError(provider.query('q'))).why).toMatch(/^malformed response from \S+ at status: /);
  });

  it('times out after timeoutMs', async () => {
    handler = () => undefined; // never answers
    const started = Date.now();
    const error = await queryError(new PrometheusProvider({ url, timeoutMs: 200 }).query('q'));
    expect(error.why).toBe(`timed out after 200 ms at ${url}/`);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('times out when the body stalls after the headers', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":');
    };
    const error = await queryError(new PrometheusProvider({ url, timeoutMs: 200 }).query('q'));
    expect(error.why).toMatch(/^timed out after 200 ms/);
  });

  it('says the connection was refused, and where', async () => {
    const closed = await unusedUrl();
    const error = await queryError(new PrometheusProvider({ url: closed }).query('up'));
    expect(error.message).toBe(`query failed: connection refused at ${closed}/: up`);
  });

  it('keeps a path prefix and uses an injected fetch', async () => {
    handler = vector('7');
    const calls: string[] = [];
    const spy: typeof fetch = (input, init) => {
      calls.push(input instanceof URL ? input.href : JSON.stringify(input));
      return fetch(input, init);
    };
    await expect(new PrometheusProvider({ url: `${url}/prom`, fetch: spy }).query('q')).resolves.toBe(7);
    expect(calls).toEqual([`${url}/prom/api/v1/query`]);
    expect(seen[0]?.path).toBe('/prom/api/v1/query');
  });
});

describe('credentials in TOLLGATE_PROMETHEUS_URL', () => {
  const PASSWORD = 'prom-pw-never-shown';
  const withCredentials = (base: string) => base.replace('http://', `http://tollgate:${PASSWORD}@`);
  const basic = `Basic ${Buffer.from(`tollgate:${PASSWORD}`).toString('base64')}`;

  it('sends them as basic auth on queries and readiness probes', async () => {
    const provider = new PrometheusProvider({ url: withCredentials(url) });
    handler = vector('1');
    await expect(provider.query('up')).resolves.toBe(1);
    handler = (_req, res) => res.writeHead(200).end('ready');
    await expect(provider.isOnline()).resolves.toBe(true);

    expect(seen.map((s) => s.authorization)).toEqual([basic, basic]);
  });

  it('never quotes them in an error, which reaches status as a check reason', async () => {
    const closed = await unusedUrl();
    const refused = await queryError(new PrometheusProvider({ url: withCredentials(closed) }).query('up'));
    expect(refused.message).toBe(`query failed: connection refused at ${closed}/: up`);

    handler = (_req, res) => res.writeHead(502).end(`upstream ${withCredentials(url)}/?token=t0k3n failed`);
    const bad = await queryError(new PrometheusProvider({ url: withCredentials(url) }).query('up'));
    expect(bad.why).toBe(`HTTP 502 from ${url}: upstream http://***@127.0.0.1:${new URL(url).port}/?token=*** failed`);

    const quoting: typeof fetch = (input) => Promise.reject(new TypeError(`bad ${(input as URL).href}?api_key=k3y`));
    const injected = await queryError(
      new PrometheusProvider({ url: withCredentials(url), fetch: quoting }).query('up'),
    );
    expect(injected.why).toBe(`cannot reach ${url}/: TypeError: bad ${url}/api/v1/query?api_key=***`);

    for (const error of [refused, bad, injected]) {
      expect(`${error.message} ${error.why}`).not.toMatch(/prom-pw-never-shown|t0k3n|k3y/);
    }
  });

  it('are hidden by MetricsQueryError whichever provider raises it', () => {
    const error = new MetricsQueryError('up', `cannot reach https://u:${PASSWORD}@metrics.example/`);
    expect(error.message).toBe('query failed: cannot reach https://***@metrics.example/: up');
    expect(error.why).toBe('cannot reach https://***@metrics.example/');
  });
});

describe('queryRange', () => {
  const window = { start: new Date('2026-01-05T12:00:00Z'), end: new Date('2026-01-05T12:10:00Z'), stepSeconds: 60 };

  it('returns one value per step, dropping NaN, and sends the window in seconds', async () => {
    handler = matrix(['0.1', 'NaN', '0.3', '+Inf']);
    await expect(new PrometheusProvider({ url }).queryRange('q', window)).resolves.toEqual([0.1, 0.3, Infinity]);
    expect(seen[0]?.path).toBe('/api/v1/query_range');
    expect(Object.fromEntries(seen[0]?.params ?? [])).toEqual({
      query: 'q',
      start: String(Date.parse('2026-01-05T12:00:00Z') / 1000),
      end: String(Date.parse('2026-01-05T12:10:00Z') / 1000),
      step: '60',
    });
  });

  it('answers [] without series and refuses several', async () => {
    const provider = new PrometheusProvider({ url });
    handler = matrix();
    await expect(provider.queryRange('q', window)).resolves.toEqual([]);
    handler = matrix(['1'], ['2'], ['3']);
    expect((await queryError(provider.queryRange('q', window))).why).toMatch(/^expected one series, got 3/);
  });

  it('refuses a vector where a matrix belongs', async () => {
    handler = vector('1');
    expect((await queryError(new PrometheusProvider({ url }).queryRange('q', window))).why).toBe(
      'expected a matrix, got a vector',
    );
  });
});

describe('isOnline', () => {
  it('is true only for 200 from /-/ready', async () => {
    const provider = new PrometheusProvider({ url });
    handler = (_req, res) => res.writeHead(200).end('Prometheus Server is Ready.\n');
    await expect(provider.isOnline()).resolves.toBe(true);
    expect(seen.at(-1)).toMatchObject({ method: 'GET', path: '/-/ready' });
    handler = (_req, res) => res.writeHead(503).end('Service Unavailable');
    await expect(provider.isOnline()).resolves.toBe(false);
  });

  it('is false when refused or too slow', async () => {
    await expect(new PrometheusProvider({ url: await unusedUrl() }).isOnline()).resolves.toBe(false);
    handler = () => undefined;
    await expect(new PrometheusProvider({ url, timeoutMs: 100 }).isOnline()).resolves.toBe(false);
  });
});

it('refuses a URL that is not http(s)', () => {
  expect(() => new PrometheusProvider({ url: 'ftp://example.org' })).toThrow(
    /^prometheus provider: url: expected an http/,
  );
  expect(() => new PrometheusProvider({ url, timeoutMs: 0 })).toThrow(/timeoutMs/);
});

/** A port that was free a moment ago and has nothing listening now. */
async function unusedUrl(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return `http://127.0.0.1:${port}`;
}
