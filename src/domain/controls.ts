import { sameIdentity } from './identity';
import { CONTROL_SCHEMAS, type ControlName } from './messages';
import { describeZodError } from './zod-errors';
import type { GateName, ReleaseState } from './status';

/** What the decision on a human message depends on. */
export interface ControlView {
  state: ReleaseState;
  gate: GateName | undefined;
  /** Paused by a person. A gate is not a pause: lifting one never lifts the other. */
  paused: boolean;
  baking: boolean;
  /** Production is watched after the last wave: the only time `rollback` applies. */
  watching: boolean;
  initiator: string;
  fourEyes: boolean;
  approvers: string[] | undefined;
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

/**
 * Why a message must be refused, or undefined to accept it. Update validators throw this reason (nothing is
 * written to history); signals record it as a rejected entry in the audit trail. Either way nothing changes.
 */
export function rejectionFor(name: ControlName, input: unknown, view: ControlView): string | undefined {
  const parsed = CONTROL_SCHEMAS[name].safeParse(input);
  if (!parsed.success) return `invalid ${name}: ${describeZodError(parsed.error)}`;
  const by = parsed.data.by;
  if (view.state === 'done') return `the release has ended; nothing to ${name}`;
  if (view.state === 'rolling-back') return `the release is rolling back; nothing to ${name}`;
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
