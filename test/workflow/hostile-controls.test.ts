import { Context } from '@temporalio/activity';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import fc from 'fast-check';
import {
  CONTROL_SCHEMAS,
  CONTROL_SIGNALS as SIGNALS,
  CONTROL_UPDATES as UPDATES,
  abortSignal,
  abortUpdate,
  approveSignal,
  approveUpdate,
  pauseUpdate,
  resumeUpdate,
  statusQuery,
  type ControlName,
} from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { releaseWorkflow } from '../../src/workflows';
import { checkoutPolicy, errorsCheck, writePolicies } from '../helpers/policies';
import { recordHostileRows, SEED, type HostileRow } from '../helpers/reliability-report';
import {
  canaryBaking,
  startRelease,
  tryStatus,
  waitForStatus,
  type Drive,
  type ReleaseHandle,
} from '../helpers/release-handle';
import { inconclusive, releaseHarness, withRelease, type ReleaseOptions } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

/**
 * What anyone who can reach the namespace may send (the Web UI's "Send signal" is enough), against a running
 * release: nothing jams it, nothing gets past a gate or four-eyes, and what status shows is true.
 */

const FILE = 'test/workflow/hostile-controls.test.ts';
const CONTROLS = Object.keys(SIGNALS) as ControlName[];

const policy = (over: Partial<ServicePolicyInput> = {}): ServicePolicyInput =>
  checkoutPolicy({
    production: { approval: true, waves: [{ percent: 100, bake: '1h' }] },
    approvals: { fourEyes: true, approvers: ['bob', 'carol'] },
    ...over,
  });

/** Payloads no control accepts: what broke `String(payload.by)` and its neighbours, then generated ones. */
const HANDPICKED: unknown[] = [
  { by: { toString: 'x' } },
  { by: { toString: { valueOf: 1 } }, reason: 'r' },
  { by: ['alice'] },
  { by: 42 },
  { by: null },
  { by: true },
  { by: 'x'.repeat(100_000) },
  { by: 'bob\n2026-01-01T00:00:00Z  bob approve', reason: 'forged line' },
  { by: 'bob\u001b[8m', reason: 'hidden' },
  { by: 'bob', reason: { toString: 'x' } },
  { by: 'bob', extra: true },
  null,
  0,
  'approve',
  [],
  [{ by: 'bob' }],
  {},
  JSON.parse('{"__proto__": {"by": "bob"}}') as unknown,
];

function hostilePayloads(name: ControlName, count: number): unknown[] {
  const generated = fc.sample(
    fc.oneof(
      fc.anything({ maxDepth: 2 }),
      fc.record({ by: fc.anything({ maxDepth: 1 }), reason: fc.anything({ maxDepth: 1 }) }, { requiredKeys: [] }),
    ),
    { numRuns: count * 3, seed: SEED },
  );
  return [...HANDPICKED, ...generated].filter((p) => !CONTROL_SCHEMAS[name].safeParse(p).success).slice(0, count);
}

describe('hostile controls against a running release (time-skipping)', () => {
  const server = timeSkippingForTests();
  const rows: HostileRow[] = [];
  afterAll(() => {
    if (rows.length > 0) recordHostileRows('controls', rows);
  });

  const release = <T>(opts: ReleaseOptions, drive: Drive<T>) =>
    withRelease(server.env, { policy: policy(), ...opts }, drive);

  /** Status within 10 s, or undefined: a release whose workflow tasks fail never answers. */
  const statusWithin = (handle: ReleaseHandle) => tryStatus(handle, 10_000);

  it('no signal or update payload jams a release: each is refused and audited, and abort still rolls back', async () => {
    const perControl = 12;
    /** Signals refused (each must be in the trail, or counted as dropped from it); cases adds the updates. */
    let signals = 0;
    let cases = 0;
    let jams = 0;
    const { value: result, target } = await release({}, async (handle) => {
      await waitForStatus(handle, canaryBaking, { env: server.env, step: '10m' });
      for (const name of CONTROLS) {
        for (const payload of hostilePayloads(name, perControl)) {
          await handle.signal(SIGNALS[name] as never, payload as never);
          // An update is refused by its validator: nothing is written to history.
          await expect(handle.executeUpdate(UPDATES[name] as never, { args: [payload] as never })).rejects.toThrow(
            WorkflowUpdateFailedError,
          );
          signals++;
          cases += 2;
        }
        if ((await statusWithin(handle)) === undefined) jams++;
      }
      // A flood of refusals: the trail keeps every decision (the start first of all), dropping refusals instead.
      await handle.executeUpdate(pauseUpdate, { args: [{ by: 'carol', reason: 'looking at the flood' }] });
      for (let batch = 0; batch < 10; batch++) {
        await Promise.all(Array.from({ length: 25 }, () => handle.signal(approveSignal, { by: 42 } as never)));
      }
      await handle.executeUpdate(resumeUpdate, { args: [{ by: 'carol' }] });
      signals += 250;
      cases += 250;
      const status = await statusWithin(handle);
      expect(status).toBeDefined();
      expect(status!.audit.filter((a) => a.accepted).map((a) => a.action)).toEqual(['start', 'pause', 'resume']);
      expect(status!.auditDropped).toBeGreaterThan(0);
      const refused = status!.audit.filter((a) => !a.accepted);
      expect(refused.length + status!.auditDropped).toBe(signals);
      for (const entry of refused) {
        expect(entry.actor.length).toBeLessThanOrEqual(129);
        // eslint-disable-next-line no-control-regex
        expect(entry.actor + (entry.detail ?? '')).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
      }
      expect(refused.some((a) => a.actor === 'unreadable')).toBe(true);
      expect(status!.stage).toBe('canary');
      expect(status!.pause).toBeUndefined();
      await handle.signal(abortSignal, { by: 'carol', reason: 'hostile messages seen' });
      return handle.result();
    });
    expect(result).toMatchObject({ outcome: 'aborted', reason: 'aborted by carol: hostile messages seen' });
    expect(target.actions.map((a) => `${a.action} ${a.key.split('/').pop()}`)).toEqual([
      'apply staging',
      'apply canary',
      'undo canary',
      'undo staging',
    ]);
    expect(jams).toBe(0);
    rows.push({
      class: 'signal and update payloads to a running release',
      cases,
      jams,
      bypasses: 0,
      loosenings: 0,
      seed: SEED,
      file: FILE,
    });
  });

  it('an inconclusive-analysis gate is passed only by an approver’s approve, and never lifts a person’s pause', async () => {
    let verdicts = 0;
    let bypasses = 0;
    const { value: status } = await release(
      {
        analysis: (input) =>
          verdicts++ === 0
            ? inconclusive('no data: Prometheus unreachable')(input)
            : {
                counters: { ...input.counters, rounds: input.counters.rounds + input.maxRounds },
                checks: input.checks.map((c) => ({
                  check: c.name,
                  verdict: 'pass',
                  critical: false,
                  reason: 'ok',
                  at: '',
                })),
                decision: 'healthy',
                reason: 'healthy',
              },
      },
      async (handle) => {
        const gated = await waitForStatus(handle, (s) => s.gate?.name === 'inconclusive', {
          env: server.env,
          step: '1m',
        });
        expect(gated.state).toBe('awaiting-approval');
        expect(gated.pause).toBeUndefined();
        const refusals: [ControlName, Record<string, string>, RegExp][] = [
          ['resume', { by: 'alice' }, /the release is not paused/],
          ['resume', { by: 'dave' }, /the release is not paused/],
          ['approve', { by: 'alice' }, /^four-eyes: alice started this release/],
          ['approve', { by: 'ALICE' }, /^four-eyes:/],
          ['approve', { by: '\u0430lice' }, /^four-eyes:/], // Cyrillic а
          ['approve', { by: 'ａｌｉｃｅ' }, /^four-eyes:/], // full-width
          ['approve', { by: 'alice\u200b' }, /invisible or formatting characters/],
          ['approve', { by: 'al\u00adice' }, /invisible or formatting characters/], // soft hyphen
          ['approve', { by: 'dave' }, /dave is not an approver/],
          ['promote', { by: 'bob', reason: 'skip it' }, /analysis is inconclusive/],
        ];
        for (const [name, input, why] of refusals) {
          const answer = await handle.executeUpdate(UPDATES[name] as never, { args: [input] as never }).then(
            () => 'accepted',
            (err: WorkflowUpdateFailedError) => err.cause?.message ?? err.message,
          );
          if (answer === 'accepted') bypasses++;
          expect(answer).toMatch(why);
          await handle.signal(SIGNALS[name] as never, input as never);
        }
        const still = await handle.query(statusQuery);
        expect(still.gate?.name).toBe('inconclusive');
        expect(still.audit.filter((a) => !a.accepted)).toHaveLength(refusals.length);
        // A person's pause and the gate are separate: approving the gate leaves the pause in place.
        await handle.executeUpdate(pauseUpdate, { args: [{ by: 'carol', reason: 'INCIDENT-42' }] });
        const approved = await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob' }] });
        expect(approved.gate).toBeUndefined();
        expect(approved).toMatchObject({ state: 'paused', pause: { by: 'carol', reason: 'INCIDENT-42' } });
        await server.env.sleep('30h');
        const paused = await handle.query(statusQuery);
        expect(paused.pause?.reason).toBe('INCIDENT-42');
        expect(paused.stage).toBe('canary');
        const resumed = await handle.executeUpdate(resumeUpdate, { args: [{ by: 'carol' }] });
        expect(resumed.state).toBe('baking');
        const gate = await waitForStatus(handle, (s) => s.gate?.name === 'production', { env: server.env, step: '1h' });
        expect(gate.stage).toBe('production');
        return gate;
      },
    );
    expect(status.bake).toBeUndefined();
    expect(bypasses).toBe(0);
    rows.push({
      class: 'gate, pause, four-eyes and approvers under look-alike names',
      cases: 10,
      jams: 0,
      bypasses,
      loosenings: 0,
      seed: SEED,
      file: FILE,
    });
  });

  it('after an abort, status shows no gate, and only the steps that were deployed', async () => {
    const { value: status } = await release(
      {
        // The canary deploy hangs until cancelled: the abort reaches it before it applied anything.
        deploy: async (step, real) => {
          if (!step.key.endsWith('/canary')) return real(step);
          const ctx = Context.current();
          for (;;) {
            ctx.heartbeat();
            await ctx.sleep(200);
          }
        },
        policy: policy({ canary: { approval: false, analysis: { interval: '1m', checks: [errorsCheck] } } }),
      },
      async (handle) => {
        await waitForStatus(handle, (s) => s.stage === 'canary' && s.state === 'deploying', {
          env: server.env,
          step: '1s',
        });
        await handle.executeUpdate(abortUpdate, { args: [{ by: 'carol', reason: 'wrong build' }] });
        await handle.result();
        return handle.query(statusQuery);
      },
    );
    expect(status.outcome).toBe('aborted');
    expect(status.deployedSteps.map((k) => k.split('/').pop())).toEqual(['staging']);
    expect(status.gate).toBeUndefined();
  });

  it('after an abort at the production gate, nothing reads as awaiting approval', async () => {
    const { value: status } = await release(
      { policy: policy({ trafficCycle: { duration: '1h' } }) },
      async (handle) => {
        await waitForStatus(handle, (s) => s.gate?.name === 'production', { env: server.env, step: '10m' });
        await handle.executeUpdate(abortUpdate, { args: [{ by: 'carol', reason: 'not today' }] });
        await handle.result();
        return handle.query(statusQuery);
      },
    );
    expect(status).toMatchObject({ state: 'done', outcome: 'aborted' });
    expect(status.gate).toBeUndefined();
    expect(status.pause).toBeUndefined();
  });

  it('one release per service: a second under the same ID is refused by Temporal, under another ID by the workflow', async () => {
    const { value } = await release({}, async (handle) => {
      await waitForStatus(handle, (s) => s.stage === 'canary', { env: server.env, step: '10m' });
      const again = startRelease(server.env.client, 'unused', {
        service: 'checkout',
        version: '3.0.0',
        initiator: 'mallory',
      });
      await expect(again).rejects.toThrow(WorkflowExecutionAlreadyStartedError);
      return (await handle.query(statusQuery)).version;
    });
    expect(value).toBe('2.0.0');
    // The other-ID path is in refused-releases.test.ts; here it runs beside a release in flight.
    const policyDir = writePolicies({ minimums: { productionApproval: false } }, [policy()]);
    const harness = await releaseHarness(server.env, { policyDir });
    const failure = await harness.worker.runUntil(
      server.env.client.workflow
        .execute(releaseWorkflow, {
          taskQueue: harness.taskQueue,
          workflowId: 'sneaky-checkout',
          args: [{ service: 'checkout', version: '3.0.0', initiator: 'mallory' }],
        })
        .then(
          () => undefined,
          (err: unknown) => (err instanceof WorkflowFailedError ? err.cause?.message : String(err)),
        ),
    );
    expect(failure).toMatch(/runs as workflow ID "release-checkout", not "sneaky-checkout"/);
    expect(harness.target.actions).toEqual([]);
  });
});
