import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import fc from 'fast-check';
import { rejectionFor } from '../../src/domain/controls';
import { CONTROL_SCHEMAS, statusQuery, type ControlName } from '../../src/domain/messages';
import { releaseRequestSchema, releaseWorkflowId } from '../../src/domain/release';
import { describeZodError } from '../../src/domain/zod-errors';
import type { UpdateDefinition } from '@temporalio/common';
import type { ReleaseStatus } from '../../src/domain/status';
import { errorsCheck, writePolicies } from '../helpers/policies';
import { waitForStatus } from '../helpers/release-handle';
import { releaseHarness, withRelease } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

/**
 * The shipped bundle shares one zod, frozen by the SDK, across every cached workflow (src/workflows/preload.ts).
 * Validation inside the workflow must still answer exactly as it does in plain Node: the same rejection, word for
 * word, for every malformed message and request — and never a TypeError from a frozen object, which would fail the
 * workflow task instead of refusing the input.
 */

const NAMES = Object.keys(CONTROL_SCHEMAS) as ControlName[];

const malformedPayloads: unknown[] = [
  undefined,
  null,
  42,
  'alice',
  [],
  {},
  { by: '' },
  { by: 'bob', extra: true },
  { by: 7, reason: 'x' },
  { by: 'bob', reason: '' },
  { by: 'bob', reason: 'r'.repeat(100_000) },
  { by: 'b'.repeat(500), reason: 'ok', comment: 'c'.repeat(5_000) },
  { by: '\u0000', reason: ['a'] },
  { __proto__: { by: 'bob' } },
  ...fc.sample(fc.anything({ maxDepth: 2 }), { numRuns: 20, seed: 7 }),
  ...fc.sample(fc.record({ by: fc.string(), reason: fc.anything(), comment: fc.anything() }), { numRuns: 20, seed: 8 }),
];

/**
 * jest runs modules in a vm context whose `Object.prototype` differs from the one object literals get, so zod in
 * this process names any object by its constructor, "Object"; in plain Node (and in the workflow) it says "object".
 */
const asInPlainNode = (rejection: string | undefined) => rejection?.replaceAll('received Object', 'received object');

describe('validation inside the shipped bundle (shared, frozen zod)', () => {
  const server = timeSkippingForTests();

  it('refuses every malformed control message with the same words as plain Node', async () => {
    const policy = {
      service: 'checkout',
      trafficCycle: { duration: '1h' },
      canary: { approval: true, analysis: { interval: '1m', checks: [errorsCheck] } },
    };
    await withRelease(server.env, { policy }, async (handle) => {
      const status = await waitForStatus(handle, (s) => s.gate !== undefined, { env: server.env, step: '1s' });
      expect(status.gate?.name).toBe('canary');
      const view = {
        state: status.state,
        stage: status.stage,
        gate: status.gate?.name,
        paused: false,
        baking: false,
        watching: false,
        initiator: 'alice',
        fourEyes: false,
        approvers: undefined,
      };
      const mismatches: string[] = [];
      for (const name of NAMES) {
        const update = { name, type: 'update' } as UpdateDefinition<ReleaseStatus, [unknown]>;
        for (const payload of malformedPayloads) {
          // What the workflow receives is the payload after Temporal's JSON converter (undefined fields dropped).
          const received: unknown = payload === undefined ? undefined : JSON.parse(JSON.stringify(payload));
          const expected = asInPlainNode(rejectionFor(name, received, view));
          if (expected === undefined) continue;
          const answer = await handle.executeUpdate(update, { args: [payload] }).then(
            () => 'accepted',
            (err: unknown) =>
              err instanceof WorkflowUpdateFailedError ? (err.cause?.message ?? '') : `threw ${String(err)}`,
          );
          if (answer !== expected)
            mismatches.push(`${name} ${JSON.stringify(payload)?.slice(0, 80)}: ${answer} ≠ ${expected}`);
        }
      }
      expect(mismatches).toEqual([]);
      // Nothing was deployed past staging, and the gate still waits: refused input changed nothing.
      const after = await handle.query(statusQuery);
      expect(after.gate?.name).toBe('canary');
      expect(after.deployedSteps).toEqual(status.deployedSteps);
    });
  });

  it('fails a malformed release request with the field named, before anything is deployed', async () => {
    const policyDir = writePolicies({}, [{ service: 'checkout', trafficCycle: { duration: '1h' } }]);
    const harness = await releaseHarness(server.env, { policyDir });
    const request = { service: 'checkout', version: '2.0.0 beta', initiator: 'alice', policy: { canary: 7 } };
    const parsed = releaseRequestSchema.safeParse(request);
    expect(parsed.success).toBe(false);
    const failure = await harness.worker.runUntil(
      server.env.client.workflow
        .execute('releaseWorkflow', {
          taskQueue: harness.taskQueue,
          workflowId: releaseWorkflowId('checkout'),
          args: [request],
        })
        .then(
          () => 'completed',
          (err: unknown) => (err instanceof WorkflowFailedError ? (err.cause?.message ?? '') : String(err)),
        ),
    );
    expect(failure).toBe(`invalid release request: ${describeZodError(parsed.error!)}`);
    expect(harness.target.actions).toEqual([]);
  });
});
