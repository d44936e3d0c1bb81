import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { signDecision, signerFromKeyFile, type Decision, type StatementSigner } from '../../src/client/signer';
import { CONTROL_SIGNALS, CONTROL_UPDATES, statusQuery, type ControlName } from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import { START_RUN, type Signed } from '../../src/domain/signing-policy';
import { controlStatement, parseOpenSshKey } from '../../src/domain/signatures';
import type { ReleaseStatus } from '../../src/domain/status';
import { checkoutPolicy, errorsCheck } from '../helpers/policies';
import { waitForStatus, type ReleaseHandle } from '../helpers/release-handle';
import { runRelease, withRelease } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

/**
 * Signed controls on a real workflow (time-skipping): with signatures required, no unsigned or mis-signed message
 * moves a release, whichever way it comes (update, signal), and four-eyes compares who really signed.
 */

const dir = mkdtempSync(join(tmpdir(), 'tollgate-signed-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** alice and mallory hold raw Ed25519 keys (PKCS#8 files); bob signs with a real OpenSSH key via ssh-keygen. */
function pemKey(name: string): StatementSigner {
  const path = join(dir, `${name}.pem`);
  writeFileSync(path, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
  return signerFromKeyFile(path);
}
function sshKey(name: string): StatementSigner {
  const path = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@example`, '-f', path]);
  return signerFromKeyFile(path);
}
const keys = { alice: pemKey('alice'), bob: sshKey('bob'), carol: pemKey('carol'), mallory: pemKey('mallory') };
let signers: { name: string; keys: string[] }[];
beforeAll(async () => {
  signers = await Promise.all(
    (['alice', 'bob', 'carol'] as const).map(async (name) => ({ name, keys: [await keys[name].publicKey()] })),
  );
  expect(readFileSync(join(dir, 'bob.pub'), 'utf8').trim()).toBe(signers[1]!.keys[0]);
});

const policy = (over: Partial<ServicePolicyInput> = {}): ServicePolicyInput =>
  checkoutPolicy({
    trafficCycle: { duration: '1h' },
    canary: { approval: true, analysis: { interval: '1m', checks: [errorsCheck] } },
    production: { approval: true, waves: [{ percent: 100, bake: '10m' }] },
    approvals: {
      fourEyes: true,
      signers,
      signing: { require: ['start', 'approve', 'promote', 'resume'] },
    },
    ...over,
  });

describe('signed controls (time-skipping)', () => {
  const server = timeSkippingForTests();
  const env = (): TestWorkflowEnvironment => server.env;
  const now = async () => new Date(await env().currentTimeMs());

  const signedStart = async (by = 'alice', key = keys.alice, version = '2.0.0') => ({
    initiator: by,
    signed: await signDecision(
      key,
      { workflowId: 'release-checkout', runId: START_RUN, action: 'start', target: version, by },
      await now(),
    ),
  });

  /** What a client signs for this release as it stands (`over` forges any field). */
  async function sign(
    handle: ReleaseHandle,
    action: ControlName,
    target: string,
    by: string,
    key: StatementSigner,
    over: Partial<Decision> = {},
  ): Promise<Signed> {
    const runId = (await handle.describe()).runId;
    return signDecision(key, { workflowId: handle.workflowId, runId, action, target, by, ...over }, await now());
  }

  const update = (handle: ReleaseHandle, name: ControlName, payload: unknown): Promise<string> =>
    handle.executeUpdate(CONTROL_UPDATES[name] as never, { args: [payload as never] }).then(
      () => 'accepted',
      (err: unknown) =>
        err instanceof WorkflowUpdateFailedError ? `refused: ${(err.cause as Error).message}` : `error: ${String(err)}`,
    );

  const atGate = (name: string) => (s: ReleaseStatus) => s.gate?.name === name;
  const untilGate = (handle: ReleaseHandle, name: string) =>
    waitForStatus(handle, atGate(name), { env: env(), step: '1m' });

  it('a proven start and signed approvals promote; the audit trail and the Web UI show each signer’s key', async () => {
    const {
      result,
      status,
      value: details,
    } = await runRelease(env(), { policy: policy(), request: await signedStart() }, async (h) => {
      await untilGate(h, 'canary');
      expect(
        await update(h, 'approve', { by: 'bob', signed: await sign(h, 'approve', 'canary', 'bob', keys.bob) }),
      ).toBe('accepted');
      await untilGate(h, 'production');
      // A signal is checked the same way.
      const signed = await sign(h, 'approve', 'production', 'carol', keys.carol);
      await h.signal(CONTROL_SIGNALS.approve as never, { by: 'carol', comment: 'looks fine', signed } as never);
      await h.result();
      return (await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata')).currentDetails ?? '';
    });
    expect(result.outcome).toBe('promoted');
    expect(status.initiator).toBe('alice');
    expect(status.startProof).toBe(fingerprintOf(signers[0]!.keys[0]!));
    const approvals = status.audit.filter((e) => e.action === 'approve');
    expect(approvals.map((e) => [e.actor, e.accepted, e.proof])).toEqual([
      ['bob', true, fingerprintOf(signers[1]!.keys[0]!)],
      ['carol', true, fingerprintOf(signers[2]!.keys[0]!)],
    ]);
    expect(status.audit.find((e) => e.action === 'start')).toMatchObject({ actor: 'alice', proof: status.startProof });
    // The Web UI's details: who started and who approved, with the fingerprint of each key.
    expect(details).toContain(`started by alice — proven: \`${status.startProof}\``);
    expect(details).toContain(`**approve** by **bob** (signed, key \`${approvals[0]!.proof}\`)`);
    expect(details).toContain(`**approve** by **carol** (signed, key \`${approvals[1]!.proof}\`)`);
  });

  it('unsigned, forged, borrowed and look-alike approvals are refused by update and by signal; none moves the gate', async () => {
    await withRelease(env(), { policy: policy(), request: await signedStart() }, async (h) => {
      await untilGate(h, 'canary');
      const attempts: [string, unknown][] = [
        ['unsigned', { by: 'bob' }],
        ['mallory’s key as bob', { by: 'bob', signed: await sign(h, 'approve', 'canary', 'bob', keys.mallory) }],
        ['alice’s key as bob', { by: 'bob', signed: await sign(h, 'approve', 'canary', 'bob', keys.alice) }],
        [
          'mallory, not a signer',
          { by: 'mallory', signed: await sign(h, 'approve', 'canary', 'mallory', keys.mallory) },
        ],
        // Cyrillic о and a capital: the same person as bob to every comparison, so it needs bob's key.
        ['look-alike of bob', { by: 'Bоb', signed: await sign(h, 'approve', 'canary', 'Bоb', keys.mallory) }],
        // alice started the release: signing as herself in another spelling is still her, and four-eyes says no.
        ['alice as ALICE', { by: 'ALICE', signed: await sign(h, 'approve', 'canary', 'ALICE', keys.alice) }],
        ['another gate', { by: 'bob', signed: await sign(h, 'approve', 'production', 'bob', keys.bob) }],
        [
          'another release',
          {
            by: 'bob',
            signed: await sign(h, 'approve', 'canary', 'bob', keys.bob, { workflowId: 'release-payments' }),
          },
        ],
        [
          'another run',
          { by: 'bob', signed: await sign(h, 'approve', 'canary', 'bob', keys.bob, { runId: 'a-run-before' }) },
        ],
        ['another action', { by: 'bob', signed: await sign(h, 'promote', 'canary', 'bob', keys.bob) }],
        [
          'bad signature',
          {
            by: 'bob',
            signed: { ...(await sign(h, 'approve', 'canary', 'bob', keys.carol)), signature: 'ed25519:AAAA' },
          },
        ],
      ];
      const expected: Record<string, RegExp> = {
        unsigned: /refused: approve must be signed/,
        'mallory’s key as bob': /does not match .*, with any key listed for bob/,
        'alice’s key as bob': /signed with alice's key, not bob's/,
        'mallory, not a signer': /mallory is not a listed signer/,
        'look-alike of bob': /does not match .*, with any key listed for Bоb/,
        'alice as ALICE': /four-eyes: alice started this release/,
        'another gate': /signed for production, but this approve applies to canary/,
        'another release': /signed for another release \(release-payments\)/,
        'another run': /signed for another run/,
        'another action': /does not match this release, run, action and gate/,
        'bad signature': /an Ed25519 signature of 3 bytes, not 64/,
      };
      for (const [what, payload] of attempts) {
        const answer = await update(h, 'approve', payload);
        expect([what, answer]).toEqual([what, expect.stringMatching(expected[what]!) as unknown]);
      }
      // The same payloads as signals: each refused and audited, the gate still closed.
      for (const [, payload] of attempts) await h.signal(CONTROL_SIGNALS.approve as never, payload as never);
      const status = await h.query(statusQuery);
      expect(status.gate?.name).toBe('canary');
      const refused = status.audit.filter((e) => e.action === 'approve');
      expect(refused).toHaveLength(attempts.length);
      expect(refused.every((e) => !e.accepted)).toBe(true);
    });
  });

  it('a valid signature is good once: replayed at the same gate, at the next gate or after it was used, it is refused', async () => {
    await withRelease(env(), { policy: policy(), request: await signedStart() }, async (h) => {
      await untilGate(h, 'canary');
      const bobs = { by: 'bob', signed: await sign(h, 'approve', 'canary', 'bob', keys.bob) };
      expect(await update(h, 'approve', bobs)).toBe('accepted');
      await untilGate(h, 'production');
      expect(await update(h, 'approve', bobs)).toMatch(/signed for canary, but this approve applies to production/);
      // The same nonce in a signature made for the production gate: the nonce was spent at the canary gate.
      const reused = await signDecision(
        keys.bob,
        {
          workflowId: h.workflowId,
          runId: (await h.describe()).runId,
          action: 'approve',
          target: 'production',
          by: 'bob',
        },
        await now(),
      );
      const replay = { ...reused, nonce: bobs.signed.nonce };
      // Re-signed with the spent nonce, so the signature is good and only the nonce is at fault.
      replay.signature = await keys.bob.sign(controlStatement({ ...replay, action: 'approve', by: 'bob' }));
      expect(await update(h, 'approve', { by: 'bob', signed: replay })).toMatch(
        /already used: a signature is good once/,
      );
      expect((await h.query(statusQuery)).gate?.name).toBe('production');
    });
  });

  it('a signature from outside the allowed skew is refused', async () => {
    await withRelease(env(), { policy: policy(), request: await signedStart() }, async (h) => {
      await untilGate(h, 'canary');
      const runId = (await h.describe()).runId;
      const old = new Date((await now()).getTime() - 6 * 60_000);
      const signed = await signDecision(
        keys.bob,
        { workflowId: h.workflowId, runId, action: 'approve', target: 'canary', by: 'bob' },
        old,
      );
      expect(await update(h, 'approve', { by: 'bob', signed })).toMatch(/behind the workflow's clock \(at most 300s/);
    });
  });

  it('a start that is not proven, or proven by someone not listed, deploys nothing and fails naming why', async () => {
    const failure = async (request: Record<string, unknown>) => {
      let deployed = 0;
      const err = await runRelease(env(), {
        policy: policy(),
        request,
        deploy: (step, real) => {
          deployed++;
          return real(step);
        },
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(deployed).toBe(0);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      return ((err as WorkflowFailedError).cause as Error).message;
    };
    expect(await failure({})).toMatch(/start refused: this service requires a proven start/);
    expect(await failure(await signedStart('mallory', keys.mallory))).toMatch(/mallory is not a listed signer/);
    expect(await failure({ ...(await signedStart('alice', keys.alice, '9.9.9')) })).toMatch(
      /signed for 9\.9\.9, but this start applies to 2\.0\.0/,
    );
    expect(await failure(await signedStart('bob', keys.alice))).toMatch(/signed with alice's key, not bob's/);
  });

  it('with no signature required, a signature sent is still checked; an unsigned control is accepted as before', async () => {
    const loose = policy({ approvals: { fourEyes: true, signers } });
    await withRelease(env(), { policy: loose }, async (h) => {
      await untilGate(h, 'canary');
      expect(
        await update(h, 'approve', { by: 'bob', signed: await sign(h, 'approve', 'canary', 'bob', keys.mallory) }),
      ).toMatch(/does not match this release, run, action and gate, with any key listed for bob/);
      expect(await update(h, 'approve', { by: 'bob' })).toBe('accepted');
      const status = await h.query(statusQuery);
      expect(status.audit.find((e) => e.action === 'approve' && e.accepted)?.proof).toBeUndefined();
    });
  });
});

function fingerprintOf(line: string): string {
  const parsed = parseOpenSshKey(line);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.value.fingerprint;
}

describe('a CI pipeline starts a release with its OIDC token (time-skipping, real loopback issuer)', () => {
  const server = timeSkippingForTests();
  let issuer: { url: string; requests: string[]; close: () => Promise<void> };
  let key: CryptoKey;
  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    key = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'ci-1', alg: 'RS256', use: 'sig' };
    const requests: string[] = [];
    const http = createServer((req, res) => {
      requests.push(req.url ?? '');
      const body =
        req.url === '/.well-known/openid-configuration'
          ? { issuer: url, jwks_uri: `${url}/.well-known/jwks` }
          : req.url === '/.well-known/jwks'
            ? { keys: [jwk] }
            : undefined;
      res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(body ?? {}));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    issuer = {
      url,
      requests,
      close: () => new Promise<void>((resolve) => http.close(() => resolve())),
    };
  });
  afterAll(() => issuer.close());

  const ciPolicy = () =>
    policy({
      approvals: {
        fourEyes: true,
        signers,
        machines: [
          {
            name: 'checkout-ci',
            issuer: issuer.url,
            audience: 'tollgate',
            claims: { repository: 'acme/checkout', ref: 'refs/heads/main', environment: 'production' },
          },
        ],
        signing: { require: ['start', 'approve', 'promote', 'resume'] },
      },
    });

  /** A GitHub-Actions-like ID token, valid at the test server's clock (which time-skipping moves ahead). */
  const token = async (claims: Record<string, string> = {}, audience = 'tollgate') => {
    const now = Math.floor((await server.env.currentTimeMs()) / 1000);
    return new SignJWT({ repository: 'acme/checkout', ref: 'refs/heads/main', environment: 'production', ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: 'ci-1' })
      .setIssuer(issuer.url)
      .setAudience(audience)
      .setSubject('repo:acme/checkout:environment:production')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(key);
  };

  it('a token from the listed pipeline proves the start, with the keys that verified it in the history', async () => {
    const { value: status, handle } = await withRelease(
      server.env,
      { policy: ciPolicy(), request: { initiator: 'ci', identityToken: await token() } },
      (h) => waitForStatus(h, (s) => s.gate?.name === 'canary', { env: server.env, step: '1m' }),
    );
    expect(status.initiator).toBe('checkout-ci');
    expect(status.startProof).toBe(`${issuer.url} repo:acme/checkout:environment:production`);
    expect(status.audit[0]).toMatchObject({ actor: 'checkout-ci', action: 'start', proof: status.startProof });
    expect(issuer.requests).toEqual(['/.well-known/openid-configuration', '/.well-known/jwks']);
    // The activity's result, with the issuer's keys, is what an offline check re-verifies the token with.
    const { events } = await handle.fetchHistory();
    const completed = (events ?? []).filter((e) => e.activityTaskCompletedEventAttributes);
    const results = completed.map((e) =>
      Buffer.from(e.activityTaskCompletedEventAttributes!.result!.payloads![0]!.data!).toString('utf8'),
    );
    expect(results.some((r) => r.includes('"kid":"ci-1"') && r.includes('"machine":"checkout-ci"'))).toBe(true);
  });

  it('a token for another branch, audience or issuer refuses the start and deploys nothing', async () => {
    const refused = async (identityToken: string) => {
      const err = await runRelease(server.env, {
        policy: ciPolicy(),
        request: { initiator: 'ci', identityToken },
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      return ((err as WorkflowFailedError).cause as Error).message;
    };
    expect(await refused(await token({ ref: 'refs/heads/feature' }))).toMatch(
      /start refused: .*claim ref is "refs\/heads\/feature", not "refs\/heads\/main"/,
    );
    const other = await new SignJWT({ repository: 'acme/checkout' })
      .setProtectedHeader({ alg: 'RS256', kid: 'ci-1' })
      .setIssuer('https://token.actions.githubusercontent.com')
      .setAudience('tollgate')
      .setSubject('x')
      .setExpirationTime('5m')
      .sign(key);
    const before = issuer.requests.length;
    expect(await refused(other)).toMatch(/start refused: .*token\.actions\.githubusercontent\.com/);
    expect(issuer.requests).toHaveLength(before); // nothing fetched for an issuer the policy does not list
    expect(await refused(await token({}, 'someone-else'))).toMatch(/start refused: .*audience/);
    expect(await refused('not.a.token')).toMatch(/start refused/);
  });
});
