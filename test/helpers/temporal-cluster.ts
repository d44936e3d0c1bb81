import { TestWorkflowEnvironment } from '@temporalio/testing';
import { quietRuntime } from './temporal-servers';
import { startCluster as start, type Cluster, type ClusterOptions } from '../../scripts/cluster';

export type { Cluster, ClusterOptions, Component, TemporalService } from '../../scripts/cluster';

/**
 * The real Temporal cluster of scripts/cluster.ts (PostgreSQL, four service processes, Web UI) for a test file: its
 * own free ports below 32768 and, unless given a state dir, a temp one removed on stop. Its progress goes to stderr
 * when TEST_LOG_LEVEL is set.
 */
export function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  return start({ ...(process.env.TEST_LOG_LEVEL && { log: (line: string) => console.error(line) }), ...opts });
}

/**
 * A test environment on the cluster — a client and a native connection, what `releaseHarness` and `runRelease` take.
 * Its teardown closes the connections only; the cluster stops with `cluster.stop()`.
 */
export function clusterEnv(cluster: Cluster): Promise<TestWorkflowEnvironment> {
  quietRuntime();
  return TestWorkflowEnvironment.createFromExistingServer({ address: cluster.address, namespace: cluster.namespace });
}

/** A cluster and an environment on it for the tests of the enclosing `describe` (or file): up before, down after. */
export function clusterForTests(opts: ClusterOptions = {}): {
  readonly cluster: Cluster;
  readonly env: TestWorkflowEnvironment;
} {
  let cluster: Cluster | undefined;
  let env: TestWorkflowEnvironment | undefined;
  beforeAll(async () => {
    cluster = await startCluster(opts);
    env = await clusterEnv(cluster);
  }, 150_000);
  afterAll(async () => {
    await env?.teardown();
    await cluster?.stop();
  }, 60_000);
  return {
    get cluster() {
      if (!cluster) throw new Error('the Temporal cluster is not up (beforeAll failed?)');
      return cluster;
    },
    get env() {
      if (!env) throw new Error('the Temporal cluster is not up (beforeAll failed?)');
      return env;
    },
  };
}
