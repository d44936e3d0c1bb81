import { sameIdentity } from './identity';
import { CONTROL_SCHEMAS, type ControlInput, type ControlName } from './messages';
import type { Stage } from './release';
import { verifySignedControl, type Signer } from './signatures';
import type { Signable, Signed } from './signing-policy';
import { describeZodError } from './zod-errors';
import type { GateName, ReleaseState } from './status';

/** What a signature is checked against: the workflow's own view of the release, never the sender's. */
export interface SigningView {
  workflowId: string;
  runId: string;
  now: number;
  require: readonly Signable[];
  signers: readonly Signer[];
  maxSkewMs: number;
  /** Nonces of signatures accepted within the skew window: each signature is good once. */
  seenNonces: ReadonlySet<string>;
}

/** What the decision on a human message depends on. */
export interface ControlView {
  state: ReleaseState;
  stage: Stage;
  gate: GateName | undefined;
  /** Paused by a person. A gate is not a pause: lifting one never lifts the other. */
  paused: boolean;
  baking: boolean;
  /** Production is watched after the last wave: the only time `rollback` applies. */
  watching: boolean;
  /** Who started the release: the verified identity when the start was proven. */
  initiator: string;
  fourEyes: boolean;
  approvers: string[] | undefined;
  signing?: SigningView;
  /**
   * The policy is still being resolved: who must sign is not known yet, so only abort (which deploys nothing this
   * early) is accepted.
   */
  resolving?: boolean;
}

/** A signature that verified: who signed, with which key, and the nonce it spent. */
export interface Proof {
  fingerprint: string;
  nonce: string;
  at: string;
}

export type Decision<N extends ControlName> =
  { ok: true; input: ControlInput<N>; actor: string; proof?: Proof } | { ok: false; reason: string };

/**
 * The gate or stage a control applies to, as its statement names it: approve names the gate awaiting approval,
 * promote the bake it cuts short (the watch has its own name), anything else the stage.
 */
export function controlTarget(name: ControlName, view: Pick<ControlView, 'gate' | 'stage' | 'watching'>): string {
  if (name === 'approve') return view.gate ?? 'none';
  if (name === 'promote' && view.watching) return 'watch';
  return view.stage;
}

function authority(by: string, view: ControlView, action: string): string | undefined {
  if (view.fourEyes && sameIdentity(by, view.initiator)) {
    return `four-eyes: ${by} started this release and cannot ${action} it; ask someone else`;
  }
  if (view.approvers && !view.approvers.some((a) => sameIdentity(a, by))) {
    const listed = view.approvers.slice(0, 10).join(', ') + (view.approvers.length > 10 ? ', …' : '');
    return `${by} is not an approver for this service (approvers: ${listed})`;
  }
  return undefined;
}

/** Each of the statement's fields against the workflow's own, so the refusal says which one is another's. */
export function proofProblem(
  action: Signable,
  by: string,
  signed: Signed | undefined,
  expected: { workflowId: string; runId: string; target: string },
  signing: SigningView,
): { reason: string } | { identity: string; proof: Proof } | undefined {
  if (!signed) {
    return signing.require.includes(action)
      ? { reason: `${action} must be signed for this service (tollgate ${action} --sign-key …)` }
      : undefined;
  }
  if (signed.workflowId !== expected.workflowId)
    return { reason: `signed for another release (${signed.workflowId.slice(0, 80)}), not ${expected.workflowId}` };
  if (signed.runId !== expected.runId)
    return { reason: `signed for another run of this release (${signed.runId.slice(0, 80)}), not ${expected.runId}` };
  if (signed.target !== expected.target)
    return { reason: `signed for ${signed.target.slice(0, 80)}, but this ${action} applies to ${expected.target}` };
  const verdict = verifySignedControl(
    { ...signed, ...expected, action, by },
    { signers: signing.signers, now: signing.now, maxSkewMs: signing.maxSkewMs, seenNonces: signing.seenNonces },
  );
  if (!verdict.ok) return { reason: `${action} refused: ${verdict.reason}` };
  return {
    identity: verdict.identity,
    proof: { fingerprint: verdict.fingerprint, nonce: signed.nonce, at: signed.at },
  };
}

/**
 * Whether a message is accepted, and as whose. Update validators throw the reason (nothing is written to history);
 * signals record it as a rejected entry in the audit trail. Either way nothing changes. A signed message acts as the
 * signer the policy lists (four-eyes and approvers compare that identity); a signature sent is always checked.
 */
export function decideControl<N extends ControlName>(name: N, payload: unknown, view: ControlView): Decision<N> {
  const parsed = CONTROL_SCHEMAS[name].safeParse(payload);
  if (!parsed.success) return { ok: false, reason: `invalid ${name}: ${describeZodError(parsed.error)}` };
  const input = parsed.data as ControlInput<N>;
  if (view.state === 'done') return { ok: false, reason: `the release has ended; nothing to ${name}` };
  if (view.state === 'rolling-back') return { ok: false, reason: `the release is rolling back; nothing to ${name}` };
  if (view.resolving && name !== 'abort')
    return { ok: false, reason: `the release's policy is still being resolved; nothing to ${name} yet` };
  let actor = input.by;
  let proof: Proof | undefined;
  if (view.signing) {
    const { workflowId, runId } = view.signing;
    const checked = proofProblem(
      name,
      input.by,
      input.signed,
      { workflowId, runId, target: controlTarget(name, view) },
      view.signing,
    );
    if (checked && 'reason' in checked) return { ok: false, reason: checked.reason };
    if (checked) ({ identity: actor, proof } = checked);
  } else if (input.signed) {
    return { ok: false, reason: `${name} refused: this release lists no signers, so no signature can be checked` };
  }
  const reason = stateRejection(name, actor, view);
  if (reason) return { ok: false, reason };
  return { ok: true, input, actor, ...(proof && { proof }) };
}

/** Why a message must be refused, or undefined to accept it. */
export function rejectionFor(name: ControlName, input: unknown, view: ControlView): string | undefined {
  const decision = decideControl(name, input, view);
  return decision.ok ? undefined : decision.reason;
}

function stateRejection(name: ControlName, by: string, view: ControlView): string | undefined {
  switch (name) {
    case 'approve':
      if (!view.gate) return 'nothing is awaiting approval';
      return authority(by, view, 'approve');
    case 'promote':
      if (!view.baking) return 'nothing is baking; promote skips the rest of a bake';
      if (view.paused) return 'the release is paused; resume it before promoting';
      if (view.gate === 'inconclusive') return 'analysis is inconclusive; approve to carry on baking, or abort';
      return authority(by, view, 'promote');
    case 'pause':
      return view.paused ? 'the release is already paused' : undefined;
    case 'resume':
      return view.paused ? undefined : 'the release is not paused';
    case 'abort':
      return undefined;
    case 'rollback':
      // Going back is never a decision that needs authority: like abort, anyone who may reach the release may.
      return view.watching
        ? undefined
        : 'rollback applies while production is watched after the last wave; before that, abort rolls back';
  }
}
