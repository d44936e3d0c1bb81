import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';
import type { AlertSignal } from './alerts';
import type { ReleaseStatus } from './status';
import { signedSchema } from './signing-policy';
import { freeText, personName } from './text';

/**
 * Every way a person steers a release. Each is both a signal (so the Temporal UI's "Send signal" and
 * `temporal workflow signal` work) and an update of the same name (which answers with the new status or a rejection).
 */

const reason = freeText(2000).min(1, 'a reason is required');
const comment = freeText(2000).optional();

const signed = signedSchema.optional();

export const approveInputSchema = z.strictObject({ by: personName, comment, signed });
export const abortInputSchema = z.strictObject({ by: personName, reason, signed });
export const pauseInputSchema = z.strictObject({ by: personName, reason, signed });
export const resumeInputSchema = z.strictObject({ by: personName, comment, signed });
export const promoteInputSchema = z.strictObject({ by: personName, reason, signed });
/** While production is watched after the last wave: back to the previous version, now. */
export const rollbackInputSchema = z.strictObject({ by: personName, reason, signed });

export type ApproveInput = z.infer<typeof approveInputSchema>;
export type AbortInput = z.infer<typeof abortInputSchema>;
export type PauseInput = z.infer<typeof pauseInputSchema>;
export type ResumeInput = z.infer<typeof resumeInputSchema>;
export type PromoteInput = z.infer<typeof promoteInputSchema>;
export type RollbackInput = z.infer<typeof rollbackInputSchema>;

export const CONTROL_SCHEMAS = {
  approve: approveInputSchema,
  abort: abortInputSchema,
  pause: pauseInputSchema,
  resume: resumeInputSchema,
  promote: promoteInputSchema,
  rollback: rollbackInputSchema,
} as const;
export type ControlName = keyof typeof CONTROL_SCHEMAS;
export type ControlInput<N extends ControlName> = z.infer<(typeof CONTROL_SCHEMAS)[N]>;

export const statusQuery = defineQuery<ReleaseStatus>('status');

/**
 * Alerts of the release's service, from Alertmanager through `tollgate receiver`. A signal, not an update: the
 * receiver answers Alertmanager once Temporal holds the alert durably, whether or not a worker is up.
 */
export const alertSignal = defineSignal<[AlertSignal]>('alert');

export const approveSignal = defineSignal<[ApproveInput]>('approve');
export const abortSignal = defineSignal<[AbortInput]>('abort');
export const pauseSignal = defineSignal<[PauseInput]>('pause');
export const resumeSignal = defineSignal<[ResumeInput]>('resume');
export const promoteSignal = defineSignal<[PromoteInput]>('promote');
export const rollbackSignal = defineSignal<[RollbackInput]>('rollback');

export const approveUpdate = defineUpdate<ReleaseStatus, [ApproveInput]>('approve');
export const abortUpdate = defineUpdate<ReleaseStatus, [AbortInput]>('abort');
export const pauseUpdate = defineUpdate<ReleaseStatus, [PauseInput]>('pause');
export const resumeUpdate = defineUpdate<ReleaseStatus, [ResumeInput]>('resume');
export const promoteUpdate = defineUpdate<ReleaseStatus, [PromoteInput]>('promote');
export const rollbackUpdate = defineUpdate<ReleaseStatus, [RollbackInput]>('rollback');

/** Every control by name, as a signal and as an update: what the workflow registers and what clients send. */
export const CONTROL_SIGNALS = {
  approve: approveSignal,
  abort: abortSignal,
  pause: pauseSignal,
  resume: resumeSignal,
  promote: promoteSignal,
  rollback: rollbackSignal,
} as const satisfies { [N in ControlName]: unknown };
export const CONTROL_UPDATES = {
  approve: approveUpdate,
  abort: abortUpdate,
  pause: pauseUpdate,
  resume: resumeUpdate,
  promote: promoteUpdate,
  rollback: rollbackUpdate,
} as const satisfies { [N in ControlName]: unknown };
