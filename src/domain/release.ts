import { z } from 'zod';
import { policyOverrideSchema } from './policy';
import { MAX_IDENTITY_TOKEN_CHARS } from './identity-token';
import { signedSchema } from './signing-policy';
import { freeText, lowerCaseName, personName } from './text';

/** Service names become workflow IDs (`release-<service>`), search attributes and file names. */
export const serviceNameSchema = lowerCaseName('service name');

export const versionSchema = z
  .string()
  .regex(
    /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/,
    'expected a version such as 1.4.2 or 2026.11.27-abc123 (at most 64 characters)',
  );

/** Every field has a bound, but 50 checks × 4000-character queries per stage and wave still add up to megabytes. */
export const MAX_REQUEST_CHARS = 256 * 1024;

export const releaseRequestSchema = z
  .strictObject({
    service: serviceNameSchema,
    version: versionSchema,
    initiator: personName,
    reason: freeText(2000).optional(),
    policy: policyOverrideSchema.optional(),
    /** The initiator's signature over this start (workflow, run `new`, action start, target the version). */
    signed: signedSchema.optional(),
    /** A CI pipeline's OIDC ID token, checked against the issuers the service's policy lists as machines. */
    identityToken: z.string().min(1).max(MAX_IDENTITY_TOKEN_CHARS).optional(),
  })
  .superRefine((request, ctx) => {
    // Refused here, with a field to blame, rather than by Temporal's payload limit (2 MiB) with a gRPC error.
    const size = JSON.stringify(request).length;
    if (size > MAX_REQUEST_CHARS) {
      ctx.addIssue({
        code: 'custom',
        path: ['policy'],
        message: `the request is too large: ${size} characters serialised, at most ${MAX_REQUEST_CHARS}`,
      });
    }
  });
export type ReleaseRequest = z.output<typeof releaseRequestSchema>;
export type ReleaseRequestInput = z.input<typeof releaseRequestSchema>;

export const releaseWorkflowId = (service: string) => `release-${service}`;

export const STAGES = ['staging', 'canary', 'production', 'done'] as const;
export type Stage = (typeof STAGES)[number];
/** The track a log line or metric belongs to: canary traffic is labelled apart from production's. */
export type Track = 'staging' | 'canary' | 'production';

/**
 * `rolled_back_after_promotion`: every wave was out, and the watch after them (a breach, an alert, `tollgate rollback`
 * or an abort) took production back to the previous version.
 */
export type Outcome = 'promoted' | 'rolled_back' | 'rolled_back_after_promotion' | 'aborted';

export interface ReleaseResult {
  outcome: Outcome;
  service: string;
  version: string;
  /** The version serving when the release ended: the new one when promoted, the previous one otherwise. */
  stableVersion: string | undefined;
  /** The stage the release reached (where it failed or was aborted, or `done`). */
  stage: Stage;
  reason: string;
  startedAt: string;
  endedAt: string;
  /** The release ran on the dry-run target: nothing was deployed, whatever the outcome says. */
  dryRun?: true;
}
