import { z } from 'zod';
import { durationSchema } from './duration';
import { identityKey } from './identity';
import { parseOpenSshKey } from './signatures';
import { personName } from './text';

/**
 * Who may sign, and what must be signed. People sign with the SSH key they already have (git's allowed_signers
 * model); CI pipelines start releases with an OIDC token from their issuer.
 */

/** What a signature can decide: a release's start, and every control. */
export const SIGNABLE = ['start', 'approve', 'promote', 'resume', 'pause', 'abort', 'rollback'] as const;
export type Signable = (typeof SIGNABLE)[number];
/**
 * A person's proof that they made a decision (see src/domain/signatures.ts): the statement's release, run and
 * target as the signer saw them, and the signature. The workflow checks each against its own before the signature.
 */
export const signedSchema = z.strictObject({
  workflowId: z.string().max(512),
  runId: z.string().max(512),
  target: z.string().max(512),
  at: z.string().max(64),
  nonce: z.string().max(64),
  signature: z.string().max(4096),
});
export type Signed = z.infer<typeof signedSchema>;

/**
 * The workflow's patch after which a release refuses every control but abort until its policy (who must sign what)
 * is resolved: releases started before it took controls then. The offline verifier reads it from the history.
 */
export const POLICY_FIRST_PATCH = 'controls-wait-for-policy';

/** A start is signed before Temporal assigns the run: its statement names this run instead, and the version. */
export const START_RUN = 'new';

/** What `minimums.requireSignedApprovals` makes every service sign: each decision that lets a release go further. */
export const SIGNED_APPROVALS: readonly Signable[] = ['start', 'approve', 'promote', 'resume'];

const sshKeyLine = z
  .string()
  .max(4096)
  .superRefine((line, ctx) => {
    const parsed = parseOpenSshKey(line);
    if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.reason });
  });

export const signerSchema = z.strictObject({
  name: personName,
  /** OpenSSH public key lines, as in `~/.ssh/id_ed25519.pub` or git's allowed_signers. */
  keys: z.array(sshKeyLine).min(1, 'a signer needs at least one key').max(10),
});

/** Signers compare as people do: `alice` and `Аlice` (Cyrillic А) are one person, listed once. */
export const signersSchema = z
  .array(signerSchema)
  .max(500)
  .superRefine((signers, ctx) => {
    const seen = new Map<string, string>();
    for (const [i, { name }] of signers.entries()) {
      const earlier = seen.get(identityKey(name));
      if (earlier !== undefined)
        ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `"${name}" is listed already, as "${earlier}"` });
      else seen.set(identityKey(name), name);
    }
  });

const claimValue = z.string().min(1).max(512);
const issuerUrl = z
  .url({ protocol: /^https?$/ })
  .max(512)
  .refine((u) => !u.endsWith('/'), 'without a trailing slash, exactly as the token\'s "iss" claim');

/** A CI pipeline that may start releases, known by its OIDC token's issuer, audience and claims. */
export const machineSchema = z.strictObject({
  name: personName,
  issuer: issuerUrl,
  audience: claimValue,
  /** Every claim listed must match: a string exactly, a list by one of its values (repository, ref, environment…). */
  claims: z
    .record(z.string().min(1).max(64), z.union([claimValue, z.array(claimValue).min(1).max(50)]))
    .refine((c) => Object.keys(c).length <= 20, 'at most 20 claims'),
});
export type Machine = z.infer<typeof machineSchema>;

export const signingSchema = z.strictObject({
  /** What must be signed; a signature is always checked when one is sent, required or not. */
  require: z.array(z.enum(SIGNABLE)).max(SIGNABLE.length).default([]),
  /** How far a signature's timestamp may be from the workflow's clock. */
  maxSkew: durationSchema
    .refine((ms) => ms >= 10_000 && ms <= 3_600_000, 'must be between 10s and 1h')
    .default(5 * 60_000),
});
