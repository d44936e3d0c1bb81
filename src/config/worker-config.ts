import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { connectionEnvSchema, envDuration, logLevelSchema, parseEnv } from './env';

/** `TOLLGATE_TARGETS_FILE=dry-run`: the explicit choice of a target that deploys nothing (see the schema). */
export const DRY_RUN_TARGETS = 'dry-run';

const workerEnvFields = connectionEnvSchema.and(
  z.object({
    TOLLGATE_LOG_LEVEL: logLevelSchema,
    /** Where the SDK's Prometheus metrics are served; `off` disables them. */
    TOLLGATE_METRICS_ADDRESS: z
      .string()
      .regex(/^(off|[A-Za-z0-9.\-_[\]:]+:\d{1,5})$/, 'expected host:port or "off"')
      .default('127.0.0.1:9464'),
    TOLLGATE_SHUTDOWN_GRACE: envDuration.default(30_000),
    /** Each baking release holds one long, mostly idle analysis activity: the SDK's default of 100 is too few. */
    TOLLGATE_MAX_ACTIVITIES: z.coerce.number().int().min(1).max(100_000).default(2_000),
    /**
     * Releases kept in the worker's workflow cache. A cached release costs memory (≈0.75 MiB with zod preloaded,
     * ≈2 MiB without: see PRELOAD_MODULES in src/worker.ts), an evicted one a replay of its history when it next
     * wakes. The SDK's default, sized from the V8 heap limit (2,310 with a 4 GiB heap), lets a worker pass 1 GiB.
     */
    TOLLGATE_MAX_CACHED_WORKFLOWS: z.coerce
      .number()
      .int('expected a whole number of workflows')
      .min(40, 'must be at least 40 (the worker runs up to 40 workflow tasks at once)')
      .max(100_000)
      .default(1_000),
    /**
     * How often at most an activity's heartbeat reaches the server (the SDK's throttle, capped at 80% of each
     * activity's heartbeat timeout). With TOLLGATE_ANALYSIS_HEARTBEAT=round it also caps how often rounds reach
     * `status`: the demo, analysing every 10 s, sets 10s so that `tollgate watch` follows each round.
     */
    TOLLGATE_MAX_HEARTBEAT_THROTTLE: envDuration.default(60_000),
    /**
     * How often a running analysis stretch heartbeats, in milliseconds between heartbeats that show a new round: each
     * is a billable action, and `status` sees a stretch's rounds only through them (or at its report). `liveness`
     * (Infinity): only what the heartbeat timeout needs, one per 80% of it; `round` (0): every round, as the demo
     * watches; or a duration in between. Measured side by side in BENCHMARKS.md §5.
     */
    TOLLGATE_ANALYSIS_HEARTBEAT: z
      .union(
        [
          z.literal('liveness').transform(() => Number.POSITIVE_INFINITY),
          z.literal('round').transform(() => 0),
          envDuration,
        ],
        {
          error: 'expected liveness, round or a duration such as 2m',
        },
      )
      .default(Number.POSITIVE_INFINITY),
    TOLLGATE_POLICY_DIR: z.string().min(1).default('policies'),
    /**
     * YAML file mapping services to deployment targets, or `dry-run` to send every service to the dry-run target,
     * which deploys nothing (each worker keeping its own stable versions; a targets file with `kind: dry-run` and a
     * `stateDir` shares them). Required in production, where a release that promotes having deployed nothing must be
     * chosen, never fallen into; elsewhere, leaving it out means dry-run.
     */
    TOLLGATE_TARGETS_FILE: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()),
    /** YAML file of webhooks for release events (see README); secrets are named by env var, never written in it. */
    TOLLGATE_NOTIFY_FILE: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()),
    /**
     * Where hooks' and job checks' running commands are recorded, so a retry after a SIGKILLed worker first kills
     * what the dead attempt left running. Shared by the workers of one machine; a temporary directory by default.
     */
    TOLLGATE_RUNNING_DIR: z.string().min(1).default(join(tmpdir(), 'tollgate-running')),
    TOLLGATE_METRICS: z.enum(['prometheus', 'none']).default('prometheus'),
    TOLLGATE_PROMETHEUS_URL: z.url({ protocol: /^https?$/ }).default('http://127.0.0.1:9090'),
    TOLLGATE_METRICS_TIMEOUT: envDuration.default(5_000),
    /** Prebuilt workflow bundle; without it the worker bundles at start, which only development allows. */
    TOLLGATE_WORKFLOW_BUNDLE: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()),
    NODE_ENV: z.enum(['production', 'development', 'test']).default('development'),
  }),
);

const workerEnvSchema = workerEnvFields.superRefine((env, ctx) => {
  if (env.NODE_ENV === 'production' && env.TOLLGATE_TARGETS_FILE === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['TOLLGATE_TARGETS_FILE'],
      message: `required in production: a targets file, or "${DRY_RUN_TARGETS}" to deploy nothing on purpose`,
    });
  }
});

export type WorkerConfig = z.infer<typeof workerEnvSchema>;

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  return parseEnv(workerEnvSchema, env);
}
