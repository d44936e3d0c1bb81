import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type CryptoKey,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyOptions,
  type JWTVerifyResult,
} from 'jose';
import {
  claimsProblems,
  MAX_IDENTITY_TOKEN_CHARS,
  type IdentityTokenResult,
  type IdentityTokenVerdict,
  type MachineIdentity,
} from '../domain/identity-token';
import { printable } from '../domain/text';
import { describeFetchError, readBodyBounded } from '../providers/fetch-errors';

/*
 * A CI pipeline's OIDC ID token, checked against the machine identities a policy lists. A bad token is a verdict
 * (refused, with the reason); only an issuer that cannot be reached, or answers 5xx, is thrown, for Temporal to retry.
 * The token chooses nothing the worker fetches: its `iss` must be one of the listed issuers, exactly, before any
 * request is made, and the keys come from that issuer's own origin.
 */

/** The issuer's discovery or key endpoint could not answer: thrown, so Temporal retries the activity. */
export class IdentityIssuerUnavailableError extends Error {
  override readonly name = 'IdentityIssuerUnavailableError';
}

const ALGORITHMS = ['RS256', 'ES256', 'EdDSA'];
const CLOCK_TOLERANCE_SECONDS = 60;
const REQUEST_TIMEOUT_MS = 5_000;
const MAX_RESPONSE_BYTES = 1024 * 1024;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);
/** A whole, compact JWS: header, payload and signature (empty only for `alg: none`, refused by algorithm). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

const refuse = (reason: string): IdentityTokenVerdict => ({ ok: false, reason });
const shown = (value: unknown, max = 200) =>
  typeof value === 'string' ? `"${printable(value, max)}"` : printable(safeJson(value), max);
const list = (values: readonly string[]) => values.map((v) => shown(v)).join(', ');

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return safeString(value);
  }
}

/** String(value), for a value whose toString may itself throw. */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return '(unprintable)';
  }
}

/** Why a token is not even a token worth decoding, before anything else is done with it. */
function formatProblem(token: unknown): string | undefined {
  if (typeof token !== 'string') return 'the identity token is not a string';
  if (token.length > MAX_IDENTITY_TOKEN_CHARS)
    return `the identity token is longer than ${MAX_IDENTITY_TOKEN_CHARS} characters`;
  if (!COMPACT_JWS.test(token)) return 'the identity token is not a JWT (three base64url parts separated by dots)';
  return undefined;
}

/** Why the worker will not fetch from `url`: https only, but plain http to loopback (tests, local issuers). */
function endpointProblem(url: URL): string | undefined {
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname)) return undefined;
  return `${shown(url.href)} is not https (plain http only to 127.0.0.1, ::1 or localhost)`;
}

type Fetched = { ok: true; value: unknown } | { ok: false; reason: string };

/**
 * One GET of a JSON document: no redirects followed, 5 s for all of it, at most 1 MiB read whatever the headers say.
 * A refusal for an answer that will not change by asking again; thrown for one that may.
 */
async function fetchJson(url: URL, what: string): Promise<Fetched> {
  const where = `the issuer's ${what} at ${printable(url.href, 300)}`;
  try {
    const response = await fetch(url, {
      redirect: 'manual',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      headers: { accept: 'application/json' },
    });
    if (response.status >= 500 || response.status === 429) {
      await response.body?.cancel().catch(() => undefined);
      throw new IdentityIssuerUnavailableError(`${where} answered HTTP ${response.status}`);
    }
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => undefined);
      const redirect = response.status === 0 || (response.status >= 300 && response.status < 400);
      return {
        ok: false,
        reason: `${where} answered ${redirect ? 'a redirect (not followed)' : `HTTP ${response.status}`}`,
      };
    }
    const text = await readBodyBounded(response, MAX_RESPONSE_BYTES);
    if (text === undefined) return { ok: false, reason: `${where} is larger than 1 MiB` };
    try {
      return { ok: true, value: JSON.parse(text) as unknown };
    } catch {
      return { ok: false, reason: `${where} is not JSON` };
    }
  } catch (error) {
    if (error instanceof IdentityIssuerUnavailableError) throw error;
    throw new IdentityIssuerUnavailableError(
      `cannot fetch ${where}: ${describeFetchError(error, REQUEST_TIMEOUT_MS, { url: url.href })}`,
    );
  }
}

/** The issuer's key set, by its discovery document: `keys` is what was fetched, for the history to record. */
async function issuerKeys(issuer: string): Promise<{ keys: unknown; problem?: string }> {
  let base: URL;
  try {
    base = new URL(issuer);
  } catch {
    return { keys: null, problem: `the issuer ${shown(issuer)} is not a URL` };
  }
  if (base.search || base.hash || base.username || base.password)
    return { keys: null, problem: `the issuer ${shown(issuer)} has a query, a fragment or credentials` };
  const baseProblem = endpointProblem(base);
  if (baseProblem) return { keys: null, problem: `the issuer ${baseProblem}` };

  const discoveryUrl = new URL(`${base.href.replace(/\/+$/, '')}/.well-known/openid-configuration`);
  const discovery = await fetchJson(discoveryUrl, 'discovery document');
  if (!discovery.ok) return { keys: null, problem: discovery.reason };
  const doc = discovery.value as { issuer?: unknown; jwks_uri?: unknown } | null;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    return { keys: null, problem: 'the discovery document is not a JSON object' };
  if (doc.issuer !== issuer)
    return {
      keys: null,
      problem: `the discovery document names the issuer ${shown(doc.issuer)}, not ${shown(issuer)}`,
    };
  if (typeof doc.jwks_uri !== 'string') return { keys: null, problem: 'the discovery document has no jwks_uri' };
  let jwksUrl: URL;
  try {
    jwksUrl = new URL(doc.jwks_uri);
  } catch {
    return { keys: null, problem: `the discovery document's jwks_uri ${shown(doc.jwks_uri)} is not a URL` };
  }
  if (jwksUrl.origin !== base.origin)
    return {
      keys: null,
      problem: `the jwks_uri ${shown(jwksUrl.href)} is not on the issuer's origin ${shown(base.origin)}`,
    };
  const jwks = await fetchJson(jwksUrl, 'key set');
  if (!jwks.ok) return { keys: null, problem: jwks.reason };
  return { keys: jwks.value };
}

const iso = (seconds: unknown) =>
  typeof seconds === 'number' && Number.isFinite(seconds) && Math.abs(seconds) < 8.64e12
    ? new Date(seconds * 1000).toISOString()
    : shown(seconds);

function unverifiedHeader(token: string): { alg?: unknown; kid?: unknown } {
  try {
    return decodeProtectedHeader(token);
  } catch {
    return {};
  }
}

/** jose's refusal in words that say what to fix. Duck-typed: errors may come from another realm under jest. */
function refusalReason(error: unknown, token: string, options: JWTVerifyOptions, at: string): string {
  const { code, claim, reason, payload, message } = (error ?? {}) as {
    code?: unknown;
    claim?: unknown;
    reason?: unknown;
    payload?: JWTPayload;
    message?: unknown;
  };
  const detail = printable(typeof message === 'string' ? message : safeString(error), 300);
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return `the token expired at ${iso(payload?.exp)}; it must be valid at ${at}`;
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (reason === 'missing') return `the token has no ${shown(claim)} claim`;
      if (claim === 'nbf') return `the token is not valid before ${iso(payload?.nbf)}; it must be valid at ${at}`;
      if (claim === 'aud')
        return `the token's audience ${shown(payload?.aud)} is none of ${list([options.audience ?? []].flat())}`;
      if (claim === 'iss') return `the token's issuer ${shown(payload?.iss)} is not ${shown(options.issuer)}`;
      return `the token's ${shown(claim)} claim is invalid: ${detail}`;
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return `the token's algorithm ${shown(unverifiedHeader(token).alg)} is not allowed (only ${ALGORITHMS.join(', ')})`;
    case 'ERR_JWKS_NO_MATCHING_KEY': {
      const { alg, kid } = unverifiedHeader(token);
      return `no key in the issuer's key set fits the token (alg ${shown(alg)}, kid ${shown(kid ?? null)})`;
    }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return "the token's signature does not verify with the issuer's keys";
    case 'ERR_JWKS_INVALID':
    case 'ERR_JWK_INVALID':
      return `the issuer's key set is malformed: ${detail}`;
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return `the token is malformed: ${detail}`;
    default:
      return `the token is refused: ${detail}`;
  }
}

/** jwtVerify, trying each candidate when a key set holds several keys that fit a token without a `kid`. */
async function verifyAgainst(
  token: string,
  keys: ReturnType<typeof createLocalJWKSet>,
  options: JWTVerifyOptions,
): Promise<JWTVerifyResult> {
  try {
    return await jwtVerify(token, keys, options);
  } catch (error) {
    const several = error as { code?: unknown; [Symbol.asyncIterator]?: () => AsyncIterator<CryptoKey> };
    if (several?.code !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS' || !several[Symbol.asyncIterator]) throw error;
    let last: unknown = error;
    for await (const key of several as AsyncIterable<CryptoKey>) {
      try {
        return await jwtVerify(token, key, options);
      } catch (inner) {
        last = inner;
        if ((inner as { code?: unknown })?.code !== 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') break;
      }
    }
    throw last;
  }
}

/**
 * The verdict on a well-formed `token` with `keys`, for `candidates` (machine identities of one issuer): verified
 * for any of their audiences at `at`, then the first whose audience and claims match; else the closest refusal.
 */
async function verdictWithKeys(
  token: string,
  keys: unknown,
  candidates: MachineIdentity[],
  at: string,
): Promise<IdentityTokenVerdict> {
  const when = Date.parse(at);
  if (!Number.isFinite(when)) return refuse(`the time to check the token at, ${shown(at)}, is not a date`);
  let keySet: ReturnType<typeof createLocalJWKSet>;
  try {
    keySet = createLocalJWKSet(keys as Parameters<typeof createLocalJWKSet>[0]);
  } catch (error) {
    return refuse(refusalReason(error, token, {}, at));
  }
  const audiences = [...new Set(candidates.map((m) => m.audience))];
  const options: JWTVerifyOptions = {
    algorithms: ALGORITHMS,
    issuer: candidates[0]!.issuer,
    audience: audiences,
    currentDate: new Date(when),
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    requiredClaims: ['exp', 'sub'],
  };
  let payload: JWTPayload;
  try {
    ({ payload } = await verifyAgainst(token, keySet, options));
  } catch (error) {
    return refuse(refusalReason(error, token, options, at));
  }
  if (typeof payload.sub !== 'string') return refuse(`the token's subject ${shown(payload.sub)} is not a string`);
  const tokenAudiences =
    typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
  const claims = payload as Record<string, unknown>;
  let closest: { machine: MachineIdentity; problems: string[] } | undefined;
  for (const machine of candidates) {
    if (!tokenAudiences.includes(machine.audience)) continue;
    const problems = claimsProblems(machine, claims);
    if (problems.length === 0) return { ok: true, machine: machine.name, subject: payload.sub, claims };
    if (!closest || problems.length < closest.problems.length) closest = { machine, problems };
  }
  // jose checked that one audience matches, so some machine was compared.
  if (!closest) return refuse(`the token's audience ${shown(payload.aud)} is none of ${list(audiences)}`);
  const more = closest.problems.length > 1 ? ` (and ${closest.problems.length - 1} more)` : '';
  const which =
    candidates.length === 1
      ? `the token is not machine identity ${shown(closest.machine.name)}`
      : `the token is none of the ${candidates.length} machine identities of its issuer; the closest, ${shown(closest.machine.name)}, refuses it`;
  return refuse(`${which}: ${closest.problems[0]}${more}`);
}

/**
 * The activity: verifies a CI pipeline's OIDC ID token against the machine identities a policy lists, at `at` (the
 * release's start). Fetches the issuer's keys (discovery, then its jwks_uri) and returns them with the verdict, so the
 * history records what the token was checked with. Never throws for a bad token; throws when the issuer cannot answer.
 */
export async function verifyIdentityToken(input: {
  token: string;
  machines: MachineIdentity[];
  at: string;
}): Promise<IdentityTokenResult> {
  const { token, machines, at } = input;
  const problem = formatProblem(token);
  if (problem) return { issuer: '', keys: null, verdict: refuse(problem) };
  let iss: unknown;
  try {
    ({ iss } = decodeJwt(token));
  } catch (error) {
    return { issuer: '', keys: null, verdict: refuse(refusalReason(error, token, {}, at)) };
  }
  if (typeof iss !== 'string') return { issuer: '', keys: null, verdict: refuse('the token names no issuer (iss)') };
  // Exactly a listed issuer, before any request: the token cannot send the worker anywhere else.
  const candidates = machines.filter((m) => m.issuer === iss);
  if (candidates.length === 0)
    return {
      issuer: iss,
      keys: null,
      verdict: refuse(`the token's issuer ${shown(iss)} is not the issuer of any machine identity`),
    };
  const { keys, problem: keysProblem } = await issuerKeys(iss);
  if (keysProblem) return { issuer: iss, keys, verdict: refuse(keysProblem) };
  return { issuer: iss, keys, verdict: await verdictWithKeys(token, keys, candidates, at) };
}

/**
 * The same check offline, with the keys a history recorded (`tollgate history --verify`): no request is made, and
 * nothing thrown, whatever the token, the keys or the machine identity hold.
 */
export async function reverifyIdentityToken(
  token: string,
  keys: unknown,
  machine: MachineIdentity,
  at: string,
): Promise<IdentityTokenVerdict> {
  try {
    const problem = formatProblem(token);
    if (problem) return refuse(problem);
    return await verdictWithKeys(token, keys, [machine], at);
  } catch (error) {
    return refuse(`the token could not be checked: ${printable(safeString(error), 300)}`);
  }
}
