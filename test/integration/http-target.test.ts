import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createLogger } from '../../src/logger';
import { createTarget } from '../../src/providers';
import { refused, startDeployApi, unavailable, type DeployApi, type StepBody } from '../helpers/deploy-api';
import { FLEET_ORG, fleetPolicy } from '../helpers/policies';
import { runRelease } from '../helpers/release-harness';
import { devServerForTests } from '../helpers/temporal';

/**
 * Whole releases on the dev server, every step a signed request to a real deploy API on 127.0.0.1, the target built
 * from a targets file as the worker builds it: promoted; a final refusal rolled back with the API's words in
 * `status`; a deploy that answered 503 retried and applied once.
 */
jest.setTimeout(120_000);

const SECRET = 'hmac-2c7d1f3b-integration-never-shown';
const TOKEN = 'tok-9e4a0b6c-integration-never-shown';
const server = devServerForTests();
let api: DeployApi;
let dir: string;
let logLines: string[];

beforeAll(async () => {
  api = await startDeployApi({ secret: SECRET, token: TOKEN });
  dir = await mkdtemp(join(tmpdir(), 'tollgate-http-target-'));
  process.env.HTTP_TARGET_TEST_SECRET = SECRET;
  process.env.HTTP_TARGET_TEST_TOKEN = TOKEN;
});
afterAll(async () => {
  await api.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  api.plan = () => undefined;
  logLines = [];
});
afterEach(() => {
  const logs = logLines.join('');
  expect(logs).not.toContain(SECRET);
  expect(logs).not.toContain(TOKEN);
});

const entry = (over: Record<string, unknown> = {}) => ({
  kind: 'http',
  url: api.url,
  secretEnv: 'HTTP_TARGET_TEST_SECRET',
  headers: { Authorization: 'Bearer ${HTTP_TARGET_TEST_TOKEN}' },
  timeout: '5s',
  pollTimeout: '1m',
  stateDir: join(dir, 'ledger'),
  ...over,
});

async function targetFor(service: string, over: Record<string, unknown> = {}) {
  const file = join(dir, `targets-${randomUUID().slice(0, 8)}.yaml`);
  await writeFile(file, stringify({ services: { [service]: entry(over) } }));
  const logger = createLogger('debug', { write: (line: string) => void logLines.push(line) });
  return { target: await createTarget(file, logger), logger };
}

/** A release of 2.0.0 in seconds: staging, a canary of one, waves of 50 % and 100 %, no checks. */
async function release(service: string) {
  const { target, logger } = await targetFor(service);
  return runRelease(server.env, {
    target,
    logger,
    policy: fleetPolicy(service, { cycleMs: 1_000, waveBakeMs: 300 }),
    org: FLEET_ORG,
  });
}

const bodyOf = (r: { body: string }) => JSON.parse(r.body) as StepBody;
/** The POSTs the API got for `service`, as "action track key" lines. */
const posts = (service: string) =>
  api.requests
    .filter((r) => r.method === 'POST' && bodyOf(r).service === service)
    .map((r) => ({ ...bodyOf(r), idempotencyKey: r.key ?? '' }));
const isCanaryDeploy = (b: StepBody) => b.action === 'deploy' && b.track === 'canary';

it('promotes through staging, an accepted-then-polled canary and two waves, every request signed', async () => {
  const service = `shop-${randomUUID().slice(0, 6)}`;
  api.plan = (body) => (isCanaryDeploy(body) ? { kind: 'accepted', polls: 2 } : undefined);
  const { result, status } = await release(service);

  expect(result).toMatchObject({ outcome: 'promoted', stableVersion: '2.0.0' });
  expect(status.target).toEqual({ kind: 'http', dryRun: false });
  const steps = posts(service).filter((b) => b.action === 'deploy' || b.action === 'mark-stable');
  expect(steps.map((b) => [b.action, b.track, b.percent])).toEqual([
    ['deploy', 'staging', undefined],
    ['deploy', 'canary', undefined],
    ['deploy', 'production', 50],
    ['deploy', 'production', 100],
    ['mark-stable', 'production', undefined],
  ]);
  // Each step sent once, under its own key, and applied once.
  expect(new Set(steps.map((b) => b.idempotencyKey)).size).toBe(steps.length);
  for (const b of steps) expect(api.applied.get(b.idempotencyKey)).toBe(1);
  const canary = steps[1]!;
  expect(canary).toMatchObject({ key: canary.idempotencyKey, version: '2.0.0', stableVersion: '1.0.0' });
  expect(api.requestsFor(canary.idempotencyKey).map((r) => r.method)).toEqual(['POST', 'GET', 'GET']);
  expect(api.requests.every((r) => r.signed && r.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
  expect(api.services.get(service)).toEqual({ stable: '2.0.0', tracks: { production: '2.0.0' } });
  // The poll's progress reached the worker log, labelled with the release and track.
  const progress = logLines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l.msg === 'deploying 2.0.0 (0/2)');
  expect(progress).toMatchObject({ service, track: 'canary', action: 'deploy', target: 'http' });
});

it("rolls back a canary the API refuses, sending the undos, with the API's message in status", async () => {
  const service = `shop-${randomUUID().slice(0, 6)}`;
  api.plan = (body) => (isCanaryDeploy(body) ? refused('image registry.example.com/shop:2.0.0 not found') : undefined);
  const { result, status } = await release(service);

  expect(result.outcome).toBe('rolled_back');
  expect(status.rollback?.reason).toContain('HTTP 422: image registry.example.com/shop:2.0.0 not found');
  const sent = posts(service);
  const canary = sent.find(isCanaryDeploy)!;
  expect(sent.filter(isCanaryDeploy)).toHaveLength(1); // final: not retried
  const undos = sent.filter((b) => b.action === 'undo');
  expect(undos.map((b) => [b.track, b.stableVersion])).toEqual(
    expect.arrayContaining([
      ['canary', '1.0.0'],
      ['staging', '1.0.0'],
    ]),
  );
  // An undo is an operation of its own: an API that stores answers by key must not replay the deploy's.
  const canaryUndo = undos.find((b) => b.track === 'canary')!;
  expect(canaryUndo).toMatchObject({ key: canary.key, idempotencyKey: `${canary.key}/undo` });
  expect(sent.some((b) => b.action === 'deploy' && b.track === 'production')).toBe(false);
  expect(api.services.get(service)?.tracks).toEqual({ staging: '1.0.0' });
});

it('retries a deploy the API answered 503, and applies it once', async () => {
  const service = `shop-${randomUUID().slice(0, 6)}`;
  api.plan = (body, attempt) => (isCanaryDeploy(body) && attempt === 1 ? unavailable() : undefined);
  const { result } = await release(service);

  expect(result.outcome).toBe('promoted');
  const canary = posts(service).filter(isCanaryDeploy);
  expect(canary).toHaveLength(2);
  expect(canary[1]!.idempotencyKey).toBe(canary[0]!.idempotencyKey);
  expect(api.applied.get(canary[0]!.idempotencyKey)).toBe(1);
  // One request per key changed anything: every key of the release applied at most once.
  for (const b of posts(service)) expect(api.applied.get(b.idempotencyKey) ?? 0).toBeLessThanOrEqual(1);
});

describe('in the targets file', () => {
  const refusedWith = async (over: Record<string, unknown>, message: string) =>
    expect(targetFor('checkout', over)).rejects.toThrow(message);

  it.each([
    [
      'a plain-http URL to another machine',
      { url: 'http://deploy.example.com/steps' },
      'services.checkout.url: expected an https URL',
    ],
    [
      'credentials in the URL',
      { url: 'https://ci:pw@deploy.example.com/' },
      'services.checkout.url: credentials do not belong in the URL',
    ],
    ['no stateDir', { stateDir: undefined }, 'services.checkout.stateDir: Invalid input'],
    ['a step longer than 9m', { pollTimeout: '10m' }, 'services.checkout.pollTimeout: expected between 1s and 9m'],
    [
      'a step shorter than its request',
      { timeout: '30s', pollTimeout: '10s' },
      'services.checkout.pollTimeout: must be at least "timeout"',
    ],
    ['a field it does not know', { retries: 3 }, 'services.checkout: Unrecognized key: "retries"'],
    [
      'a header naming no variable it can resolve',
      { headers: { Authorization: 'Bearer ${NOT_SET_ANYWHERE}' } },
      'services.checkout.headers.Authorization: environment variable NOT_SET_ANYWHERE is not set',
    ],
    [
      'a signing key not in the environment',
      { secretEnv: 'NOT_SET_EITHER' },
      'services.checkout.secretEnv: environment variable NOT_SET_EITHER is not set',
    ],
  ])('refuses %s, naming the field', async (_what, over, message) => {
    await refusedWith(over, message);
  });

  it('serves every service as a default entry, its ledger kept per service', async () => {
    const file = join(dir, 'default.yaml');
    await writeFile(file, stringify({ default: entry() }));
    const target = await createTarget(file, createLogger('silent'));
    const service = `any-${randomUUID().slice(0, 6)}`;
    await expect(target.stableVersion(service)).resolves.toBe('1.0.0');
    await expect(target.stableVersion(service)).resolves.toBe('1.0.0');
    // A read changes nothing: never answered from a store of answers by key, so each has a key of its own.
    const reads = posts(service).filter((b) => b.action === 'read');
    expect(reads.map((b) => b.key)).toEqual([`read/${service}`, `read/${service}`]);
    expect(reads[0]!.idempotencyKey).toMatch(new RegExp(`^read/${service}/[0-9a-f-]{36}$`));
    expect(reads[1]!.idempotencyKey).not.toBe(reads[0]!.idempotencyKey);
  });
});
