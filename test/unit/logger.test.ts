import { createLogger, PinoSdkLogger, type Logger } from '../../src/logger';

const PASSWORD = 'hunter2-never-log-me';
const TOKEN = 'tok-3b9f-never-log-me';
const leaky = `https://bob:${PASSWORD}@hooks.example.com/hook?access_token=${TOKEN}`;

let lines: string[];
let logger: Logger;

beforeEach(() => {
  lines = [];
  logger = createLogger('debug', { write: (line: string) => void lines.push(line) });
});

const output = () => lines.join('');
const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

afterEach(() => {
  expect(output()).not.toContain(PASSWORD);
  expect(output()).not.toContain(TOKEN);
});

describe('every log line passes redactUrlCredentials', () => {
  it('in the message, also when it is interpolated', () => {
    logger.warn(`cannot reach ${leaky}`);
    logger.info({ n: 1 }, 'posting to %s', leaky);

    expect(parsed().map((l) => l.msg)).toEqual([
      'cannot reach https://***@hooks.example.com/hook?access_token=***',
      'posting to https://***@hooks.example.com/hook?access_token=***',
    ]);
  });

  it("in an error's message and stack, and in the message pino takes from the error", () => {
    const err = new TypeError(`Request cannot be constructed from a URL that includes credentials: ${leaky}`);
    logger.warn(err);
    logger.error({ err }, 'notification failed');
    logger.error({ err });

    const [first, second, third] = parsed() as { msg: string; err: { message: string; stack: string } }[];
    expect(first?.msg).toContain('https://***@hooks.example.com');
    expect(first?.err.stack).toContain('TypeError: Request cannot be constructed');
    expect(second?.err.message).toContain('https://***@hooks.example.com');
    expect(third?.msg).toContain('https://***@hooks.example.com');
  });

  it('in fields at any depth, URL objects and errors under other keys included', () => {
    logger.warn(
      {
        url: leaky,
        endpoint: new URL(leaky),
        results: [{ check: 'errors', reason: `query failed: cannot reach ${leaky}: up` }],
        cause: new Error(`fetch ${leaky}`),
      },
      'analysis round',
    );

    const [line] = parsed();
    expect(line).toMatchObject({
      url: 'https://***@hooks.example.com/hook?access_token=***',
      endpoint: 'https://***@hooks.example.com/hook?access_token=***',
      results: [
        {
          check: 'errors',
          reason: 'query failed: cannot reach https://***@hooks.example.com/hook?access_token=*** up',
        },
      ],
      cause: { type: 'Error', message: 'fetch https://***@hooks.example.com/hook?access_token=***' },
    });
  });

  it("in a child logger's bindings that name where it connects", () => {
    logger.child({ target: leaky, url: leaky }).info('connected');

    expect(parsed()[0]).toMatchObject({ target: 'https://***@hooks.example.com/hook?access_token=***' });
  });

  it('through the Temporal SDK logger too', () => {
    new PinoSdkLogger(logger).warn(`Activity failed: ${leaky}`, { error: new Error(leaky) });

    expect(parsed()[0]).toMatchObject({ msg: 'Activity failed: https://***@hooks.example.com/hook?access_token=***' });
  });

  it('survives cycles and leaves the caller’s objects as they were', () => {
    const state: Record<string, unknown> = { url: leaky };
    state.self = state;
    logger.info({ state }, 'state');

    expect(state.url).toBe(leaky);
    expect(parsed()[0]).toMatchObject({ state: { url: 'https://***@hooks.example.com/hook?access_token=***' } });
  });

  it('keeps the redact list', () => {
    logger.info({ apiKey: TOKEN, connection: { apiKey: TOKEN }, headers: { authorization: TOKEN } }, 'connecting');

    expect(parsed()[0]).toMatchObject({ apiKey: '[redacted]', connection: { apiKey: '[redacted]' } });
  });
});

describe('every log line passes the one sanitiser', () => {
  it('escapes what a terminal acts on and JSON leaves raw (C1, bidi, line separators), keeping line breaks', () => {
    const hostile = 'by bob\u009b31m \u202eevil\u2028forged\u001b]52;c;x\u0007';
    logger.warn({ actor: hostile, nested: { reason: hostile } }, `approve by ${hostile}`);
    logger.error({ err: new Error(`first\nsecond ${hostile}`) }, 'failed');

    for (const line of lines) expect(line).not.toMatch(/[\u0080-\u009f\u202a-\u202e\u2028\u2029]/u);
    const [warn, error] = parsed() as [Record<string, unknown>, { err: { message: string } }];
    const shown = 'by bob\\u{009b}31m \\u{202e}evil\\u{2028}forged\\u{001b}]52;c;x\\u{0007}';
    expect(warn).toMatchObject({ msg: `approve by ${shown}`, actor: shown, nested: { reason: shown } });
    expect(error.err.message).toBe(`first\nsecond ${shown}`);
  });
});
