import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duration } from '@temporalio/common';
import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { exportRelease, type ExportedRelease } from '../../src/client/history-export';
import {
  renderVerifyReport,
  verifyHistory,
  type VerifiedDecision,
  type VerifyReport,
} from '../../src/client/history-verify';
import {
  approveSignal,
  approveUpdate,
  pauseUpdate,
  promoteUpdate,
  pauseSignal,
  resumeSignal,
  statusQuery,
  type ControlName,
} from '../../src/domain/messages';
import type { ServicePolicyInput } from '../../src/domain/policy';
import type { ReleaseRequestInput, ReleaseResult } from '../../src/domain/release';
import type { ReleaseStatus } from '../../src/domain/status';
import { controlStatement, parseOpenSshKey } from '../../src/domain/signatures';
import { START_RUN, type Signed } from '../../src/domain/signing-policy';
import { checkoutPolicy, errorsCheck, writePolicies } from '../helpers/policies';
import {
  canaryBaking,
  startRelease,
  waitForStatus,
  type ReleaseHandle,
  type StatusPace,
} from '../helpers/release-handle';
import { healthy, releaseHarness } from '../helpers/release-harness';
import { timeSkippingForTests } from '../helpers/temporal';

/*
 * `tollgate history --verify`: histories recorded here from the real workflow on the time-skipping server, with
 * signatures made as engineers make them (ssh-keygen -Y sign, raw Ed25519 keys), then checked offline as they are,
 * tampered with, cut short, and replaced by garbage.
 */

const dir = mkdtempSync(join(tmpdir(), 'tollgate-history-verify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Key {
  pub: string;
  sign: (statement: string) => string;
}

/** A key from the real ssh-keygen, signing as `ssh-keygen -Y sign -n tollgate` does. */
function sshKey(name: string): Key {
  const path = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@example`, '-f', path]);
  return {
    pub: readFileSync(`${path}.pub`, 'utf8').trim(),
    sign: (statement) =>
      execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-n', 'tollgate', '-f', path], { input: statement }).toString(),
  };
}

const wire = (bytes: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, bytes.length]), bytes]);

/** A node:crypto Ed25519 key: its OpenSSH line built from the raw key, `ed25519:` signatures. */
function rawKey(comment: string): Key {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const blob = Buffer.concat([wire(Buffer.from('ssh-ed25519')), wire(raw)]);
  return {
    pub: `ssh-ed25519 ${blob.toString('base64')} ${comment}`,
    sign: (statement) => `ed25519:${sign(null, Buffer.from(statement), privateKey).toString('base64')}`,
  };
}

const alice = sshKey('alice');
const bob = rawKey('bob@example');
const mallory = rawKey('mallory@example');
const fingerprint = (key: Key) => {
  const parsed = parseOpenSshKey(key.pub);
  return parsed.ok ? parsed.value.fingerprint : 'unparsable';
};
const signers = [
  { name: 'alice', keys: [alice.pub] },
  { name: 'bob', keys: [bob.pub] },
];

describe('tollgate history --verify', () => {
  const server = timeSkippingForTests();
  const WORKFLOW = 'release-checkout';

  /** What `key` signs for one decision, made now by the server's clock (the workflow's). */
  async function signedBy(
    key: Key,
    d: { runId: string; action: ControlName | 'start'; target: string; by: string },
  ): Promise<Signed> {
    const at = new Date(await server.env.currentTimeMs()).toISOString();
    const nonce = randomBytes(16).toString('hex');
    const statement = controlStatement({ workflowId: WORKFLOW, ...d, at, nonce });
    return { workflowId: WORKFLOW, runId: d.runId, target: d.target, at, nonce, signature: key.sign(statement) };
  }

  const runIdOf = async (handle: ReleaseHandle) => (await handle.describe()).runId;
  const pace = (step: Duration): StatusPace => ({ env: server.env, step });

  /** A release of checkout 2.0.0 through to its end, then exported with `exportRelease`. */
  async function record(
    policy: ServicePolicyInput,
    request: () => Promise<Partial<ReleaseRequestInput>>,
    drive: (handle: ReleaseHandle) => Promise<void> = () => Promise.resolve(),
    /** What reaches the release before any worker runs it. */
    early: (handle: ReleaseHandle) => Promise<void> = () => Promise.resolve(),
  ): Promise<{ result: ReleaseResult; exported: ExportedRelease; status: ReleaseStatus }> {
    const policyDir = writePolicies({ minimums: { productionApproval: false } }, [policy]);
    const harness = await releaseHarness(server.env, { policyDir, analysis: healthy() });
    const handle = await startRelease(server.env.client, harness.taskQueue, {
      service: 'checkout',
      version: '2.0.0',
      initiator: 'alice',
      ...(await request()),
    });
    try {
      await early(handle);
      return await harness.worker.runUntil(async () => {
        await drive(handle);
        const result = await handle.result();
        const status = await handle.query(statusQuery);
        return { result, status, exported: await exportRelease(server.env.client, WORKFLOW) };
      });
    } finally {
      await handle.terminate('test over').catch(() => undefined);
    }
  }

  const byAction = (report: VerifyReport, action: string, via?: string) =>
    report.decisions.filter((d) => d.action === action && (via === undefined || d.via === via));
  const clone = (doc: ExportedRelease): ExportedRelease => structuredClone(doc);

  // ---- payloads in exported events ----

  type Json = Record<string, unknown>;
  const attrsOf = (event: Json) =>
    (event.workflowExecutionUpdateAcceptedEventAttributes as Json | undefined)?.acceptedRequest
      ? (((event.workflowExecutionUpdateAcceptedEventAttributes as Json).acceptedRequest as Json).input as Json).args
      : ((event.workflowExecutionSignaledEventAttributes ?? event.workflowExecutionStartedEventAttributes) as Json)
          .input;
  const payloadIn = (event: Json) => ((attrsOf(event) as Json).payloads as Json[])[0]!;
  const readPayload = (event: Json) =>
    JSON.parse(Buffer.from(payloadIn(event).data as string, 'base64').toString()) as Json;
  const writePayload = (event: Json, value: unknown) => {
    payloadIn(event).data = Buffer.from(JSON.stringify(value)).toString('base64');
  };
  /** The exported event a decision came from. */
  const eventOf = (doc: ExportedRelease, d: VerifiedDecision) => {
    const run = doc.runs.find((r) => r.runId === d.runId)!;
    return (run.events as Json[]).find((e) => Number(e.eventId) === d.eventId)!;
  };
  /** Rewrites the payload of the event `d` came from. */
  const tamper = (doc: ExportedRelease, d: VerifiedDecision, change: (payload: Json) => void) => {
    const copy = clone(doc);
    const event = eventOf(copy, d);
    const payload = readPayload(event);
    change(payload);
    writePayload(event, payload);
    return copy;
  };
  const flipSignatureByte = (signature: string): string => {
    if (signature.startsWith('ed25519:')) {
      const bytes = Buffer.from(signature.slice(8), 'base64');
      bytes[10]! ^= 0x01;
      return `ed25519:${bytes.toString('base64')}`;
    }
    const body = /-----BEGIN SSH SIGNATURE-----\n([\s\S]+)-----END SSH SIGNATURE-----/.exec(signature)![1]!;
    const bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
    bytes[bytes.length - 10]! ^= 0x01; // inside the Ed25519 signature, the last field of the blob
    return `-----BEGIN SSH SIGNATURE-----\n${bytes.toString('base64')}\n-----END SSH SIGNATURE-----\n`;
  };

  describe('a promoted release whose every approval, promotion and resume is signed, across continue-as-new', () => {
    let exported: ExportedRelease;
    let report: VerifyReport;
    const runIds: Record<string, string> = {};

    beforeAll(async () => {
      const policy = checkoutPolicy({
        // A 30-day canary outgrows one run (≈2,000 events): the production gate is in a continued run.
        trafficCycle: { duration: '30d' },
        canary: { approval: true, analysis: { interval: '1m', checks: [errorsCheck] } },
        production: { approval: true, waves: [{ percent: 100, bake: '1h' }] },
        approvals: { fourEyes: true, signers, signing: { require: ['approve', 'promote', 'resume'] } },
      });
      const start = async () => ({
        signed: await signedBy(alice, { runId: START_RUN, action: 'start', target: '2.0.0', by: 'alice' }),
      });
      const outcome = await record(policy, start, async (handle) => {
        await waitForStatus(handle, (s) => s.gate?.name === 'canary', pace('1m'));
        const first = (runIds.canary = await runIdOf(handle));
        const canary = { runId: first, action: 'approve', target: 'canary' } as const;
        // Refused by the workflow: mallory's key in bob's name, and an approval the policy requires signed.
        await handle.signal(approveSignal, { by: 'bob', signed: await signedBy(mallory, { ...canary, by: 'bob' }) });
        await handle.signal(approveSignal, { by: 'bob', comment: 'unsigned' });
        await handle.executeUpdate(approveUpdate, {
          args: [{ by: 'bob', comment: 'canary looks fine', signed: await signedBy(bob, { ...canary, by: 'bob' }) }],
        });
        await waitForStatus(handle, canaryBaking, pace('1m'));
        // A pause needs no signature here; the resume is signed with ssh-keygen, and sent as a signal.
        await handle.executeUpdate(pauseUpdate, { args: [{ by: 'carol', reason: 'dashboards are down' }] });
        const resume = { runId: await runIdOf(handle), action: 'resume', target: 'canary', by: 'alice' } as const;
        await handle.signal(resumeSignal, { by: 'alice', signed: await signedBy(alice, resume) });
        await waitForStatus(handle, (s) => s.state === 'baking' && !s.pause, pace('1m'));
        await waitForStatus(handle, (s) => s.gate?.name === 'production', pace('1d'));
        const later = (runIds.production = await runIdOf(handle));
        const production = { runId: later, action: 'approve', target: 'production', by: 'bob' } as const;
        await handle.executeUpdate(approveUpdate, { args: [{ by: 'bob', signed: await signedBy(bob, production) }] });
        await waitForStatus(handle, (s) => s.stage === 'production' && s.state === 'baking', pace('1m'));
        const promote = { runId: await runIdOf(handle), action: 'promote', target: 'production', by: 'bob' } as const;
        await handle.executeUpdate(promoteUpdate, {
          args: [{ by: 'bob', reason: 'wave is clean', signed: await signedBy(bob, promote) }],
        });
      });
      expect(outcome.result.outcome).toBe('promoted');
      exported = outcome.exported;
      report = await verifyHistory(exported);
    });

    it('exports every run, oldest first, and the production gate is in a later run than the canary gate', () => {
      expect(exported.format).toBe('tollgate-history/v1');
      expect(exported.workflowId).toBe(WORKFLOW);
      expect(exported.runs.length).toBeGreaterThan(1);
      expect(exported.runs[0]!.runId).toBe(runIds.canary);
      expect(exported.runs.map((r) => r.runId)).toContain(runIds.production);
      expect(runIds.production).not.toBe(runIds.canary);
    });

    it('is ok: each decision that let it go further is proven, naming the signer and the key', () => {
      expect(report.summary).toMatchObject({ ok: true, problems: [], unproven: 0, invalid: 0, refused: 2 });
      const proven = report.decisions.filter((d) => d.verdict === 'proven');
      expect(proven.map((d) => [d.action, d.via, d.target, d.identity, d.fingerprint, d.workflow])).toEqual([
        ['start', 'start', '2.0.0', 'alice', fingerprint(alice), 'accepted'],
        ['approve', 'update', 'canary', 'bob', fingerprint(bob), 'accepted'],
        ['resume', 'signal', 'canary', 'alice', fingerprint(alice), 'may-have-accepted'],
        ['approve', 'update', 'production', 'bob', fingerprint(bob), 'accepted'],
        ['promote', 'update', 'production', 'bob', fingerprint(bob), 'accepted'],
      ]);
      expect(byAction(report, 'approve', 'update').map((d) => d.runId)).toEqual([runIds.canary, runIds.production]);
      // The pause is unsigned, as the policy allows: it never lets a release go further.
      expect(byAction(report, 'pause')).toMatchObject([{ verdict: 'unsigned', workflow: 'accepted', by: 'carol' }]);
      expect(report.runs[0]).toMatchObject({
        policy: 'resolved',
        signers: [
          { name: 'alice', fingerprints: [fingerprint(alice)] },
          { name: 'bob', fingerprints: [fingerprint(bob)] },
        ],
      });
      expect(report.runs.slice(1).every((r) => r.policy === 'carried')).toBe(true);
    });

    it('counts the forged and the unsigned approval signals as refused by the workflow, not as unproven', () => {
      const signals = byAction(report, 'approve', 'signal');
      expect(signals).toMatchObject([
        { verdict: 'invalid', workflow: 'refused', by: 'bob' },
        { verdict: 'unsigned', workflow: 'refused', reason: 'approve must be signed for this service' },
      ]);
      expect(signals[0]!.reason).toBe(
        'the signature does not match this release, run, action and gate, with any key listed for bob',
      );
    });

    it('renders a line per decision, and OK', () => {
      const text = renderVerifyReport(report);
      expect(text).toMatch(/^release-checkout: \d+ run\(s\), 8 decision\(s\), 5 proven — OK/);
      expect(text).toContain(`approve production via update by bob: proven: bob ${fingerprint(bob)}`);
      expect(text).toContain('[refused by the workflow]');
    });

    const tampered = async (doc: ExportedRelease, action: string, via: string, index = 0) => {
      const again = await verifyHistory(doc);
      expect(again.summary.ok).toBe(false);
      const d = byAction(again, action, via)[index]!;
      expect(d.verdict).toBe('invalid');
      expect(again.summary.problems.join('\n')).toContain(d.reason!);
      return d;
    };

    it('refuses a signature with one byte flipped: a raw ed25519 one and an ssh-keygen one', async () => {
      const canary = byAction(report, 'approve', 'update')[0]!;
      const flipped = tamper(exported, canary, (p) => {
        (p.signed as Json).signature = flipSignatureByte((p.signed as Json).signature as string);
      });
      expect((await tampered(flipped, 'approve', 'update')).reason).toBe(
        'the signature does not match this release, run, action and gate, with any key listed for bob',
      );
      const start = byAction(report, 'start')[0]!;
      const startFlipped = tamper(exported, start, (p) => {
        (p.signed as Json).signature = flipSignatureByte((p.signed as Json).signature as string);
      });
      expect((await tampered(startFlipped, 'start', 'start')).reason).toBe(
        'the signature does not match this release, run, action and gate',
      );
    });

    it('refuses a decision re-attributed to another signer, or moved to another gate', async () => {
      const production = byAction(report, 'approve', 'update')[1]!;
      const asAlice = tamper(exported, production, (p) => (p.by = 'alice'));
      // `by` is part of what is signed: bob's signature holds for no statement in alice's name.
      expect((await tampered(asAlice, 'approve', 'update', 1)).reason).toBe(
        'the signature does not match this release, run, action and gate, with any key listed for alice',
      );
      const canary = byAction(report, 'approve', 'update')[0]!;
      const moved = tamper(exported, canary, (p) => ((p.signed as Json).target = 'production'));
      expect((await tampered(moved, 'approve', 'update')).reason).toMatch(/^the signature does not match/);
    });

    it('refuses a signature spent twice: the second message is a replay', async () => {
      const promote = byAction(report, 'promote', 'update')[0]!;
      const copy = clone(exported);
      const run = copy.runs.find((r) => r.runId === promote.runId)!;
      const original = eventOf(copy, promote);
      const last = Number((run.events.at(-1) as Json).eventId);
      run.events.push({ ...structuredClone(original), eventId: String(last + 1) });
      const replay = await tampered(copy, 'promote', 'update', 1);
      expect(replay.reason).toMatch(/^nonce [0-9a-f]+ was already used: a signature is good once$/);
      expect(byAction(await verifyHistory(copy), 'promote', 'update')[0]!.verdict).toBe('proven');
    });

    it('refuses a signature made for another run of the release, whether rewritten or moved there', async () => {
      const production = byAction(report, 'approve', 'update')[1]!;
      const rewritten = tamper(exported, production, (p) => ((p.signed as Json).runId = runIds.canary));
      expect((await tampered(rewritten, 'approve', 'update', 1)).reason).toBe(
        `signed for another run of this release (${runIds.canary}), not ${runIds.production}`,
      );
      // The canary's approval, taken out of the first run and into the one with the production gate.
      const canary = byAction(report, 'approve', 'update')[0]!;
      const moved = clone(exported);
      const event = eventOf(moved, canary);
      moved.runs[0]!.events = moved.runs[0]!.events.filter((e) => e !== event);
      moved.runs.find((r) => r.runId === production.runId)!.events.push({ ...event, eventId: '999999' });
      const report2 = await verifyHistory(moved);
      expect(report2.summary.ok).toBe(false);
      const approvals = byAction(report2, 'approve', 'update');
      expect(approvals.find((d) => d.eventId === 999999)!.reason).toBe(
        `signed for another run of this release (${runIds.canary}), not ${runIds.production}`,
      );
    });

    it('a refused replay by signal does not spoil ok; a policy changed across continue-as-new does', async () => {
      const promote = byAction(report, 'promote', 'update')[0]!;
      const copy = clone(exported);
      const run = copy.runs.find((r) => r.runId === promote.runId)!;
      const payload = readPayload(eventOf(copy, promote));
      const signal = {
        eventId: String(Number((run.events.at(-1) as Json).eventId) + 1),
        eventTime: eventOf(copy, promote).eventTime,
        eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED',
        workflowExecutionSignaledEventAttributes: {
          signalName: 'promote',
          input: { payloads: [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: '' }] },
        },
      };
      writePayload(signal, payload);
      run.events.push(signal);
      const withReplay = await verifyHistory(copy);
      expect(withReplay.summary).toMatchObject({ ok: true, refused: 3 });
      expect(byAction(withReplay, 'promote', 'signal')).toMatchObject([{ verdict: 'invalid', workflow: 'refused' }]);

      // A key of mallory's slipped into the policy the second run carries.
      const swapped = clone(exported);
      const started = swapped.runs[1]!.events[0] as Json;
      const input = readPayload(started) as { carried: { policy: { approvals: { signers: unknown[] } } } };
      input.carried.policy.approvals.signers.push({ name: 'mallory', keys: [mallory.pub] });
      writePayload(started, input);
      const changed = await verifyHistory(swapped);
      expect(changed.summary.ok).toBe(false);
      expect(changed.summary.problems).toContainEqual(
        `the policy carried into run ${swapped.runs[1]!.runId} is not the one run ${runIds.canary} had`,
      );
    });

    it('reads a plain Temporal JSON history of one run, and says what it cannot check without the others', async () => {
      const [first, ...rest] = exported.runs;
      const alone = await verifyHistory({ events: first!.events });
      expect(alone.workflowId).toBe(WORKFLOW);
      expect(alone.runs.map((r) => r.runId)).toEqual([first!.runId]);
      expect(byAction(alone, 'start')[0]!.verdict).toBe('proven');
      expect(byAction(alone, 'approve', 'update')[0]!.verdict).toBe('proven');
      expect(alone.summary.ok).toBe(false);
      expect(alone.summary.problems).toEqual([
        expect.stringMatching(/continued as new as \S+, which is not in this file: its decisions are not checked$/),
      ]);
      const last = await verifyHistory({ events: rest.at(-1)!.events });
      expect(last.workflowId).toBe(WORKFLOW);
      expect(last.summary.ok).toBe(false);
      expect(last.summary.problems).toEqual([
        expect.stringMatching(/which is not in this file: the start is not checked$/),
      ]);
      // The runs out of order are no chain.
      const shuffled = await verifyHistory({ ...exported, runs: [...exported.runs].reverse() });
      expect(shuffled.summary.ok).toBe(false);
    });
  });

  it('an unsigned approval the policy did not require is accepted, and unproven', async () => {
    const policy = checkoutPolicy({
      trafficCycle: { duration: '1h' },
      production: { approval: true, waves: [{ percent: 100 }] },
      approvals: { fourEyes: true, signers, signing: { require: [] } },
    });
    const start = async () => ({
      signed: await signedBy(bob, { runId: START_RUN, action: 'start', target: '2.0.0', by: 'bob' }),
      initiator: 'bob',
    });
    const { result, exported } = await record(policy, start, async (handle) => {
      await waitForStatus(handle, (s) => s.gate?.name === 'production', pace('10m'));
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', comment: 'ship it' }] });
    });
    expect(result.outcome).toBe('promoted');
    const report = await verifyHistory(exported);
    expect(report.summary).toMatchObject({ ok: false, proven: 1, unproven: 1, invalid: 0 });
    const approve = byAction(report, 'approve')[0]!;
    expect(approve).toMatchObject({ via: 'update', by: 'alice', verdict: 'unsigned', workflow: 'accepted' });
    expect(report.summary.problems).toEqual([
      `approve (update #${approve.eventId} of run ${approve.runId}, by alice) is not proven: unsigned`,
    ]);
    expect(renderVerifyReport(report)).toMatch(/NOT PROVEN[\s\S]*problems:\n {2}- approve \(update/);
  });

  it('controls sent before the policy is resolved are refused by the workflow (only abort is taken then), and counted so', async () => {
    const policy = checkoutPolicy({
      trafficCycle: { duration: '1h' },
      approvals: { signers, signing: { require: ['resume'] } },
    });
    const start = async () => ({
      signed: await signedBy(alice, { runId: START_RUN, action: 'start', target: '2.0.0', by: 'alice' }),
    });
    // Both signals wait for the first workflow task, which handles them before the policy is resolved.
    const { result, status, exported } = await record(policy, start, undefined, async (handle) => {
      await handle.signal(pauseSignal, { by: 'carol', reason: 'hold on' });
      await handle.signal(resumeSignal, { by: 'carol' });
    });
    expect(result.outcome).toBe('promoted');
    expect(status.audit.filter((a) => a.actor === 'carol').map((a) => [a.action, a.accepted, a.detail])).toEqual([
      ['pause', false, "the release's policy is still being resolved; nothing to pause yet"],
      ['resume', false, "the release's policy is still being resolved; nothing to resume yet"],
    ]);
    const report = await verifyHistory(exported);
    expect(report.summary).toMatchObject({ ok: true, unproven: 0, refused: 2 });
    expect(byAction(report, 'resume')[0]).toMatchObject({
      via: 'signal',
      verdict: 'unsigned',
      workflow: 'refused',
      reason: 'sent before the policy was resolved: the workflow refuses every control but abort then',
    });
  });

  describe('a start proven by a CI pipeline’s OIDC token', () => {
    let issuer: Server;
    let url = '';
    let jwks: unknown;
    let token = '';
    beforeAll(async () => {
      const keys = await generateKeyPair('ES256', { extractable: true });
      jwks = { keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'ci-1', alg: 'ES256', use: 'sig' }] };
      issuer = createServer((req, res) => {
        const body = req.url === '/.well-known/openid-configuration' ? { issuer: url, jwks_uri: `${url}/jwks` } : jwks;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      });
      await new Promise<void>((resolve) => issuer.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(issuer.address() as AddressInfo).port}`;
      const now = Math.floor((await server.env.currentTimeMs()) / 1000);
      token = await new SignJWT({ repository: 'acme/checkout', ref: 'refs/heads/main' })
        .setProtectedHeader({ alg: 'ES256', kid: 'ci-1' })
        .setIssuer(url)
        .setAudience('tollgate')
        .setSubject('repo:acme/checkout:ref:refs/heads/main')
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(keys.privateKey);
    });
    afterAll(() => new Promise<void>((resolve) => (issuer ? issuer.close(() => resolve()) : resolve())));

    it('is re-checked with the keys the history recorded; other keys refuse it', async () => {
      const policy = checkoutPolicy({
        trafficCycle: { duration: '1h' },
        approvals: {
          machines: [{ name: 'ci-deploy', issuer: url, audience: 'tollgate', claims: { repository: 'acme/checkout' } }],
          signing: { require: ['start'] },
        },
      });
      const { result, exported } = await record(policy, () =>
        Promise.resolve({ initiator: 'ci-deploy', identityToken: token }),
      );
      expect(result.outcome).toBe('promoted');
      const report = await verifyHistory(exported);
      expect(report.summary).toMatchObject({ ok: true, problems: [] });
      expect(report.decisions).toMatchObject([
        {
          action: 'start',
          verdict: 'proven',
          identity: 'ci-deploy',
          token: { issuer: url, subject: 'repo:acme/checkout:ref:refs/heads/main' },
        },
      ]);
      // The recorded key set replaced by another issuer's: the token no longer verifies.
      const other = await generateKeyPair('ES256', { extractable: true });
      const swapped = clone(exported);
      const completed = (swapped.runs[0]!.events as Json[]).find((e) => {
        const attrs = e.activityTaskCompletedEventAttributes as Json | undefined;
        if (!attrs) return false;
        const result = (attrs.result as { payloads: Json[] }).payloads[0]!;
        return typeof result.data === 'string' && Buffer.from(result.data, 'base64').toString().includes('"verdict"');
      })!;
      const attrs = completed.activityTaskCompletedEventAttributes as { result: { payloads: Json[] } };
      const recorded = JSON.parse(Buffer.from(attrs.result.payloads[0]!.data as string, 'base64').toString()) as Json;
      recorded.keys = { keys: [{ ...(await exportJWK(other.publicKey)), kid: 'ci-1', alg: 'ES256', use: 'sig' }] };
      attrs.result.payloads[0]!.data = Buffer.from(JSON.stringify(recorded)).toString('base64');
      const refused = await verifyHistory(swapped);
      expect(refused.summary.ok).toBe(false);
      expect(refused.decisions[0]).toMatchObject({
        verdict: 'invalid',
        reason: "the token's signature does not verify with the issuer's keys",
      });
    });
  });

  describe('whatever the file holds, an answer and never a throw', () => {
    const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/; // eslint-disable-line no-control-regex

    const answers = async (doc: unknown) => {
      const report = await verifyHistory(doc);
      expect(typeof report.summary.ok).toBe('boolean');
      expect(renderVerifyReport(report)).not.toMatch(UNSAFE);
      return report;
    };

    it('any JSON value, at the top or where a run or an event should be', async () => {
      await fc.assert(
        fc.asyncProperty(fc.anything(), async (doc) => {
          expect((await answers(doc)).summary.ok).toBe(false);
        }),
        { numRuns: 300 },
      );
      await fc.assert(
        fc.asyncProperty(fc.array(fc.anything()), fc.anything(), async (events, runId) => {
          await answers({ events });
          await answers({ format: 'tollgate-history/v1', workflowId: WORKFLOW, runs: [{ runId, events }] });
        }),
        { numRuns: 300 },
      );
    });

    it('a flood of forged signatures against a policy of 500 signers is checked in bounded time', async () => {
      const { exported } = await record(
        checkoutPolicy({ trafficCycle: { duration: '1h' }, approvals: { signers } }),
        () => Promise.resolve({}),
      );
      const copy = clone(exported);
      const [first] = copy.runs;
      const policyEvent = (first!.events as Json[]).find((e) => {
        const result = (e.activityTaskCompletedEventAttributes as { result?: { payloads: Json[] } } | undefined)
          ?.result;
        return (
          result !== undefined && Buffer.from(result.payloads[0]!.data as string, 'base64').includes('"trafficCycle"')
        );
      })!;
      const result = (policyEvent.activityTaskCompletedEventAttributes as { result: { payloads: Json[] } }).result;
      const policy = JSON.parse(Buffer.from(result.payloads[0]!.data as string, 'base64').toString()) as {
        approvals: { signers: unknown[] };
      };
      const many = Array.from({ length: 498 }, (_, i) => ({ name: `signer-${i}`, keys: Array(10).fill(mallory.pub) }));
      policy.approvals.signers.push(...many);
      result.payloads[0]!.data = Buffer.from(JSON.stringify(policy)).toString('base64');
      const last = first!.events.at(-1) as Json;
      for (let i = 0; i < 200; i++) {
        const forged = await signedBy(mallory, { runId: first!.runId, action: 'pause', target: 'canary', by: 'bob' });
        const signal: Json = {
          eventId: String(Number(last.eventId) + 1 + i),
          eventTime: last.eventTime,
          workflowExecutionSignaledEventAttributes: {
            signalName: 'pause',
            input: { payloads: [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: '' }] },
          },
        };
        writePayload(signal, {
          by: 'bob',
          reason: 'forged',
          signed: { ...forged, at: new Date(Date.parse(String(last.eventTime))).toISOString() },
        });
        first!.events.push(signal);
      }
      const started = Date.now();
      const report = await answers(copy);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(byAction(report, 'pause')).toHaveLength(200);
      expect(byAction(report, 'pause').every((d) => d.verdict === 'invalid' && d.workflow === 'refused')).toBe(true);
    });

    it('a real history cut short, stripped of fields, or given hostile and huge strings', async () => {
      const { exported } = await record(
        checkoutPolicy({ trafficCycle: { duration: '1h' }, approvals: { signers } }),
        () => Promise.resolve({}),
      );
      const events = exported.runs[0]!.events as Json[];
      const full = await answers(exported);
      expect(full.decisions[0]).toMatchObject({ action: 'start', verdict: 'unsigned' });
      await fc.assert(
        fc.asyncProperty(
          fc.nat({ max: events.length }),
          fc.nat({ max: events.length - 1 }),
          fc.constantFrom('eventId', 'eventTime', 'eventType', 'input', 'result', 'payloads', 'data', 'metadata'),
          fc.anything(),
          async (cutAt, at, key, value) => {
            await answers({ events: events.slice(0, cutAt) });
            // One field anywhere in one event replaced by anything.
            const copy = structuredClone(events);
            const replace = (o: unknown): void => {
              if (typeof o !== 'object' || o === null) return;
              for (const k of Object.keys(o)) {
                if (k === key) (o as Json)[k] = value;
                else replace((o as Json)[k]);
              }
            };
            replace(copy[at]);
            await answers({ events: copy });
          },
        ),
        { numRuns: 200 },
      );
      const huge = 'x'.repeat(20_000_000);
      const hostileSignal = (data: string, encoding = 'json/plain') => ({
        eventId: '100000',
        eventTime: events.at(-1)!.eventTime,
        eventType: huge,
        workflowExecutionSignaledEventAttributes: {
          signalName: 'approve',
          input: { payloads: [{ metadata: { encoding: Buffer.from(encoding).toString('base64') }, data }] },
        },
      });
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64');
      const started = Date.now();
      for (const extra of [
        hostileSignal(huge),
        hostileSignal(b64({ by: huge })),
        hostileSignal(b64({ by: 'bob\u001b]8;;http://x\u0007', signed: { signature: huge } })),
        hostileSignal(b64({ by: 'bob\u202e', comment: '\u009b31m' })),
        hostileSignal(b64({ by: 'bob' }), huge),
        hostileSignal(b64('['.repeat(100_000))),
        hostileSignal(Buffer.from('\u00ff\u00fe', 'latin1').toString('base64')),
      ]) {
        const report = await answers({ ...exported, runs: [{ ...exported.runs[0]!, events: [...events, extra] }] });
        expect(report.decisions.at(-1)).toMatchObject({ action: 'approve', via: 'signal', workflow: 'refused' });
      }
      await answers({ ...exported, workflowId: huge });
      await answers({ ...exported, runs: [{ runId: huge, events }] });
      await answers({ events: Array.from({ length: 200_000 }, () => ({ eventId: '1', x: huge })) });
      expect(Date.now() - started).toBeLessThan(20_000);
    });
  });

  it('the recorded replay fixture of a signed release proves its start and approval from the file alone', async () => {
    const events = (
      JSON.parse(readFileSync(join(__dirname, '..', 'histories', 'signed-approvals.json'), 'utf8')) as {
        events: unknown[];
      }
    ).events;
    const report = await verifyHistory({ events });
    expect(report.summary).toMatchObject({ ok: true, proven: 2, unproven: 0 });
    expect(report.decisions.map((d) => [d.action, d.via, d.verdict, d.workflow])).toEqual([
      ['start', 'start', 'proven', 'accepted'],
      ['resume', 'signal', 'unsigned', 'refused'],
      ['approve', 'signal', 'unsigned', 'refused'],
      ['approve', 'update', 'proven', 'accepted'],
    ]);
  });
});
