import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature } from '../../src/providers/external/signing';
import type { Hook, ServicePolicyInput } from '../../src/domain/policy';
import { checkoutPolicy, errorsCheck } from '../helpers/policies';
import { runRelease } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';
import { eventually } from '../helpers/until';

const HOOKS = join(__dirname, '..', 'fixtures', 'hooks');
const SECRET = 'hook-secret-do-not-log';

/** A change-advisory board's endpoint on loopback: refuses what is not signed with the shared secret. */
async function changeBoard(answer: number) {
  const requests: { headers: IncomingHttpHeaders; body: string; verified: boolean }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const verified = verifySignature(
        SECRET,
        req.headers[TIMESTAMP_HEADER] as string | undefined,
        body,
        req.headers[SIGNATURE_HEADER] as string | undefined,
        { maxAgeSeconds: 300 },
      );
      requests.push({ headers: req.headers, body, verified });
      const status = verified ? answer : 401;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status < 300 ? { ok: true } : { error: 'change CHG-1234 is not approved yet' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tollgate/confirm`;
  return { url, requests, close: () => new Promise((resolve) => server.close(resolve)) };
}

const hook = (name: string, at: Hook['at'], script: string, extra: Partial<Hook> = {}) => ({
  name,
  at,
  exec: { command: [join(HOOKS, script)], env: ['HOOK_LOG', 'HOOK_PIDS'], timeout: '2s' },
  ...extra,
});

/** A release that lasts seconds on the real dev server: a 2 s cycle analysed every second, one wave, no approvals. */
const quick = (hooks: ServicePolicyInput['hooks']) =>
  checkoutPolicy({
    trafficCycle: { duration: '2s' },
    canary: { analysis: { interval: '1s', checks: [errorsCheck] } },
    production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
    hooks,
  });

describe('stage hooks on the dev server, as real processes and a real HTTP endpoint', () => {
  const dev = devServerForTests();
  const work = mkdtempSync(join(tmpdir(), 'tollgate-hooks-'));
  process.env.HOOK_LOG = join(work, 'hooks.log');
  process.env.HOOK_PIDS = join(work, 'hook.pids');
  process.env.CAB_SECRET = SECRET;

  it('runs a command at each moment and a signed HTTP call before production, then promotes', async () => {
    const board = await changeBoard(200);
    try {
      const { result, status } = await runRelease(dev.env, {
        policy: quick([
          hook('schema-ready', 'before-staging', 'record.sh'),
          hook('canary-smoke', 'after-deploy', 'record.sh', { tracks: ['canary'] }),
          { name: 'change-board', at: 'before-production', http: { url: board.url, secretEnv: 'CAB_SECRET' } },
          hook('announce', 'after-promotion', 'record.sh'),
        ]),
      });
      expect(result.outcome).toBe('promoted');
      const log = readFileSync(process.env.HOOK_LOG!, 'utf8').trim().split('\n');
      expect(log.map((l) => l.split(' ').slice(0, 3).join(' '))).toEqual([
        'schema-ready before-staging staging',
        'canary-smoke after-deploy canary',
        'announce after-promotion production',
      ]);
      // The JSON on stdin says the same, and names the step an after-deploy hook follows.
      const smoke = JSON.parse(log[1]!.split(' ').slice(3).join(' ')) as Record<string, unknown>;
      expect(smoke).toMatchObject({ hook: 'canary-smoke', service: 'checkout', version: '2.0.0', track: 'canary' });
      expect(smoke.step).toMatchObject({ track: 'canary', canaryInstances: 1 });
      expect(board.requests).toHaveLength(1);
      expect(board.requests[0]!.verified).toBe(true);
      expect(JSON.parse(board.requests[0]!.body)).toMatchObject({ hook: 'change-board', at: 'before-production' });
      expect(status.hooks?.map((h) => `${h.hook}:${h.outcome}`)).toEqual([
        'schema-ready:passed',
        'canary-smoke:passed',
        'change-board:passed',
        'announce:passed',
      ]);
    } finally {
      await board.close();
    }
  });

  it('a smoke test failing after the canary deploy rolls back, its own words escaped in status and the error', async () => {
    const { result, status } = await runRelease(dev.env, {
      policy: quick([hook('smoke', 'after-deploy', 'smoke-fails.sh', { tracks: ['canary'] })]),
    });
    expect(result.outcome).toBe('rolled_back');
    expect(result.reason).toMatch(/^hook smoke \(after-deploy\) failed: .*exited with status 3/);
    expect(result.reason).toContain('GET /pay -> 500');
    for (const shown of [result.reason, status.hooks?.[0]?.reason ?? '', ...status.audit.map((e) => e.detail ?? '')]) {
      expect(shown.includes('\u001b') || shown.includes('\r')).toBe(false);
    }
    expect(status.hooks?.[0]?.reason).toContain('\\u{001b}[31m');
    expect(status.rollback?.undone.map((k) => k.split('/').pop())).toEqual(['canary', 'staging']);
  });

  it('a hook that hangs is killed with its children at its timeout, and the release rolls back', async () => {
    const { result } = await runRelease(dev.env, {
      policy: quick([hook('warm-caches', 'before-canary', 'hangs.sh')]),
    });
    expect(result.outcome).toBe('rolled_back');
    expect(result.reason).toMatch(/^hook warm-caches \(before-canary\) failed: .*tim/);
    const pids = readFileSync(process.env.HOOK_PIDS!, 'utf8').trim().split(' ').map(Number);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await eventually(
      () => pids.filter(alive),
      (left) => left.length === 0,
      'the hook and its child to be gone',
      { timeoutMs: 10_000, everyMs: 50 },
    );
  });

  it('an endpoint that refuses stops the release before production, with its answer', async () => {
    const board = await changeBoard(409);
    try {
      const { result, status } = await runRelease(dev.env, {
        policy: quick([
          { name: 'change-board', at: 'before-production', http: { url: board.url, secretEnv: 'CAB_SECRET' } },
        ]),
      });
      expect(result.outcome).toBe('rolled_back');
      expect(result.reason).toContain('change CHG-1234 is not approved yet');
      expect(JSON.stringify(status)).not.toContain(SECRET);
      expect(status.deployedSteps.map((k) => k.split('/').pop())).toEqual(['staging', 'canary']);
    } finally {
      await board.close();
    }
  });
});
