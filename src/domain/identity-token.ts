import { printable } from './text';

/*
 * Machine identities: a CI pipeline (GitHub Actions, GitLab, any OIDC issuer with a JWKS endpoint) starts a release
 * with the ID token its platform gave it. The workflow cannot fetch the issuer's keys, so an activity verifies the
 * token and returns its verdict together with the keys it used: the history then holds everything needed to re-check
 * the decision offline. Pure code: the workflow imports these types and `claimsProblem`.
 */

/**
 * A policy entry: the CI identity `name` may start releases with a token from `issuer` (compared exactly, as the
 * token's `iss` spells it), for `audience`, whose every listed claim matches: a string must be equal, a list must
 * contain the token's value. A claim the token holds as anything but a string never matches.
 */
export interface MachineIdentity {
  name: string;
  issuer: string;
  audience: string;
  claims: Record<string, string | string[]>;
}

export type IdentityTokenVerdict =
  { ok: true; machine: string; subject: string; claims: Record<string, unknown> } | { ok: false; reason: string };

export interface IdentityTokenResult {
  issuer: string;
  /** The issuer's JWKS JSON as fetched (the keys the verdict was reached with), or null when none was fetched. */
  keys: unknown;
  verdict: IdentityTokenVerdict;
}

/** Far above any real ID token (GitHub's are about 1.2 kB), far below anything costly to decode and record. */
export const MAX_IDENTITY_TOKEN_CHARS = 16_384;

/** How many of a list of allowed values a reason names before "and N more". */
const SHOWN_VALUES = 5;

const quoted = (value: string) => `"${printable(value, 200)}"`;

function expectation(expected: unknown): string {
  if (typeof expected === 'string') return quoted(expected);
  if (!Array.isArray(expected)) return '(no valid value: the policy lists neither a string nor a list)';
  if (expected.length === 0) return 'one of (an empty list)';
  const shown = expected.slice(0, SHOWN_VALUES).map((v) => (typeof v === 'string' ? quoted(v) : '(not a string)'));
  const more = expected.length > SHOWN_VALUES ? ` and ${expected.length - SHOWN_VALUES} more` : '';
  return `one of ${shown.join(', ')}${more}`;
}

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  const type = typeof value;
  return type === 'object' ? 'an object' : type === 'undefined' ? 'undefined' : `a ${type}`;
}

const matches = (expected: unknown, actual: string) =>
  typeof expected === 'string' ? expected === actual : Array.isArray(expected) && expected.includes(actual);

/**
 * Every restricted claim the token's claims fail, each as a reason naming the claim; empty when all match.
 * Only the token's own properties count (`constructor` or `__proto__` from a prototype is not a claim).
 */
export function claimsProblems(machine: MachineIdentity, claims: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const restricted: Record<string, unknown> =
    machine.claims !== null && typeof machine.claims === 'object' ? machine.claims : {};
  const own = claims !== null && typeof claims === 'object' ? claims : {};
  for (const [name, expected] of Object.entries(restricted)) {
    const claim = `claim ${printable(name, 200)}`;
    const actual: unknown = Object.prototype.hasOwnProperty.call(own, name) ? own[name] : undefined;
    if (actual === undefined) problems.push(`${claim} is missing, expected ${expectation(expected)}`);
    else if (typeof actual !== 'string')
      problems.push(`${claim} is ${kind(actual)}, not a string (expected ${expectation(expected)})`);
    else if (!matches(expected, actual)) problems.push(`${claim} is ${quoted(actual)}, not ${expectation(expected)}`);
  }
  return problems;
}

/** Undefined when every claim `machine` restricts matches the token's, else the first reason, naming the claim. */
export function claimsProblem(machine: MachineIdentity, claims: Record<string, unknown>): string | undefined {
  return claimsProblems(machine, claims)[0];
}
