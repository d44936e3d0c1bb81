import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { hasUnsafeCharacters } from '../domain/text';
import {
  blankToUndefined,
  ConfigError,
  connectionEnvSchema,
  envDuration,
  logLevelSchema,
  optional,
  parseEnv,
} from './env';

/** How Alertmanager proves it is Alertmanager: the `http_config` of its webhook receiver sends one or the other. */
export type ReceiverAuth =
  { scheme: 'bearer'; token: string } | { scheme: 'basic'; username: string; password: string };

// A short secret is one anybody on the network can guess, and a guessed one rolls canaries back at will.
const SECRET_MIN = 16;
const secret = z
  .string()
  .min(SECRET_MIN, `at least ${SECRET_MIN} characters`)
  .max(4096)
  .refine((s) => !/\s/.test(s) && !hasUnsafeCharacters(s), 'must not contain spaces or control characters');
const username = z
  .string()
  .max(256)
  .refine((s) => !s.includes(':'), 'must not contain ":" (basic auth joins user and password with it)')
  .refine((s) => !hasUnsafeCharacters(s), 'must not contain control characters');
const listenAddress = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:9095')
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65_535, 'port must be at most 65535');
const signalTimeout = envDuration.refine((ms) => ms >= 100 && ms <= 60_000, 'between 100ms and 60s');

const receiverEnvSchema = connectionEnvSchema.and(
  z.object({
    TOLLGATE_RECEIVER_ADDRESS: z.preprocess(blankToUndefined, listenAddress.default('127.0.0.1:9095')),
    TOLLGATE_RECEIVER_TOKEN: optional(secret),
    TOLLGATE_RECEIVER_TOKEN_FILE: optional(z.string()),
    TOLLGATE_RECEIVER_USERNAME: optional(username),
    TOLLGATE_RECEIVER_PASSWORD: optional(secret),
    TOLLGATE_RECEIVER_PASSWORD_FILE: optional(z.string()),
    /** How long one signal may wait on Temporal before the webhook call is answered 503 (Alertmanager retries). */
    TOLLGATE_RECEIVER_SIGNAL_TIMEOUT: z.preprocess(blankToUndefined, signalTimeout.default(5_000)),
    TOLLGATE_POLICY_DIR: z.preprocess(blankToUndefined, z.string().default('policies')),
    TOLLGATE_LOG_LEVEL: z.preprocess(blankToUndefined, logLevelSchema),
  }),
);

type ReceiverEnv = z.infer<typeof receiverEnvSchema>;

export type ReceiverConfig = Readonly<
  Omit<
    ReceiverEnv,
    | 'TOLLGATE_RECEIVER_TOKEN'
    | 'TOLLGATE_RECEIVER_TOKEN_FILE'
    | 'TOLLGATE_RECEIVER_USERNAME'
    | 'TOLLGATE_RECEIVER_PASSWORD'
    | 'TOLLGATE_RECEIVER_PASSWORD_FILE'
  > & { auth: Readonly<ReceiverAuth>; host: string; port: number }
>;

const invalid = (variable: string, message: string) =>
  new ConfigError(`invalid configuration: ${variable}: ${message}`);

/** A secret given directly or as a file (a mounted Kubernetes or systemd secret); never both. */
function secretOf(env: ReceiverEnv, variable: 'TOLLGATE_RECEIVER_TOKEN' | 'TOLLGATE_RECEIVER_PASSWORD') {
  const direct = env[variable];
  const file = env[`${variable}_FILE`];
  if (direct !== undefined && file !== undefined) {
    throw invalid(`${variable}_FILE`, `set either ${variable} or ${variable}_FILE, not both`);
  }
  if (file === undefined) return direct;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw invalid(`${variable}_FILE`, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  // Files written by `echo` or an editor end with a line break that is no part of the secret.
  const parsed = secret.safeParse(text.replace(/\r?\n$/, ''));
  if (!parsed.success) throw invalid(`${variable}_FILE`, `${file}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

function authOf(env: ReceiverEnv): ReceiverAuth {
  const token = secretOf(env, 'TOLLGATE_RECEIVER_TOKEN');
  const password = secretOf(env, 'TOLLGATE_RECEIVER_PASSWORD');
  const user = env.TOLLGATE_RECEIVER_USERNAME;
  const basic = user !== undefined || password !== undefined;
  if (token !== undefined && basic) {
    throw invalid('TOLLGATE_RECEIVER_TOKEN', 'set a token or a username and password, not both');
  }
  if (token !== undefined) return { scheme: 'bearer', token };
  if (user === undefined && password === undefined) {
    throw invalid(
      'TOLLGATE_RECEIVER_TOKEN',
      'required: the receiver never runs open; set TOLLGATE_RECEIVER_TOKEN (or _FILE), or ' +
        'TOLLGATE_RECEIVER_USERNAME and TOLLGATE_RECEIVER_PASSWORD (or _FILE)',
    );
  }
  if (user === undefined) throw invalid('TOLLGATE_RECEIVER_USERNAME', 'required with TOLLGATE_RECEIVER_PASSWORD');
  if (password === undefined) throw invalid('TOLLGATE_RECEIVER_PASSWORD', 'required with TOLLGATE_RECEIVER_USERNAME');
  return { scheme: 'basic', username: user, password };
}

/** The receiver's environment, parsed once at start: every problem names its variable, and secrets are never shown. */
export function loadReceiverConfig(env: NodeJS.ProcessEnv = process.env): ReceiverConfig {
  const parsed = parseEnv(receiverEnvSchema, env);
  const auth = Object.freeze(authOf(parsed));
  const {
    TOLLGATE_RECEIVER_TOKEN: _t,
    TOLLGATE_RECEIVER_TOKEN_FILE: _tf,
    TOLLGATE_RECEIVER_USERNAME: _u,
    TOLLGATE_RECEIVER_PASSWORD: _p,
    TOLLGATE_RECEIVER_PASSWORD_FILE: _pf,
    ...rest
  } = parsed;
  const address = rest.TOLLGATE_RECEIVER_ADDRESS;
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return Object.freeze({ ...rest, auth, host, port: Number(address.slice(colon + 1)) });
}
