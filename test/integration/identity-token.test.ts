import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import {
  IdentityIssuerUnavailableError,
  reverifyIdentityToken,
  verifyIdentityToken,
} from '../../src/activities/identity-token';
import {
  claimsProblem,
  MAX_IDENTITY_TOKEN_CHARS,
  type IdentityTokenVerdict,
  type MachineIdentity,
} from '../../src/domain/identity-token';

/*
 * The identity-token activity against a real OIDC issuer on loopback (discovery document and JWKS over node:http),
 * with tokens signed here as GitHub Actions would sign them.
 */

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface Issuer {
  url: string;
  /** Every path requested, in order. */
  requests: string[];
  /** Answers for paths, over the default discovery document and JWKS. */
  routes: Map<string, Handler>;
  close: () => Promise<void>;
}

const json = (body: unknown, status = 200): Handler => {
  return (_req, res) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
};

async function startIssuer(jwks: () => unknown): Promise<Issuer> {
  const requests: string[] = [];
  const routes = new Map<string, Handler>();
  const server: Server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const handler =
      routes.get(req.url ?? '') ??
      (req.url === '/.well-known/openid-configuration'
        ? json({ issuer: url, jwks_uri: `${url}/.well-known/jwks`, id_token_signing_alg_values_supported: ['RS256'] })
        : req.url === '/.well-known/jwks'
          ? json(jwks())
          : json({ error: 'not found' }, 404));
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }));
  return { url, requests, routes, close };
}

// Keys: the issuer's RSA and EC keys (published), an Ed25519 one (published), and an attacker's (never published).
let rsa: CryptoKeyPair;
let ec: CryptoKeyPair;
let ed: CryptoKeyPair;
let stranger: CryptoKeyPair;
let publishedKeys: { keys: JWK[] };
let issuer: Issuer;

interface CryptoKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

beforeAll(async () => {
  [rsa, ec, ed, stranger] = await Promise.all([
    generateKeyPair('RS256', { extractable: true }),
    generateKeyPair('ES256', { extractable: true }),
    generateKeyPair('EdDSA', { extractable: true }),
    generateKeyPair('RS256', { extractable: true }),
  ]);
  publishedKeys = {
    keys: [
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
      { ...(await exportJWK(ed.publicKey)), kid: 'ed-1', alg: 'EdDSA', use: 'sig' },
    ],
  };
  issuer = await startIssuer(() => publishedKeys);
});
afterAll(() => issuer?.close());
beforeEach(() => {
  issuer.requests.length = 0;
  issuer.routes.clear();
});

const NOW = Math.floor(Date.now() / 1000);
const AT = new Date(NOW * 1000).toISOString();

const machine = (extra: Partial<MachineIdentity> = {}): MachineIdentity => ({
  name: 'checkout-deploy',
  issuer: issuer.url,
  audience: 'tollgate',
  claims: { repository: 'acme/checkout', ref: 'refs/heads/main', environment: 'production' },
  ...extra,
});

/** GitHub Actions' claims for a job of acme/checkout on main, deploying to the production environment. */
const githubClaims = (): JWTPayload => ({
  sub: 'repo:acme/checkout:environment:production',
  repository: 'acme/checkout',
  repository_owner: 'acme',
  ref: 'refs/heads/main',
  ref_type: 'branch',
  environment: 'production',
  workflow: 'release',
  job_workflow_ref: 'acme/checkout/.github/workflows/release.yml@refs/heads/main',
  run_id: '123456789',
  actor: 'octocat',
});

interface SignOptions {
  key?: CryptoKey | Uint8Array;
  alg?: string;
  kid?: string | undefined;
  iss?: string;
  aud?: string | string[];
  iat?: number;
  nbf?: number;
  exp?: number;
}

async function sign(claims: JWTPayload = githubClaims(), o: SignOptions = {}): Promise<string> {
  const alg = o.alg ?? 'RS256';
  const kid = 'kid' in o ? o.kid : alg === 'ES256' ? 'ec-1' : alg === 'EdDSA' ? 'ed-1' : 'rsa-1';
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg, typ: 'JWT', ...(kid !== undefined && { kid }) })
    .setIssuer(o.iss ?? issuer.url)
    .setAudience(o.aud ?? 'tollgate')
    .setIssuedAt(o.iat ?? NOW - 30)
    .setExpirationTime(o.exp ?? NOW + 300);
  if (o.nbf !== undefined) jwt.setNotBefore(o.nbf);
  const key = o.key ?? (alg === 'ES256' ? ec.privateKey : alg === 'EdDSA' ? ed.privateKey : rsa.privateKey);
  return jwt.sign(key);
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function refusal(verdict: IdentityTokenVerdict): string {
  if (verdict.ok) throw new Error(`expected a refusal, got machine ${verdict.machine}`);
  return verdict.reason;
}

describe('verifyIdentityToken against a real issuer on loopback', () => {
  it('verifies a GitHub-Actions-like token and names the machine identity; the result carries the keys it used', async () => {
    const token = await sign();
    const result = await verifyIdentityToken({ token, machines: [machine()], at: AT });
    expect(result.verdict).toMatchObject({
      ok: true,
      machine: 'checkout-deploy',
      subject: 'repo:acme/checkout:environment:production',
      claims: { repository: 'acme/checkout', ref: 'refs/heads/main', iss: issuer.url, aud: 'tollgate' },
    });
    expect(result.issuer).toBe(issuer.url);
    expect(result.keys).toEqual(publishedKeys);
    expect(issuer.requests).toEqual(['/.well-known/openid-configuration', '/.well-known/jwks']);
  });

  it('verifies ES256 and EdDSA tokens too', async () => {
    for (const alg of ['ES256', 'EdDSA']) {
      const result = await verifyIdentityToken({
        token: await sign(githubClaims(), { alg }),
        machines: [machine()],
        at: AT,
      });
      expect({ alg, verdict: result.verdict.ok }).toEqual({ alg, verdict: true });
    }
  });

  it('refuses a token whose restricted claim differs, naming the claim and both values', async () => {
    const cases: [string, JWTPayload, RegExp][] = [
      ['ref', { ref: 'refs/heads/feature' }, /claim ref is "refs\/heads\/feature", not "refs\/heads\/main"/],
      ['repository', { repository: 'evil/checkout' }, /claim repository is "evil\/checkout", not "acme\/checkout"/],
      ['environment', { environment: 'dev' }, /claim environment is "dev", not "production"/],
      ['environment missing', { environment: undefined }, /claim environment is missing, expected "production"/],
      ['ref as a list', { ref: ['refs/heads/main'] }, /claim ref is a list, not a string/],
      ['ref as a number', { ref: 7 }, /claim ref is a number, not a string/],
    ];
    for (const [label, change, reason] of cases) {
      const claims = { ...githubClaims(), ...change };
      for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
      const result = await verifyIdentityToken({ token: await sign(claims), machines: [machine()], at: AT });
      expect(`${label}: ${refusal(result.verdict)}`).toMatch(reason);
    }
  });

  it('accepts any of a list of values for a claim, and only those', async () => {
    const releaseBranches = machine({ claims: { ref: ['refs/heads/main', 'refs/heads/release/2026.12'] } });
    const onRelease = await sign({ ...githubClaims(), ref: 'refs/heads/release/2026.12' });
    expect((await verifyIdentityToken({ token: onRelease, machines: [releaseBranches], at: AT })).verdict.ok).toBe(
      true,
    );
    const onFeature = await sign({ ...githubClaims(), ref: 'refs/heads/feature' });
    const refused = await verifyIdentityToken({ token: onFeature, machines: [releaseBranches], at: AT });
    expect(refusal(refused.verdict)).toMatch(
      /claim ref is "refs\/heads\/feature", not one of "refs\/heads\/main", "refs\/heads\/release\/2026\.12"/,
    );
  });

  it('picks the first machine identity of the issuer whose audience and claims match; else names the closest', async () => {
    const machines = [
      machine({ name: 'prod-deploy' }),
      machine({ name: 'staging-deploy', claims: { repository: 'acme/checkout', environment: 'staging' } }),
      machine({ name: 'other-audience', audience: 'elsewhere', claims: {} }),
    ];
    const staging = await sign({ ...githubClaims(), environment: 'staging', ref: 'refs/heads/feature' });
    expect((await verifyIdentityToken({ token: staging, machines, at: AT })).verdict).toMatchObject({
      ok: true,
      machine: 'staging-deploy',
    });
    // Fails prod-deploy on two claims, staging-deploy on one: staging-deploy is the closest.
    const nowhere = await sign({ ...githubClaims(), environment: 'dev', ref: 'refs/heads/feature' });
    const reason = refusal((await verifyIdentityToken({ token: nowhere, machines, at: AT })).verdict);
    expect(reason).toMatch(/closest, "staging-deploy"/);
    expect(reason).toMatch(/claim environment is "dev", not "staging"/);
  });

  it('refuses a token for another audience, naming it', async () => {
    const token = await sign(githubClaims(), { aud: 'sts.amazonaws.com' });
    const result = await verifyIdentityToken({ token, machines: [machine()], at: AT });
    expect(refusal(result.verdict)).toMatch(/audience "sts\.amazonaws\.com" is none of "tollgate"/);
  });

  it('checks validity at `at`, the release start, not at the wall clock', async () => {
    const token = await sign(githubClaims(), { iat: NOW - 30, exp: NOW + 300 });
    expect((await verifyIdentityToken({ token, machines: [machine()], at: AT })).verdict.ok).toBe(true);
    const anHourLater = new Date((NOW + 3600) * 1000).toISOString();
    const late = await verifyIdentityToken({ token, machines: [machine()], at: anHourLater });
    expect(refusal(late.verdict)).toMatch(/expired at .*; it must be valid at /);
    // And the other way: a token expired by now, but valid when the release started.
    const old = await sign(githubClaims(), { iat: NOW - 7200, exp: NOW - 3600 });
    const thenAt = new Date((NOW - 3700) * 1000).toISOString();
    expect((await verifyIdentityToken({ token: old, machines: [machine()], at: thenAt })).verdict.ok).toBe(true);
    expect(refusal((await verifyIdentityToken({ token: old, machines: [machine()], at: AT })).verdict)).toMatch(
      /expired/,
    );
  });

  it('allows 60 s of clock skew, no more', async () => {
    const justExpired = await sign(githubClaims(), { exp: NOW - 30 });
    expect((await verifyIdentityToken({ token: justExpired, machines: [machine()], at: AT })).verdict.ok).toBe(true);
    const longExpired = await sign(githubClaims(), { iat: NOW - 600, exp: NOW - 90 });
    expect((await verifyIdentityToken({ token: longExpired, machines: [machine()], at: AT })).verdict.ok).toBe(false);
  });

  it('refuses a token that is not yet valid at `at`', async () => {
    const token = await sign(githubClaims(), { nbf: NOW + 600, exp: NOW + 900 });
    const result = await verifyIdentityToken({ token, machines: [machine()], at: AT });
    expect(refusal(result.verdict)).toMatch(/not valid before .*; it must be valid at /);
  });

  it('refuses a token signed by a key the issuer does not publish', async () => {
    // The published kid, another key: the signature fails. An unknown kid: no key fits.
    const sameKid = await sign(githubClaims(), { key: stranger.privateKey, kid: 'rsa-1' });
    expect(refusal((await verifyIdentityToken({ token: sameKid, machines: [machine()], at: AT })).verdict)).toMatch(
      /signature does not verify/,
    );
    const otherKid = await sign(githubClaims(), { key: stranger.privateKey, kid: 'attacker' });
    expect(refusal((await verifyIdentityToken({ token: otherKid, machines: [machine()], at: AT })).verdict)).toMatch(
      /no key in the issuer's key set fits the token .*"attacker"/,
    );
    const noKid = await sign(githubClaims(), { key: stranger.privateKey, kid: undefined });
    expect((await verifyIdentityToken({ token: noKid, machines: [machine()], at: AT })).verdict.ok).toBe(false);
  });

  it('with no kid, tries each published key that fits, and accepts the one that signed', async () => {
    const second = await generateKeyPair('RS256', { extractable: true });
    const twoRsa = { keys: [...publishedKeys.keys, { ...(await exportJWK(second.publicKey)), alg: 'RS256' }] };
    const other = await startIssuer(() => twoRsa);
    try {
      const token = await sign(githubClaims(), { key: second.privateKey, kid: undefined, iss: other.url });
      const result = await verifyIdentityToken({ token, machines: [machine({ issuer: other.url })], at: AT });
      expect(result.verdict.ok).toBe(true);
    } finally {
      await other.close();
    }
  });

  it('refuses an unsigned token (alg: none)', async () => {
    const claims = { ...githubClaims(), iss: issuer.url, aud: 'tollgate', iat: NOW - 30, exp: NOW + 300 };
    const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`;
    const result = await verifyIdentityToken({ token, machines: [machine()], at: AT });
    expect(refusal(result.verdict)).toMatch(/algorithm "none" is not allowed/);
  });

  it('refuses an HS256 token whose secret is the public key (algorithm confusion)', async () => {
    const pem = await exportSPKI(rsa.publicKey);
    for (const secret of [pem, JSON.stringify(publishedKeys.keys[0])]) {
      const token = await sign(githubClaims(), { alg: 'HS256', key: new TextEncoder().encode(secret) });
      const result = await verifyIdentityToken({ token, machines: [machine()], at: AT });
      expect(refusal(result.verdict)).toMatch(/algorithm "HS256" is not allowed/);
    }
  });

  it('refuses a token from an issuer no machine identity lists without making any request', async () => {
    const github = machine({ issuer: 'https://token.actions.githubusercontent.com' });
    // The token points at our issuer, and at a path of it an attacker chose: neither is fetched.
    for (const iss of [issuer.url, `${issuer.url}/attacker`, `${issuer.url}/`]) {
      const token = await sign(githubClaims(), { iss });
      const result = await verifyIdentityToken({ token, machines: [github], at: AT });
      expect(refusal(result.verdict)).toMatch(/is not the issuer of any machine identity/);
      expect(result.keys).toBeNull();
    }
    expect(issuer.requests).toEqual([]);
  });

  it('refuses a jwks_uri on another origin, and never fetches it', async () => {
    const elsewhere = await startIssuer(() => publishedKeys);
    try {
      issuer.routes.set(
        '/.well-known/openid-configuration',
        json({ issuer: issuer.url, jwks_uri: `${elsewhere.url}/.well-known/jwks` }),
      );
      const result = await verifyIdentityToken({ token: await sign(), machines: [machine()], at: AT });
      expect(refusal(result.verdict)).toMatch(/jwks_uri .* is not on the issuer's origin/);
      expect(result.keys).toBeNull();
      expect(elsewhere.requests).toEqual([]);
    } finally {
      await elsewhere.close();
    }
  });

  it('refuses a discovery document that names another issuer', async () => {
    issuer.routes.set(
      '/.well-known/openid-configuration',
      json({ issuer: 'https://accounts.example.com', jwks_uri: `${issuer.url}/.well-known/jwks` }),
    );
    const result = await verifyIdentityToken({ token: await sign(), machines: [machine()], at: AT });
    expect(refusal(result.verdict)).toMatch(/names the issuer "https:\/\/accounts\.example\.com"/);
    expect(issuer.requests).toEqual(['/.well-known/openid-configuration']);
  });

  it('does not follow a redirect', async () => {
    const elsewhere = await startIssuer(() => publishedKeys);
    try {
      issuer.routes.set('/.well-known/jwks', (_req, res) => {
        res.writeHead(302, { location: `${elsewhere.url}/.well-known/jwks` });
        res.end();
      });
      const result = await verifyIdentityToken({ token: await sign(), machines: [machine()], at: AT });
      expect(refusal(result.verdict)).toMatch(/answered a redirect \(not followed\)/);
      expect(elsewhere.requests).toEqual([]);
    } finally {
      await elsewhere.close();
    }
  });

  it('refuses plain http to a host that is not loopback, without any request', async () => {
    const fetchSpy = jest.spyOn(globalThis, 'fetch');
    try {
      const remote = machine({ issuer: 'http://example.invalid' });
      const token = await sign(githubClaims(), { iss: 'http://example.invalid' });
      const result = await verifyIdentityToken({ token, machines: [remote], at: AT });
      expect(refusal(result.verdict)).toMatch(/"http:\/\/example\.invalid\/" is not https/);
      expect(fetchSpy).not.toHaveBeenCalled();
    } finally {
      fetchSpy.mockRestore();
    }
  });

  it('refuses a key set over 1 MiB, declared or not', async () => {
    const huge = JSON.stringify({ keys: [], padding: 'x'.repeat(2 * 1024 * 1024) });
    const answers: [string, Handler][] = [
      [
        'declared',
        (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(huge) });
          res.end(huge);
        },
      ],
      [
        'chunked',
        (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          for (let i = 0; i < huge.length; i += 64 * 1024) res.write(huge.slice(i, i + 64 * 1024));
          res.end();
        },
      ],
    ];
    for (const [label, handler] of answers) {
      issuer.routes.set('/.well-known/jwks', handler);
      const result = await verifyIdentityToken({ token: await sign(), machines: [machine()], at: AT });
      expect(`${label}: ${refusal(result.verdict)}`).toMatch(/key set at .* is larger than 1 MiB/);
    }
  });

  it('refuses a key set that is not JSON or not a key set', async () => {
    issuer.routes.set('/.well-known/jwks', (_req, res) => res.end('<html>sign in</html>'));
    const notJson = await verifyIdentityToken({ token: await sign(), machines: [machine()], at: AT });
    expect(refusal(notJson.verdict)).toMatch(/is not JSON/);
    issuer.routes.set('/.well-known/jwks', json({ keys: 'none' }));
    const notKeys = await verifyIdentityToken({ token: await sign(), machines: [machine()], at: AT });
    expect(refusal(notKeys.verdict)).toMatch(/key set is malformed/);
    expect(notKeys.keys).toEqual({ keys: 'none' });
  });

  it('refuses oversized and malformed tokens before any request', async () => {
    const tokens = ['', 'not-a-jwt', 'a.b', 'a.b.c.d', `${'a'.repeat(MAX_IDENTITY_TOKEN_CHARS)}.b.c`, 'a b.c.d'];
    for (const token of tokens) {
      const result = await verifyIdentityToken({ token, machines: [machine()], at: AT });
      expect(result.verdict.ok).toBe(false);
    }
    const longest = await verifyIdentityToken({ token: `${'a'.repeat(20_000)}.b.c`, machines: [machine()], at: AT });
    expect(refusal(longest.verdict)).toMatch(/longer than 16384 characters/);
    expect(issuer.requests).toEqual([]);
  });

  it('throws, for Temporal to retry, when the issuer is down, answers 5xx or does not answer in 5 s', async () => {
    const down = await startIssuer(() => publishedKeys);
    await down.close();
    const token = await sign(githubClaims(), { iss: down.url });
    await expect(verifyIdentityToken({ token, machines: [machine({ issuer: down.url })], at: AT })).rejects.toThrow(
      IdentityIssuerUnavailableError,
    );

    issuer.routes.set('/.well-known/jwks', json({ error: 'overloaded' }, 503));
    await expect(verifyIdentityToken({ token: await sign(), machines: [machine()], at: AT })).rejects.toThrow(
      /key set at .* answered HTTP 503/,
    );

    issuer.routes.set('/.well-known/openid-configuration', () => undefined); // never answers
    const started = Date.now();
    await expect(verifyIdentityToken({ token: await sign(), machines: [machine()], at: AT })).rejects.toThrow(
      /timed out after 5000 ms/,
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_900);
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 20_000);
});

describe('reverifyIdentityToken: the same check offline, from the keys a history recorded', () => {
  it('agrees with the recorded verdict with the issuer gone, and refuses a tampered token', async () => {
    const gone = await startIssuer(() => publishedKeys);
    const m = machine({ issuer: gone.url });
    const token = await sign({ ...githubClaims(), ref: 'refs/heads/main' }, { iss: gone.url });
    const recorded = await verifyIdentityToken({ token, machines: [m], at: AT });
    expect(recorded.verdict.ok).toBe(true);
    await gone.close();
    const stored = JSON.parse(JSON.stringify(recorded)) as typeof recorded; // as it comes back from a history

    expect(await reverifyIdentityToken(token, stored.keys, m, AT)).toEqual(recorded.verdict);

    // Another payload under the original signature: a feature branch passing itself off as main.
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${header}.${b64url({ ...claims, sub: 'repo:evil/checkout:ref:refs/heads/x' })}.${signature}`;
    expect(refusal(await reverifyIdentityToken(forged, stored.keys, m, AT))).toMatch(/signature does not verify/);
    // The recorded keys, another machine identity's rules, a later time: each refused for its own reason.
    expect(refusal(await reverifyIdentityToken(token, stored.keys, { ...m, claims: { ref: 'x' } }, AT))).toMatch(
      /claim ref is "refs\/heads\/main", not "x"/,
    );
    const later = new Date((NOW + 3600) * 1000).toISOString();
    expect(refusal(await reverifyIdentityToken(token, stored.keys, m, later))).toMatch(/expired/);
    expect(refusal(await reverifyIdentityToken(token, { keys: [] }, m, AT))).toMatch(/no key/);
    expect(refusal(await reverifyIdentityToken(token, stored.keys, m, 'yesterday'))).toMatch(/is not a date/);
  });
});

describe('hostile input never makes the checks throw', () => {
  const RUNS = { numRuns: 200, seed: 20261215 };
  const claimValue = fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 4 }));
  const machineArb = fc.record({
    name: fc.string(),
    issuer: fc.oneof(fc.string(), fc.constant('https://issuer.example')),
    audience: fc.oneof(fc.string(), fc.constant('tollgate')),
    claims: fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'ref')), claimValue),
  });
  const claimsArb = fc.dictionary(
    fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'toString', 'ref')),
    fc.jsonValue(),
  );

  it('claimsProblem answers undefined or a reason for any claims', () => {
    fc.assert(
      fc.property(machineArb, claimsArb, (m, claims) => {
        const problem = claimsProblem(m, claims);
        expect(problem === undefined || (typeof problem === 'string' && problem.length > 0)).toBe(true);
        // Undefined exactly when every restricted claim the token holds as its own string matches.
        const allMatch = Object.entries(m.claims).every(([name, expected]) => {
          const actual: unknown = Object.prototype.hasOwnProperty.call(claims, name) ? claims[name] : undefined;
          return (
            typeof actual === 'string' &&
            (typeof expected === 'string' ? expected === actual : expected.includes(actual))
          );
        });
        expect(problem === undefined).toBe(allMatch);
      }),
      RUNS,
    );
  });

  it('reverifyIdentityToken resolves to a verdict for any token, keys, machine identity and time', async () => {
    const segment = fc.oneof(
      fc.string().map((s) => Buffer.from(s).toString('base64url')),
      fc.jsonValue().map(b64url),
      fc.constant(b64url({ alg: 'RS256', kid: 'rsa-1' })),
      fc.constant(b64url({ alg: 'none' })),
    );
    const tokenArb = fc.oneof(
      fc.string(),
      fc.tuple(segment, segment, fc.oneof(fc.string(), segment)).map((parts) => parts.join('.')),
    );
    const keysArb = fc.oneof(
      fc.jsonValue(),
      fc.constant(publishedKeys),
      fc.array(fc.jsonValue()).map((keys) => ({ keys })),
      fc
        .array(fc.dictionary(fc.constantFrom('kty', 'kid', 'alg', 'n', 'e', 'crv', 'x', 'y'), fc.jsonValue()))
        .map((keys) => ({ keys })),
    );
    const atArb = fc.oneof(
      fc.string(),
      fc.constant(AT),
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    );
    await fc.assert(
      fc.asyncProperty(tokenArb, keysArb, machineArb, atArb, async (token, keys, m, at) => {
        const verdict = await reverifyIdentityToken(token, keys, m, at);
        expect(typeof verdict.ok).toBe('boolean');
        // Nothing generated here is signed by a published key, so nothing may pass.
        expect(verdict.ok).toBe(false);
      }),
      RUNS,
    );
  });

  it('a signed token with any claims is accepted exactly when claimsProblem finds nothing', async () => {
    const m = machine({ issuer: 'https://issuer.example', claims: { repository: 'acme/checkout', ref: ['a', 'b'] } });
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('repository', 'ref', 'sub', 'aud')), fc.jsonValue()),
        fc.constantFrom('acme/checkout', 'evil/checkout'),
        fc.constantFrom('a', 'b', 'c'),
        async (extra, repository, ref) => {
          const claims = { ...extra, repository, ref, sub: 'repo:acme/checkout' };
          const token = await sign(claims, { alg: 'ES256', iss: 'https://issuer.example' });
          const verdict = await reverifyIdentityToken(token, publishedKeys, m, AT);
          expect(verdict.ok).toBe(claimsProblem(m, claims) === undefined);
        },
      ),
      { numRuns: 100, seed: 20261215 },
    );
  });
});
