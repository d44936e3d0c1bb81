import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { Client, Connection, isGrpcServiceError } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES } from '../src/domain/search-attributes';
import { alive, markOwner, sweepOrphans } from './orphan-dirs';
import { freePortBlock } from './ports';
import { buildScriptBinDir, isExecutable, MissingBinaryError, PROJECT_ROOT } from './temporal-binaries';

/**
 * A real Temporal cluster: PostgreSQL (Debian's) for persistence and visibility, the server's four services as four
 * processes of the binary `scripts/build-temporal-cluster.sh` builds, and the standalone Web UI — all on 127.0.0.1,
 * all state in one directory. `npm run cluster` runs it in the foreground; the cluster tests start one per file
 * (test/helpers/temporal-cluster.ts). The server reads deploy/temporal/cluster.yaml, as docker-compose.yml does.
 */
export interface Cluster {
  /** The frontend, host:port. */
  readonly address: string;
  readonly namespace: string;
  /** The Web UI; undefined when started without it. */
  readonly uiUrl: string | undefined;
  readonly ports: ClusterPorts;
  /** PostgreSQL's data, the logs, the UI's config and the database password live here. */
  readonly stateDir: string;
  /** What the start took (ms); `initdb` tells a cold start (a new database) from a warm one. */
  readonly timings: StartTimings;
  /** Resolves once a workflow can be started, described (history), its task queue described (matching) and it terminated; bounded. */
  ready(timeoutMs?: number): Promise<number>;
  /** Signals one service and waits (bounded) until its process is gone; `restart` brings it back. */
  kill(service: TemporalService, signal?: NodeJS.Signals): Promise<void>;
  /** Stops the service if it runs (SIGTERM, bounded), starts it again on the same ports; resolves once it listens. */
  restart(service: TemporalService): Promise<void>;
  /** Fast shutdown of PostgreSQL, then the same data and port again, accepting connections; bounded. */
  restartPostgres(): Promise<void>;
  /** PIDs of the running processes. */
  pids(): Partial<Record<Component, number>>;
  /** Resident memory of each running process now, in MiB (from /proc). */
  residentMemoryMiB(): Promise<Partial<Record<Component, number>>>;
  /** The last lines of each process's log. */
  logTail(lines?: number): Promise<string>;
  /** UI, worker, frontend, matching, history, PostgreSQL, in that order, each bounded; removes a temp state dir. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Kept across runs (created if missing). Without one: a fresh temp dir, removed on stop. */
  stateDir?: string;
  /** First of PORT_SPAN consecutive ports (see clusterPorts); without one, a free block below 32768. */
  portBase?: number;
  /** Wipe the state dir first (only one this module created: it holds its marker file). */
  fresh?: boolean;
  /** `default` unless set. */
  namespace?: string;
  /** Start the Web UI too; true by default. */
  ui?: boolean;
  /** The server's log level (its log files); `warn` by default. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Bound on the whole start, readiness included; 120 s by default. */
  timeoutMs?: number;
  /** Progress lines, e.g. console.error. */
  log?: (line: string) => void;
}

export interface StartTimings {
  /** Whether this start created the database (initdb, schemas, namespace). */
  initdb: boolean;
  postgresMs: number;
  schemaMs: number;
  /** Namespace and search attributes. */
  namespaceMs: number;
  /** From the first process launched to ready() succeeding. */
  readyMs: number;
  totalMs: number;
}

/** In the order they start; they stop in reverse. */
export const TEMPORAL_SERVICES = ['history', 'matching', 'frontend', 'worker'] as const;
export type TemporalService = (typeof TEMPORAL_SERVICES)[number];
export type Component = 'postgres' | TemporalService | 'ui';

const PORT_OFFSETS = {
  frontend: 0,
  frontendHttp: 1,
  frontendMembership: 2,
  history: 3,
  historyMembership: 4,
  matching: 5,
  matchingMembership: 6,
  worker: 7,
  workerMembership: 8,
  postgres: 9,
  ui: 10,
} as const;
export type ClusterPorts = Record<keyof typeof PORT_OFFSETS, number>;
export const PORT_SPAN = Object.keys(PORT_OFFSETS).length;
/** `cluster_membership.rpc_port` is a SMALLINT: a membership port above fails the service's start. */
export const MAX_PORT = 32_767;
/** What `npm run cluster` uses: the frontend where every Temporal client looks first. */
export const DEFAULT_PORT_BASE = 7233;
export const DEFAULT_STATE_DIR = join(PROJECT_ROOT, '.tollgate', 'cluster');

export function clusterPorts(base: number): ClusterPorts {
  if (!Number.isInteger(base) || base < 1024 || base + PORT_SPAN - 1 > MAX_PORT)
    throw new Error(
      `port base ${base}: the cluster needs ports ${base}..${base + PORT_SPAN - 1} within 1024..${MAX_PORT}`,
    );
  return Object.fromEntries(
    Object.entries(PORT_OFFSETS).map(([name, offset]) => [name, base + offset]),
  ) as ClusterPorts;
}

const CONFIG_DIR = join(PROJECT_ROOT, 'deploy', 'temporal');
/** The server loads <config dir>/<env>.yaml: deploy/temporal/cluster.yaml. */
const CONFIG_ENV = 'cluster';
const DYNAMIC_CONFIG = join(CONFIG_DIR, 'dynamicconfig.yaml');
const BUILD_SCRIPT = join(PROJECT_ROOT, 'scripts', 'build-temporal-cluster.sh');
const MARKER = 'tollgate-cluster.json';
const DIR_PREFIX = 'tollgate-cluster-';
const DB_USER = 'temporal';
const DATABASES = { temporal: 'temporal', visibility: 'temporal_visibility' } as const;
const RETENTION = '1 day';

const START_TIMEOUT_MS = 120_000;
const READY_TIMEOUT_MS = 60_000;
/** Per call of the readiness probe: a dead history service makes calls hang, not fail. */
const PROBE_CALL_MS = 5_000;
const LISTEN_TIMEOUT_MS = 30_000;
/** A Temporal service drains for up to a few seconds on SIGTERM; PostgreSQL's fast shutdown takes well under one. */
const STOP_GRACE_MS = 15_000;
const KILL_WAIT_MS = 10_000;
const POLL_MS = 100;

export interface ClusterBinaries {
  server: string;
  sqlTool: string;
  ui: string;
  /** The server module's schema/postgresql, copied beside the binaries by the build script. */
  schemaDir: string;
}

/**
 * TOLLGATE_TEMPORAL_CLUSTER_BIN (with ../schema/postgresql beside it), else where the build script builds, computed
 * from its version pins rather than by running it, so an unprovisioned machine fails at once with a hint instead of
 * starting a 15-minute build inside a test.
 */
export function clusterBinaries(env: NodeJS.ProcessEnv = process.env): ClusterBinaries {
  const bin =
    env.TOLLGATE_TEMPORAL_CLUSTER_BIN ||
    buildScriptBinDir(
      BUILD_SCRIPT,
      (pin) => `temporal-server-${pin('SERVER_VERSION')}-ui-${pin('UI_SERVER_VERSION')}`,
      env,
    );
  const found: ClusterBinaries = {
    server: join(bin, 'temporal-server'),
    sqlTool: join(bin, 'temporal-sql-tool'),
    ui: join(bin, 'temporal-ui-server'),
    schemaDir: resolve(bin, '..', 'schema', 'postgresql'),
  };
  const missing = [found.server, found.sqlTool, found.ui].filter((path) => !isExecutable(path));
  if (!existsSync(found.schemaDir)) missing.push(found.schemaDir);
  if (missing.length > 0)
    throw new MissingBinaryError(
      `${missing.join(', ')} not found: run \`bash scripts/build-temporal-cluster.sh\` (≈ 15 min once per machine)`,
    );
  return found;
}

/** TOLLGATE_POSTGRES_BIN, else the newest /usr/lib/postgresql/<major>/bin (Debian's `postgresql`). */
export function postgresBinDir(env: NodeJS.ProcessEnv = process.env): string {
  const root = '/usr/lib/postgresql';
  const candidates = env.TOLLGATE_POSTGRES_BIN
    ? [env.TOLLGATE_POSTGRES_BIN]
    : (existsSync(root) ? readdirSync(root) : [])
        .filter((major) => /^\d+$/.test(major))
        .sort((a, b) => Number(b) - Number(a))
        .map((major) => join(root, major, 'bin'));
  const dir = candidates.find((d) =>
    ['initdb', 'postgres', 'pg_isready', 'psql'].every((b) => isExecutable(join(d, b))),
  );
  if (!dir)
    throw new MissingBinaryError(
      `PostgreSQL not found (${env.TOLLGATE_POSTGRES_BIN ? 'TOLLGATE_POSTGRES_BIN' : root}): apt-get install -y postgresql`,
    );
  return dir;
}

/**
 * Under `setpriv --pdeathsig KILL` (util-linux), so the kernel kills every process when the one that started them
 * dies, however it dies (jest's sandboxed `process` never runs exit hooks). PostgreSQL refuses to run as root: as root
 * it runs as the `postgres` user, and the death signal is set after that switch (a uid change clears it).
 */
const SETPRIV = '/usr/bin/setpriv';
const guard = existsSync(SETPRIV);
const isRoot = process.getuid?.() === 0;

interface Running {
  child: ChildProcess;
  exit: Promise<void>;
}

const run = promisify(execFile);

/** Starts (or, on existing state, restarts) the cluster; resolves once it serves workflows. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const started = Date.now();
  const binaries = clusterBinaries();
  const pgBin = postgresBinDir();
  await sweepOrphans(DIR_PREFIX);
  const ownsDir = options.stateDir === undefined;
  const stateDir = options.stateDir ? resolve(options.stateDir) : await mkdtemp(join(tmpdir(), DIR_PREFIX));
  if (options.fresh && !ownsDir) await wipe(stateDir);
  const ports = clusterPorts(options.portBase ?? (await freePortBlock(PORT_SPAN)));
  const cluster = new ClusterProcesses(binaries, pgBin, stateDir, ownsDir, ports, options);
  try {
    await cluster.start(started, options.timeoutMs ?? START_TIMEOUT_MS);
    return cluster.handle();
  } catch (error) {
    const tail = await cluster.logTail(25).catch(() => '');
    await cluster.stop();
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`Temporal cluster did not start: ${message}\n${tail}`, { cause: error });
  }
}

/** Only a dir this module made (its marker inside) or an empty one: `--fresh --state-dir ~` must not wipe a home. */
async function wipe(dir: string): Promise<void> {
  const entries = await readdir(dir).catch(() => undefined);
  if (!entries || entries.length === 0) return;
  if (!entries.includes(MARKER))
    throw new Error(`--fresh: ${dir} is not a cluster state dir (no ${MARKER}); remove it yourself if you mean it`);
  await rm(dir, { recursive: true, force: true });
}

class ClusterProcesses {
  readonly address: string;
  private readonly namespace: string;
  private readonly uiUrl: string | undefined;
  private readonly logs: string;
  private readonly pgData: string;
  private readonly processes = new Map<Component, Running>();
  /** Set while a component is stopped on purpose, so its exit is not reported as a crash. */
  private readonly stopping = new Set<Component>();
  private readonly log: (line: string) => void;
  private crashed: string | undefined;
  private stopped = false;
  private password = '';
  private connection: Connection | undefined;
  timings: StartTimings = { initdb: false, postgresMs: 0, schemaMs: 0, namespaceMs: 0, readyMs: 0, totalMs: 0 };

  constructor(
    private readonly binaries: ClusterBinaries,
    private readonly pgBin: string,
    readonly stateDir: string,
    private readonly ownsDir: boolean,
    readonly ports: ClusterPorts,
    private readonly options: ClusterOptions,
  ) {
    this.address = `127.0.0.1:${ports.frontend}`;
    this.namespace = options.namespace ?? 'default';
    this.uiUrl = options.ui === false ? undefined : `http://127.0.0.1:${ports.ui}`;
    this.logs = join(stateDir, 'logs');
    this.pgData = join(stateDir, 'postgres');
    this.log = options.log ?? (() => undefined);
  }

  async start(started: number, timeoutMs: number): Promise<void> {
    const deadline = started + timeoutMs;
    await this.claimStateDir();
    const fresh = !existsSync(join(this.pgData, 'PG_VERSION'));
    this.timings.initdb = fresh;
    const step = (what: string, since: number) => {
      const ms = Date.now() - since;
      this.log(`cluster: ${what} in ${ms} ms`);
      return ms;
    };

    let since = Date.now();
    if (fresh) await this.initdb();
    await this.startPostgres(deadline);
    this.timings.postgresMs = step(fresh ? 'PostgreSQL initialised and accepting connections' : 'PostgreSQL up', since);

    since = Date.now();
    await Promise.all([
      this.setUpSchema(DATABASES.temporal, 'temporal'),
      this.setUpSchema(DATABASES.visibility, 'visibility'),
    ]);
    this.timings.schemaMs = step('schemas up to date', since);
    await this.forgetMembers();

    const launched = Date.now();
    // History first, alone: each process writes the cluster's metadata record on a new database, and of four
    // starting at once the ones that lose the race exit (`duplicate key value violates "cluster_metadata_info_pkey"`).
    // It listens only once the record is written.
    this.launchService('history');
    await this.waitFor('history listening', deadline, () => isListening(this.ports.history));
    for (const service of TEMPORAL_SERVICES.filter((s) => s !== 'history')) this.launchService(service);
    if (this.uiUrl) await this.launchUi();
    since = Date.now();
    await this.registerNamespace(deadline);
    this.timings.namespaceMs = step(`namespace ${this.namespace} and search attributes registered`, since);
    await this.ready(Math.max(1_000, deadline - Date.now()));
    if (this.uiUrl) await this.waitFor('the Web UI', deadline, () => this.uiAnswers());
    this.timings.readyMs = Date.now() - launched;
    this.timings.totalMs = step('cluster ready', started);
  }

  handle(): Cluster {
    return {
      address: this.address,
      namespace: this.namespace,
      uiUrl: this.uiUrl,
      ports: this.ports,
      stateDir: this.stateDir,
      timings: this.timings,
      ready: (timeoutMs) => this.ready(timeoutMs),
      kill: (service, signal) => this.kill(service, signal),
      restart: (service) => this.restart(service),
      restartPostgres: () => this.restartPostgres(),
      pids: () => this.pids(),
      residentMemoryMiB: () => this.residentMemoryMiB(),
      logTail: (lines) => this.logTail(lines),
      stop: () => this.stop(),
    };
  }

  /** The marker (port base, who runs it), the logs dir, the password; one running cluster per dir. */
  private async claimStateDir(): Promise<void> {
    await mkdir(this.logs, { recursive: true });
    // PostgreSQL runs as `postgres`: it must be able to reach its data dir through this one (mkdtemp makes 0700).
    if (isRoot) await chmod(this.stateDir, 0o711);
    const markerPath = join(this.stateDir, MARKER);
    const marker = await readJson<{ pid?: number; portBase?: number }>(markerPath);
    if (marker?.pid && marker.pid !== process.pid && alive(marker.pid))
      throw new Error(`a cluster already runs on ${this.stateDir} (pid ${marker.pid})`);
    if (marker?.portBase !== undefined && marker.portBase !== this.ports.frontend)
      this.log(`cluster: ${this.stateDir} was last run on port base ${marker.portBase}, now ${this.ports.frontend}`);
    await writeFile(markerPath, `${JSON.stringify({ pid: process.pid, portBase: this.ports.frontend }, null, 1)}\n`);
    if (this.ownsDir) await markOwner(this.stateDir);
    const passwordFile = join(this.stateDir, 'password');
    this.password = (await readFile(passwordFile, 'utf8').catch(() => '')).trim();
    if (!this.password) {
      this.password = randomBytes(18).toString('hex');
      await writeFile(passwordFile, `${this.password}\n`, { mode: 0o600 });
    }
  }

  /** A superuser `temporal` with the generated password; password auth over TCP only (no Unix socket at all). */
  private async initdb(): Promise<void> {
    await rm(this.pgData, { recursive: true, force: true });
    await mkdir(this.pgData, { mode: 0o700 });
    const pwfile = join(this.stateDir, 'initdb.pw');
    await writeFile(pwfile, `${this.password}\n`, { mode: 0o600 });
    try {
      if (isRoot) {
        const { uid, gid } = await postgresUser();
        await chown(this.pgData, uid, gid);
        await chown(pwfile, uid, gid);
      }
      const args = ['-D', this.pgData, '-U', DB_USER, `--pwfile=${pwfile}`, '--auth=scram-sha-256'];
      // -N: no fsync of the new files; a machine crash in the next second loses a database that holds nothing yet.
      const [command, prefix] = pgCommand(join(this.pgBin, 'initdb'));
      await run(command, [...prefix, ...args, '-E', 'UTF8', '--locale=C', '-N'], {
        cwd: this.stateDir,
        timeout: 60_000,
      }).catch((error: Error & { stderr?: string }) => {
        const hint = isRoot ? ` (it runs as user postgres: can it reach ${this.stateDir}?)` : '';
        throw new Error(`initdb failed${hint}: ${error.stderr?.trim() || error.message}`);
      });
    } finally {
      await rm(pwfile, { force: true });
    }
  }

  private async startPostgres(deadline: number): Promise<void> {
    const [command, prefix] = pgCommand(join(this.pgBin, 'postgres'));
    this.launch('postgres', command, [
      ...prefix,
      '-D',
      this.pgData,
      '-p',
      String(this.ports.postgres),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=100',
    ]);
    await this.waitFor('PostgreSQL to accept connections', deadline, async () => {
      await run(join(this.pgBin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(this.ports.postgres), '-q'], {
        timeout: 5_000,
      });
      return true;
    });
  }

  /** create-database, setup-schema -v 0.0, update-schema: each a no-op on a database already at the latest version. */
  private async setUpSchema(database: string, schema: 'temporal' | 'visibility'): Promise<void> {
    const versioned = join(this.binaries.schemaDir, 'v12', schema, 'versioned');
    const sql = (...args: string[]) =>
      run(
        this.binaries.sqlTool,
        [
          '--plugin',
          'postgres12',
          '--ep',
          '127.0.0.1',
          '-p',
          String(this.ports.postgres),
          '-u',
          DB_USER,
          '--db',
          database,
          ...args,
        ],
        // The password through the tool's own variable, not argv (which every user's `ps` shows).
        { env: { ...process.env, SQL_PASSWORD: this.password }, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      ).catch((error: Error & { stdout?: string; stderr?: string }) => {
        const output = `${error.stderr ?? ''}${error.stdout ?? ''}`.trim().split('\n').slice(-5).join('\n');
        throw new Error(`temporal-sql-tool ${args[0]} (${database}): ${output || error.message}`);
      });
    await sql('create-database');
    await sql('setup-schema', '-v', '0.0');
    await sql('update-schema', '-d', versioned);
  }

  /**
   * The membership table is only where a starting process finds its peers: every member heartbeating within the
   * last 20 s is a seed it must reach. Right after a stop on other ports (or a crash), those are all dead, and ringpop
   * waits out its 30 s join bound on them (a start took 46 s after a port change). None of this cluster's Temporal
   * processes runs now, so no row is anyone's.
   */
  private async forgetMembers(): Promise<void> {
    const args = ['-h', '127.0.0.1', '-p', String(this.ports.postgres), '-U', DB_USER, '-d', DATABASES.temporal];
    await run(join(this.pgBin, 'psql'), [...args, '-v', 'ON_ERROR_STOP=1', '-qAtc', 'DELETE FROM cluster_membership'], {
      env: { ...process.env, PGPASSWORD: this.password },
      timeout: 30_000,
    }).catch((error: Error & { stderr?: string }) => {
      throw new Error(`clearing cluster_membership: ${error.stderr?.trim() || error.message}`);
    });
  }

  private serviceEnv(): NodeJS.ProcessEnv {
    const p = this.ports;
    // Every variable deploy/temporal/cluster.yaml reads, so none comes from the caller's environment by accident.
    return {
      ...process.env,
      POSTGRES_SEEDS: '127.0.0.1',
      DB_PORT: String(p.postgres),
      POSTGRES_USER: DB_USER,
      POSTGRES_PWD: this.password,
      DBNAME: DATABASES.temporal,
      VISIBILITY_DBNAME: DATABASES.visibility,
      BIND_ON_IP: '127.0.0.1',
      TEMPORAL_BROADCAST_ADDRESS: '127.0.0.1',
      DYNAMIC_CONFIG_FILE_PATH: DYNAMIC_CONFIG,
      LOG_LEVEL: this.options.logLevel ?? 'warn',
      FRONTEND_GRPC_PORT: String(p.frontend),
      FRONTEND_HTTP_PORT: String(p.frontendHttp),
      FRONTEND_MEMBERSHIP_PORT: String(p.frontendMembership),
      HISTORY_GRPC_PORT: String(p.history),
      HISTORY_MEMBERSHIP_PORT: String(p.historyMembership),
      MATCHING_GRPC_PORT: String(p.matching),
      MATCHING_MEMBERSHIP_PORT: String(p.matchingMembership),
      WORKER_GRPC_PORT: String(p.worker),
      WORKER_MEMBERSHIP_PORT: String(p.workerMembership),
    };
  }

  private launchService(service: TemporalService): void {
    const args = ['--root', CONFIG_DIR, '--config', '.', '--env', CONFIG_ENV, '--allow-no-auth', 'start'];
    const [command, prefix] = guarded(this.binaries.server);
    this.launch(service, command, [...prefix, ...args, '--service', service], this.serviceEnv());
  }

  private async launchUi(): Promise<void> {
    const dir = join(this.stateDir, 'ui');
    await mkdir(dir, { recursive: true });
    // The UI server's own config format (base.yaml + <env>.yaml in a dir); only what differs from its defaults.
    const config = [
      `temporalGrpcAddress: ${this.address}`,
      'host: 127.0.0.1',
      `port: ${this.ports.ui}`,
      'enableUi: true',
      `defaultNamespace: ${this.namespace}`,
      // No internet here; the UI would otherwise fetch release news on every load.
      'disableNewsFetch: true',
      'hideLogs: true',
      'cors:',
      '  cookieInsecure: true',
      '  allowOrigins:',
      `    - ${this.uiUrl}`,
      '',
    ].join('\n');
    await writeFile(join(dir, `${CONFIG_ENV}.yaml`), config);
    const [command, prefix] = guarded(this.binaries.ui);
    this.launch('ui', command, [...prefix, '--root', dir, '--config', '.', '--env', CONFIG_ENV, 'start']);
  }

  /** Own process group; output appended to logs/<name>.log; unreferenced so a forgotten stop() cannot hold jest. */
  private launch(name: Component, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): void {
    const out = openSync(join(this.logs, `${name}.log`), 'a');
    const child = spawn(command, args, { stdio: ['ignore', out, out], detached: true, env, cwd: this.stateDir });
    closeSync(out);
    child.unref();
    const exit = new Promise<void>((resolve) => {
      child.once('error', (error) => {
        this.crashed ??= `${name} failed to start: ${error.message}`;
        resolve();
      });
      child.once('exit', (code, signal) => {
        if (!this.stopping.has(name) && !this.stopped) {
          this.crashed ??= `${name} exited with ${signal ?? code}`;
          this.log(`cluster: ${name} exited with ${signal ?? code} (see ${join(this.logs, `${name}.log`)})`);
        }
        resolve();
      });
    });
    this.processes.set(name, { child, exit });
  }

  private async client(): Promise<{ connection: Connection; client: Client }> {
    this.connection ??= await Connection.connect({ address: this.address, connectTimeout: PROBE_CALL_MS });
    return {
      connection: this.connection,
      client: new Client({ connection: this.connection, namespace: this.namespace }),
    };
  }

  /**
   * Registers the namespace (if missing), then Tollgate's search attributes (those missing). Right after the
   * namespace is created the frontend may still answer that it does not exist: retried until the deadline.
   */
  private async registerNamespace(deadline: number): Promise<void> {
    await this.waitFor(`namespace ${this.namespace}`, deadline, async () => {
      const { connection } = await this.client();
      await connection.withDeadline(Date.now() + PROBE_CALL_MS, () =>
        connection.workflowService
          .registerNamespace({
            namespace: this.namespace,
            workflowExecutionRetentionPeriod: msToTs(RETENTION),
          })
          .catch((error: unknown) => {
            if (!(isGrpcServiceError(error) && error.code === GrpcStatus.ALREADY_EXISTS)) throw error;
          }),
      );
      return true;
    });
    await this.waitFor('the search attributes', deadline, async () => {
      const { connection } = await this.client();
      const listed = await connection.withDeadline(Date.now() + PROBE_CALL_MS, () =>
        connection.operatorService.listSearchAttributes({ namespace: this.namespace }),
      );
      const missing = SEARCH_ATTRIBUTES.filter((key) => !(key.name in (listed.customAttributes ?? {})));
      if (missing.length === 0) return true;
      await connection.withDeadline(Date.now() + PROBE_CALL_MS, () =>
        connection.operatorService.addSearchAttributes({
          namespace: this.namespace,
          searchAttributes: Object.fromEntries(missing.map((key) => [key.name, KEYWORD])),
        }),
      );
      return false;
    });
  }

  /**
   * `cluster health` asks the frontend alone (SERVING with history dead): this starts a workflow on a task queue of
   * its own and describes it (history), describes the task queue (matching), and terminates and deletes it. Returns
   * the ms taken.
   */
  async ready(timeoutMs = READY_TIMEOUT_MS): Promise<number> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    await this.waitFor('the cluster to serve a workflow (history and matching)', deadline, async () => {
      const { connection, client } = await this.client();
      const id = `tollgate-readiness-${randomUUID()}`;
      const within = <T>(fn: () => Promise<T>) => connection.withDeadline(Date.now() + PROBE_CALL_MS, fn);
      const handle = await within(() =>
        client.workflow.start('tollgateReadinessProbe', {
          taskQueue: id,
          workflowId: id,
          workflowExecutionTimeout: '1m',
        }),
      );
      const described = await within(() => handle.describe());
      await within(() =>
        connection.workflowService.describeTaskQueue({
          namespace: this.namespace,
          taskQueue: { name: id, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
          taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        }),
      );
      await within(() => handle.terminate('readiness probe'));
      // Out of the Web UI's list (the server deletes it within a minute or so): a person should see releases there,
      // not one probe per start. Best effort: deleting is no part of being ready.
      await within(() =>
        connection.workflowService.deleteWorkflowExecution({
          namespace: this.namespace,
          workflowExecution: { workflowId: id, runId: handle.firstExecutionRunId },
        }),
      ).catch(() => undefined);
      return described.status.name === 'RUNNING';
    });
    return Date.now() - started;
  }

  private async uiAnswers(): Promise<boolean> {
    const status = await httpStatus(`${this.uiUrl}/api/v1/namespaces/${encodeURIComponent(this.namespace)}`);
    return status === 200;
  }

  async kill(service: TemporalService, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const running = this.processes.get(service);
    if (!running) return;
    this.stopping.add(service);
    running.child.ref();
    signalProcess(running.child, signal);
    const escalate = setTimeout(
      () => signalProcess(running.child, 'SIGKILL'),
      signal === 'SIGKILL' ? 0 : STOP_GRACE_MS,
    );
    const gone = await bounded(running.exit, (signal === 'SIGKILL' ? 0 : STOP_GRACE_MS) + KILL_WAIT_MS);
    clearTimeout(escalate);
    this.processes.delete(service);
    this.stopping.delete(service);
    if (!gone) throw new Error(`${service} (pid ${running.child.pid}) did not exit after ${signal}`);
    this.log(`cluster: ${service} stopped by ${signal}`);
  }

  async restart(service: TemporalService): Promise<void> {
    const started = Date.now();
    if (this.processes.has(service)) await this.kill(service, 'SIGTERM');
    this.crashed = undefined;
    this.launchService(service);
    const port = this.ports[service];
    await this.waitFor(`${service} listening on ${port}`, Date.now() + LISTEN_TIMEOUT_MS, () => isListening(port));
    this.log(`cluster: ${service} restarted, listening after ${Date.now() - started} ms`);
  }

  async restartPostgres(): Promise<void> {
    const started = Date.now();
    // SIGINT is PostgreSQL's fast shutdown: open transactions are rolled back, the data is checkpointed.
    await this.terminate('postgres', 'SIGINT');
    this.crashed = undefined;
    await this.startPostgres(Date.now() + LISTEN_TIMEOUT_MS);
    this.log(`cluster: PostgreSQL restarted in ${Date.now() - started} ms`);
  }

  pids(): Partial<Record<Component, number>> {
    return Object.fromEntries([...this.processes].map(([name, { child }]) => [name, child.pid]));
  }

  async residentMemoryMiB(): Promise<Partial<Record<Component, number>>> {
    const entries = await Promise.all(
      [...this.processes].map(async ([name, { child }]) => {
        const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
        const kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
        return [name, Math.round(kib / 1024)] as const;
      }),
    );
    return Object.fromEntries(entries);
  }

  async logTail(lines = 40): Promise<string> {
    const names = await readdir(this.logs).catch(() => [] as string[]);
    const tails = await Promise.all(
      names.sort().map(async (name) => {
        const text = await readFile(join(this.logs, name), 'utf8').catch(() => '');
        // The server logs JSON lines with whole Go stack traces in them: the head of each line says enough.
        const tail = text
          .trimEnd()
          .split('\n')
          .slice(-lines)
          .map((line) => (line.length > 400 ? `${line.slice(0, 400)}…` : line));
        return `--- ${name} (last ${lines} lines) ---\n${tail.join('\n')}`;
      }),
    );
    return tails.join('\n');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.connection?.close().catch(() => undefined);
    this.connection = undefined;
    for (const name of ['ui', ...[...TEMPORAL_SERVICES].reverse()] as Component[])
      await this.terminate(name, 'SIGTERM');
    await this.terminate('postgres', 'SIGINT');
    const markerPath = join(this.stateDir, MARKER);
    const marker = await readJson<Record<string, unknown>>(markerPath);
    if (marker) await writeFile(markerPath, `${JSON.stringify({ ...marker, pid: undefined }, null, 1)}\n`);
    if (this.ownsDir) await rm(this.stateDir, { recursive: true, force: true });
  }

  /** `signal`, SIGKILL after STOP_GRACE_MS; resolves once the process is gone. */
  private async terminate(name: Component, signal: NodeJS.Signals): Promise<void> {
    const running = this.processes.get(name);
    if (!running) return;
    const { child, exit } = running;
    this.stopping.add(name);
    const since = Date.now();
    if (child.exitCode === null && child.signalCode === null) {
      // Referenced while we wait: an unreferenced child's exit never reaches a loop with nothing else to do.
      child.ref();
      signalProcess(child, signal);
      const timer = setTimeout(() => signalProcess(child, 'SIGKILL'), STOP_GRACE_MS);
      await bounded(exit, STOP_GRACE_MS + KILL_WAIT_MS);
      clearTimeout(timer);
    }
    this.processes.delete(name);
    this.stopping.delete(name);
    this.log(`cluster: ${name} stopped in ${Date.now() - since} ms`);
  }

  /** Polls `probe` (a throw counts as not yet) until it holds; fails at the deadline or when a process crashed. */
  private async waitFor(what: string, deadline: number, probe: () => Promise<boolean>): Promise<void> {
    let last = '';
    for (;;) {
      if (this.stopped) throw new Error(`waiting for ${what}: cluster stopped`);
      if (this.crashed) throw new Error(`waiting for ${what}: ${this.crashed}`);
      const ok = await probe().catch((error: unknown) => {
        last = error instanceof Error ? error.message : String(error);
        return false;
      });
      if (ok) return;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.split('\n')[0]})` : ''}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}

const KEYWORD = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;

/** [command, leading args] that run `binary` as the PostgreSQL user (when root) under the death-signal guard. */
function pgCommand(binary: string): [string, string[]] {
  if (!isRoot) return guarded(binary);
  const asPostgres = ['--reuid=postgres', '--regid=postgres', '--clear-groups', '--'];
  if (!guard) throw new Error(`${SETPRIV} (util-linux) is needed to run PostgreSQL as user postgres`);
  // The second setpriv runs as postgres and sets the death signal the uid change would have cleared.
  return [SETPRIV, [...asPostgres, SETPRIV, '--pdeathsig', 'KILL', '--', binary]];
}

function guarded(binary: string): [string, string[]] {
  return guard ? [SETPRIV, ['--pdeathsig', 'KILL', '--', binary]] : [binary, []];
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const { stdout: uid } = await run('id', ['-u', 'postgres']).catch(() => {
    throw new Error('PostgreSQL refuses to run as root and there is no user postgres: apt-get install -y postgresql');
  });
  const { stdout: gid } = await run('id', ['-g', 'postgres']);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

function signalProcess(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Whether `promise` settled within `ms`; the timer is cleared either way. */
async function bounded(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: PROBE_CALL_MS }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** A connection attempt, not a bind: binding the port to test it could take it from the process about to listen. */
function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

interface CliArgs {
  portBase: number;
  stateDir: string;
  fresh: boolean;
  ui: boolean;
}

const USAGE = `usage: npm run cluster -- [--port-base N] [--state-dir DIR] [--fresh] [--no-ui]
  --port-base N   first of ${PORT_SPAN} ports: frontend N, its HTTP N+1, history N+3, matching N+5, worker N+7,
                  PostgreSQL N+9, Web UI N+10 (env TOLLGATE_CLUSTER_PORT_BASE; default ${DEFAULT_PORT_BASE})
  --state-dir DIR PostgreSQL's data, logs, password (env TOLLGATE_CLUSTER_DIR; default .tollgate/cluster)
  --fresh         wipe the state dir first
  --no-ui         no Web UI`;

export function parseCliArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): CliArgs {
  const args: CliArgs = {
    portBase: Number(env.TOLLGATE_CLUSTER_PORT_BASE || DEFAULT_PORT_BASE),
    stateDir: env.TOLLGATE_CLUSTER_DIR || DEFAULT_STATE_DIR,
    fresh: false,
    ui: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value\n${USAGE}`);
      return next;
    };
    if (arg === '--port-base') args.portBase = Number(value());
    else if (arg === '--state-dir') args.stateDir = value();
    else if (arg === '--fresh') args.fresh = true;
    else if (arg === '--no-ui') args.ui = false;
    else throw new Error(`unknown argument ${arg}\n${USAGE}`);
  }
  clusterPorts(args.portBase);
  return args;
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(USAGE);
    return;
  }
  const args = parseCliArgs(process.argv.slice(2));
  const cluster = await startCluster({
    stateDir: args.stateDir,
    portBase: args.portBase,
    fresh: args.fresh,
    ui: args.ui,
    log: (line) => console.error(line),
  });
  const { timings } = cluster;
  console.log(
    [
      `Temporal cluster on PostgreSQL ready in ${(timings.totalMs / 1000).toFixed(1)} s (${timings.initdb ? 'new database' : 'existing data'})`,
      `  frontend:  ${cluster.address}  (namespace ${cluster.namespace})`,
      ...(cluster.uiUrl ? [`  Web UI:    ${cluster.uiUrl}`] : []),
      `  processes: ${Object.entries(cluster.pids())
        .map(([name, pid]) => `${name} ${pid}`)
        .join(', ')}`,
      `  state:     ${cluster.stateDir} (logs in logs/)`,
      'Ctrl-C stops it.',
    ].join('\n'),
  );
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      console.error(`cluster: ${signal}, stopping`);
      void cluster.stop().then(
        () => process.exit(0),
        (error: Error) => {
          console.error(error.message);
          process.exit(1);
        },
      );
    });
  // Keep the event loop alive until a signal.
  setInterval(() => undefined, 1 << 30);
}

if (require.main === module) {
  main().catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
}
