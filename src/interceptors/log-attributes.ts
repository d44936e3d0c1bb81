import type { ActivityInterceptorsFactory } from '@temporalio/worker';

const RELEASE_FIELDS = ['releaseId', 'service', 'version', 'stage', 'track'] as const;
type ReleaseFields = Partial<Record<(typeof RELEASE_FIELDS)[number], string>>;

/**
 * The release an activity works for, read from its input: a `{ context }` (analysis, smoke checks), a deploy step
 * (its track is its stage), or anything naming a service (policy, notification, stable version).
 */
export function releaseFieldsOf(arg: unknown): ReleaseFields {
  if (typeof arg !== 'object' || arg === null) return typeof arg === 'string' ? { service: arg } : {};
  const source = 'context' in arg && typeof arg.context === 'object' && arg.context !== null ? arg.context : arg;
  const fields: ReleaseFields = {};
  for (const key of RELEASE_FIELDS) {
    const value = (source as Record<string, unknown>)[key];
    if (typeof value === 'string') fields[key] = value;
  }
  if (!fields.stage && fields.track) fields.stage = fields.track;
  return fields;
}

/**
 * Every line the SDK logs about an activity — "Activity failed" while a deploy is retried, above all — carries the
 * release's service, version, stage and track, as the activities' own lines do.
 */
export const releaseLogAttributes: ActivityInterceptorsFactory = () => {
  let fields: ReleaseFields = {};
  return {
    inbound: {
      execute: (input, next) => {
        fields = releaseFieldsOf(input.args[0]);
        return next(input);
      },
    },
    outbound: { getLogAttributes: (attributes, next) => next({ ...attributes, ...fields }) },
  };
};
