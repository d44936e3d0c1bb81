import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { decideControl, type ControlView } from '../../src/domain/controls';
import {
  controlStatement,
  parseOpenSshKey,
  parseSshSignature,
  verifySignedControl,
  type ControlStatement,
  type VerifyRules,
} from '../../src/domain/signatures';
import { base64Decode, base64Encode } from '../../src/domain/ssh-wire';
import { recordHostileRows, type HostileRow } from '../helpers/reliability-report';

const RUNS = { numRuns: 300, seed: 20261202 };
const FILE = 'test/unit/signatures.property.test.ts';
const rows: HostileRow[] = [];
afterAll(() => recordHostileRows('signatures', rows));
const tally = (label: string, cases: number, bypasses = 0) =>
  rows.push({ class: label, cases, jams: 0, bypasses, loosenings: 0, seed: RUNS.seed, file: FILE });

// One real key and one real signature, so generated inputs meet a verifier that has something to accept.
const dir = mkdtempSync(join(tmpdir(), 'tollgate-signatures-prop-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'bob')]);
const bobPub = readFileSync(join(dir, 'bob.pub'), 'utf8').trim();

const NOW = Date.parse('2026-12-02T16:00:00.000Z');
const rules: VerifyRules = {
  signers: [{ name: 'bob', keys: [bobPub] }],
  now: NOW,
  maxSkewMs: 300_000,
  seenNonces: new Set(),
};
const control: ControlStatement = {
  workflowId: 'release-checkout',
  runId: 'run-1',
  action: 'approve',
  target: 'production',
  by: 'bob',
  at: '2026-12-02T16:00:00.000Z',
  nonce: '0123456789abcdef0123456789abcdef',
};
const signature = execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-n', 'tollgate', '-f', join(dir, 'bob')], {
  input: controlStatement(control),
}).toString();
const BEGIN = '-----BEGIN SSH SIGNATURE-----';
const END = '-----END SSH SIGNATURE-----';
const blob = base64Decode(signature.replace(BEGIN, '').replace(END, '').replace(/\s+/g, ''));
const armor = (bytes: Uint8Array) => `${BEGIN}\n${base64Encode(bytes).replace(/.{70}/g, '$&\n')}\n${END}\n`;

const refusedWithReason = (verdict: { ok: boolean; reason?: unknown }) => {
  expect(verdict.ok).toBe(false);
  expect(typeof verdict.reason).toBe('string');
};

const hostileString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.constantFrom(
    '',
    'ed25519:',
    'ssh-ed25519',
    BEGIN,
    `${BEGIN}\n${END}`,
    signature.slice(0, 200),
    'A'.repeat(10_000),
  ),
  fc.uint8Array({ maxLength: 300 }).map((b) => `ed25519:${base64Encode(b)}`),
  fc.uint8Array({ maxLength: 400 }).map(armor),
  fc.uint8Array({ maxLength: 80 }).map((b) => `ssh-ed25519 ${base64Encode(b)} x`),
);

describe('signatures on hostile input: nothing throws, nothing is accepted', () => {
  it('the parsers, on any string or JSON value', () => {
    fc.assert(
      fc.property(fc.oneof(hostileString, fc.anything()), (input) => {
        refusedWithReason(parseOpenSshKey(input));
        refusedWithReason(parseSshSignature(input));
      }),
      RUNS,
    );
    tally('OpenSSH key and SSH signature parsers on any string or JSON value', RUNS.numRuns);
  });

  it('verifySignedControl, on any JSON value and on real fields with any signature', () => {
    const fields = fc.record({ by: fc.oneof(fc.constant('bob'), hostileString), at: fc.constant(control.at) });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything(),
          fc.record({ signature: hostileString }).map((s) => ({ ...control, ...s })),
          fc.tuple(fields, fc.anything()).map(([f, signature]) => ({ ...control, ...f, signature })),
        ),
        (input) => refusedWithReason(verifySignedControl(input, rules)),
      ),
      RUNS,
    );
    tally('signed controls on any payload and signature', RUNS.numRuns);
  });

  it('a valid ssh-keygen signature with any one byte flipped', () => {
    expect(verifySignedControl({ ...control, signature }, rules)).toMatchObject({ ok: true });
    // Re-armored unchanged it still verifies, so every refusal below is the flipped byte's doing.
    expect(verifySignedControl({ ...control, signature: armor(blob) }, rules)).toMatchObject({ ok: true });
    fc.assert(
      fc.property(fc.nat({ max: blob.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, mask) => {
        const flipped = Uint8Array.from(blob);
        flipped[at] = (flipped[at] ?? 0) ^ mask;
        refusedWithReason(verifySignedControl({ ...control, signature: armor(flipped) }, rules));
      }),
      RUNS,
    );
    tally('a valid SSHSIG signature with one byte flipped', RUNS.numRuns);
  });
});

describe('decideControl with signatures required: only the exact signed decision is accepted', () => {
  const view: ControlView = {
    state: 'awaiting-approval',
    stage: 'production',
    gate: 'production',
    paused: false,
    baking: false,
    watching: false,
    initiator: 'alice',
    fourEyes: true,
    approvers: undefined,
    signing: {
      workflowId: control.workflowId,
      runId: control.runId,
      now: NOW,
      require: ['start', 'approve', 'promote', 'resume'],
      signers: rules.signers,
      maxSkewMs: rules.maxSkewMs,
      seenNonces: new Set(),
    },
  };
  const signed = {
    workflowId: control.workflowId,
    runId: control.runId,
    target: control.target,
    at: control.at,
    nonce: control.nonce,
    signature,
  };

  it('any payload, and the valid one with any field changed, is refused without throwing', () => {
    expect(decideControl('approve', { by: 'bob', signed }, view)).toMatchObject({ ok: true, actor: 'bob' });
    const field = fc.constantFrom(...(Object.keys(signed) as (keyof typeof signed)[]), 'by' as const);
    const mutated = fc
      .tuple(field, fc.oneof(hostileString, fc.constantFrom('BOB', 'bоb', 'alice', 'canary')))
      .filter(([f, v]) => (f === 'by' ? v !== 'bob' : v !== signed[f]));
    let bypasses = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything(),
          fc.record({ by: fc.oneof(fc.constant('bob'), hostileString), signed: fc.anything() }),
          mutated.map(([f, v]) => (f === 'by' ? { by: v, signed } : { by: 'bob', signed: { ...signed, [f]: v } })),
        ),
        fc.constantFrom('approve', 'promote', 'resume', 'abort', 'pause', 'rollback' as const),
        (payload, name) => {
          const decision = decideControl(name, payload, view);
          if (decision.ok && (name === 'approve' || name === 'promote' || name === 'resume')) bypasses++;
          if (name === 'approve' || name === 'promote' || name === 'resume') expect(decision.ok).toBe(false);
        },
      ),
      RUNS,
    );
    tally('signed controls with any field of a valid signature changed (go-further decisions)', RUNS.numRuns, bypasses);
  });

  it('the valid signature once spent is refused as a replay', () => {
    const spent = { ...view, signing: { ...view.signing!, seenNonces: new Set([control.nonce]) } };
    expect(decideControl('approve', { by: 'bob', signed }, spent)).toEqual({
      ok: false,
      reason: `approve refused: nonce ${control.nonce} was already used: a signature is good once`,
    });
  });
});
