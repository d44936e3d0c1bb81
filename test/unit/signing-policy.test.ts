import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  orgPolicySchema,
  policyOverrideSchema,
  servicePolicySchema,
  type ServicePolicyInput,
} from '../../src/domain/policy';
import { PolicyError, resolvePolicy } from '../../src/domain/policy-resolution';
import { describeZodError } from '../../src/domain/zod-errors';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-signing-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const keyOf = (name: string) => {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@example`, '-f', join(dir, name)]);
  return readFileSync(join(dir, `${name}.pub`), 'utf8').trim();
};
const alice = keyOf('alice');
const bob = keyOf('bob');

const sources = { org: 'org.yaml', service: 'checkout.yaml' };
const base = (approvals: Record<string, unknown> = {}): ServicePolicyInput => ({
  service: 'checkout',
  trafficCycle: { duration: '1h' },
  canary: { analysis: { checks: [{ name: 'errors', template: 'error-ratio', max: 0.01 }] } },
  production: { waves: [{ percent: 100 }] },
  approvals,
});
const refusal = (input: unknown) => {
  const parsed = servicePolicySchema.safeParse(input);
  expect(parsed.success).toBe(false);
  return parsed.success ? '' : describeZodError(parsed.error);
};
const resolve = (service: ServicePolicyInput, org: Record<string, unknown> = {}) =>
  resolvePolicy(orgPolicySchema.parse(org), servicePolicySchema.parse(service), undefined, sources);
const issues = (service: ServicePolicyInput, org: Record<string, unknown> = {}) => {
  try {
    resolve(service, org);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return (err as PolicyError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
};

describe('who may sign: approvals.signers, machines and signing in the policy', () => {
  it('defaults: nothing signed, no signers; a maxSkew of 5 minutes', () => {
    expect(servicePolicySchema.parse(base()).approvals).toMatchObject({
      signers: [],
      machines: [],
      signing: { require: [], maxSkew: 300_000 },
    });
  });

  it('refuses keys that are not Ed25519 OpenSSH lines, a signer without keys and a look-alike listed twice, naming the field', () => {
    expect(refusal(base({ signers: [{ name: 'alice', keys: ['ssh-rsa AAAAB3NzaC1yc2E= alice'] }] }))).toMatch(
      /approvals\.signers\.0\.keys\.0.*ssh-ed25519/,
    );
    expect(refusal(base({ signers: [{ name: 'alice', keys: ['ssh-ed25519 AAAA'] }] }))).toMatch(
      /approvals\.signers\.0\.keys\.0: an OpenSSH public key/,
    );
    expect(refusal(base({ signers: [{ name: 'alice', keys: [] }] }))).toMatch(
      /approvals\.signers\.0\.keys.*at least one key/,
    );
    expect(
      refusal(
        base({
          signers: [
            { name: 'alice', keys: [alice] },
            { name: 'ALICE', keys: [bob] },
          ],
        }),
      ),
    ).toMatch(/approvals\.signers\.1\.name.*"ALICE" is listed already, as "alice"/);
    expect(refusal(base({ signing: { require: ['deploy'] } }))).toMatch(/approvals\.signing\.require\.0/);
    expect(refusal(base({ signing: { maxSkew: '2h' } }))).toMatch(/approvals\.signing\.maxSkew.*between 10s and 1h/);
    expect(
      refusal(
        base({ machines: [{ name: 'ci', issuer: 'https://issuer.example/', audience: 'tollgate', claims: {} }] }),
      ),
    ).toMatch(/approvals\.machines\.0\.issuer.*trailing slash/);
  });

  it('signatures that could never be given are refused at resolution', () => {
    expect(issues(base({ signing: { require: ['approve'] } }))).toEqual([
      "approvals.signers: signed approve need at least one signer, here or in the org's signers",
    ]);
    expect(issues(base({ signing: { require: ['start'] } }))).toEqual([
      'approvals.signing.require: a signed start needs a signer or a machine in approvals',
    ]);
    expect(
      issues(
        base({
          approvers: ['alice', 'carol'],
          signers: [{ name: 'alice', keys: [alice] }],
          signing: { require: ['approve'] },
        }),
      ),
    ).toEqual(['approvals.approvers[1]: carol has no key in the signers, so could never sign an approval']);
  });

  it('the org lists signers for every service; a service cannot re-key one of them', () => {
    const org = { signers: [{ name: 'alice', keys: [alice] }] };
    const resolved = resolve(base({ signers: [{ name: 'bob', keys: [bob] }], signing: { require: ['approve'] } }), org);
    expect(resolved.approvals.signers.map((s) => s.name)).toEqual(['alice', 'bob']);
    expect(issues(base({ signers: [{ name: 'Alice', keys: [bob] }] }), org)).toEqual([
      'approvals.signers[0].name: "Alice" is one of the org\'s signers; their keys are kept there',
    ]);
  });

  it('minimums.requireSignedApprovals: every service signs start, approve, promote and resume', () => {
    const org = { minimums: { requireSignedApprovals: true }, signers: [{ name: 'alice', keys: [alice] }] };
    expect(issues(base(), org)).toEqual([
      'approvals.signing.require: the org requires signed start, approve, promote and resume (missing: start, approve, promote and resume)',
    ]);
    expect(issues(base({ signing: { require: ['approve', 'promote'] } }), org)).toEqual([
      'approvals.signing.require: the org requires signed start, approve, promote and resume (missing: start and resume)',
    ]);
    expect(issues(base({ signing: { require: ['start', 'approve', 'promote', 'resume'] } }), org)).toEqual([]);
  });

  it('a release request can change none of it', () => {
    const service = servicePolicySchema.parse(
      base({ signers: [{ name: 'bob', keys: [bob] }], signing: { require: ['approve'] } }),
    );
    for (const approvals of [{ signing: { require: [] } }, { signers: [] }, { machines: [] }]) {
      const parsed = policyOverrideSchema.safeParse({ approvals });
      expect(parsed.success).toBe(false);
      if (!parsed.success) expect(describeZodError(parsed.error)).toMatch(/approvals.*unrecognized key/i);
    }
    const resolved = resolvePolicy(orgPolicySchema.parse({}), service, { approvals: { fourEyes: true } }, sources);
    expect(resolved.approvals.signing.require).toEqual(['approve']);
    expect(resolved.approvals.signers.map((s) => s.name)).toEqual(['bob']);
  });
});
