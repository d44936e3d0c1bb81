import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { stringify } from 'yaml';
import { TollgateClient } from '../src/client/tollgate-client';
import { TollgateError } from '../src/client/errors';
import { printable } from '../src/domain/text';
import { PolicyStore } from '../src/config/policies';
import { renderAlertRules } from '../src/domain/alert-rules';
import { createLogger } from '../src/logger';
import { startFleet, type Fleet } from '../src/providers/targets/haproxy-fleet-bootstrap';
import { isListening, spawnDevServer, STATE_DIR, waitForPort } from './dev-server';
import { PROJECT_ROOT, requireBinary, TEMPORAL_CLI } from './temporal-binaries';

/**
 * The main job: the whole story on one machine. Temporal dev server (Web UI), Prometheus with Tollgate's alert
 * rules, Alertmanager and the Tollgate receiver it notifies, an HAProxy fleet of the demo service on its stable
 * version under load, the Tollgate worker, and a release of a good new version.
 * Ctrl-C stops everything it started; running it again picks the release up where Temporal has it.
 */

const SERVICE = 'checkout';
const PORTS = {
  temporal: 7233,
  ui: 8233,
  frontend: 8080,
  staging: 8099,
  instances: 8100,
  prometheus: 9090,
  alertmanager: 9093,
  receiver: 9095,
  worker: 9464,
};
const ALERTMANAGER = '/usr/bin/prometheus-alertmanager';
const POLICY_DIR = join(PROJECT_ROOT, 'policies');
const FLEET_SIZE = 10;
const FLEET_DIR = join(STATE_DIR, 'fleet');
const FILE_SD = join(FLEET_DIR, 'targets.json');
/** Good versions the demo releases in turn (see demo/versions.yaml); the bad ones are for you to try. */
const GOOD_VERSIONS = ['1.0.0', '1.1.0', '1.2.0'];
const dist = (...p: string[]) => join(PROJECT_ROOT, 'dist', ...p);

const logger = createLogger(process.env.TOLLGATE_LOG_LEVEL ?? 'warn');
const children: ChildProcess[] = [];
let fleet: Promise<Fleet> | undefined;
let stopping = false;

function child(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  logFile?: string,
): ChildProcess {
  const out = logFile ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'inherit', 'inherit'];
  // Each child in a process group of its own, so a terminal's Ctrl-C reaches only this process, which stops them one
  // by one, in order. The worker must get exactly one signal: the SDK's Runtime shuts down gracefully on the first
  // and lets a second kill the process — which would leave its running activities for the server to time out.
  const proc = spawn(command, args, { stdio: out as never, env: { ...process.env, ...env }, detached: true });
  return supervise(name, proc, logFile);
}

/** Any child that exits on its own takes the demo down with it, saying which one and where its log is. */
function supervise(name: string, proc: ChildProcess, logFile?: string): ChildProcess {
  if (logFile) {
    const sink = (chunk: Buffer) => writeFileSync(logFile, chunk, { flag: 'a' });
    proc.stdout?.on('data', sink);
    proc.stderr?.on('data', sink);
  }
  proc.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`${name} exited (${signal ?? code}); stopping the demo${logFile ? ` — see ${logFile}` : ''}`);
      void stop(1);
    }
  });
  children.push(proc);
  return proc;
}

async function stop(code: number): Promise<never> {
  if (stopping) return new Promise<never>(() => undefined);
  stopping = true;
  console.log('\nstopping: load, Prometheus, Alertmanager, receiver, worker, fleet, Temporal…');
  const [server, ...rest] = children;
  // The fleet goes after the worker (its last user) and before the Temporal server. A fleet still starting is
  // waited for (its own timeouts bound that), so Ctrl-C during start-up leaves no HAProxy or instance behind.
  for (const proc of rest.reverse()) await terminate(proc);
  const started = await fleet?.catch(() => undefined);
  await started?.stop().catch((err: Error) => console.error(`fleet stop: ${err.message}`));
  if (server) await terminate(server);
  process.exit(code);
}

async function terminate(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 35_000);
  await exited;
  clearTimeout(timer);
}

interface Configs {
  targets: string;
  prometheus: string;
  alertmanager: string;
}

/** `receiverToken` is new on every start: Alertmanager's config and the receiver's env are the only places it lives. */
async function writeConfigs(receiverToken: string): Promise<Configs> {
  mkdirSync(FLEET_DIR, { recursive: true });
  const targets = join(STATE_DIR, 'targets.yaml');
  writeFileSync(
    targets,
    stringify({
      services: {
        [SERVICE]: {
          kind: 'haproxy-fleet',
          haproxySocket: join(FLEET_DIR, 'haproxy.sock'),
          backend: `be_${SERVICE}`,
          fleetSize: FLEET_SIZE,
          basePort: PORTS.instances,
          stagingPort: PORTS.staging,
          command: serviceCommand(),
          stateDir: FLEET_DIR,
          fileSdPath: FILE_SD,
        },
      },
    }),
  );
  // The org's metric names, as the analysis reads them: the rules alert on the same series the checks query.
  const rules = join(STATE_DIR, 'alert-rules.yml');
  writeFileSync(rules, renderAlertRules((await new PolicyStore(POLICY_DIR).org()).metrics));
  const prometheus = join(STATE_DIR, 'prometheus.yml');
  writeFileSync(
    prometheus,
    stringify({
      // Rules every second over the fleet's 1 s scrapes: a failing canary alerts within a couple of seconds.
      global: { scrape_interval: '2s', evaluation_interval: '1s' },
      rule_files: [rules],
      alerting: { alertmanagers: [{ static_configs: [{ targets: [`127.0.0.1:${PORTS.alertmanager}`] }] }] },
      scrape_configs: [
        // honor_labels: the instances' own service/version/track labels are the truth for the analysis.
        // File SD sees the fleet's writes at once (it watches the file); the refresh only catches a missed event.
        {
          job_name: 'demo-fleet',
          honor_labels: true,
          scrape_interval: '1s',
          scrape_timeout: '1s',
          file_sd_configs: [{ files: [FILE_SD], refresh_interval: '2s' }],
        },
        { job_name: 'tollgate-worker', static_configs: [{ targets: [`127.0.0.1:${PORTS.worker}`] }] },
      ],
    }),
  );
  const alertmanager = join(STATE_DIR, 'alertmanager.yml');
  writeFileSync(
    alertmanager,
    stringify({
      route: {
        receiver: 'tollgate',
        group_by: ['alertname', 'service', 'version', 'track'],
        // A new canary alert goes out at once; changes to its group (another alert, a resolution) within 5 s.
        group_wait: '0s',
        group_interval: '5s',
        repeat_interval: '5m',
      },
      receivers: [
        {
          name: 'tollgate',
          webhook_configs: [
            {
              url: `http://127.0.0.1:${PORTS.receiver}/alertmanager`,
              send_resolved: true,
              http_config: { authorization: { type: 'Bearer', credentials: receiverToken } },
            },
          ],
        },
      ],
    }),
    { mode: 0o600 },
  );
  return { targets, prometheus, alertmanager };
}

function serviceCommand(): string[] {
  return [
    process.execPath,
    dist('demo', 'service.js'),
    ...['--service', '{service}', '--version', '{version}', '--port', '{port}', '--instance', '{instance}'],
    ...['--track', '{track}', '--catalogue', join(PROJECT_ROOT, 'demo', 'versions.yaml'), '--log-level', 'warn'],
  ];
}

const BAD_VERSION = '1.2.0-bad';

/**
 * Resumes the release in flight, or starts the next good one. A fresh demo opens with the bad build first: its
 * canary's alert rolls it back within seconds, and `showBadCanary` starts the good release once it has.
 */
async function startOrResumeRelease({ target }: Fleet): Promise<{ said: string; after?: Promise<void> }> {
  const client = await TollgateClient.connect({ address: `127.0.0.1:${PORTS.temporal}`, namespace: 'default' });
  let handedOver = false;
  try {
    const running = await client.status(SERVICE).catch((err: unknown) => {
      if (err instanceof TollgateError && err.code === 'unknown-release') return undefined;
      throw err;
    });
    if (running && running.state !== 'done')
      return { said: `resumed the release of ${SERVICE} ${running.version} (${running.stage}/${running.state})` };
    const stable = (await target.stableVersion(SERVICE)) ?? GOOD_VERSIONS[0]!;
    const next = GOOD_VERSIONS[GOOD_VERSIONS.indexOf(stable) + 1];
    if (!next)
      return { said: `${SERVICE} is on ${stable}, the newest good demo version; start one yourself (see below)` };
    const good = () =>
      client.start({ service: SERVICE, version: next, initiator: 'demo', reason: 'npm start demo release' });
    if (running !== undefined || stable !== GOOD_VERSIONS[0]) {
      await good();
      return { said: `started a release of ${SERVICE} ${next} (stable: ${stable})` };
    }
    await client.start({ service: SERVICE, version: BAD_VERSION, initiator: 'demo', reason: 'npm start: a bad build' });
    handedOver = true;
    return {
      said: `started a release of the bad build ${SERVICE} ${BAD_VERSION} (20% errors) — watch its canary alert roll it back`,
      after: showBadCanary(client, good).finally(() => client.close()),
    };
  } finally {
    if (!handedOver) await client.close();
  }
}

/** Says how the bad build ended (its alert, in the reason) and then starts the good release. */
async function showBadCanary(client: TollgateClient, good: () => Promise<unknown>): Promise<void> {
  const started = Date.now();
  const result = await client.result(SERVICE);
  const status = await client.status(SERVICE);
  const firstAlert = status.alerts?.[0];
  console.log(
    `\n${SERVICE} ${BAD_VERSION}: ${result.outcome} after ${Math.round((Date.now() - started) / 1000)} s` +
      `${firstAlert ? ` by its canary alert ${firstAlert.name}` : ''} — ${printable(result.reason, 400)}`,
  );
  await good();
  console.log(`started a release of ${SERVICE} ${GOOD_VERSIONS[1]} (npx tollgate watch ${SERVICE})`);
}

async function main(): Promise<void> {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void stop(0));
  if (!existsSync(ALERTMANAGER)) {
    throw new Error(
      `${ALERTMANAGER} is missing: install the Debian package prometheus-alertmanager (npm run provision)`,
    );
  }
  const receiverToken = randomBytes(24).toString('base64url');
  const configs = await writeConfigs(receiverToken);
  const logs = join(STATE_DIR, 'logs');
  mkdirSync(logs, { recursive: true });

  if (await isListening(PORTS.temporal)) {
    throw new Error(
      `something already listens on 127.0.0.1:${PORTS.temporal}: a demo still running, or the dev server of one that was killed`,
    );
  }
  console.log('starting the Temporal dev server (state: .tollgate/temporal.db)…');
  supervise('Temporal dev server', spawnDevServer({ port: PORTS.temporal, uiPort: PORTS.ui }));
  await waitForPort(PORTS.temporal, 30_000);

  console.log(`starting an HAProxy fleet of ${FLEET_SIZE} ${SERVICE} instances on :${PORTS.frontend}…`);
  // A fleet from an earlier run comes back as it was (canary and waves included); a new one starts on 1.0.0.
  fleet = startFleet({
    service: SERVICE,
    version: GOOD_VERSIONS[0]!,
    fleetSize: FLEET_SIZE,
    frontendPort: PORTS.frontend,
    basePort: PORTS.instances,
    stagingPort: PORTS.staging,
    command: serviceCommand(),
    stateDir: FLEET_DIR,
    fileSdPath: FILE_SD,
    logger,
  });
  const demoFleet = await fleet;

  child(
    'worker',
    process.execPath,
    [dist('src', 'worker.js')],
    {
      NODE_ENV: 'production',
      TOLLGATE_TARGETS_FILE: configs.targets,
      TOLLGATE_PROMETHEUS_URL: `http://127.0.0.1:${PORTS.prometheus}`,
      TOLLGATE_METRICS_ADDRESS: `127.0.0.1:${PORTS.worker}`,
      TOLLGATE_POLICY_DIR: POLICY_DIR,
      // Ctrl-C should be quick; an analysis stretch cut short resumes from its last heartbeat on the next start.
      TOLLGATE_SHUTDOWN_GRACE: '3s',
      // The demo analyses every 10 s; heartbeats as often let `tollgate watch` show every round.
      TOLLGATE_MAX_HEARTBEAT_THROTTLE: '10s',
      // Every round reaches `tollgate watch` (the demo analyses every 10 s); production keeps the liveness default.
      TOLLGATE_ANALYSIS_HEARTBEAT: 'round',
    },
    join(logs, 'worker.log'),
  );
  // Started before Alertmanager and stopped after it, so no notification finds the receiver gone.
  child(
    'receiver',
    process.execPath,
    [dist('src', 'client', 'cli.js'), 'receiver'],
    {
      NODE_ENV: 'production',
      TOLLGATE_RECEIVER_ADDRESS: `127.0.0.1:${PORTS.receiver}`,
      TOLLGATE_RECEIVER_TOKEN: receiverToken,
      TEMPORAL_ADDRESS: `127.0.0.1:${PORTS.temporal}`,
      TOLLGATE_POLICY_DIR: POLICY_DIR,
    },
    join(logs, 'receiver.log'),
  );
  child(
    'alertmanager',
    ALERTMANAGER,
    [
      `--config.file=${configs.alertmanager}`,
      `--storage.path=${join(STATE_DIR, 'alertmanager-data')}`,
      `--web.listen-address=127.0.0.1:${PORTS.alertmanager}`,
      // No cluster: it would listen on another port and wait for gossip to settle before the first notification.
      '--cluster.listen-address=',
    ],
    {},
    join(logs, 'alertmanager.log'),
  );
  child(
    'prometheus',
    '/usr/bin/prometheus',
    [
      `--config.file=${configs.prometheus}`,
      `--storage.tsdb.path=${join(STATE_DIR, 'prometheus-data')}`,
      `--web.listen-address=127.0.0.1:${PORTS.prometheus}`,
      '--storage.tsdb.retention.time=2d',
    ],
    {},
    join(logs, 'prometheus.log'),
  );
  // Bounded like every load loop here: two hours, then it stops by itself.
  child(
    'load',
    process.execPath,
    [dist('demo', 'load.js'), '--url', demoFleet.frontendUrl, '--duration', '2h', '--cycle', '3m'],
    {},
    join(logs, 'load.log'),
  );
  await waitForPort(PORTS.ui, 30_000);
  await waitForPort(PORTS.prometheus, 30_000);
  await waitForPort(PORTS.alertmanager, 30_000);
  await waitForPort(PORTS.receiver, 30_000);

  const release = await startOrResumeRelease(demoFleet);
  release.after?.catch((err: unknown) =>
    console.error(`demo release: ${err instanceof Error ? err.message : String(err)}`),
  );
  console.log(`
Tollgate demo is up — ${release.said}.

  Temporal Web UI   http://127.0.0.1:${PORTS.ui}/namespaces/default/workflows?query=${encodeURIComponent(`TollgateService="${SERVICE}"`)}
  the service       ${demoFleet.frontendUrl}   (${FLEET_SIZE} instances behind HAProxy, under load)
  Prometheus        http://127.0.0.1:${PORTS.prometheus}   (alert rules: .tollgate/alert-rules.yml)
  Alertmanager      http://127.0.0.1:${PORTS.alertmanager}   (notifies tollgate receiver on :${PORTS.receiver})
  logs              .tollgate/logs/

Watch and steer it (another terminal):
  npx tollgate watch ${SERVICE}
  npx tollgate approve ${SERVICE} --by bob          # production needs approval, by someone other than "demo"
  npx tollgate abort ${SERVICE} --by bob --reason "looks wrong"
  npx tollgate rollback ${SERVICE} --by bob --reason "totals wrong"   # in the minute production is watched after
                                                  # the last wave: back to the warm previous version in about a second
  ${relative(process.cwd(), requireBinary(TEMPORAL_CLI)) || 'temporal'} workflow signal --workflow-id release-${SERVICE} --name pause --input '{"by":"bob","reason":"lunch"}'

A fresh demo releases the bad build ${BAD_VERSION} (20% errors) first: its canary's TollgateErrorRatioHigh alert
(track="canary", through Alertmanager and tollgate receiver) rolls it back within seconds of its first errors, and
then ${GOOD_VERSIONS[1]} starts. Try it again once a release has ended:
  npx tollgate start ${SERVICE} ${BAD_VERSION} --reason "try a bad build"

Ctrl-C stops everything; npm start again brings the fleet back as it was and resumes the release.`);
}

main().catch(async (err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  await stop(1);
});
