import { CONTROL_SCHEMAS, type ControlName } from './messages';
import { describeZodError } from './release';
import type { GateName, ReleaseState } from './status';

/** What the decision on a human message depends on. */
export interface ControlView {
  state: ReleaseState;
  gate: GateName | undefined;
  paused: boolean;
  baking: boolean;
  initiator: string;
  fourEyes: boolean;
  approvers: string[] | undefined;
}

const sameActor = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();

function authority(by: string, view: ControlView, action: string): string | undefined {
  if (view.fourEyes && sameActor(by, view.initiator)) {
    return `four-eyes: ${by} started this release and cannot ${action} it; ask someone else`;
  }
  if (view.approvers && !view.approvers.some((a) => sameActor(a, by))) {
    return `${by} is not an approver for this service (approvers: ${view.approvers.join(', ')})`;
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
      return authority(by, view, 'promote');
    case 'pause':
      return view.paused ? 'the release is already paused' : undefined;
    case 'resume':
      return view.paused ? undefined : 'the release is not paused';
    case 'abort':
      return undefined;
  }
}
