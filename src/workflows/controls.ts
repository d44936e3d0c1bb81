import type { CancellationScope } from '@temporalio/workflow';
import { log, setHandler, workflowInfo, type SignalDefinition } from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import { decideControl, type ControlView, type Decision, type SigningView } from '../domain/controls';
import {
  CONTROL_SCHEMAS,
  CONTROL_SIGNALS,
  CONTROL_UPDATES,
  statusQuery,
  type ControlInput,
  type ControlName,
} from '../domain/messages';
import type { ResolvedPolicy } from '../domain/policy';
import type { GateName, ReleaseState, ReleaseStatus } from '../domain/status';
import { printable } from '../domain/text';
import type { ReleaseRecord } from './record';
import type { RunBound } from './rollover';

/** What people asked for that the pipeline has yet to act on. Plain data: it crosses continue-as-new. */
export interface ControlsState {
  abort?: { by: string; reason: string };
  /** `tollgate rollback` while production was watched. */
  rollback?: { by: string; reason: string };
  promoteRequested: boolean;
  approvedGate?: GateName;
  /** What a paused release goes back to when it resumes. */
  unpausedState: ReleaseState;
  /** Nonces of accepted signatures still inside the skew window (older ones are refused by their timestamp). */
  nonces?: { nonce: string; at: string }[];
}

export const freshControls = (): ControlsState => ({ promoteRequested: false, unpausedState: 'baking' });

/**
 * Who a refused message says it is from, for the audit trail: only a string is read (a `toString` in a payload
 * must never run, and an object cannot be converted), shown printable and cut.
 */
function claimedActor(payload: unknown): string {
  const by: unknown = typeof payload === 'object' && payload !== null ? (payload as { by?: unknown }).by : undefined;
  return typeof by === 'string' && by.trim() !== '' ? printable(by.trim(), 128) : 'unreadable';
}

/**
 * Human control, as Argo Rollouts' pauseContext: one object owns the intent people express — abort, promote, the
 * gates awaiting approval and the pause — and two models are kept apart: a gate waits for an approval (with
 * four-eyes and approvers), a pause for a resume; lifting one never lifts the other.
 */
export class Controls {
  /** Bumped on every human message, so waits can wake on "something changed". */
  epoch = 0;
  /** The pipeline's scope: an abort cancels it. */
  forward: CancellationScope | undefined;

  constructor(
    private readonly record: ReleaseRecord,
    readonly state: ControlsState,
    private readonly policy: () => ResolvedPolicy | undefined,
    /** Releases started before the hostile-input hardening keep their semantics on replay. */
    private readonly hardened: boolean,
    /** Releases started before signed controls accepted controls while their policy was being resolved. */
    private readonly policyFirst: boolean,
    private readonly bound: RunBound,
  ) {}

  private get status(): ReleaseStatus {
    return this.record.status;
  }

  /** Every signal and update of every control, and the status query. */
  register(): void {
    for (const name of Object.keys(CONTROL_SCHEMAS) as ControlName[]) {
      this.handle(name, CONTROL_SIGNALS[name], CONTROL_UPDATES[name]);
    }
    setHandler(statusQuery, () => this.status);
  }

  /** The bake stands still while a person paused it or analysis waits for a human's answer. */
  held(): boolean {
    return this.status.pause !== undefined || this.status.gate?.name === 'inconclusive';
  }

  /** Waits while paused: progression stops, but analysis and automatic rollback carry on. */
  async whileUnpaused(): Promise<void> {
    if (!this.status.pause) return;
    const before = this.status.state;
    this.state.unpausedState = before;
    this.record.setState('paused');
    await this.bound.until(() => this.status.pause === undefined);
    this.record.setState(before);
  }

  /**
   * Waits for a person to approve `name`. A continued run waits on at the same gate, and may find it approved
   * already: a message can reach a new run before its pipeline is back at the gate.
   */
  async gate(name: GateName, message: string): Promise<void> {
    if (this.state.approvedGate !== name) {
      if (this.status.gate?.name !== name) {
        await this.whileUnpaused();
        this.status.gate = { name, since: new Date().toISOString(), message };
        this.record.setState('awaiting-approval');
        log.info(`awaiting approval: ${message}`, this.record.logFields());
        void this.record.notify('awaiting-approval', message);
      }
      await this.bound.until(() => this.state.approvedGate === name);
    }
    this.status.gate = undefined;
    this.record.refresh();
  }

  /** Stops the bake and asks a person (inconclusive analysis): approve to carry on baking, or abort. */
  askHuman(gateName: GateName, reason: string, bounded: () => boolean): void {
    // Asked once: repeating the question every stretch nobody answers would push decisions out of the audit trail.
    if (this.status.gate?.name === gateName && bounded()) return;
    if (!this.hardened && !this.status.pause) {
      this.status.pause = { by: 'tollgate', reason, since: new Date().toISOString() };
    }
    this.status.gate = {
      name: gateName,
      since: new Date().toISOString(),
      message: `${reason} — approve to continue baking, or abort`,
    };
    this.record.audit({ actor: 'tollgate', action: this.hardened ? 'gate' : 'pause', accepted: true, detail: reason });
    log.warn(`waiting for a human: ${reason}`, this.record.logFields());
    void this.record.notify('awaiting-approval', `paused: ${reason} — approve to continue baking, or abort`);
  }

  private view(): ControlView {
    const policy = this.policy();
    const signing = this.signing();
    return {
      state: this.status.state,
      stage: this.status.stage,
      gate: this.status.gate?.name,
      paused: this.status.pause !== undefined,
      baking: this.status.bake !== undefined,
      watching: this.status.bake?.watch === true,
      initiator: this.status.initiator,
      fourEyes: policy?.approvals.fourEyes ?? true,
      approvers: policy?.approvals.approvers,
      ...(signing && { signing }),
      ...(this.policyFirst && policy === undefined && { resolving: true }),
    };
  }

  /** Only for a policy with signers or signatures required (policies resolved before signing have neither). */
  private signing(): SigningView | undefined {
    const approvals = this.policy()?.approvals;
    const signers = approvals?.signers ?? [];
    const require = approvals?.signing?.require ?? [];
    if (!approvals?.signing || (signers.length === 0 && require.length === 0)) return undefined;
    const info = workflowInfo();
    return {
      workflowId: info.workflowId,
      runId: info.runId,
      now: Date.now(),
      require,
      signers,
      maxSkewMs: approvals.signing.maxSkew,
      seenNonces: new Set((this.state.nonces ?? []).map((n) => n.nonce)),
    };
  }

  /** A signature is good once: its nonce is kept for as long as its timestamp would still be accepted. */
  private spend(nonce: string, at: string): void {
    const maxSkew = this.policy()?.approvals.signing?.maxSkew ?? 0;
    const oldest = Date.now() - maxSkew;
    const kept = (this.state.nonces ?? []).filter((n) => Date.parse(n.at) >= oldest);
    kept.push({ nonce, at });
    this.state.nonces = kept;
  }

  /**
   * The state a control's answer reports. The main loop moves the release on only when it next runs, after the
   * answer is sent: an approved or resumed release must not read as still waiting.
   */
  private answerState(): ReleaseState {
    const s = this.status;
    if (s.pause || (s.state !== 'paused' && s.state !== 'awaiting-approval')) return s.state;
    if (s.gate) return 'awaiting-approval';
    return s.state === 'paused' ? this.state.unpausedState : s.bake ? 'baking' : s.state;
  }

  private clearInconclusiveGate(): void {
    if (!this.hardened) this.status.pause = undefined;
    this.status.gate = undefined;
    this.status.analysis.inconclusive = 0;
  }

  private apply<N extends ControlName>(name: N, decision: Decision<N> & { ok: true }): void {
    const s = this.status;
    const { input, actor: by, proof } = decision;
    this.epoch++;
    if (proof) this.spend(proof.nonce, proof.at);
    const detail = 'reason' in input ? input.reason : 'comment' in input ? input.comment : undefined;
    this.record.audit({
      actor: by,
      action: name,
      accepted: true,
      ...(detail !== undefined && { detail }),
      ...(proof && { proof: proof.fingerprint }),
    });
    log.info(`${name} by ${by}`, { ...this.record.logFields(), actor: by, detail, proof: proof?.fingerprint });
    switch (name) {
      case 'approve':
        // Approving inconclusive analysis means "carry on baking with the evidence so far"; health is still required.
        if (s.gate?.name === 'inconclusive') this.clearInconclusiveGate();
        else {
          this.state.approvedGate = s.gate?.name;
          s.gate = undefined;
        }
        break;
      case 'abort':
      case 'rollback':
        this.state[name === 'abort' ? 'abort' : 'rollback'] = {
          by,
          reason: (input as ControlInput<'abort'>).reason,
        };
        this.forward?.cancel();
        s.state = 'rolling-back';
        break;
      case 'pause':
        s.pause = { by, reason: (input as ControlInput<'pause'>).reason, since: new Date().toISOString() };
        break;
      case 'resume':
        // Before the hardening, the inconclusive gate came with a pause of its own and resume lifted both.
        if (!this.hardened && s.gate?.name === 'inconclusive') this.clearInconclusiveGate();
        s.pause = undefined;
        break;
      case 'promote':
        this.state.promoteRequested = true;
        break;
    }
    this.record.refresh();
  }

  /** One decision function for both: update validators refuse with nothing written, signals audit the refusal. */
  private handle<N extends ControlName>(
    name: N,
    signal: SignalDefinition<[ControlInput<N>]>,
    update: UpdateDefinition<ReleaseStatus, [ControlInput<N>]>,
  ): void {
    // A signal cannot answer its sender: a refusal is audited, from what can be read of the payload safely.
    setHandler(signal, (payload: unknown) => {
      const decision = decideControl(name, payload, this.view());
      if (!decision.ok) {
        this.record.audit({ actor: claimedActor(payload), action: name, accepted: false, detail: decision.reason });
        log.warn(`${name} signal rejected: ${decision.reason}`, this.record.logFields());
        this.record.refresh();
        return;
      }
      this.apply(name, decision);
    });
    setHandler(
      update,
      (payload: unknown) => {
        // Decided again, not trusted from the validator: the same view, so the same answer, with its identity.
        const decision = decideControl(name, payload, this.view());
        if (!decision.ok) throw new Error(decision.reason);
        this.apply(name, decision);
        return { ...this.status, state: this.answerState() };
      },
      {
        validator: (payload: unknown) => {
          const decision = decideControl(name, payload, this.view());
          if (!decision.ok) throw new Error(decision.reason);
        },
      },
    );
  }
}
