import { z } from 'zod';
import { durationSchema } from './duration';

/**
 * The two ways Tollgate hands work to a user's own tooling — an executable it runs, or an HTTP endpoint it calls —
 * shared by command and HTTP targets, stage hooks and job checks. Written in worker-side files only (targets file,
 * policies); a release request can never name one.
 */

/** An environment variable of the worker, by name: how secrets reach a call without being written in a file. */
export const envNameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'expected an environment variable name, e.g. DEPLOY_TOKEN');

/** Exit status meaning "not now, try again": EX_TEMPFAIL from sysexits.h. */
export const EXIT_TRY_AGAIN = 75;

/** The longest any one external call may run: under the 10-minute start-to-close timeout of the activities. */
export const EXTERNAL_TIMEOUT_MAX_MS = 9 * 60_000;

export const timeoutSchema = durationSchema.refine((ms) => ms >= 1000 && ms <= EXTERNAL_TIMEOUT_MAX_MS, {
  message: `expected between 1s and ${EXTERNAL_TIMEOUT_MAX_MS / 60_000}m`,
});

/** An executable and its arguments, run directly: never through a shell, unless the user names one. */
export const commandCallSchema = z.strictObject({
  command: z
    .array(
      z
        .string()
        .min(1)
        .max(4096)
        .refine((s) => !s.includes('\0'), 'must not contain NUL'),
    )
    .min(1, 'expected the executable and its arguments, e.g. ["./deploy.sh", "--env", "prod"]')
    .max(100),
  /** The working directory; the worker's own when left out. */
  cwd: z.string().min(1).max(4096).optional(),
  /** The worker's environment variables the command may see, besides PATH, HOME, LANG and TZ. */
  env: z.array(envNameSchema).max(100).default([]),
  timeout: timeoutSchema.default(5 * 60_000),
});
export type CommandCall = z.output<typeof commandCallSchema>;
export type CommandCallInput = z.input<typeof commandCallSchema>;

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** HTTPS, or plain HTTP to this machine only: a signed request or a bearer token never crosses a network in clear. */
export const callUrlSchema = z
  .url({ protocol: /^https?$/, error: 'expected an https URL' })
  // zod runs these even when the URL check above failed: they must not throw on what is not a URL.
  .refine((u) => {
    const url = URL.canParse(u) ? new URL(u) : undefined;
    return url === undefined || url.protocol === 'https:' || LOOPBACK_HOSTS.has(url.hostname);
  }, 'expected an https URL (plain http only to 127.0.0.1, localhost or [::1])')
  .refine((u) => {
    const url = URL.canParse(u) ? new URL(u) : undefined;
    return url === undefined || (url.username === '' && url.password === '');
  }, 'credentials do not belong in the URL: put them in "headers", from environment variables');

/**
 * Header values may name worker environment variables as `${NAME}` (e.g. `Bearer ${DEPLOY_TOKEN}`); only there, so
 * a secret never becomes part of a URL that is logged.
 */
export const headerValueSchema = z
  .string()
  .max(8192)
  .refine((v) => !/[\r\n\0]/.test(v), 'must not contain line breaks or NUL');

export const headerNameSchema = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$/, 'expected an HTTP header name');

/** An HTTP endpoint: signed like the notifications when `secretEnv` is set. */
export const httpCallSchema = z.strictObject({
  url: callUrlSchema,
  /** The worker environment variable holding the HMAC key (see the README: X-Tollgate-Signature). */
  secretEnv: envNameSchema.optional(),
  headers: z.record(headerNameSchema, headerValueSchema).default({}),
  /** Per request, connect to last byte of the answer. */
  timeout: timeoutSchema.default(30_000),
});
export type HttpCall = z.output<typeof httpCallSchema>;
export type HttpCallInput = z.input<typeof httpCallSchema>;

/** The `${NAME}` references in a header value. */
export const envReferences = (value: string): string[] =>
  [...value.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]!);

/** What a web check's `url` and `body` templates may say, each filled per query. */
export const WEB_PLACEHOLDERS = [
  'service',
  'version',
  'stableVersion',
  'track',
  /** The window queried: Unix seconds, RFC 3339, and its length and step in seconds. */
  'start',
  'end',
  'startIso',
  'endIso',
  'window',
  'step',
] as const;
export type WebPlaceholder = (typeof WEB_PLACEHOLDERS)[number];

/** The `{name}` placeholders in a template. */
export const placeholdersIn = (template: string): string[] =>
  [...template.matchAll(/\{([A-Za-z]+)\}/g)].map((m) => m[1]!);
