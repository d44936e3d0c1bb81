import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519';
import {
  controlStatement,
  parseOpenSshKey,
  parseSshSignature,
  verifySignedControl,
  type ControlStatement,
  type Signer,
  type VerifyRules,
} from '../../src/domain/signatures';
import { base64Encode, concat, wireString, ascii } from '../../src/domain/ssh-wire';

/** Keys and signatures from the real `ssh-keygen`, as an engineer's CLI would make them. */
const dir = mkdtempSync(join(tmpdir(), 'tollgate-signatures-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sshKey(name: string): { path: string; pub: string } {
  const path = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@example`, '-f', path]);
  return { path, pub: readFileSync(`${path}.pub`, 'utf8').trim() };
}

const sshSign = (key: { path: string }, message: string, namespace = 'tollgate'): string =>
  execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-n', namespace, '-f', key.path], { input: message }).toString();

const NOW = Date.parse('2026-12-02T16:00:00.000Z');
const alice = sshKey('alice');
const bob = sshKey('bob');
const mallory = sshKey('mallory');
const signers: Signer[] = [
  { name: 'alice', keys: [alice.pub] },
  { name: 'bob', keys: [bob.pub] },
];
const rules = (over: Partial<VerifyRules> = {}): VerifyRules => ({
  signers,
  now: NOW,
  maxSkewMs: 5 * 60_000,
  seenNonces: new Set(),
  ...over,
});

const control = (over: Partial<ControlStatement> = {}): ControlStatement => ({
  workflowId: 'release-checkout',
  runId: '0190c2a4-7d1e-7c3b-9f10-2b5f4c8d9e01',
  action: 'approve',
  target: 'production',
  by: 'bob',
  at: '2026-12-02T16:00:00.000Z',
  nonce: '9f86d081884c7d659a2feaa0c55ad015',
  ...over,
});

const refusal = (v: { ok: true } | { ok: false; reason: string }): string => (v.ok ? 'accepted' : v.reason);

/** What the workflow checks: the signer's fields and signature, with its own expectations laid over them. */
const signedBy = (key: { path: string }, signed: ControlStatement, namespace?: string) => ({
  ...signed,
  signature: sshSign(key, controlStatement(signed), namespace),
});

describe('controlStatement', () => {
  it('is the fields, one labelled line each, and nothing else', () => {
    expect(controlStatement(control())).toBe(
      [
        'tollgate-control v1',
        'workflow release-checkout',
        'run 0190c2a4-7d1e-7c3b-9f10-2b5f4c8d9e01',
        'action approve',
        'target production',
        'by bob',
        'at 2026-12-02T16:00:00.000Z',
        'nonce 9f86d081884c7d659a2feaa0c55ad015',
        '',
      ].join('\n'),
    );
  });

  it.each(['bob\naction promote', 'bob\r', 'bob\u0000', 'bob\u2028', 'bob\u0085', ''])(
    'refuses a field that could make one statement read as another: %j',
    (by) => {
      expect(() => controlStatement(control({ by }))).toThrow(/by/);
      const verdict = verifySignedControl({ ...control({ by }), signature: 'x' }, rules());
      expect(refusal(verdict)).toMatch(/^by /);
    },
  );
});

describe('OpenSSH public keys', () => {
  it('fingerprints a key exactly as ssh-keygen -l does', () => {
    const printed = execFileSync('ssh-keygen', ['-lf', `${alice.path}.pub`]).toString();
    const parsed = parseOpenSshKey(alice.pub);
    expect(parsed.ok && parsed.value.fingerprint).toBe(printed.split(' ')[1]);
  });

  it('refuses other key types and malformed lines with a reason', () => {
    const rsaBlob = base64Encode(concat(wireString(ascii('ssh-rsa')), wireString(new Uint8Array(3))));
    const shortKey = base64Encode(concat(wireString(ascii('ssh-ed25519')), wireString(new Uint8Array(31))));
    const [, data] = alice.pub.split(' ');
    const cases: [unknown, RegExp][] = [
      [`ssh-ed25519 ${rsaBlob}`, /ssh-rsa key/],
      [`ssh-ed25519 ${shortKey}`, /31 bytes, not 32/],
      [`ssh-ed25519 ${data?.slice(0, -4)}`, /OpenSSH public key: /],
      [`ssh-ed25519 ${data}!`, /not base64|multiple of 4/],
      [`ssh-rsa ${data}`, /starting with ssh-ed25519/],
      ['', /starting with ssh-ed25519/],
      [42, /short string/],
    ];
    for (const [line, reason] of cases) expect(refusal(parseOpenSshKey(line))).toMatch(reason);
  });
});

describe('verifySignedControl with ssh-keygen -Y sign', () => {
  it('accepts a control signed by the key listed for its signer', () => {
    const fp = parseOpenSshKey(bob.pub);
    expect(verifySignedControl(signedBy(bob, control()), rules())).toEqual({
      ok: true,
      identity: 'bob',
      fingerprint: fp.ok && fp.value.fingerprint,
    });
  });

  it('parses the armored block ssh-keygen writes (sha512, namespace tollgate)', () => {
    const parsed = parseSshSignature(sshSign(bob, 'x'));
    expect(parsed.ok && [parsed.value.namespace, parsed.value.hashAlgorithm, parsed.value.signature.length]).toEqual([
      'tollgate',
      'sha512',
      64,
    ]);
  });

  it('refuses a key listed for nobody', () => {
    const verdict = verifySignedControl(signedBy(mallory, control()), rules());
    expect(refusal(verdict)).toMatch(/^signed with SHA256:\S+, a key not listed for bob$/);
  });

  it("refuses a key listed for someone else as that person's", () => {
    expect(verifySignedControl(signedBy(alice, control()), rules())).toEqual({
      ok: false,
      reason: "signed with alice's key, not bob's",
    });
  });

  it('refuses a name no signer has', () => {
    const verdict = verifySignedControl(signedBy(mallory, control({ by: 'mallory' })), rules());
    expect(verdict).toEqual({ ok: false, reason: 'mallory is not a listed signer' });
  });

  it('lets a look-alike name (Cyrillic а) match its own key, and never borrow another', () => {
    const lookAlike = control({ by: '\u0430lice' });
    expect(verifySignedControl(signedBy(alice, lookAlike), rules())).toMatchObject({ ok: true, identity: 'alice' });
    expect(verifySignedControl(signedBy(bob, lookAlike), rules())).toEqual({
      ok: false,
      reason: "signed with bob's key, not \u0430lice's",
    });
    // A look-alike of bob signed with alice's key is still alice's key, not bob's.
    const fakeBob = control({ by: 'b\u043eb' });
    expect(verifySignedControl(signedBy(alice, fakeBob), rules())).toMatchObject({ ok: false, reason: /alice's key/ });
  });

  it.each<[string, Partial<ControlStatement>]>([
    ['another release', { workflowId: 'release-payments' }],
    ['another run', { runId: '0190c2a4-7d1e-7c3b-9f10-2b5f4c8d9e02' }],
    ['another action', { action: 'promote' }],
    ['another gate', { target: 'canary' }],
  ])('refuses a signature made for %s', (_, signedFor) => {
    const { signature } = signedBy(bob, control(signedFor));
    expect(verifySignedControl({ ...control(), signature }, rules())).toEqual({
      ok: false,
      reason: 'the signature does not match this release, run, action and gate',
    });
  });

  it('refuses a replayed nonce', () => {
    const signed = signedBy(bob, control());
    const verdict = verifySignedControl(signed, rules({ seenNonces: new Set([signed.nonce]) }));
    expect(refusal(verdict)).toMatch(/already used/);
  });

  it.each([
    ['behind', '2026-12-02T15:54:59.000Z'],
    ['ahead of', '2026-12-02T16:05:01.000Z'],
  ])('refuses a timestamp too far %s the clock, and accepts one within the skew', (word, at) => {
    expect(verifySignedControl(signedBy(bob, control({ at })), rules())).toEqual({
      ok: false,
      reason: `signed at ${at}, 301s ${word} the workflow's clock (at most 300s allowed)`,
    });
    const within = word === 'behind' ? '2026-12-02T15:55:00.000Z' : '2026-12-02T16:05:00.000Z';
    expect(verifySignedControl(signedBy(bob, control({ at: within })), rules())).toMatchObject({ ok: true });
  });

  it.each(['2026-12-02T16:00:00Z', '2026-12-02 16:00', 'yesterday'])(
    'refuses a timestamp not in ISO form: %s',
    (at) => {
      expect(verifySignedControl({ ...control({ at }), signature: 'x' }, rules())).toMatchObject({
        reason: /^at must be/,
      });
    },
  );

  it.each(['abc', '9F86D081884C7D659A2FEAA0C55AD015', 'z'.repeat(16), 'a'.repeat(15), 'a'.repeat(65)])(
    'refuses a nonce that is not 16–64 lowercase hex characters: %s',
    (nonce) => {
      expect(verifySignedControl(signedBy(bob, control({ nonce })), rules())).toEqual({
        ok: false,
        reason: 'nonce must be 16–64 lowercase hex characters',
      });
    },
  );

  it('refuses a signature made for another namespace', () => {
    expect(verifySignedControl(signedBy(bob, control(), 'git'), rules())).toEqual({
      ok: false,
      reason: 'signed for namespace git, not tollgate (ssh-keygen -Y sign -n tollgate)',
    });
  });

  it.each(['', 'not a signature', '-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----', 'ed25519:AAAA'])(
    'refuses a malformed signature: %j',
    (signature) => {
      expect(verifySignedControl({ ...control(), signature }, rules())).toMatchObject({
        ok: false,
        reason: /signature/i,
      });
    },
  );
});

describe('verifySignedControl with a raw Ed25519 signature', () => {
  const secret = randomBytes(32);
  const rawPub = `ssh-ed25519 ${base64Encode(concat(wireString(ascii('ssh-ed25519')), wireString(ed25519.getPublicKey(secret))))} carol@ci`;
  const withCarol = rules({ signers: [...signers, { name: 'carol', keys: [rawPub] }] });
  const rawSigned = (signed: ControlStatement, key = secret) => ({
    ...signed,
    signature: `ed25519:${base64Encode(ed25519.sign(new TextEncoder().encode(controlStatement(signed)), key))}`,
  });

  it('accepts it against the same OpenSSH-format key line', () => {
    expect(verifySignedControl(rawSigned(control({ by: 'carol' })), withCarol)).toMatchObject({
      ok: true,
      identity: 'carol',
    });
  });

  it("refuses it as someone else's key, for another gate, or with an unlisted key", () => {
    expect(verifySignedControl(rawSigned(control({ by: 'bob' })), withCarol)).toEqual({
      ok: false,
      reason: "signed with carol's key, not bob's",
    });
    const { signature } = rawSigned(control({ by: 'carol', target: 'canary' }));
    expect(verifySignedControl({ ...control({ by: 'carol' }), signature }, withCarol)).toEqual({
      ok: false,
      reason: 'the signature does not match this release, run, action and gate, with any key listed for carol',
    });
    expect(verifySignedControl(rawSigned(control({ by: 'carol' }), randomBytes(32)), withCarol)).toMatchObject({
      ok: false,
      reason: /does not match/,
    });
  });

  it('refuses a signature that is not 64 bytes of canonical base64', () => {
    for (const signature of ['ed25519:', 'ed25519:AAAA', `ed25519:${'A'.repeat(86)}=`, `ed25519:${'A'.repeat(85)}B==`])
      expect(verifySignedControl({ ...control({ by: 'carol' }), signature }, withCarol)).toMatchObject({ ok: false });
  });
});
