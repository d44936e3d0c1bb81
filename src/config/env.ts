import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { redactUrlCredentials } from '../domain/redact';

/**
 * Raised for configuration that can never work; entry points print its one-line message and exit 2. Thrown from an
 * activity (a service no target is configured for), it fails the step at once: a retry meets the same configuration.
 */
export class ConfigError extends ApplicationFailure {
  override readonly name = 'ConfigError';
  constructor(message: string) {
    super(message, 'ConfigError', true);
  }
}

const hostPort = z.string().regex(/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:7233');
const nonEmpty = z.string().trim().min(1, 'must not be empty');
/** An empty variable is one left unset: `FOO=` in a unit file or compose file means "the default". */
export const blankToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
export const optional = <T extends z.ZodTypeAny>(schema: T) => z.preprocess(blankToUndefined, schema.optional());

/** A duration in a variable, in ms: `500ms`, `30s` or `2m`. */
export const envDuration = z
  .string()
  .regex(/^\d+(ms|s|m)$/, 'expected a duration such as 30s, 500ms or 2m')
  .transform((v) => {
    const n = Number.parseInt(v, 10);
    return v.endsWith('ms') ? n : v.endsWith('m') ? n * 60_000 : n * 1000;
  });

export const logLevelSchema = z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info');

/** Connection settings shared by the worker and every client (CLI, TollgateClient). */
export const connectionEnvSchema = z
  .object({
    TEMPORAL_ADDRESS: z.preprocess(blankToUndefined, hostPort.default('127.0.0.1:7233')),
    TEMPORAL_NAMESPACE: z.preprocess(blankToUndefined, nonEmpty.default('default')),
    TOLLGATE_TASK_QUEUE: z.preprocess(blankToUndefined, nonEmpty.default('tollgate-releases')),
    TEMPORAL_TLS_CERT_PATH: optional(nonEmpty),
    TEMPORAL_TLS_KEY_PATH: optional(nonEmpty),
    TEMPORAL_TLS_CA_PATH: optional(nonEmpty),
    TEMPORAL_TLS_SERVER_NAME: optional(nonEmpty),
    TEMPORAL_TLS: optional(z.enum(['true', 'false'])),
    /** Sent as an HTTP header: a key pasted with a line break or a stray character would be echoed by gRPC's refusal. */
    TEMPORAL_API_KEY: z.preprocess(
      (v) => (typeof v === 'string' ? v.trim() || undefined : v),
      z
        .string()
        .regex(/^[\x21-\x7e]+$/, 'must be one line of printable ASCII (no spaces, tabs, line breaks or accents)')
        .optional(),
    ),
  })
  .superRefine((env, ctx) => {
    if (Boolean(env.TEMPORAL_TLS_CERT_PATH) !== Boolean(env.TEMPORAL_TLS_KEY_PATH)) {
      const missing = env.TEMPORAL_TLS_CERT_PATH ? 'TEMPORAL_TLS_KEY_PATH' : 'TEMPORAL_TLS_CERT_PATH';
      ctx.addIssue({
        code: 'custom',
        path: [missing],
        message: 'mTLS needs both TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH',
      });
    }
  });

export type ConnectionEnv = z.infer<typeof connectionEnvSchema>;

/** Parses with `schema` and turns the first problem into one line that names the variable. */
export function parseEnv<T extends z.ZodTypeAny>(schema: T, env: NodeJS.ProcessEnv): z.infer<T> {
  const result = schema.safeParse(env);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = issue?.path.join('.') || 'environment';
    const value =
      issue && typeof env[name] === 'string' ? ` (got ${JSON.stringify(redactValue(name, env[name]))})` : '';
    throw new ConfigError(`invalid configuration: ${name}: ${issue?.message ?? 'invalid'}${value}`);
  }
  return Object.freeze(result.data) as z.infer<T>;
}

function redactValue(name: string, value: string | undefined): string | undefined {
  if (/KEY|SECRET|TOKEN|PASSWORD/.test(name)) return '[redacted]';
  return value === undefined ? undefined : redactUrlCredentials(value);
}
