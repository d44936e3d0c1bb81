import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import pino from 'pino';
import { stringify } from 'yaml';
import { createActivities } from '../../src/activities';
import { PolicyStore } from '../../src/config/policies';
import { createTarget } from '../../src/providers';
import type { MetricsProvider } from '../../src/providers/metrics/types';
import type { DeploymentTarget } from '../../src/providers/targets/types';

/** What the workflow learns about where a release deploys, and how the targets file decides it. */

let dir: string;
let logged: { level: number; msg: string; targets?: string }[];
const logger = () =>
  pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as (typeof logged)[number]) });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tollgate-targets-'));
  logged = [];
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const describeTarget = (target: DeploymentTarget, service: string) =>
  createActivities({
    target,
    metrics: {} as MetricsProvider,
    policies: new PolicyStore('/nonexistent'),
    logger: pino({ level: 'silent' }),
  }).describeTarget(service);

async function targetsFile(content: unknown): Promise<string> {
  const file = join(dir, 'targets.yaml');
  await writeFile(file, stringify(content));
  return file;
}

const fleet = {
  kind: 'haproxy-fleet',
  haproxySocket: '/run/tollgate/haproxy.sock',
  backend: 'be_checkout',
  fleetSize: 2,
  basePort: 8100,
  stagingPort: 8099,
  command: ['node', 'service.js', '--port', '{port}', '--instance', '{instance}'],
  stateDir: '/var/lib/tollgate/checkout',
};

it('names the kind of target each service deploys to, and says when that deploys nothing', async () => {
  const file = await targetsFile({ services: { checkout: fleet }, default: { kind: 'dry-run' } });
  const target = await createTarget(file, logger());
  await expect(describeTarget(target, 'checkout')).resolves.toEqual({ kind: 'haproxy-fleet', dryRun: false });
  await expect(describeTarget(target, 'payments')).resolves.toEqual({ kind: 'dry-run', dryRun: true });
});

it('fails for good for a service no target serves: it can never deploy', async () => {
  const target = await createTarget(await targetsFile({ services: { checkout: fleet } }), logger());
  const described = describeTarget(target, 'payments');
  await expect(described).rejects.toThrow(ApplicationFailure);
  await expect(described).rejects.toMatchObject({
    nonRetryable: true,
    message: 'no deployment target configured for service "payments"',
  });
});

it.each([
  ['no targets file', undefined, '(none)'],
  ['TOLLGATE_TARGETS_FILE=dry-run', 'dry-run', 'dry-run'],
])('with %s, every service goes to dry-run, and the worker says so at start', async (_, file, shown) => {
  const target = await createTarget(file, logger());
  await expect(describeTarget(target, 'checkout')).resolves.toEqual({ kind: 'dry-run', dryRun: true });
  expect(logged).toHaveLength(1);
  expect(logged[0]).toMatchObject({ level: 40, targets: shown });
  expect(logged[0]?.msg).toContain('releases deploy nothing');
});

it("gives workers one dry-run truth through the dry-run spec's stateDir", async () => {
  const file = await targetsFile({
    default: { kind: 'dry-run', stable: { checkout: '1.0.0' }, stateDir: join(dir, 'dry-run') },
  });
  const [one, two] = [await createTarget(file, logger()), await createTarget(file, logger())];
  await expect(two.stableVersion('checkout')).resolves.toBe('1.0.0');
  await one.markStable('checkout', '1.1.0');
  await expect(two.stableVersion('checkout')).resolves.toBe('1.1.0');
});

describe('kind: kubernetes', () => {
  const kubeconfig = () => {
    const file = join(dir, 'kubeconfig');
    return writeFile(
      file,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }],
        users: [{ name: 'u', user: { token: 'secret' } }],
        contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u', namespace: 'shop' } }],
        'current-context': 'ctx',
      }),
    ).then(() => file);
  };
  const kubernetes = {
    kind: 'kubernetes',
    namespace: 'shop',
    deployment: 'checkout',
    container: 'app',
    image: 'registry.example.com/checkout:{version}',
    fleetSize: 10,
    staging: { namespace: 'shop-staging' },
  };

  it('builds a target per service, connecting with the kubeconfig it names', async () => {
    const file = await targetsFile({ services: { checkout: { ...kubernetes, kubeconfig: await kubeconfig() } } });
    const target = await createTarget(file, logger());
    await expect(describeTarget(target, 'checkout')).resolves.toEqual({ kind: 'kubernetes', dryRun: false });
  });

  it.each([
    ['without an image template', { image: 'registry.example.com/checkout:latest' }, 'services.checkout: image'],
    ['with gatewayAPI but no route', { traffic: 'gatewayAPI' }, 'services.checkout: httpRoute'],
    ['with staging on the production Deployment', { staging: {} }, 'services.checkout: staging'],
    ['with a field it does not know', { replica: 3 }, 'services.checkout'],
  ])('refuses an entry %s, naming the field', async (_, change, named) => {
    const file = await targetsFile({
      services: { checkout: { ...kubernetes, kubeconfig: await kubeconfig(), ...change } },
    });
    await expect(createTarget(file, logger())).rejects.toThrow(named);
  });

  it('refuses a kubeconfig it cannot read at start, not at the first release', async () => {
    const file = await targetsFile({ services: { checkout: { ...kubernetes, kubeconfig: join(dir, 'missing') } } });
    await expect(createTarget(file, logger())).rejects.toThrow('services.checkout: cannot load its connection');
  });

  it('refuses a kubernetes default: one Deployment cannot serve every service', async () => {
    const file = await targetsFile({ default: kubernetes });
    await expect(createTarget(file, logger())).rejects.toThrow('a kubernetes target serves one service');
  });
});

it("forwards retirePrevious to the service's own target, and answers for one that keeps nothing warm", async () => {
  const target = await createTarget(
    await targetsFile({ services: { checkout: fleet }, default: { kind: 'dry-run' } }),
    logger(),
  );
  const step = (service: string) => ({
    key: `release-${service}/run/retire-previous`,
    releaseId: `release-${service}/run`,
    service,
    version: '2.0.0',
    stableVersion: '1.0.0',
    track: 'production' as const,
    percent: 100,
  });
  const fleetTarget = target.targetFor!('checkout');
  const receipt = { key: 'k', applied: true, changes: ['checkout-3 1.0.0 stopped (kept warm)'] };
  const spy = jest.spyOn(fleetTarget, 'retirePrevious' as never).mockResolvedValue(receipt as never);
  await expect(target.retirePrevious!(step('checkout'))).resolves.toBe(receipt);
  expect(spy).toHaveBeenCalledWith(step('checkout'), undefined);
  await expect(target.retirePrevious!(step('payments'))).resolves.toMatchObject({ applied: false, changes: [] });
});
