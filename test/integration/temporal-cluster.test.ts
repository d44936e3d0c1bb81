import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { markOwner } from '../../scripts/orphan-dirs';
import { TollgateClient } from '../../src/client/tollgate-client';
import { TollgateService, TollgateStage, TollgateState, TollgateVersion } from '../../src/domain/search-attributes';
import { writePolicies } from '../helpers/policies';
import { releaseHarness } from '../helpers/release-harness';
import { clusterEnv, startCluster, type Cluster, type TemporalService } from '../helpers/temporal-cluster';
import { eventually } from '../helpers/until';

/**
 * Tollgate on a real Temporal cluster: PostgreSQL for persistence and visibility, frontend, history, matching and
 * worker as four processes, the standalone Web UI — what `npm run cluster` runs and docker-compose.yml describes.
 * The tests run in order on one cluster: up from nothing, a release through the project's worker code, then a warm
 * restart on the same data. The engine's failures under releases are the reliability suite's
 * (test/reliability/temporal-cluster.test.ts).
 */

const patience = { timeoutMs: 30_000, everyMs: 200 };

const figures: Record<string, unknown> = {};
let stateDir = '';
let cluster: Cluster | undefined;
let env: TestWorkflowEnvironment | undefined;

const up = (): { cluster: Cluster; env: TestWorkflowEnvironment } => {
  if (!cluster || !env) throw new Error('the cluster is not up (an earlier test failed?)');
  return { cluster, env };
};

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'tollgate-cluster-test-'));
  await markOwner(stateDir);
});

afterAll(async () => {
  await env?.teardown();
  if (cluster) figures.residentMemoryMiB ??= await cluster.residentMemoryMiB();
  await cluster?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
  mkdirSync('test-results', { recursive: true });
  writeFileSync(join('test-results', 'temporal-cluster.json'), `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`Temporal cluster figures: ${JSON.stringify(figures)}`);
}, 60_000);

/** A failure says what the processes logged last. */
async function withLogs<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (cluster && error instanceof Error) error.message += `\n${await cluster.logTail(15).catch(() => '')}`;
    throw error;
  }
}

test('comes up from nothing: PostgreSQL initialised, schemas, four service processes, the Web UI, namespace and search attributes', async () => {
  const started = Date.now();
  cluster = await startCluster({ stateDir });
  figures.coldStartSeconds = (Date.now() - started) / 1000;
  figures.coldStart = cluster.timings;
  expect(cluster.timings.initdb).toBe(true);
  expect(Math.max(...Object.values(cluster.ports))).toBeLessThan(32_768);

  const pids = cluster.pids();
  const services: TemporalService[] = ['frontend', 'history', 'matching', 'worker'];
  expect(new Set(services.map((s) => pids[s])).size).toBe(4);
  expect(pids.postgres).toBeGreaterThan(0);
  expect(pids.ui).toBeGreaterThan(0);

  env = await clusterEnv(cluster);
  const system = await env.connection.workflowService.getClusterInfo({});
  expect(system).toMatchObject({ serverVersion: '1.29.1', historyShardCount: 4, persistenceStore: 'postgres12' });
  expect(system.visibilityStore).toBe('postgres12');
  const attributes = await env.connection.operatorService.listSearchAttributes({ namespace: cluster.namespace });
  expect(Object.keys(attributes.customAttributes ?? {})).toEqual(
    expect.arrayContaining(['TollgateService', 'TollgateVersion', 'TollgateStage', 'TollgateState']),
  );
  // The UI's own API, answered by the cluster's frontend.
  expect(await httpGet(`${cluster.uiUrl}/api/v1/namespaces/${cluster.namespace}`)).toMatchObject({ status: 200 });
  expect((await httpGet(`${cluster.uiUrl}/`)).status).toBe(200);
}, 150_000);

const releasedService = `shop-${randomUUID().slice(0, 8)}`;

test('runs a release end to end with the project worker, and visibility answers Tollgate search attributes', async () => {
  const { env } = up();
  const service = releasedService;
  const policyDir = writePolicies({ minimums: { analysisChecks: 0, productionApproval: false } }, [
    { service, trafficCycle: { duration: '1s' }, production: { approval: false, waves: [{ percent: 100, bake: 0 }] } },
  ]);
  const { worker, taskQueue, target } = await releaseHarness(env, { policyDir, stable: { [service]: '1.0.0' } });
  const tollgate = new TollgateClient(env.client, taskQueue);
  await withLogs(() =>
    worker.runUntil(async () => {
      const handle = await tollgate.start({ service, version: '2.0.0', initiator: 'alice', reason: 'cluster test' });
      expect(await handle.result()).toMatchObject({ outcome: 'promoted', stableVersion: '2.0.0' });
      const described = await handle.describe();
      expect(described.typedSearchAttributes.get(TollgateService)).toBe(service);
      expect(described.typedSearchAttributes.get(TollgateVersion)).toBe('2.0.0');
      expect(described.typedSearchAttributes.get(TollgateStage)).toBe('done');
      expect(described.typedSearchAttributes.get(TollgateState)).toBe('done');

      // Visibility on PostgreSQL: the queries a person types into the Web UI and `temporal workflow list`.
      const query = `TollgateService="${service}" AND TollgateState="done"`;
      const counted = await eventually(
        () => env.client.workflow.count(query),
        (c) => c.count === 1,
        `${query} in visibility`,
        patience,
      );
      expect(counted.count).toBe(1);
      const listed = await eventually(
        () => tollgate.list({ service }),
        (l) => l.length === 1 && l[0]?.status === 'COMPLETED',
        'the release listed by TollgateClient',
        patience,
      );
      expect(listed[0]).toMatchObject({ service, version: '2.0.0' });
      expect(await env.client.workflow.count(`TollgateService="${service}" AND TollgateStage="canary"`)).toEqual(
        expect.objectContaining({ count: 0 }),
      );
      expect(target.actions.filter((a) => a.action === 'apply').length).toBeGreaterThanOrEqual(3);
    }),
  );
}, 90_000);

test('restarts warm on its data (and survives a PostgreSQL restart): the promoted release is still there', async () => {
  const { cluster: cold } = up();
  await env?.teardown();
  env = undefined;
  const stopStarted = Date.now();
  await cold.stop();
  figures.stopSeconds = (Date.now() - stopStarted) / 1000;
  cluster = undefined;

  const started = Date.now();
  const warm = await startCluster({ stateDir, portBase: cold.ports.frontend });
  cluster = warm;
  figures.warmRestartSeconds = (Date.now() - started) / 1000;
  figures.warmRestart = warm.timings;
  expect(warm.timings.initdb).toBe(false);
  expect(warm.address).toBe(cold.address);
  env = await clusterEnv(warm);

  const previous = await env.client.workflow.getHandle(`release-${releasedService}`).describe();
  expect(previous.status.name).toBe('COMPLETED');
  expect((await env.client.workflow.count(`TollgateService="${releasedService}"`)).count).toBe(1);

  const pgStarted = Date.now();
  await warm.restartPostgres();
  await warm.ready(60_000);
  figures.postgresRestartToReadySeconds = (Date.now() - pgStarted) / 1000;
  expect((await env.client.workflow.count(`TollgateService="${releasedService}"`)).count).toBe(1);
}, 150_000);

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
