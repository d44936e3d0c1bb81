import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { requireBinary, TEMPORAL_CLI } from '../../scripts/temporal-binaries';
import type { ReleaseStatus } from '../../src/domain/status';
import { errorsCheck, writePolicies } from '../helpers/policies';
import { releaseHarness } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';
import { tollgate, untilState } from '../helpers/cli';
import { eventually } from '../helpers/until';

/**
 * A team's set-up, as the README gives it, on the real dev server: each person prints their policy entry with
 * `tollgate signer`, the policy requires signed approvals, people sign with the CLI (an SSH key file, a key held by
 * ssh-agent, a PKCS#8 Ed25519 file), and nothing unsigned gets through — not the `tollgate` CLI without a key, not
 * Temporal's own CLI. The exported history then proves every approval offline.
 */

const dir = mkdtempSync(join(tmpdir(), 'tollgate-signed-cli-'));
let agent: ChildProcess | undefined;
afterAll(() => {
  agent?.kill();
  rmSync(dir, { recursive: true, force: true });
});

const sshKey = (name: string) => {
  const path = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@laptop`, '-f', path]);
  return path;
};
const alice = sshKey('alice'); // an SSH key file
const bob = sshKey('bob'); // held by ssh-agent: the CLI is given only the .pub
const mallory = sshKey('mallory');
const carol = join(dir, 'carol.pem'); // a raw Ed25519 key file
writeFileSync(carol, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));

async function startAgent(): Promise<string> {
  const socket = join(dir, 'agent.sock');
  agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  await eventually(
    () => Promise.resolve(existsSync(socket)),
    (up) => up,
    'ssh-agent to listen',
    { timeoutMs: 5_000, everyMs: 50 },
  );
  execFileSync('ssh-add', ['-q', bob], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
  // With the private key gone, only the agent can sign for bob.
  rmSync(bob);
  return socket;
}

const temporalCli = (args: string[]): Promise<{ code: number; out: string }> =>
  new Promise((resolve) => {
    execFile(requireBinary(TEMPORAL_CLI), args, { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });

describe('signed approvals with the tollgate CLI (dev server)', () => {
  const server = devServerForTests();

  it('five-line set-up; nothing unsigned moves the release; history --verify proves its approvals offline', async () => {
    const socket = await startAgent();
    const entries: unknown[] = [];
    for (const [name, key] of [
      ['alice', alice],
      ['bob', `${bob}.pub`],
      ['carol', carol],
    ] as const) {
      const printed = await tollgate(['signer', '--by', name, '--sign-key', key], {});
      expect(printed.code).toBe(0);
      entries.push(...(parseYaml(printed.out) as unknown[]));
    }
    const service = `pay-${randomUUID().slice(0, 6)}`;
    const policyDir = writePolicies({ minimums: { analysisChecks: 1, requireSignedApprovals: true } }, [
      {
        service,
        trafficCycle: { duration: '3s' },
        canary: { approval: true, analysis: { interval: '1s', checks: [errorsCheck] } },
        production: { approval: true, waves: [{ percent: 100, bake: 0 }] },
        approvals: {
          fourEyes: true,
          signers: entries as never,
          signing: { require: ['start', 'approve', 'promote', 'resume'] },
        },
      },
    ]);
    const { worker, taskQueue } = await releaseHarness(server.env, { policyDir });
    const conn = {
      TEMPORAL_ADDRESS: server.env.address,
      TOLLGATE_TASK_QUEUE: taskQueue,
      USER: 'alice',
      SSH_AUTH_SOCK: socket,
    };
    const workflowId = `release-${service}`;
    const exported = join(dir, 'history.json');
    await worker.runUntil(async () => {
      const unsigned = await tollgate(['start', service, '2.0.0'], conn);
      expect(unsigned.code).toBe(2);
      expect(unsigned.err).toMatch(/start refused: this service requires a proven start/);

      expect((await tollgate(['start', service, '2.0.0', '--sign-key', alice], conn)).code).toBe(0);
      await untilState(service, 'awaiting-approval', conn);

      const refusals = [
        await tollgate(['approve', service, '--by', 'bob'], conn),
        await tollgate(['approve', service, '--by', 'bob', '--sign-key', mallory], conn),
        await tollgate(['approve', service, '--by', 'alice', '--sign-key', alice], conn),
      ];
      expect(refusals.map((r) => [r.code, r.err.trim()])).toEqual([
        [1, expect.stringMatching(/rejected: approve must be signed/)],
        [1, expect.stringMatching(/rejected: approve refused: signed with SHA256:\S+, a key not listed for bob/)],
        [1, expect.stringMatching(/rejected: four-eyes: alice started this release/)],
      ]);
      // Temporal's own CLI, by signal and by update: refused, and the gate stays shut.
      const input = JSON.stringify({ by: 'bob', comment: 'from the temporal CLI' });
      const send = (...command: string[]) =>
        temporalCli([
          'workflow',
          ...command,
          ...['--address', server.env.address, '--workflow-id', workflowId, '--name', 'approve', '--input', input],
        ]);
      const signal = await send('signal');
      expect(signal.code).toBe(0); // delivered: the workflow decides, and refuses
      const update = await send('update', 'execute');
      expect(update.code).not.toBe(0);
      expect(update.out).toContain('approve must be signed');
      const held = JSON.parse((await tollgate(['status', service, '--json'], conn)).out) as ReleaseStatus;
      expect(held.gate?.name).toBe('canary');
      expect(held.audit.filter((e) => e.action === 'approve').map((e) => [e.actor, e.accepted])).toEqual([
        ['bob', false],
      ]);

      const approved = await tollgate(['approve', service, '--by', 'bob', '--sign-key', `${bob}.pub`], conn);
      expect([approved.code, approved.err]).toEqual([0, '']);
      await untilState(service, 'awaiting-approval', conn);
      const production = await tollgate(['approve', service, '--by', 'carol', '--sign-key', carol], conn);
      expect(production.code).toBe(0);
      const watched = await tollgate(['watch', service, '--interval', '1'], conn);
      expect(watched.code).toBe(0);
      expect((await tollgate(['history', service, '--export', exported], conn)).code).toBe(0);
    });

    // Offline: nothing listens at this address, and --verify never tries it.
    const offline = { TEMPORAL_ADDRESS: '127.0.0.1:1' };
    const verified = await tollgate(['history', '--verify', exported], offline);
    expect([verified.code, verified.err]).toEqual([0, '']);
    expect(verified.out).toMatch(/start\b.*alice.*proven/);
    expect(verified.out).toMatch(/approve\b.*bob.*proven/);
    expect(verified.out).toMatch(/approve\b.*carol.*proven/);

    // One approval rewritten to another signer's name: the file no longer proves it.
    const forged = join(dir, 'forged.json');
    const text = readFileSync(exported, 'utf8');
    writeFileSync(
      forged,
      rewritePayloads(text, (json) => json.replace('"by":"carol"', '"by":"alice"')),
    );
    const refuted = await tollgate(['history', '--verify', forged], offline);
    expect(refuted.code).toBe(1);
    expect(refuted.out).toMatch(/invalid/);
  });
});

/** Rewrites every JSON payload of an exported history (their data is base64 inside the event JSON). */
function rewritePayloads(exported: string, change: (json: string) => string): string {
  return exported.replace(/"data":"([A-Za-z0-9+/=]+)"/g, (whole, data: string) => {
    const json = Buffer.from(data, 'base64').toString('utf8');
    const changed = change(json);
    return changed === json ? whole : `"data":"${Buffer.from(changed, 'utf8').toString('base64')}"`;
  });
}
