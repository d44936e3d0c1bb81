import fc from 'fast-check';
import { redactUrlCredentials } from '../../src/domain/redact';

describe('redactUrlCredentials', () => {
  it.each([
    ['https://bob:hunter2@hooks.example.com/x', 'https://***@hooks.example.com/x'],
    ['http://bob@127.0.0.1:9090', 'http://***@127.0.0.1:9090'],
    ['postgres://app:p%40ss@db:5432/tollgate', 'postgres://***@db:5432/tollgate'],
    ['cannot reach "http://u:p@h:1/": refused', 'cannot reach "http://***@h:1/": refused'],
    ['raw http://u:p@ss:w@rd@host/a', 'raw http://***@host/a'],
    ['http://u:p@[::1]:9090/', 'http://***@[::1]:9090/'],
    ['https://h/x?access_token=abc&page=2', 'https://h/x?access_token=***&page=2'],
    ['https://h/x?page=2&API_KEY=abc#frag', 'https://h/x?page=2&API_KEY=***#frag'],
    [
      'https://s3/o?X-Amz-Signature=f00&sig=b4r;c=d&page=2',
      // A secret's value runs to the next `&`: it never stops early inside the secret.
      'https://s3/o?X-Amz-Signature=***&sig=***&page=2',
    ],
    ['https://app/cb#access_token=xyz&state=1', 'https://app/cb#access_token=***&state=1'],
    ['?password=a?b&x=1', '?password=***&x=1'],
  ])('%s', (input, expected) => {
    expect(redactUrlCredentials(input)).toBe(expected);
  });

  it('leaves text without credentials as it is', () => {
    for (const text of [
      'http://127.0.0.1:9090/api/v1/query',
      'mail alice@example.com about http://status.example.com/x',
      'http://@host/ and ?page=2&sort=asc',
      'query failed: HTTP 400 from Prometheus: bad_data: sum(x})',
    ]) {
      expect(redactUrlCredentials(text)).toBe(text);
    }
  });

  it('takes linear time on text built to make a regex backtrack', () => {
    const hostile = [
      'a'.repeat(200_000),
      'a://'.repeat(50_000),
      `?${'a;'.repeat(100_000)}`,
      `http://${'@'.repeat(100_000)}`,
      `?${'token'.repeat(40_000)}`,
    ];
    const started = Date.now();
    for (const text of hostile) redactUrlCredentials(text);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  const marked = (prefix: string) => fc.stringMatching(/^[A-Za-z0-9]{6,16}$/).map((s) => `${prefix}${s}`);
  const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/);
  const host = fc.oneof(
    fc.array(label, { minLength: 1, maxLength: 3 }).map((labels) => `${labels.join('.')}.example`),
    fc.constantFrom('127.0.0.1', '[::1]', '10.0.0.7'),
  );
  /** Characters people put in passwords, as typed (raw) or as URL serialises them (percent-encoded). */
  const passwordChars = fc.constantFrom(...'abcXYZ019-._~!$&\'()*+,;=:@%"<>`{}|^[] /?#\\');
  const secretParam = fc.constantFrom(
    'token',
    'access_token',
    'api_key',
    'apiKey',
    'client_secret',
    'password',
    'X-Amz-Signature',
    'sig',
  );
  const wrapper = fc.constantFrom(['', ''], ['"', '"'], ["'", "'"], ['(', ')'], ['<', '>'], ['`', '`']);
  const text = fc.string({ maxLength: 40, unit: fc.constantFrom(...'ab @:/?#&=%."\'\n\ttoken'.split('')) });

  it('never lets a password or a secret parameter through, and keeps the host', () => {
    fc.assert(
      fc.property(
        fc.record({
          scheme: fc.constantFrom('http', 'https', 'postgres', 'redis', 'amqp'),
          user: fc.option(marked('usr'), { nil: undefined }),
          password: fc.option(fc.tuple(marked('pw'), fc.string({ maxLength: 6, unit: passwordChars })), {
            nil: undefined,
          }),
          host,
          port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
          path: fc.constantFrom('', '/', '/hooks/a', '/api/v1/query'),
          param: fc.option(fc.tuple(secretParam, marked('sv')), { nil: undefined }),
          before: text,
          after: text,
          wrap: wrapper,
          raw: fc.boolean(),
        }),
        ({ scheme, user, password, host, port, path, param, before, after, wrap, raw }) => {
          const pw = password && password[0] + password[1];
          const authority = `${host}${port === undefined ? '' : `:${port}`}`;
          const query = param ? `?page=2&${param[0]}=${param[1]}&q=x` : '';
          let url: string;
          if (raw) {
            // As a person might type it: raw characters, except those that end an authority before any `@`.
            const typed = pw?.replace(/[\s/?#\\"<>`{}|]/g, '');
            const userinfo =
              user === undefined && typed === undefined
                ? ''
                : `${user ?? ''}${typed === undefined ? '' : `:${typed}`}@`;
            url = `${scheme}://${userinfo}${authority}${path}${query}`;
          } else {
            const parsed = new URL(`${scheme}://${authority}${path}${query}`);
            if (user !== undefined) parsed.username = user;
            if (pw !== undefined) parsed.password = pw;
            url = parsed.href;
          }
          const input = `${before} ${wrap[0]}${url}${wrap[1]} ${after}`;
          const output = redactUrlCredentials(input);

          // Each secret starts with a marked part no random text around it can hold: absent means redacted.
          if (password) expect(output).not.toContain(password[0]);
          if (user !== undefined) expect(output).not.toContain(user);
          if (param) expect(output).not.toContain(param[1]);
          expect(output).toContain(host);
          if (user !== undefined || password !== undefined) expect(output).toContain(`${scheme}://***@${host}`);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
