import { rejectionFor, type ControlView } from '../../src/domain/controls';

const view = (over: Partial<ControlView> = {}): ControlView => ({
  state: 'baking',
  stage: 'canary',
  gate: undefined,
  paused: false,
  baking: true,
  watching: false,
  initiator: 'alice',
  fourEyes: false,
  approvers: undefined,
  ...over,
});
const awaiting = (over: Partial<ControlView> = {}) =>
  view({ state: 'awaiting-approval', gate: 'production', baking: false, ...over });

describe('rejectionFor: approve', () => {
  it('accepts an approval at an open gate', () => {
    expect(rejectionFor('approve', { by: 'alice' }, awaiting())).toBeUndefined();
  });

  it('refuses an approval when nothing awaits one', () => {
    expect(rejectionFor('approve', { by: 'bob' }, view())).toBe('nothing is awaiting approval');
  });

  it('under four-eyes, refuses the initiator whatever the case and spacing', () => {
    for (const by of ['alice', 'Alice', '  ALICE ']) {
      expect(rejectionFor('approve', { by }, awaiting({ fourEyes: true }))).toMatch(
        /^four-eyes: alice started this release and cannot approve it/i,
      );
    }
    expect(rejectionFor('approve', { by: 'alice' }, awaiting({ fourEyes: true, initiator: ' ALICE ' }))).toMatch(
      /^four-eyes:/,
    );
  });

  it('under four-eyes, accepts someone else', () => {
    expect(rejectionFor('approve', { by: 'bob' }, awaiting({ fourEyes: true }))).toBeUndefined();
  });

  it('accepts only listed approvers, case-insensitively, and lists them in the refusal', () => {
    const v = awaiting({ approvers: ['Bob', 'carol'] });
    expect(rejectionFor('approve', { by: 'bob' }, v)).toBeUndefined();
    expect(rejectionFor('approve', { by: 'CAROL' }, v)).toBeUndefined();
    expect(rejectionFor('approve', { by: 'dave' }, v)).toBe(
      'dave is not an approver for this service (approvers: Bob, carol)',
    );
  });

  it('applies four-eyes even to a listed approver who started the release', () => {
    const v = awaiting({ fourEyes: true, approvers: ['alice', 'bob'] });
    expect(rejectionFor('approve', { by: 'alice' }, v)).toMatch(/^four-eyes:/);
    expect(rejectionFor('approve', { by: 'bob' }, v)).toBeUndefined();
  });

  it('refuses an empty approver list for everyone', () => {
    expect(rejectionFor('approve', { by: 'bob' }, awaiting({ approvers: [] }))).toMatch(/bob is not an approver/);
  });
});

describe('rejectionFor: promote', () => {
  it('accepts a promote while baking', () => {
    expect(rejectionFor('promote', { by: 'bob', reason: 'hotfix' }, view())).toBeUndefined();
  });

  it('refuses a promote when nothing is baking', () => {
    expect(rejectionFor('promote', { by: 'bob', reason: 'hotfix' }, awaiting())).toBe(
      'nothing is baking; promote skips the rest of a bake',
    );
  });

  it('refuses a promote while paused', () => {
    expect(rejectionFor('promote', { by: 'bob', reason: 'hotfix' }, view({ paused: true, state: 'paused' }))).toBe(
      'the release is paused; resume it before promoting',
    );
  });

  it('applies four-eyes and the approver list', () => {
    expect(rejectionFor('promote', { by: 'ALICE', reason: 'r' }, view({ fourEyes: true }))).toMatch(
      /^four-eyes: ALICE started this release and cannot promote it/,
    );
    expect(rejectionFor('promote', { by: 'dave', reason: 'r' }, view({ approvers: ['bob'] }))).toMatch(
      /^dave is not an approver/,
    );
    expect(rejectionFor('promote', { by: 'bob', reason: 'r' }, view({ fourEyes: true, approvers: ['bob'] }))).toBe(
      undefined,
    );
  });
});

describe('rejectionFor: pause and resume', () => {
  it('pauses once, not twice', () => {
    expect(rejectionFor('pause', { by: 'bob', reason: 'incident' }, view())).toBeUndefined();
    expect(rejectionFor('pause', { by: 'bob', reason: 'incident' }, view({ paused: true, state: 'paused' }))).toBe(
      'the release is already paused',
    );
  });

  it('resumes only a paused release', () => {
    expect(rejectionFor('resume', { by: 'bob' }, view({ paused: true, state: 'paused' }))).toBeUndefined();
    expect(rejectionFor('resume', { by: 'bob' }, view())).toBe('the release is not paused');
  });

  it('lets the initiator pause and resume under four-eyes', () => {
    expect(rejectionFor('pause', { by: 'alice', reason: 'r' }, view({ fourEyes: true }))).toBeUndefined();
    expect(rejectionFor('resume', { by: 'alice' }, view({ fourEyes: true, paused: true }))).toBeUndefined();
  });
});

describe('rejectionFor: abort', () => {
  it('accepts an abort from anyone while the release runs', () => {
    expect(rejectionFor('abort', { by: 'alice', reason: 'bad build' }, view({ fourEyes: true }))).toBeUndefined();
    expect(rejectionFor('abort', { by: 'zed', reason: 'bad build' }, awaiting({ approvers: ['bob'] }))).toBe(undefined);
  });
});

describe('rejectionFor: after the end', () => {
  const valid = {
    approve: { by: 'bob' },
    abort: { by: 'bob', reason: 'r' },
    pause: { by: 'bob', reason: 'r' },
    resume: { by: 'bob' },
    promote: { by: 'bob', reason: 'r' },
  } as const;

  it.each(Object.keys(valid) as (keyof typeof valid)[])('refuses %s once the release is done', (name) => {
    const v = view({ state: 'done', gate: 'production', paused: true, baking: true });
    expect(rejectionFor(name, valid[name], v)).toBe(`the release has ended; nothing to ${name}`);
  });

  it.each(Object.keys(valid) as (keyof typeof valid)[])('refuses %s while rolling back', (name) => {
    const v = view({ state: 'rolling-back', gate: 'production', paused: true, baking: true });
    expect(rejectionFor(name, valid[name], v)).toBe(`the release is rolling back; nothing to ${name}`);
  });
});

describe('rejectionFor: malformed payloads', () => {
  it.each([
    ['approve', {}, 'invalid approve: by: Invalid input'],
    ['approve', { by: '   ' }, 'invalid approve: by: must name a person'],
    ['approve', { by: 'bob', comment: 'x'.repeat(2001) }, 'invalid approve: comment: at most 2000 characters'],
    ['abort', { by: 'bob' }, 'invalid abort: reason: Invalid input'],
    ['abort', { by: 'bob', reason: ' ' }, 'invalid abort: reason: a reason is required'],
    ['pause', { by: 'bob', reason: 'r', until: 'later' }, 'invalid pause: (input): Unrecognized key: "until"'],
    ['resume', { by: 'x'.repeat(129) }, 'invalid resume: by: at most 128 characters'],
    ['promote', { by: 'bob', reason: '' }, 'invalid promote: reason: a reason is required'],
    ['promote', null, 'invalid promote: (input): Invalid input: expected object'],
    ['approve', 'bob', 'invalid approve: (input): Invalid input: expected object'],
  ] as const)('refuses %s %j naming the field', (name, input, expected) => {
    expect(rejectionFor(name, input, awaiting())).toContain(expected);
  });

  it('reports a malformed payload before the release state', () => {
    expect(rejectionFor('resume', {}, view({ state: 'done' }))).toMatch(/^invalid resume: by:/);
  });
});

describe('rejectionFor: before the policy is resolved', () => {
  it('refuses every control but abort: who must sign what is not known yet', () => {
    const resolving = view({ state: 'resolving-policy', baking: false, paused: true, resolving: true });
    for (const name of ['approve', 'promote', 'pause', 'resume', 'rollback'] as const) {
      const payload = name === 'approve' || name === 'resume' ? { by: 'bob' } : { by: 'bob', reason: 'r' };
      expect(rejectionFor(name, payload, resolving)).toBe(
        `the release's policy is still being resolved; nothing to ${name} yet`,
      );
    }
    expect(rejectionFor('abort', { by: 'bob', reason: 'wrong build' }, resolving)).toBeUndefined();
  });
});
