import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, makeTelemetryFilterString, Runtime } from '@temporalio/worker';
import { devServerArgs, waitForPort } from '../../scripts/dev-server';
import { requireBinary, TEMPORAL_CLI } from '../../scripts/temporal-binaries';
import { compileDemo } from '../helpers/fleet';
import { freePort } from '../../scripts/ports';
import { checkoutPolicy } from '../helpers/policies';
import { amAlert, TOKEN, webhook } from '../helpers/receiver';
import { canaryBaking, waitForStatus } from '../helpers/release-handle';
import { runRelease } from '../helpers/release-harness';
import { eventually, until } from '../helpers/until';

/**
 * `tollgate receiver` as its own process (the compiled CLI), in front of a real dev server that the test stops and
 * starts again on the same port and SQLite file: it signals a running release, acknowledges a service without one,
 * answers 503 while Temporal is down and 200 once it is back, without being restarted.
 */

/** How `promise` ended within `ms`, or 'still running'; the timer never outlives the wait. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
const work = mkdtempSync(join(tmpdir(), 'tollgate-receiver-it-'));

/** A dev server this file can stop and start again: same port, same database. */
class DevServer {
  private child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    private readonly uiPort: number,
  ) {}
  get address() {
    return `127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    const args = devServerArgs({ port: this.port, uiPort: this.uiPort, dbFile: join(work, 'temporal.db') });
    this.child = spawn(requireBinary(TEMPORAL_CLI), args, { stdio: 'ignore' });
    await waitForPort(this.port, 30_000);
    // The frontend accepts connections before it serves the namespace: wait for a real answer (bounded).
    const connection = await Connection.connect({ address: this.address, connectTimeout: '10s' });
    try {
      const client = new Client({ connection });
      await eventually(
        () =>
          client.workflow.count().then(
            () => true,
            () => false,
          ),
        Boolean,
        'the dev server to serve the default namespace',
        { timeoutMs: 30_000, everyMs: 200 },
      );
    } finally {
      await connection.close();
    }
  }
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(kill);
  }
}

/** The receiver process, and every line it has written. */
interface ReceiverProcess {
  child: ChildProcess;
  port: number;
  lines: string[];
  exit: Promise<number | null>;
}

let cliJs: string | undefined;

async function spawnReceiver(env: Record<string, string>): Promise<Omit<ReceiverProcess, 'port'>> {
  cliJs ??= (await compileDemo(['src/client/cli.ts'])).js('src/client/cli.ts');
  const child = spawn(process.execPath, [cliJs, 'receiver'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      lines.push(...parts);
    });
  }
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, lines, exit };
}

async function startReceiverProcess(temporal: string): Promise<ReceiverProcess> {
  const proc = await spawnReceiver({
    TEMPORAL_ADDRESS: temporal,
    TOLLGATE_RECEIVER_TOKEN: TOKEN,
    TOLLGATE_RECEIVER_ADDRESS: '127.0.0.1:0',
    TOLLGATE_RECEIVER_SIGNAL_TIMEOUT: '1s',
    TOLLGATE_POLICY_DIR: join(work, 'no-policies'),
  });
  const listening = await eventually(
    () => proc.lines.map((l) => /"receiver listening on 127\.0\.0\.1:(\d+)"/.exec(l)).find(Boolean),
    (m) => m !== undefined || proc.child.exitCode !== null,
    'the receiver to say where it listens',
    { timeoutMs: 15_000, everyMs: 50, show: () => proc.lines.join('\n').slice(-800) },
  );
  if (!listening) throw new Error(`the receiver exited: ${proc.lines.join('\n')}`);
  return { ...proc, port: Number(listening[1]) };
}

const post = async (port: number, alerts: unknown[]) => {
  const started = Date.now();
  const res = await fetch(`http://127.0.0.1:${port}/alertmanager`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(webhook(alerts)),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, ms: Date.now() - started };
};

const logged = (r: ReceiverProcess, msg: string) =>
  r.lines
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);

describe('tollgate receiver against a real dev server', () => {
  let server: DevServer;
  let env: TestWorkflowEnvironment;
  let receiver: ReceiverProcess;

  beforeAll(async () => {
    // The harness worker's SDK logs at ERROR, as the shared server helpers set it up (the test's output is its results).
    if (!Runtime._instance) {
      Runtime.install({
        logger: new DefaultLogger('ERROR'),
        telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'ERROR' }), forward: {} } },
      });
    }
    server = new DevServer(await freePort(), await freePort());
    await server.start();
    env = await TestWorkflowEnvironment.createFromExistingServer({ address: server.address });
    receiver = await startReceiverProcess(server.address);
  }, 90_000);

  afterAll(async () => {
    receiver?.child.kill('SIGKILL');
    await env?.teardown();
    await server?.stop();
  }, 30_000);

  it('refuses to start without credentials, naming the variable', async () => {
    const proc = await spawnReceiver({ TEMPORAL_ADDRESS: server.address, TOLLGATE_RECEIVER_ADDRESS: '127.0.0.1:0' });
    const code = await within(proc.exit, 15_000);
    proc.child.kill('SIGKILL');
    expect(code).toBe(2);
    expect(proc.lines.join('\n')).toMatch(/tollgate: invalid configuration: TOLLGATE_RECEIVER_TOKEN: required/);
  });

  it("signals a running release with the service's alerts: a known error rolls the canary back", async () => {
    const policy = checkoutPolicy({
      trafficCycle: { duration: '1h' },
      production: { approval: false, waves: [{ percent: 100, bake: 0 }] },
      alerts: { rules: [{ name: 'errors', matchers: ['alertname="TollgateErrorRatioHigh"'], action: 'rollback' }] },
    });
    const { value, result, status } = await runRelease(env, { policy }, async (handle) => {
      await waitForStatus(handle, canaryBaking, { timeoutMs: 30_000 });
      return post(receiver.port, [
        amAlert({ service: 'checkout', severity: 'critical' }, { fingerprint: 'it0checkout' }),
        amAlert({ alertname: 'Unlabelled' }, { fingerprint: 'it0none' }),
      ]);
    });
    expect(value.status).toBe(200);
    expect(value.body).toEqual({ delivered: ['checkout'], nothingInFlight: [], unrouted: 1 });
    expect(result.outcome).toBe('rolled_back');
    expect(result.reason).toMatch(/^known error: alert TollgateErrorRatioHigh on the canary/);
    expect(status.audit.find((e) => e.action === 'alert-firing')?.actor).toBe('alertmanager');
    await until(() => logged(receiver, 'alerts signalled to the release').length > 0, 'the signal logged', 2_000);
    expect(logged(receiver, 'alerts signalled to the release')).toEqual([
      expect.objectContaining({ service: 'checkout', alerts: 1, receiver: 'tollgate' }),
    ]);

    // The release has ended: its service has nothing in flight now, like one that never had a release.
    const after = await post(receiver.port, [
      amAlert({ service: 'checkout' }, { fingerprint: 'it1checkout' }),
      amAlert({ service: 'payments' }, { fingerprint: 'it1payments' }),
    ]);
    expect([after.status, after.body]).toEqual([
      200,
      { delivered: [], nothingInFlight: ['checkout', 'payments'], unrouted: 0 },
    ]);
    // The log lines come down a pipe: they may trail the answer.
    await eventually(
      () => logged(receiver, 'nothing in flight: no release of the service is running').map((l) => l.service),
      (services) => services.length >= 2,
      'both services logged as having nothing in flight',
      { timeoutMs: 2_000, everyMs: 20 },
    ).then((services) => expect(services).toEqual(['checkout', 'payments']));
  });

  it('answers 503 quickly while Temporal is down, and 200 once it is back, without a restart', async () => {
    const alert = amAlert({ service: 'payments' }, { fingerprint: 'it2payments' });
    expect((await post(receiver.port, [alert])).status).toBe(200);
    await server.stop();
    try {
      const down = await post(receiver.port, [alert]);
      expect(down.status).toBe(503);
      expect(String(down.body.error)).toMatch(/^Temporal did not take the alerts of payments: /);
      // Bounded by the signal timeout (1 s here), not by gRPC's own patience.
      expect(down.ms).toBeLessThan(5_000);
      // Health is the process's, not Temporal's: a supervisor must not restart it for Temporal's sake.
      expect((await fetch(`http://127.0.0.1:${receiver.port}/healthz`)).status).toBe(200);
    } finally {
      await server.start();
    }
    const back = await eventually(
      () => post(receiver.port, [alert]),
      (r) => r.status === 200,
      'the receiver to reach Temporal again',
      { timeoutMs: 30_000, everyMs: 500, show: (r) => JSON.stringify(r) },
    );
    expect(back.body).toEqual({ delivered: [], nothingInFlight: ['payments'], unrouted: 0 });
    expect(receiver.child.exitCode).toBeNull();
    expect(logged(receiver, 'receiver listening on 127.0.0.1:' + receiver.port)).toHaveLength(1);
  });

  it('stops on SIGTERM, logging it, with exit code 0', async () => {
    receiver.child.kill('SIGTERM');
    const code = await within(receiver.exit, 15_000);
    expect(code).toBe(0);
    await until(() => logged(receiver, 'receiver stopped').length === 1, 'the stop to be logged', 2_000);
  });
});
