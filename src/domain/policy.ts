import { z } from 'zod';
import { alertRulesSchema } from './alerts';
import { durationSchema } from './duration';
import {
  commandCallSchema,
  headerNameSchema,
  headerValueSchema,
  httpCallSchema,
  placeholdersIn,
  timeoutSchema,
  WEB_PLACEHOLDERS,
} from './external';
import { JSON_PATH_MAX_LENGTH, jsonPathProblem } from './json-path';
import { metricNamesSchema, type MetricNames } from './metric-names';
import { machineSchema, signersSchema, signingSchema } from './signing-policy';
import { freeText, lowerCaseName, personName, uniquelyNamed } from './text';

/**
 * Policies. The org file says what a traffic cycle is and sets org-wide minimums; each service file sets that
 * service's cycle and pipeline; a release request may carry an override that only tightens. All times are UTC.
 */

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Day = (typeof DAYS)[number];

const timeOfDay = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected a UTC time of day as HH:MM, e.g. "12:00"');
const name = lowerCaseName('name');

/** A daily (or weekday-restricted) window in UTC, e.g. the service's lunchtime peak. */
export const dailyWindowSchema = z
  .strictObject({
    name: name.optional(),
    days: z.array(z.enum(DAYS)).min(1).max(7).optional(),
    start: timeOfDay,
    end: timeOfDay,
  })
  .refine((w) => w.start !== w.end, { message: 'start and end must differ', path: ['end'] });
export type DailyWindow = z.infer<typeof dailyWindowSchema>;

export const freezeSchema = z
  .strictObject({
    from: z.iso.datetime({ offset: true }),
    to: z.iso.datetime({ offset: true }),
    reason: freeText(200).min(1, 'a reason is required'),
  })
  .refine((f) => Date.parse(f.to) > Date.parse(f.from), { message: 'must be after "from"', path: ['to'] });

/**
 * A metrics API of the user's (Argo Rollouts' `web` provider): a URL template, and a JSONPath to the value — one
 * number, or a list of per-interval samples so baseline comparisons work as with Prometheus. Placeholders in `url`
 * and `body` are filled per query (URL-encoded in `url`); header values may name environment variables as `${NAME}`.
 */
const webQuerySchema = z
  .strictObject({
    url: z.string().min(1).max(8192),
    method: z.enum(['GET', 'POST']).default('GET'),
    headers: z.record(headerNameSchema, headerValueSchema).default({}),
    body: z.string().max(65_536).optional(),
    jsonPath: z
      .string()
      .min(1)
      .max(JSON_PATH_MAX_LENGTH)
      .superRefine((path, ctx) => {
        const problem = jsonPathProblem(path);
        if (problem !== undefined)
          ctx.addIssue({ code: 'custom', message: `expected a JSONPath such as $.data.value: ${problem}` });
      }),
    timeout: durationSchema
      .refine((ms) => ms >= 100 && ms <= 60_000, { message: 'expected between 100ms and 1m' })
      .default(10_000),
  })
  .superRefine((web, ctx) => {
    for (const field of ['url', 'body'] as const) {
      const unknown = placeholdersIn(web[field] ?? '').filter(
        (p) => !(WEB_PLACEHOLDERS as readonly string[]).includes(p),
      );
      if (unknown.length > 0) {
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: `unknown placeholder {${unknown[0]}}: expected one of ${WEB_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')}`,
        });
      }
    }
    if (web.body !== undefined && web.method === 'GET') {
      ctx.addIssue({ code: 'custom', path: ['body'], message: 'a GET request has no body: set method: POST' });
    }
  });

/** A check's source when it is not Prometheus: exactly one of them. */
const providerSchema = z
  .strictObject({
    /** An HTTP metrics API. */
    web: webQuerySchema.optional(),
    /** A command whose exit status is the verdict (a synthetic transaction, a load test). */
    job: commandCallSchema.extend({ timeout: timeoutSchema.default(120_000) }).optional(),
  })
  .refine((p) => (p.web === undefined) !== (p.job === undefined), {
    message: 'expected exactly one provider: "web" or "job"',
  });

/**
 * One analysis check: a Prometheus query (a template or your own PromQL) or another provider, judged by an absolute
 * threshold, a comparison with the stable baseline, or both; a job check is judged by its exit status.
 */
export const checkSchema = z
  .strictObject({
    name,
    /** A ready-made query (see the README); `query` replaces it with your own PromQL. */
    template: z.enum(['error-ratio', 'latency-p99', 'request-count']).optional(),
    query: z.string().min(1).max(4000).optional(),
    provider: providerSchema.optional(),
    /** Absolute bounds on the canary's value (e.g. error ratio < 0.01). */
    max: z.number().finite().optional(),
    min: z.number().finite().optional(),
    /** Canary vs the stable population over the same window. */
    baseline: z
      .strictObject({
        direction: z.enum(['increase', 'decrease', 'either']).default('increase'),
        tolerance: z.number().min(0).max(10).default(0.1),
        minSamples: z.number().int().min(1).max(10_000).default(5),
      })
      .optional(),
    /** A known error: one failure rolls back at once. */
    critical: z.boolean().default(false),
  })
  .superRefine((c, ctx) => {
    const prometheus = c.template !== undefined || c.query !== undefined;
    const judged = c.max !== undefined || c.min !== undefined || c.baseline !== undefined;
    if (!prometheus && !c.provider) {
      ctx.addIssue({
        code: 'custom',
        path: ['template'],
        message: 'a check needs a "template", a "query" or a "provider"',
      });
    } else if (prometheus && c.provider) {
      ctx.addIssue({
        code: 'custom',
        path: ['provider'],
        message: '"provider" replaces "template" and "query": a check has one source',
      });
    }
    if (c.provider?.job) {
      if (judged) {
        ctx.addIssue({
          code: 'custom',
          path: [c.max !== undefined ? 'max' : c.min !== undefined ? 'min' : 'baseline'],
          message: 'a job check is judged by its exit status: it takes no "max", "min" or "baseline"',
        });
      }
    } else if (!judged) {
      ctx.addIssue({ code: 'custom', path: ['max'], message: 'a check needs "max", "min" or "baseline" to judge by' });
    }
  });
export type Check = z.infer<typeof checkSchema>;

/**
 * Checks are merged and compared by name (a request adds checks, never replaces one): two of one name in one list
 * would let the merge keep either, and the stricter was the one dropped. Refused where they are written.
 */
const checksSchema = uniquelyNamed(checkSchema, 'check', 50);

/**
 * Checks a release request may add: Prometheus only. A web or job check runs a command or sends the worker's
 * secrets to a URL, so only a policy file (the worker's own) can name one.
 */
const requestChecksSchema = checksSchema.superRefine((checks, ctx) => {
  for (const [i, check] of checks.entries()) {
    if (check.provider) {
      ctx.addIssue({
        code: 'custom',
        path: [i, 'provider'],
        message: 'a release request may add Prometheus checks only: web and job checks belong in the service policy',
      });
    }
  }
});

/** Enough for any service's cycle; a bound, so that no count overflows into something no canary can serve. */
const requestCount = z.number().int().min(0).max(1_000_000_000);

const analysisSchema = z.strictObject({
  interval: durationSchema.default(60_000),
  checks: checksSchema.default([]),
  failureLimit: z.number().int().min(1).max(100).default(3),
  inconclusiveLimit: z.number().int().min(1).max(100).default(3),
});
export type Analysis = z.infer<typeof analysisSchema>;

const waveSchema = z.strictObject({
  percent: z.number().int().min(1).max(100),
  bake: durationSchema.default(0),
  analysis: analysisSchema.optional(),
});

const wavesSchema = z
  .array(waveSchema)
  .min(1)
  .max(20)
  .refine((waves) => waves.every((w, i, all) => i === 0 || w.percent > all[i - 1]!.percent), {
    message: 'wave percentages must increase',
  })
  .refine((waves) => waves.at(-1)?.percent === 100, { message: 'the last wave must reach 100%' });

/**
 * After the last wave the release stays open and keeps analysing production (Argo Rollouts' and Flagger's users ask
 * for it: a release that passed canary can still fail at 100%). Checks with `max`/`min` are the service's absolute
 * SLOs; a check with `baseline` compares production now with the service's own window before the release started,
 * since no stable population is left to compare with. A failure, a rollback alert or `tollgate rollback` rolls
 * production back; the release is `promoted` only once the window passed clean.
 */
const watchSchema = z.strictObject({
  duration: durationSchema.refine((ms) => ms > 0, { message: 'a watch lasts longer than 0s; leave it out for none' }),
  analysis: analysisSchema.prefault({}),
  /** The previous version stays warm, out of rotation, until the window has passed: rolling back is a traffic switch. */
  keepPrevious: z.boolean().default(true),
});
export type Watch = z.output<typeof watchSchema>;

/**
 * Argo Rollouts' `rollbackWindow`: releasing a version this service was recently stable on skips the canary bake
 * (it has had its traffic cycle); staging, the canary deploy, production's gate and waves still run. With both
 * bounds set, both must hold.
 */
const rollbackWindowSchema = z
  .strictObject({
    /** Among the service's last N promoted versions (1: only the one before the current stable one counts). */
    releases: z.number().int().min(1).max(50).optional(),
    /** Stable until at most this long ago (the current stable version always is). */
    within: durationSchema.optional(),
  })
  .refine((w) => w.releases !== undefined || w.within !== undefined, {
    message: 'a rollback window needs "releases", "within" or both',
  });
export type RollbackWindow = z.output<typeof rollbackWindowSchema>;

/**
 * When a hook runs. Those before a stage, and after a deploy, must pass: a failure rolls back whatever deployed
 * (before staging: nothing). Those after promotion or a rollback are recorded, never change the outcome.
 */
export const HOOK_MOMENTS = [
  'before-staging',
  'before-canary',
  'after-deploy',
  'before-production',
  'after-promotion',
  'after-rollback',
] as const;
export type HookMoment = (typeof HOOK_MOMENTS)[number];

/** A user's command or HTTP endpoint, run at one moment of the pipeline (Flagger's webhooks). */
export const hookSchema = z
  .strictObject({
    name,
    at: z.enum(HOOK_MOMENTS),
    /** `after-deploy` only: the tracks whose deploys it follows; all when left out. */
    tracks: z
      .array(z.enum(['staging', 'canary', 'production']))
      .min(1)
      .max(3)
      .optional(),
    exec: commandCallSchema.optional(),
    http: httpCallSchema.optional(),
  })
  .superRefine((h, ctx) => {
    if ((h.exec === undefined) === (h.http === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['exec'], message: 'a hook runs exactly one of "exec" or "http"' });
    }
    if (h.tracks !== undefined && h.at !== 'after-deploy') {
      ctx.addIssue({ code: 'custom', path: ['tracks'], message: 'only an after-deploy hook takes "tracks"' });
    }
  });
export type Hook = z.output<typeof hookSchema>;

const hooksSchema = uniquelyNamed(hookSchema, 'hook', 50);

export const servicePolicySchema = z.strictObject({
  service: name,
  trafficCycle: z.strictObject({
    duration: durationSchema,
    minCanaryRequests: requestCount.default(0),
    peakWindows: z.array(dailyWindowSchema).max(10).default([]),
  }),
  staging: z
    .strictObject({
      smokeChecks: checksSchema.default([]),
      bake: durationSchema.default(0),
    })
    .prefault({}),
  canary: z
    .strictObject({
      poolSize: z.number().int().min(1).max(1000).default(1),
      approval: z.boolean().default(false),
      analysis: analysisSchema.prefault({}),
    })
    .prefault({}),
  production: z
    .strictObject({
      approval: z.boolean().default(true),
      waves: wavesSchema.default([{ percent: 100, bake: 0 }]),
      watch: watchSchema.optional(),
      rollbackWindow: rollbackWindowSchema.optional(),
    })
    .prefault({}),
  approvals: z
    .strictObject({
      fourEyes: z.boolean().default(false),
      /** When set, only these people may approve or promote. */
      approvers: z.array(personName).max(200).optional(),
      /** People who may sign controls, with their public keys; the org's signers are added to them. */
      signers: signersSchema.default([]),
      /** CI pipelines that may start a release with an OIDC token. */
      machines: uniquelyNamed(machineSchema, 'machine', 50).default([]),
      signing: signingSchema.prefault({}),
    })
    .prefault({}),
  windows: z
    .strictObject({
      /** Production steps start only inside one of these; none means any time. */
      allowed: z.array(dailyWindowSchema).max(20).default([]),
      freezes: z.array(freezeSchema).max(50).default([]),
    })
    .prefault({}),
  /** In the service file only: a release request can never add a command or a URL to run. */
  hooks: hooksSchema.default([]),
  /** The team's own alerts (through Alertmanager and `tollgate receiver`) that are known errors for this service. */
  alerts: z.strictObject({ rules: alertRulesSchema.default([]) }).prefault({}),
});
export type ServicePolicyInput = z.input<typeof servicePolicySchema>;
export type ServicePolicy = z.output<typeof servicePolicySchema>;

export const orgPolicySchema = z.strictObject({
  /** What a traffic cycle must be, whatever the service. */
  trafficCycle: z
    .strictObject({
      minDuration: durationSchema.default(0),
      minCanaryRequests: requestCount.default(0),
      requirePeakWindow: z.boolean().default(false),
    })
    .prefault({}),
  minimums: z
    .strictObject({
      analysisChecks: z.number().int().min(0).default(1),
      maxAnalysisInterval: durationSchema.default(15 * 60_000),
      maxFailureLimit: z.number().int().min(1).default(10),
      maxInconclusiveLimit: z.number().int().min(1).default(10),
      productionApproval: z.boolean().default(true),
      fourEyes: z.boolean().default(false),
      /** Every service's `severity="critical"` canary alerts roll its release back, whatever its own rules say. */
      criticalCanaryAlertsRollBack: z.boolean().default(false),
      /** Every service watches production for at least this long after its last wave (0: no watch required). */
      productionWatch: durationSchema.default(0),
      /** Every service signs each decision that lets a release go further: start, approve, promote and resume. */
      requireSignedApprovals: z.boolean().default(false),
    })
    .prefault({}),
  /** People who may sign controls for every service, with their keys: the org's directory of approvers. */
  signers: signersSchema.default([]),
  /** The metric and label names the check templates query, for every service. */
  metrics: metricNamesSchema.prefault({}),
});
export type OrgPolicy = z.output<typeof orgPolicySchema>;

/** What a request may carry: any part of a service policy, merged over the service file, tightening only. */
export const policyOverrideSchema = z.strictObject({
  trafficCycle: z
    .strictObject({
      duration: durationSchema.optional(),
      minCanaryRequests: requestCount.optional(),
      peakWindows: z.array(dailyWindowSchema).max(10).optional(),
    })
    .optional(),
  staging: z.strictObject({ smokeChecks: requestChecksSchema.optional(), bake: durationSchema.optional() }).optional(),
  canary: z
    .strictObject({
      poolSize: z.number().int().min(1).max(1000).optional(),
      approval: z.boolean().optional(),
      analysis: z
        .strictObject({
          interval: durationSchema.optional(),
          checks: requestChecksSchema.optional(),
          failureLimit: z.number().int().min(1).max(100).optional(),
          inconclusiveLimit: z.number().int().min(1).max(100).optional(),
        })
        .optional(),
    })
    .optional(),
  production: z.strictObject({ approval: z.boolean().optional(), waves: wavesSchema.optional() }).optional(),
  approvals: z.strictObject({ fourEyes: z.boolean().optional() }).optional(),
});
export type PolicyOverride = z.output<typeof policyOverrideSchema>;
export type PolicyOverrideInput = z.input<typeof policyOverrideSchema>;

/** The effective policy of one release: in its history (computed by an activity) and in `status`. */
export interface ResolvedPolicy extends ServicePolicy {
  /**
   * The org's metric names, which this release's template checks query. Absent from policies resolved before the
   * org policy had them: those releases query the defaults, as they did.
   */
  metrics?: MetricNames;
  sources: { org: string; service: string; override: boolean };
}
