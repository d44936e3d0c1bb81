import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { controlStatement, verifySignedControl, type ControlStatement } from '../../src/domain/signatures';
import { ascii, base64Encode, concat, wireString } from '../../src/domain/ssh-wire';
import { workflowBundlerOptions } from '../../src/worker';
import type { RulesOnTheWire, verifyInSandbox } from '../fixtures/signatures-workflow';
import { randomWorkflowId, taskQueueForTest, timeSkippingForTests } from '../helpers/temporal';

/**
 * The workflow verifies signed controls itself, so the verifier must bundle with the shipped options (no node:
 * built-ins reach webpack) and answer inside the sandbox exactly as in plain Node.
 */

const dir = mkdtempSync(join(tmpdir(), 'tollgate-signatures-bundle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const keyFile = (name: string) => {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, name)]);
  return readFileSync(join(dir, `${name}.pub`), 'utf8').trim();
};
const sshSign = (name: string, c: ControlStatement) =>
  execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-n', 'tollgate', '-f', join(dir, name)], {
    input: controlStatement(c),
  }).toString();

const control: ControlStatement = {
  workflowId: 'release-checkout',
  runId: 'run-1',
  action: 'promote',
  target: 'canary',
  by: 'bob',
  at: '2026-12-02T16:00:00.000Z',
  nonce: 'fedcba9876543210fedcba9876543210',
};
const secret = ed25519.utils.randomSecretKey();
const carolPub = `ssh-ed25519 ${base64Encode(concat(wireString(ascii('ssh-ed25519')), wireString(ed25519.getPublicKey(secret))))}`;
const rules: RulesOnTheWire = {
  signers: [
    { name: 'alice', keys: [keyFile('alice')] },
    { name: 'bob', keys: [keyFile('bob')] },
    { name: 'carol', keys: [carolPub] },
  ],
  now: Date.parse(control.at),
  maxSkewMs: 60_000,
  seenNonces: ['00000000000000000000000000000000'],
};
const carol = { ...control, by: 'carol' };
const inputs: unknown[] = [
  { ...control, signature: sshSign('bob', control) },
  { ...control, signature: sshSign('alice', control) },
  { ...control, signature: sshSign('bob', { ...control, target: 'production' }) },
  { ...control, nonce: '00000000000000000000000000000000', signature: 'x' },
  {
    ...carol,
    signature: `ed25519:${base64Encode(ed25519.sign(new TextEncoder().encode(controlStatement(carol)), secret))}`,
  },
  { ...control, signature: 'ed25519:AAAA' },
  null,
  'bob',
];

describe('signed-control verification inside the workflow sandbox', () => {
  const server = timeSkippingForTests();

  it('bundles with the shipped options and answers exactly as plain Node', async () => {
    const { code } = await bundleWorkflowCode({
      workflowsPath: require.resolve('../fixtures/signatures-workflow'),
      logger: { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error },
      ...workflowBundlerOptions(),
    });
    const taskQueue = taskQueueForTest();
    const worker = await Worker.create({
      connection: server.env.nativeConnection,
      taskQueue,
      workflowBundle: { code },
    });
    const inSandbox = await worker.runUntil(
      server.env.client.workflow.execute<typeof verifyInSandbox>('verifyInSandbox', {
        taskQueue,
        workflowId: randomWorkflowId('signatures'),
        args: [inputs, rules],
      }),
    );
    const seenNonces = new Set(rules.seenNonces);
    const inNode = inputs.map((input) => verifySignedControl(input, { ...rules, seenNonces }));
    expect(inSandbox).toEqual(inNode);
    expect(inSandbox.map((v) => v.ok)).toEqual([true, false, false, false, true, false, false, false]);
  });
});

const noop = () => undefined;
