import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { markOwner, sweepOrphans } from '../../scripts/orphan-dirs';

/** Debian's package (`scripts/provision.sh` installs it). */
export const PROMETHEUS_BINARY = process.env.TOLLGATE_PROMETHEUS_BIN ?? '/usr/bin/prometheus';

/** Prometheus' own target-group shape, as in `static_configs` and file SD files. */
export interface TargetGroup {
  targets: string[];
  labels?: Record<string, string>;
}

export interface PrometheusOptions {
  scrapeIntervalSeconds: number;
  /** A file SD file (JSON or YAML target groups) Prometheus watches; write it before or after start. */
  fileSdPath?: string;
  staticTargets?: TargetGroup[];
  /** Keep the labels the scraped metrics carry when a target label of the same name exists (default: Prometheus' own, false). */
  honorLabels?: boolean;
}

export interface RunningPrometheus {
  url: string;
  port: number;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 3_000;

/**
 * Run under `setpriv --pdeathsig` (util-linux, always on Debian) so the kernel kills Prometheus when the test process
 * dies, however it dies; exit hooks cannot do that, and jest's sandboxed `process` never even runs them.
 */
const SETPRIV = '/usr/bin/setpriv';
const guard = existsSync(SETPRIV);

/** A Prometheus on a free 127.0.0.1 port with its own config and TSDB in a temp dir; `stop()` removes both. */
export async function startPrometheus(options: PrometheusOptions): Promise<RunningPrometheus> {
  await sweepOrphans(DIR_PREFIX);
  const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  try {
    await markOwner(dir);
    const configFile = join(dir, 'prometheus.yml');
    await writeFile(configFile, stringify(config(options)));
    // Another process can take the port between our probe and Prometheus' bind; a fresh port fixes that.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const started = await launch(configFile, join(dir, 'data'), port);
      if (started.ok) {
        const child = started.child;
        return { url: `http://127.0.0.1:${port}`, port, stop: () => stop(child, dir) };
      }
      if (!started.portTaken || attempt === 3) throw new Error(started.why);
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

const DIR_PREFIX = 'tollgate-prometheus-';

function config({ scrapeIntervalSeconds, fileSdPath, staticTargets, honorLabels }: PrometheusOptions): unknown {
  const interval = `${scrapeIntervalSeconds}s`;
  return {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    scrape_configs: [
      {
        job_name: 'tollgate',
        ...(honorLabels !== undefined && { honor_labels: honorLabels }),
        ...(staticTargets && { static_configs: staticTargets }),
        ...(fileSdPath && { file_sd_configs: [{ files: [fileSdPath], refresh_interval: interval }] }),
      },
    ],
  };
}

type Launch = { ok: true; child: ChildProcess } | { ok: false; why: string; portTaken: boolean };

async function launch(configFile: string, dataDir: string, port: number): Promise<Launch> {
  const flags = [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${dataDir}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--web.enable-lifecycle',
    '--log.level=warn',
  ];
  const child = guard
    ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', PROMETHEUS_BINARY, ...flags], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
    : spawn(PROMETHEUS_BINARY, flags, { stdio: ['ignore', 'ignore', 'pipe'] });
  // Unreferenced, so a test that forgets stop() still lets jest exit, which takes Prometheus down with it.
  child.unref();
  (child.stderr as Socket | null)?.unref();
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) =>
      resolve(`failed to start: ${error.message} (install the Debian package "prometheus")`),
    );
    child.once('exit', (code, signal) => resolve(`exited with ${signal ?? code}`));
  });

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const outcome = await Promise.race([exited, ready(port).then((ok) => (ok ? 'ready' : undefined))]);
    if (outcome === 'ready') return { ok: true, child };
    if (outcome !== undefined) {
      const why = `prometheus (${PROMETHEUS_BINARY}) ${outcome} before it was ready: ${stderr.trim() || '(no output)'}`;
      return { ok: false, why, portTaken: /address already in use/.test(stderr) };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await kill(child);
  return {
    ok: false,
    why: `prometheus not ready on port ${port} within ${READY_TIMEOUT_MS} ms: ${stderr}`,
    portTaken: false,
  };
}

async function ready(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/-/ready`, { signal: AbortSignal.timeout(1000) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

async function stop(child: ChildProcess, dir: string): Promise<void> {
  await kill(child);
  await rm(dir, { recursive: true, force: true });
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
