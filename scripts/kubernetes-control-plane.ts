import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { buildScriptBinDir, isExecutable, MissingBinaryError, PROJECT_ROOT } from './temporal-binaries';
import { markOwner, sweepOrphans } from './orphan-dirs';
import { freePorts } from './ports';

/**
 * A real Kubernetes control plane for tests, the bench and the demo: etcd, kube-apiserver (RBAC enforced),
 * kube-controller-manager, kube-scheduler, and kwok with one fake Node in place of kubelets, so Deployments roll out
 * and report availableReplicas as on a cluster while no container runs. Own PKI, 127.0.0.1 ports only, all state in
 * one directory. The binaries come from `scripts/build-kubernetes.sh` (run by `npm run provision`).
 */
export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Path of a kubeconfig for a client certificate in system:masters: for set-up only, never for code under test. */
  adminKubeconfig: string;
  /** Where PKI, etcd's data, kubeconfigs and the logs live. */
  dir: string;
  /** How long startControlPlane took, in ms. */
  startedInMs: number;
  /** Path of a kubeconfig that authenticates as the ServiceAccount with a fresh token (24 h), namespace preset. */
  kubeconfigFor(namespace: string, serviceAccount: string): Promise<string>;
  /**
   * Creates the namespace (if missing), applies `deploy/kubernetes/rbac.yaml` in it and returns a kubeconfig for its
   * ServiceAccount: the credentials the Kubernetes target runs with in tests.
   */
  setUpTargetNamespace(namespace: string): Promise<string>;
  /** Runs kubectl as admin; resolves to its stdout. */
  kubectl(args: string[], options?: { input?: string; timeoutMs?: number }): Promise<string>;
  /** SIGTERM to kube-apiserver, then the same flags and port again, ready; `downMs` keeps it down that long first. */
  restartApiServer(options?: { downMs?: number }): Promise<void>;
  /** The last lines of each component's log, for a failing test to print. */
  logTail(lines?: number): Promise<string>;
  /** Resident memory of each component now, in MiB. */
  residentMemoryMiB(): Promise<Record<Component, number>>;
  /** Kills every component (process groups, bounded waits) and removes the directory unless the caller gave it. */
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  /** Use this directory (new or empty; created if missing, kept on stop) instead of a fresh temp dir (removed on stop). */
  dir?: string;
  /** Also install the Gateway API standard CRDs (HTTPRoute and friends), established before start resolves. */
  gatewayApi?: boolean;
  /** Progress lines, e.g. console.error. */
  log?: (line: string) => void;
}

export type Component = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kwok';

/**
 * A pod with a container image containing this (`checkout:never-ready`) never turns Ready: its container waits in
 * ImagePullBackOff (scripts/kwok/stages.yaml), so a rollout to it stalls until the progress deadline.
 */
export const NEVER_READY_IMAGE_MARKER = ':never-ready';
export const FAKE_NODE_NAME = 'kwok-node-0';
export const TARGET_RBAC_MANIFEST = join(PROJECT_ROOT, 'deploy', 'kubernetes', 'rbac.yaml');
/** The ServiceAccount `deploy/kubernetes/rbac.yaml` creates and binds to the Role `tollgate-target`. */
export const TARGET_SERVICE_ACCOUNT = 'tollgate';
/** The newest Gateway API release whose module still builds with the machine's Go (v1.7.0 needs Go ≥ 1.27). */
export const GATEWAY_API_VERSION = 'v1.6.3';

const KWOK_STAGES = join(PROJECT_ROOT, 'scripts', 'kwok', 'stages.yaml');
const BUILD_SCRIPT = join(PROJECT_ROOT, 'scripts', 'build-kubernetes.sh');
const BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl', 'kwok'] as const;
const PROVISION_HINT = 'run `npm run provision` (builds them once per machine: ≈ 15 min cold, seconds warm)';

/** Bounds for two loaded cores; measured start-up is ≈ 10 s. */
const READY_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 10_000;
const POLL_MS = 100;
const TOKEN_SECONDS = 24 * 3600;

/**
 * TOLLGATE_KUBERNETES_BIN, else the directory `scripts/build-kubernetes.sh` builds into. The path is computed from
 * the script's own version pins instead of running it, so a machine that was never provisioned fails at once with a
 * hint rather than starting a 15-minute build inside a test.
 */
export function kubernetesBinDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir =
    env.TOLLGATE_KUBERNETES_BIN ||
    buildScriptBinDir(
      BUILD_SCRIPT,
      (pin) => `kubernetes-${pin('K8S_VERSION')}-etcd-${pin('ETCD_VERSION')}-kwok-${pin('KWOK_VERSION')}`,
      env,
    );
  const missing = BINARIES.filter((name) => !isExecutable(join(dir, name)));
  if (missing.length > 0) {
    const source = env.TOLLGATE_KUBERNETES_BIN ? 'TOLLGATE_KUBERNETES_BIN' : BUILD_SCRIPT;
    throw new MissingBinaryError(`${missing.join(', ')} not found in ${dir} (from ${source}): ${PROVISION_HINT}`);
  }
  return dir;
}

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const bin = kubernetesBinDir();
  await sweepOrphans(DIR_PREFIX);
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), DIR_PREFIX)));
  const cluster = new Cluster(bin, dir, ownsDir, log);
  try {
    await cluster.start(options, started);
    log(`kubernetes: control plane up at ${cluster.server} in ${Date.now() - started} ms (${dir})`);
    return cluster.handle(Date.now() - started);
  } catch (error) {
    const tail = await cluster.logTail(30).catch(() => '');
    await cluster.stop();
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`kubernetes control plane did not start: ${message}\n${tail}`, { cause: error });
  }
}

const DIR_PREFIX = 'tollgate-kubernetes-';

/**
 * Components run under `setpriv --pdeathsig KILL` (util-linux) so the kernel kills them when the test process dies,
 * however it dies: jest's sandboxed `process` never runs exit hooks.
 */
const SETPRIV = '/usr/bin/setpriv';
const guard = existsSync(SETPRIV);

interface Running {
  child: ChildProcess;
  exit: Promise<void>;
}

class Cluster {
  server = '';
  private readonly pki: string;
  private readonly logs: string;
  private readonly adminKubeconfig: string;
  private readonly processes = new Map<Component, Running>();
  private readonly apiServerArgs: string[] = [];
  /** Set while we stop a component on purpose, so its exit is not reported as a crash. */
  private readonly stopping = new Set<Component>();
  private crashed: string | undefined;
  private stopped = false;
  private adminCredentials: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;

  constructor(
    private readonly bin: string,
    readonly dir: string,
    private readonly ownsDir: boolean,
    private readonly log: (line: string) => void,
  ) {
    this.pki = join(dir, 'pki');
    this.logs = join(dir, 'logs');
    this.adminKubeconfig = join(dir, 'admin.kubeconfig');
  }

  async start(options: ControlPlaneOptions, started: number): Promise<void> {
    await mkdir(this.pki, { recursive: true });
    await mkdir(this.logs, { recursive: true });
    await mkdir(join(this.dir, 'kubeconfigs'), { recursive: true });
    if (this.ownsDir) await markOwner(this.dir);
    // Started first: `go mod download` takes a second even from the module cache.
    const gatewayCrds = options.gatewayApi ? gatewayApiCrdDir(this.dir) : undefined;
    // Unhandled until awaited below; a rejection must not crash the process before then.
    gatewayCrds?.catch(() => undefined);

    const [etcdClient, etcdPeer, apiPort] = (await freePorts(3)) as [number, number, number];
    await writePki(this.pki);
    this.adminCredentials = {
      ca: await readFile(join(this.pki, 'ca.crt')),
      cert: await readFile(join(this.pki, 'admin.crt')),
      key: await readFile(join(this.pki, 'admin.key')),
    };
    this.server = `https://127.0.0.1:${apiPort}`;
    await writeFile(this.adminKubeconfig, stringify(kubeconfig(this.server, this.pki, { admin: true })));

    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    this.launch('etcd', [
      '--name=tollgate',
      `--data-dir=${join(this.dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=tollgate=${peerUrl}`,
      // Tests only: a crash loses the data dir anyway, and fsync is most of etcd's latency on a shared disk.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    this.apiServerArgs.push(...apiServerFlags(this.pki, etcdUrl, apiPort));
    // The API server retries etcd until it answers, so both start at once.
    this.launch('kube-apiserver', this.apiServerArgs);
    await this.waitFor('kube-apiserver /readyz', () => this.readyz());
    this.log(`kubernetes: kube-apiserver ready after ${Date.now() - started} ms`);

    const kubeconfigFlags = ['kubeconfig', 'authentication-kubeconfig', 'authorization-kubeconfig'].map(
      (flag) => `--${flag}=${this.adminKubeconfig}`,
    );
    // --secure-port=0: no health/metrics listener, whose default would be 0.0.0.0:10257 (and :10259 for the scheduler).
    this.launch('kube-controller-manager', [
      ...kubeconfigFlags,
      '--secure-port=0',
      '--leader-elect=false',
      `--service-account-private-key-file=${join(this.pki, 'sa.key')}`,
      `--root-ca-file=${join(this.pki, 'ca.crt')}`,
      `--cluster-signing-cert-file=${join(this.pki, 'ca.crt')}`,
      `--cluster-signing-key-file=${join(this.pki, 'ca.key')}`,
      '--controllers=*',
    ]);
    // kwok schedules nothing: without the scheduler every pod stays Pending.
    this.launch('kube-scheduler', [...kubeconfigFlags, '--secure-port=0', '--leader-elect=false']);
    this.launch(
      'kwok',
      [
        `--kubeconfig=${this.adminKubeconfig}`,
        `--config=${KWOK_STAGES}`,
        '--manage-all-nodes=false',
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        '--cidr=10.244.0.0/16',
        // A documentation address (TEST-NET-1): the fake Node's InternalIP and every pod's hostIP, reachable by no one.
        '--node-ip=192.0.2.10',
      ],
      // kwok also reads ~/.kwok/kwok.yaml when it exists; a home of its own keeps a user's file out of the tests.
      { HOME: this.dir },
    );
    const node = await this.api('POST', '/api/v1/nodes', fakeNode());
    if (node.status !== 201) throw new Error(`registering node ${FAKE_NODE_NAME}: HTTP ${node.status} ${node.text}`);

    const timed = async (what: string, done: Promise<void>) => {
      await done;
      this.log(`kubernetes: ${what} after ${Date.now() - started} ms`);
    };
    await Promise.all([
      timed(
        'default ServiceAccount',
        this.waitFor('the default ServiceAccount', async () => {
          const { status } = await this.api('GET', '/api/v1/namespaces/default/serviceaccounts/default');
          return status === 200;
        }),
      ),
      timed(
        `node ${FAKE_NODE_NAME} Ready`,
        this.waitFor(`node ${FAKE_NODE_NAME} Ready and untainted`, () => this.nodeReady()),
      ),
      ...(gatewayCrds
        ? [
            timed(
              'Gateway API CRDs established',
              gatewayCrds.then((crdDir) => this.installGatewayApi(crdDir)),
            ),
          ]
        : []),
    ]);
  }

  handle(startedInMs: number): ControlPlane {
    return {
      server: this.server,
      adminKubeconfig: this.adminKubeconfig,
      dir: this.dir,
      startedInMs,
      kubeconfigFor: (namespace, serviceAccount) => this.kubeconfigFor(namespace, serviceAccount),
      setUpTargetNamespace: (namespace) => this.setUpTargetNamespace(namespace),
      kubectl: (args, options) => this.kubectl(args, options),
      restartApiServer: (options) => this.restartApiServer(options?.downMs ?? 0),
      logTail: (lines) => this.logTail(lines),
      residentMemoryMiB: () => this.residentMemoryMiB(),
      stop: () => this.stop(),
    };
  }

  async kubeconfigFor(namespace: string, serviceAccount: string): Promise<string> {
    const path = `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`;
    const body = {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: TOKEN_SECONDS },
    };
    const response = await this.api('POST', path, body);
    const token = (response.json as { status?: { token?: string } } | undefined)?.status?.token;
    if (response.status !== 201 || !token)
      throw new Error(`TokenRequest for ${namespace}/${serviceAccount}: HTTP ${response.status} ${response.text}`);
    const file = join(this.dir, 'kubeconfigs', `${namespace}-${serviceAccount}.kubeconfig`);
    await writeFile(file, stringify(kubeconfig(this.server, this.pki, { token, namespace })), { mode: 0o600 });
    return file;
  }

  async setUpTargetNamespace(namespace: string): Promise<string> {
    const created = await this.api('POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: namespace },
    });
    if (created.status !== 201 && created.status !== 409)
      throw new Error(`creating namespace ${namespace}: HTTP ${created.status} ${created.text}`);
    await this.kubectl(['apply', '--server-side', '-n', namespace, '-f', TARGET_RBAC_MANIFEST]);
    return this.kubeconfigFor(namespace, TARGET_SERVICE_ACCOUNT);
  }

  kubectl(args: string[], { input, timeoutMs = 60_000 }: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    // A cache dir of its own: kubectl's default, ~/.kube/cache, would gain a discovery cache per random port.
    const flags = [`--kubeconfig=${this.adminKubeconfig}`, `--cache-dir=${join(this.dir, 'kubectl-cache')}`, ...args];
    return new Promise((resolve, reject) => {
      const child = execFile(
        join(this.bin, 'kubectl'),
        flags,
        { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if (error) reject(new Error(`kubectl ${args.join(' ')}: ${stderr.trim() || error.message}`));
          else resolve(stdout);
        },
      );
      // kubectl that exits without reading its input closes the pipe: its exit status, not EPIPE, is the answer.
      child.stdin?.on('error', () => {});
      child.stdin?.end(input);
    });
  }

  async restartApiServer(downMs: number): Promise<void> {
    const started = Date.now();
    await this.terminate('kube-apiserver');
    const stopped = Date.now();
    if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
    this.launch('kube-apiserver', this.apiServerArgs);
    await this.waitFor('kube-apiserver /readyz after restart', () => this.readyz());
    this.log(
      `kubernetes: kube-apiserver stopped in ${stopped - started} ms, ready again ${Date.now() - stopped} ms later`,
    );
  }

  async logTail(lines = 40): Promise<string> {
    const names = await readdir(this.logs).catch(() => [] as string[]);
    const tails = await Promise.all(
      names.sort().map(async (name) => {
        const text = await readFile(join(this.logs, name), 'utf8').catch(() => '');
        return `--- ${name} (last ${lines} lines) ---\n${text.trimEnd().split('\n').slice(-lines).join('\n')}`;
      }),
    );
    return tails.join('\n');
  }

  async residentMemoryMiB(): Promise<Record<Component, number>> {
    const entries = await Promise.all(
      [...this.processes].map(async ([name, { child }]) => {
        const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
        const kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
        return [name, Math.round(kib / 1024)] as const;
      }),
    );
    return Object.fromEntries(entries) as Record<Component, number>;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Clients first, then the API server, then etcd: an API server whose etcd is gone, and an etcd with clients still
    // connected, each wait out their own shutdown timeouts (10 s measured, against 1.2 s in this order).
    await Promise.all(
      (['kwok', 'kube-scheduler', 'kube-controller-manager'] as const).map((name) => this.terminate(name)),
    );
    await this.terminate('kube-apiserver');
    await this.terminate('etcd');
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** Own process group (detached), so stop() reaches anything a component forks; output appended to logs/<name>.log. */
  private launch(name: Component, args: string[], env: NodeJS.ProcessEnv = {}): void {
    const binary = join(this.bin, name);
    const out = openSync(join(this.logs, `${name}.log`), 'a');
    const child = guard
      ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...args], {
          stdio: ['ignore', out, out],
          detached: true,
          env: { ...process.env, ...env },
        })
      : spawn(binary, args, { stdio: ['ignore', out, out], detached: true, env: { ...process.env, ...env } });
    closeSync(out);
    // Unreferenced, so a test that forgets stop() still lets jest exit, which takes the components down with it.
    child.unref();
    const exit = new Promise<void>((resolve) => {
      child.once('error', (error) => {
        this.crashed ??= `${name} failed to start: ${error.message}`;
        resolve();
      });
      child.once('exit', (code, signal) => {
        if (!this.stopping.has(name) && !this.stopped) this.crashed ??= `${name} exited with ${signal ?? code}`;
        resolve();
      });
    });
    this.processes.set(name, { child, exit });
  }

  /** SIGTERM to the process group, SIGKILL after STOP_GRACE_MS; resolves once the process is gone. */
  private async terminate(name: Component): Promise<void> {
    const running = this.processes.get(name);
    if (!running) return;
    const { child, exit } = running;
    this.stopping.add(name);
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      // Referenced while we wait: an unreferenced child's exit is never delivered to a loop with nothing else to do.
      child.ref();
      const group = -child.pid;
      signalGroup(group, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(group, 'SIGKILL'), STOP_GRACE_MS);
      await exit;
      clearTimeout(timer);
    }
    this.processes.delete(name);
    this.stopping.delete(name);
  }

  private async waitFor(what: string, ready: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      // stop() while waiting (a sibling wait failed): give up at once instead of polling a dead server till the deadline.
      if (this.stopped) throw new Error(`waiting for ${what}: control plane stopped`);
      if (this.crashed) throw new Error(`waiting for ${what}: ${this.crashed}`);
      if (await ready().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${READY_TIMEOUT_MS} ms waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  private async readyz(): Promise<boolean> {
    const { status, text } = await this.api('GET', '/readyz');
    return status === 200 && text === 'ok';
  }

  private async nodeReady(): Promise<boolean> {
    const { status, json } = await this.api('GET', `/api/v1/nodes/${FAKE_NODE_NAME}`);
    const node = json as
      | { spec?: { taints?: { effect: string }[] }; status?: { conditions?: { type: string; status: string }[] } }
      | undefined;
    const ready = node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    // The node-lifecycle controller taints a node not-ready until it has seen it Ready; the scheduler skips it till then.
    const schedulable = !node?.spec?.taints?.some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
    return status === 200 && ready && schedulable;
  }

  private async installGatewayApi(crdDir: string): Promise<void> {
    await this.kubectl(['apply', '--server-side', '-f', crdDir]);
    // No other CRDs exist in this cluster, so --all is exactly the Gateway API's.
    await this.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all'], {
      timeoutMs: 70_000,
    });
  }

  /** The API server as admin, over the client certificate; a connection error rejects. */
  private api(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        `${this.server}${path}`,
        {
          method,
          ...this.adminCredentials,
          headers: payload ? { 'content-type': 'application/json' } : {},
          timeout: 5_000,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text, json: parseJson(text) }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}

interface ApiResponse {
  status: number;
  text: string;
  json: unknown;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function signalGroup(group: number, signal: NodeJS.Signals): void {
  try {
    process.kill(group, signal);
  } catch {
    // Already gone.
  }
}

function apiServerFlags(pki: string, etcdUrl: string, port: number): string[] {
  return [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${port}`,
    `--tls-cert-file=${join(pki, 'apiserver.crt')}`,
    `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
    `--client-ca-file=${join(pki, 'ca.crt')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${join(pki, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
    '--service-cluster-ip-range=10.0.0.0/24',
    '--authorization-mode=RBAC',
    // No kube-proxy, no Service traffic: the default `kubernetes` Service's endpoints would point nowhere useful.
    '--endpoint-reconciler-type=none',
    '--profiling=false',
    // Without it a SIGTERM'd API server stops listening at once but then waits out its 60 s HTTP shutdown timeout for
    // the controllers' open watches; with it, it closes them and exits in about a second.
    '--shutdown-watch-termination-grace-period=1s',
  ];
}

function fakeNode(): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: FAKE_NODE_NAME,
      // What kwok's --manage-nodes-with-annotation-selector selects.
      annotations: { 'kwok.x-k8s.io/node': 'fake' },
      labels: {
        'kubernetes.io/hostname': FAKE_NODE_NAME,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        type: 'kwok',
      },
    },
  };
}

function kubeconfig(
  server: string,
  pki: string,
  user: { admin: true } | { token: string; namespace: string },
): Record<string, unknown> {
  const credentials =
    'admin' in user
      ? { 'client-certificate': join(pki, 'admin.crt'), 'client-key': join(pki, 'admin.key') }
      : { token: user.token };
  const name = 'admin' in user ? 'admin' : 'service-account';
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'tollgate-test', cluster: { server, 'certificate-authority': join(pki, 'ca.crt') } }],
    users: [{ name, user: credentials }],
    contexts: [
      {
        name: 'tollgate-test',
        context: { cluster: 'tollgate-test', user: name, ...('namespace' in user && { namespace: user.namespace }) },
      },
    ],
    'current-context': 'tollgate-test',
  };
}

const run = promisify(execFile);

/**
 * A CA; the API server's serving certificate for the names clients use; an admin client certificate in
 * system:masters (every component and the set-up use it: the code under test never does); the ServiceAccount token
 * signing key pair. P-256 keys: generated in milliseconds, where RSA-2048 takes a noticeable share of start-up.
 */
async function writePki(pki: string): Promise<void> {
  const cnf = join(pki, 'openssl.cnf');
  await writeFile(cnf, OPENSSL_CONFIG);
  const openssl = (...args: string[]) => run('openssl', args, { cwd: pki });
  const ecKey = (file: string) =>
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);
  await Promise.all(['ca.key', 'apiserver.key', 'admin.key', 'sa.key'].map(ecKey));
  await openssl(
    'req',
    '-x509',
    '-new',
    '-key',
    'ca.key',
    '-subj',
    '/CN=tollgate-test-ca',
    '-days',
    '7',
    '-config',
    cnf,
    '-extensions',
    'ca',
    '-out',
    'ca.crt',
  );
  const sign = async (name: string, subject: string, extensions: string) => {
    await openssl('req', '-new', '-key', `${name}.key`, '-subj', subject, '-config', cnf, '-out', `${name}.csr`);
    await openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-days',
      '7',
      '-extfile',
      cnf,
      '-extensions',
      extensions,
      '-out',
      `${name}.crt`,
    );
  };
  await Promise.all([
    sign('apiserver', '/CN=kube-apiserver', 'server'),
    sign('admin', '/O=system:masters/CN=tollgate-admin', 'client'),
    openssl('pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'),
  ]);
  await Promise.all(['ca.key', 'apiserver.key', 'admin.key', 'sa.key'].map((file) => chmod(join(pki, file), 0o600)));
}

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
`;

/**
 * `config/crd/standard` of the sigs.k8s.io/gateway-api module, from the Go module cache (downloaded through the Go
 * module proxy the first time, like the binaries). Run in our own directory, where no go.mod can interfere.
 */
async function gatewayApiCrdDir(cwd: string): Promise<string> {
  const { stdout } = await run('go', ['mod', 'download', '-json', `sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}`], {
    cwd,
    timeout: 120_000,
  }).catch((error: Error & { stdout?: string }) => {
    throw new Error(`go mod download sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}: ${error.stdout || error.message}`);
  });
  const { Dir: moduleDir, Error: failure } = JSON.parse(stdout) as { Dir?: string; Error?: string };
  if (!moduleDir)
    throw new Error(`go mod download sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}: ${failure ?? stdout}`);
  return join(moduleDir, 'config', 'crd', 'standard');
}

if (require.main === module) {
  const gatewayApi = process.argv.includes('--gateway-api');
  void startControlPlane({ gatewayApi, log: (line) => console.error(line) }).then(
    async (plane) => {
      console.log(
        `server: ${plane.server}\nadmin kubeconfig: ${plane.adminKubeconfig}\nlogs: ${join(plane.dir, 'logs')}`,
      );
      console.log(`memory (MiB): ${JSON.stringify(await plane.residentMemoryMiB())}`);
      for (const signal of ['SIGINT', 'SIGTERM'] as const)
        process.once(signal, () => void plane.stop().then(() => process.exit(0)));
      // Keep the event loop alive until a signal.
      setInterval(() => undefined, 1 << 30);
    },
    (error: Error) => {
      console.error(error.message);
      process.exit(1);
    },
  );
}
