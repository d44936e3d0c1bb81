import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { connectionSettings } from '../../src/config/connection';
import { connectionEnvSchema, parseEnv } from '../../src/config/env';
import { workflowBundle } from '../helpers/bundles';
import { compileDemo, removeDir } from '../helpers/fleet';
import { FLEET_ORG, writePolicies } from '../helpers/policies';
import { devServerForTests, taskQueueForTest } from '../helpers/temporal';
import { makeTestPki, startTlsProxy, type TestPki, type TlsProxy } from '../helpers/tls-proxy';
import { eventually } from '../helpers/until';

/**
 * The worker and the `tollgate` CLI, as the processes they ship as (compiled from src/ with swc, the code `npm run
 * build` compiles), reaching the dev server through a real HAProxy that terminates TLS: one frontend requires a
 * client certificate from the test CA, the other an API key. Every setting comes from the environment, as in
 * production, so both go through `connectionSettings` (src/config/connection.ts) exactly as they would there.
 */

interface Ran {
  code: number | null;
  out: string;
  err: string;
}

const live = new Set<ChildProcess>();

/** Runs `node <js> args` with only `env` (no stray TEMPORAL_* from the machine), killed past `timeoutMs`. */
function runNode(js: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [js, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
    live.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code: code ?? null, out, err: signal ? `${err}\n[killed: ${signal} after ${timeoutMs} ms]` : err });
    });
  });
}

/** The CLI's error, from its last stderr line (--json): Node may print a warning before it. */
function cliError(ran: Ran): { error: string; code: string } {
  const last = ran.err.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as { error: string; code: string };
}

interface WorkerProc {
  logPath: string;
  log(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

function spawnWorker(js: string, env: Record<string, string>, logPath: string): WorkerProc {
  const fd = openSync(logPath, 'a');
  const child = spawn(process.execPath, [js], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  live.add(child);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      live.delete(child);
      resolve(code);
    }),
  );
  return {
    logPath,
    log: () => readFileSync(logPath, 'utf8'),
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The worker's exit code, or 'still running' past `ms`. */
async function exitWithin(worker: WorkerProc, ms: number): Promise<number | null | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), ms)));
  try {
    return await Promise.race([worker.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A worker that said it started, or the reason it did not (bounded: 20 s). */
async function startedWorker(js: string, env: Record<string, string>, logPath: string): Promise<WorkerProc> {
  const worker = spawnWorker(js, env, logPath);
  let exit: number | null | undefined;
  void worker.exited.then((code) => (exit = code));
  await eventually(
    () => ({ exit, started: worker.log().includes('"msg":"worker started"') }),
    (s) => s.started || s.exit !== undefined,
    'the worker to start',
    { timeoutMs: 20_000, everyMs: 100 },
  );
  if (exit !== undefined) throw new Error(`the worker exited (${exit}) at start:\n${worker.log().slice(-2000)}`);
  return worker;
}

describe('the worker and the CLI reach Temporal through TLS', () => {
  const server = devServerForTests();
  const apiKey = `tg-test-key-${randomUUID()}`;
  let dir: string;
  let pki: TestPki;
  let proxy: TlsProxy;
  let cliJs: string;
  let workerJs: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tg-tls-'));
    pki = await makeTestPki(dir);
    proxy = await startTlsProxy({ dir, pki, backend: server.env.address, apiKey });
    const built = await compileDemo(['src/worker.ts', 'src/client/cli.ts']);
    cliJs = built.js('src/client/cli.ts');
    workerJs = built.js('src/worker.ts');
  });

  afterAll(async () => {
    for (const child of live) child.kill('SIGKILL');
    await proxy?.stop();
    if (dir) await removeDir(dir);
  });

  const mtls = () => ({
    TEMPORAL_ADDRESS: proxy.mtlsAddress,
    TEMPORAL_TLS_CA_PATH: pki.caPem,
    TEMPORAL_TLS_CERT_PATH: pki.client.cert,
    TEMPORAL_TLS_KEY_PATH: pki.client.key,
  });
  const viaApiKey = (key?: string) => ({
    TEMPORAL_ADDRESS: proxy.apiKeyAddress,
    TEMPORAL_TLS_CA_PATH: pki.caPem,
    ...(key !== undefined && { TEMPORAL_API_KEY: key }),
  });
  const cli = (args: string[], env: Record<string, string>, timeoutMs = 15_000) =>
    runNode(cliJs, [...args, '--json'], env, timeoutMs);

  /** A release that lasts about two seconds on the dry-run target, and the settings of a worker for it. */
  function fastRelease(taskQueue: string): { service: string; workerEnv: Record<string, string> } {
    const service = `tls-${randomUUID().slice(0, 8)}`;
    const policyDir = writePolicies(FLEET_ORG, [
      {
        service,
        trafficCycle: { duration: '1s' },
        canary: { analysis: { interval: '1s', checks: [] } },
        production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
      },
    ]);
    const workerEnv = {
      TOLLGATE_TASK_QUEUE: taskQueue,
      TOLLGATE_TARGETS_FILE: 'dry-run',
      TOLLGATE_POLICY_DIR: policyDir,
      TOLLGATE_METRICS: 'none',
      TOLLGATE_METRICS_ADDRESS: 'off',
      TOLLGATE_WORKFLOW_BUNDLE: workflowBundle('release').codePath,
      TOLLGATE_SHUTDOWN_GRACE: '2s',
      TOLLGATE_LOG_LEVEL: 'info',
      NODE_ENV: 'production',
    };
    return { service, workerEnv };
  }

  /** Starts a release with the CLI and watches it to its end, both through `conn`. */
  async function releaseThrough(service: string, taskQueue: string, conn: Record<string, string>): Promise<Ran[]> {
    const env = { ...conn, TOLLGATE_TASK_QUEUE: taskQueue };
    const started = await cli(['start', service, '1.1.0', '--initiator', 'tls-suite', '--reason', 'tls'], env);
    expect(started).toMatchObject({ code: 0 });
    expect(JSON.parse(started.out)).toMatchObject({ workflowId: `release-${service}` });
    // watch exits 0 once the release is promoted; the worker's steps and its timers take about two seconds.
    const watched = await cli(['watch', service, '--interval', '1'], env, 30_000);
    expect(watched).toMatchObject({ code: 0 });
    expect(watched.out).toContain('"outcome":"promoted"');
    return [started, watched];
  }

  it('mTLS: the CLI with Tollgate’s client certificate gets through; without one, with another CA’s, naming the wrong server, not trusting the CA, or in plaintext it is refused', async () => {
    const ok = await Promise.all([
      cli(['list'], mtls()),
      // The server's certificate names localhost too: an override that matches it is fine.
      cli(['list'], { ...mtls(), TEMPORAL_TLS_SERVER_NAME: 'localhost' }),
    ]);
    for (const ran of ok) {
      expect(ran).toMatchObject({ code: 0 });
      expect(JSON.parse(ran.out)).toEqual(expect.any(Array));
    }

    // In parallel: grpc-js retries a refused handshake until the CLI's 5 s connect deadline.
    const { TEMPORAL_TLS_CERT_PATH: _c, TEMPORAL_TLS_KEY_PATH: _k, ...noClientCert } = mtls();
    const { TEMPORAL_TLS_CA_PATH: _ca, ...systemRoots } = mtls();
    const refused = {
      'no client certificate': noClientCert,
      'a client certificate from another CA': {
        ...mtls(),
        TEMPORAL_TLS_CERT_PATH: pki.rogueClient.cert,
        TEMPORAL_TLS_KEY_PATH: pki.rogueClient.key,
      },
      'the wrong server name': { ...mtls(), TEMPORAL_TLS_SERVER_NAME: 'temporal.example' },
      'the system roots instead of the CA': systemRoots,
      plaintext: { TEMPORAL_ADDRESS: proxy.mtlsAddress },
    };
    const results = await Promise.all(Object.values(refused).map((env) => cli(['list'], env)));
    Object.keys(refused).forEach((why, i) => {
      const ran = results[i]!;
      expect({ why, code: ran.code, out: ran.out }).toEqual({ why, code: 1, out: '' });
      expect({ why, ...cliError(ran) }).toEqual({
        why,
        code: 'unreachable',
        error: expect.stringMatching(new RegExp(`^cannot reach Temporal at ${proxy.mtlsAddress}: `)) as unknown,
      });
    });

    // The proxy saw the handshakes it refused, and logged the identity of the ones it let through.
    const log = readFileSync(proxy.logPath, 'utf8');
    expect(log).toMatch(/fe_mtls\/\S+: SSL (handshake failure|client certificate not trusted)/);
    expect(log).toMatch(
      /fe_mtls~ be_temporal\/temporal .*\{tollgate-worker\} .*WorkflowService\/ListWorkflowExecutions/,
    );
  });

  it('mTLS: a worker process polls through the proxy and completes a release the CLI starts and watches there; a worker without the right certificate exits at start, saying why', async () => {
    const taskQueue = taskQueueForTest();
    const { service, workerEnv } = fastRelease(taskQueue);
    const { TEMPORAL_TLS_CERT_PATH: _c, TEMPORAL_TLS_KEY_PATH: _k, ...noClientCert } = mtls();
    const { TEMPORAL_TLS_CA_PATH: _ca, ...systemRoots } = mtls();
    const refusedWorkers = {
      CertificateRequired: noClientCert,
      UnknownIssuer: systemRoots,
      UnknownCA: {
        ...mtls(),
        TEMPORAL_TLS_CERT_PATH: pki.rogueClient.cert,
        TEMPORAL_TLS_KEY_PATH: pki.rogueClient.key,
      },
      NotValidForName: { ...mtls(), TEMPORAL_TLS_SERVER_NAME: 'temporal.example' },
    };
    const refused = Object.entries(refusedWorkers).map(([why, conn]) => ({
      why,
      worker: spawnWorker(workerJs, { ...workerEnv, ...conn }, join(dir, `worker-refused-${why}.log`)),
    }));
    const worker = await startedWorker(workerJs, { ...workerEnv, ...mtls() }, join(dir, 'worker-mtls.log'));
    try {
      await releaseThrough(service, taskQueue, mtls());
      // Only this worker polls the task queue, and it did so through the mTLS frontend, as tollgate-worker.
      expect(readFileSync(proxy.logPath, 'utf8')).toMatch(
        /fe_mtls~ be_temporal\/temporal .*\{tollgate-worker\} .*WorkflowService\/RespondWorkflowTaskCompleted/,
      );
    } finally {
      await worker.stop();
    }
    for (const { why, worker: w } of refused) {
      const code = await exitWithin(w, 15_000);
      expect({ why, code }).toEqual({ why, code: 1 });
      expect(w.log()).toContain('"msg":"worker failed"');
      // A client certificate the server refuses: TLS 1.3 may close the stream before the client reads the alert.
      if (why === 'CertificateRequired' || why === 'UnknownCA')
        expect(w.log()).toMatch(new RegExp(`${why}|broken pipe|connection closed`));
      else expect(w.log()).toContain(why);
    }
  });

  it('API key: the worker and the CLI get through with the right key and are refused with a wrong or missing one; the key is in none of their output', async () => {
    const taskQueue = taskQueueForTest();
    const { service, workerEnv } = fastRelease(taskQueue);
    const wrongKey = `tg-wrong-key-${randomUUID()}`;
    // A key pasted across two lines: the worker sends it as it is, is refused, and prints neither half.
    const [firstHalf, secondHalf] = [randomUUID(), randomUUID()];
    const refusedWorkers = [
      spawnWorker(workerJs, { ...workerEnv, ...viaApiKey(wrongKey) }, join(dir, 'worker-wrong-key.log')),
      spawnWorker(workerJs, { ...workerEnv, ...viaApiKey() }, join(dir, 'worker-no-key.log')),
      spawnWorker(
        workerJs,
        { ...workerEnv, ...viaApiKey(`${firstHalf}\n${secondHalf}`) },
        join(dir, 'worker-two-line-key.log'),
      ),
    ];
    const worker = await startedWorker(workerJs, { ...workerEnv, ...viaApiKey(apiKey) }, join(dir, 'worker-key.log'));
    const outputs: Ran[] = [];
    try {
      outputs.push(...(await releaseThrough(service, taskQueue, viaApiKey(apiKey))));
      const status = await cli(['status', service], viaApiKey(apiKey));
      expect(status).toMatchObject({ code: 0 });
      expect(JSON.parse(status.out)).toMatchObject({ service, version: '1.1.0', outcome: 'promoted' });
      outputs.push(status);
    } finally {
      await worker.stop();
    }

    const refused = await Promise.all([
      cli(['status', service], viaApiKey(wrongKey)),
      cli(['status', service], viaApiKey()),
      // The key is for this frontend only: the mTLS one still wants a certificate.
      cli(['status', service], { ...viaApiKey(apiKey), TEMPORAL_ADDRESS: proxy.mtlsAddress }),
    ]);
    for (const ran of refused) {
      expect(ran.code).toBe(1);
      const { code, error } = cliError(ran);
      expect(code).toBe('unreachable');
      expect(error).toMatch(/^cannot reach Temporal/);
    }
    outputs.push(...refused);
    const [wrongKeyWorker, noKeyWorker, twoLineWorker] = refusedWorkers;
    for (const w of [wrongKeyWorker!, noKeyWorker!]) {
      const code = await exitWithin(w, 15_000);
      expect(code).toBe(1);
      // The proxy's answer is gRPC's UNAUTHENTICATED, and the worker's log says so.
      expect(w.log()).toMatch(/valid authentication credentials.*missing or wrong API key/);
    }
    // A key across two lines never leaves the process: refused as configuration, naming the variable, not the key.
    expect(await exitWithin(twoLineWorker!, 15_000)).toBe(2);
    expect(twoLineWorker!.log()).toMatch(/TEMPORAL_API_KEY: must be one line of printable ASCII/);

    // What the CLI's error leaves out (TollgateClient.connect keeps only the SDK's outer message): the proxy answered
    // as gRPC does, UNAUTHENTICATED, with its reason. The settings the CLI builds; localhost, which the server
    // certificate names, spares this process Node's warning about an IP address as TLS server name.
    const settings = connectionSettings(
      parseEnv(connectionEnvSchema, { ...viaApiKey(wrongKey), TEMPORAL_TLS_SERVER_NAME: 'localhost' }),
    );
    // Lazy, so that it can be closed: a Connection.connect that fails leaves its channel open, retrying.
    const connection = Connection.lazy({ ...settings, connectTimeout: '5s' });
    const refusal = await connection.ensureConnected().then(
      () => 'connected',
      (err: Error) => err.cause,
    );
    await connection.close();
    expect(refusal).toMatchObject({ code: 16, details: 'missing or wrong API key' });

    const everything = [
      ...outputs.flatMap((r) => [r.out, r.err]),
      worker.log(),
      ...refusedWorkers.map((w) => w.log()),
    ].join('\n');
    expect(everything).toContain('"outcome":"promoted"');
    expect(everything).not.toContain(apiKey);
    expect(everything).not.toContain(wrongKey);
    expect(everything).not.toContain(firstHalf);
    expect(everything).not.toContain(secondHalf);
  });

  // grpc-js refuses a header value outside printable ASCII with an error that quotes it: such a key is refused at
  // parse time instead (TEMPORAL_API_KEY), and connection errors never quote the key.
  it('API key: a key pasted with a line break or a non-ASCII character is refused without being printed', async () => {
    const secret = randomUUID();
    const keys = [`tg-${secret}\n${randomUUID()}`, `tg-é-${secret}`];
    const ran = await Promise.all(keys.map((key) => cli(['list'], viaApiKey(key))));
    for (const r of ran) {
      expect(r.code).not.toBe(0);
      expect(`${r.out}${r.err}`).not.toContain(secret);
    }
  });
});
