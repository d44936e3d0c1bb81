import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startDeployApi, type DeployApi, type StepBody } from '../helpers/deploy-api';
import { FLEET_ORG, fleetPolicy, writePolicies } from '../helpers/policies';
import { resultWithin, startRelease } from '../helpers/release-handle';
import { eventually } from '../helpers/until';
import { reliabilityStack, spawnWorker } from '../reliability/support';

/**
 * The real worker (a child process, its http target built from a targets file) SIGKILLed while it polls an
 * accepted canary deploy; a second worker takes the step over when Temporal retries it (after the 20 s heartbeat
 * timeout): the same Idempotency-Key, so the deploy API hands back the same operation, polled on from where it was,
 * and the step is applied once.
 */
jest.setTimeout(180_000);

const SECRET = 'hmac-5b8e2d7a-crash-never-shown';
const TOKEN = 'tok-1f6c9a3e-crash-never-shown';
const POLLS = 8;
const stack = reliabilityStack('http-target-crash');
let api: DeployApi;

beforeAll(async () => {
  api = await startDeployApi({ secret: SECRET, token: TOKEN });
});
afterAll(() => api?.close());

const isCanaryDeploy = (b: StepBody) => b.action === 'deploy' && b.track === 'canary';
const bodyOf = (r: { body: string }) => JSON.parse(r.body) as StepBody;

it('resumes the polled step on another worker with the same Idempotency-Key, applied once', async () => {
  const service = `crashy-${randomUUID().slice(0, 6)}`;
  const targetsFile = join(stack.dir, `targets-${service}.yaml`);
  writeFileSync(
    targetsFile,
    stringify({
      services: {
        [service]: {
          kind: 'http',
          url: api.url,
          secretEnv: 'DEPLOY_SECRET',
          headers: { Authorization: 'Bearer ${DEPLOY_TOKEN}' },
          timeout: '5s',
          pollTimeout: '5m',
          stateDir: join(stack.dir, 'ledger'),
        },
      },
    }),
  );
  const policyDir = writePolicies(FLEET_ORG, [fleetPolicy(service, { cycleMs: 1_000, waveBakeMs: 300 })]);
  const env = stack.workerEnv(`http-crash-${service}`, { targetsFile, policyDir });
  const secrets = { DEPLOY_SECRET: SECRET, DEPLOY_TOKEN: TOKEN };
  api.plan = (body) => (isCanaryDeploy(body) ? { kind: 'accepted', polls: POLLS, retryAfter: '1' } : undefined);

  const first = await spawnWorker(env, `${service}-1`, secrets);
  const handle = await startRelease(await stack.server.client(), env.taskQueue, {
    service,
    version: '2.0.0',
    initiator: 'alice',
  });
  const canaryRequests = () =>
    api.requests.filter((r) => (r.method === 'POST' ? isCanaryDeploy(bodyOf(r)) : r.method === 'GET'));
  await eventually(
    () => canaryRequests().filter((r) => r.method === 'GET').length,
    (n) => n >= 2,
    'the first worker polling the canary deploy',
    { timeoutMs: 60_000, everyMs: 50 },
  );
  await first.stop('SIGKILL');
  const pollsBeforeKill = canaryRequests().filter((r) => r.method === 'GET').length;
  expect(pollsBeforeKill).toBeLessThan(POLLS);

  await spawnWorker(env, `${service}-2`, secrets);
  const result = await resultWithin(handle, 120_000);
  expect(result).toMatchObject({ outcome: 'promoted', stableVersion: '2.0.0' });

  const sent = canaryRequests();
  const posts = sent.filter((r) => r.method === 'POST');
  expect(posts).toHaveLength(2);
  const key = posts[0]!.key!;
  expect(posts[1]!.key).toBe(key);
  expect(bodyOf(posts[1]!)).toEqual(bodyOf(posts[0]!));
  // Two attempts, each its own delivery; one operation, polled by both, its polls counted once across them.
  expect(posts[1]!.delivery).not.toBe(posts[0]!.delivery);
  const polled = new Set(sent.filter((r) => r.method === 'GET').map((r) => r.path));
  expect(polled.size).toBe(1);
  expect(sent.filter((r) => r.method === 'GET')).toHaveLength(POLLS);
  expect(sent.every((r) => r.key === key && r.signed)).toBe(true);
  expect(api.applied.get(key)).toBe(1);
  expect(api.services.get(service)).toEqual({ stable: '2.0.0', tracks: { production: '2.0.0' } });

  const logs = ['1', '2'].map((n) => readFileSync(join(stack.dir, `${service}-${n}.log`), 'utf8')).join('');
  expect(logs).toContain('deploying 2.0.0');
  expect(logs).not.toContain(SECRET);
  expect(logs).not.toContain(TOKEN);
});
