import pino from 'pino';
import type { LogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';
import { redactUrlCredentials } from './domain/redact';
import { printableLines } from './domain/text';

/**
 * What every string on a log line passes: credentials out of URLs, then the one sanitiser (a log is read in a
 * terminal too; JSON escapes C0 controls but not C1, bidi or line separators). Line breaks stay: stacks have them.
 */
const forLog = (text: string): string => printableLines(redactUrlCredentials(text));

/** Paths whose values must never reach a log line, wherever they appear in a logged object. */
export const REDACT_PATHS = [
  'apiKey',
  '*.apiKey',
  'secret',
  '*.secret',
  '*.secretValue',
  'password',
  '*.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  '*.headers.authorization',
  '*.headers["x-tollgate-signature"]',
  'TEMPORAL_API_KEY',
  '*.TEMPORAL_API_KEY',
  '*.clientCertPair.key',
];

export type Logger = pino.Logger;

/** Past pino's own depth limit (5), below which it prints `[Object]`: nothing printed is left unscrubbed. */
const MAX_SCRUB_DEPTH = 8;

/**
 * Every string in a logged value through `redactUrlCredentials`: URLs reach log lines from everywhere (an error
 * quoting the URL it failed on, a check's reason, a config value), so one pass here covers the ones nobody foresaw.
 * Plain objects and arrays are copied, never changed in place: they may be a caller's state.
 */
function scrub(value: unknown, depth: number, ancestors: Set<object>): unknown {
  if (typeof value === 'string') return forLog(value);
  if (typeof value !== 'object' || value === null || depth > MAX_SCRUB_DEPTH) return value;
  if (value instanceof URL) return forLog(value.href);
  // A copy is not an ancestor of the original, so the serialiser would print the cycle's unscrubbed original.
  if (ancestors.has(value)) return '[Circular]';
  // Only `err` goes through pino's error serialiser; an error under any other key would print as `{}` or its fields.
  if (value instanceof Error) return serializeError(value, depth, ancestors);
  const proto: unknown = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return value;
  ancestors.add(value);
  try {
    if (Array.isArray(value)) return value.map((v: unknown) => scrub(v, depth + 1, ancestors));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrub(v, depth + 1, ancestors)]));
  } finally {
    ancestors.delete(value);
  }
}

/** pino's own serialisation (type, message and stack with their causes, own fields), then scrubbed. */
function serializeError(err: unknown, depth: number, ancestors: Set<object>): unknown {
  const serialized: unknown = pino.stdSerializers.err(err as Error);
  // Its prototype holds the fields pino fills in; a plain copy is what `scrub` walks.
  const plain = typeof serialized === 'object' && serialized !== null ? { ...serialized } : serialized;
  return scrub(plain, depth, ancestors);
}

const scrubFields = (fields: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, k === 'err' ? v : scrub(v, 1, new Set())]));
const scrubValue = (value: unknown): unknown => scrub(value, 1, new Set());

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      // pid: several workers share a task queue; which one did what matters when one dies.
      base: { app: 'tollgate', pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { log: scrubFields },
      // A child's bindings skip the log formatter and pass only serialisers: the keys that name where we connect.
      serializers: {
        err: (err: unknown) => serializeError(err, 1, new Set()),
        url: scrubValue,
        endpoint: scrubValue,
        target: scrubValue,
      },
      hooks: {
        logMethod(args, method) {
          const scrubbed = args.map((a: unknown) => (typeof a === 'string' ? forLog(a) : a));
          // Without a message pino uses the error's own, after this hook and past every serialiser.
          const [first, second] = args as unknown[];
          if (typeof first === 'object' && first !== null && typeof second !== 'string') {
            const err = first instanceof Error ? first : (first as { err?: unknown; msg?: unknown }).err;
            if (err instanceof Error && !('msg' in first)) scrubbed.splice(1, 0, forLog(err.message));
          }
          return method.apply(this, scrubbed as Parameters<typeof method>);
        },
      },
    },
    destination,
  );
}

const PINO_LEVEL: Record<LogLevel, pino.Level> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/** Lets the Temporal Runtime (SDK, workflow and activity loggers) write through pino. */
export class PinoSdkLogger implements SdkLogger {
  constructor(private readonly pinoLogger: Logger) {}

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    this.pinoLogger[PINO_LEVEL[level]](meta ?? {}, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}
