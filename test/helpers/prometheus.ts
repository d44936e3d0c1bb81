import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { markOwner, sweepOrphans } from '../../scripts/orphan-dirs';
import { freePort } from '../../scripts/ports';

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
  /** Rule files to load, by path. */
  ruleFiles?: string[];
  /** A rule file's text (e.g. `renderAlertRules()`), written into Prometheus' own dir and loaded with `ruleFiles`. */
  rules?: string;
  /** How often rules are evaluated; the scrape interval unless set. */
  evaluationIntervalSeconds?: number;
  /** An Alertmanager (`http://127.0.0.1:9093`) Prometheus sends its firing alerts to. */
  alertmanagerUrl?: string;
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
    const ruleFiles = [...(options.ruleFiles ?? [])];
    if (options.rules !== undefined) {
      ruleFiles.push(join(dir, 'rules.yml'));
      await writeFile(join(dir, 'rules.yml'), options.rules);
    }
    await writeFile(configFile, stringify(config(options, ruleFiles)));
    const { child, port } = await startOnFreePort({
      name: 'prometheus',
      binary: PROMETHEUS_BINARY,
      debianPackage: 'prometheus',
      flags: (port) => [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--web.enable-lifecycle',
        '--log.level=warn',
      ],
    });
    return { url: `http://127.0.0.1:${port}`, port, stop: () => stopServer(child, dir) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

const DIR_PREFIX = 'tollgate-prometheus-';

function config(options: PrometheusOptions, ruleFiles: string[]): unknown {
  const { scrapeIntervalSeconds, fileSdPath, staticTargets, honorLabels, alertmanagerUrl } = options;
  const interval = `${scrapeIntervalSeconds}s`;
  const evaluation = `${options.evaluationIntervalSeconds ?? scrapeIntervalSeconds}s`;
  const alertmanager = alertmanagerUrl === undefined ? undefined : new URL(alertmanagerUrl);
  return {
    global: { scrape_interval: interval, evaluation_interval: evaluation, scrape_timeout: interval },
    ...(ruleFiles.length > 0 && { rule_files: ruleFiles }),
    ...(alertmanager && {
      alerting: {
        alertmanagers: [
          {
            scheme: alertmanager.protocol.replace(/:$/, ''),
            ...(alertmanager.pathname !== '/' && { path_prefix: alertmanager.pathname }),
            static_configs: [{ targets: [alertmanager.host] }],
          },
        ],
      },
    }),
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

/** A server binary that takes its listen port as a flag and answers `GET /-/ready` (Prometheus, Alertmanager). */
export interface ServerSpec {
  name: string;
  binary: string;
  /** Named in the error when the binary is missing. */
  debianPackage: string;
  flags: (port: number) => string[];
}

/** Starts the server on a free 127.0.0.1 port and waits until it is ready. */
export async function startOnFreePort(spec: ServerSpec): Promise<{ child: ChildProcess; port: number }> {
  // Another process can take the port between our probe and the server's bind; a fresh port fixes that.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const started = await launch(spec, port);
    if (started.ok) return { child: started.child, port };
    if (!started.portTaken || attempt === 3) throw new Error(started.why);
  }
}

type Launch = { ok: true; child: ChildProcess } | { ok: false; why: string; portTaken: boolean };

async function launch({ name, binary, debianPackage, flags: flagsFor }: ServerSpec, port: number): Promise<Launch> {
  const flags = flagsFor(port);
  const child = guard
    ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...flags], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
    : spawn(binary, flags, { stdio: ['ignore', 'ignore', 'pipe'] });
  // Unreferenced, so a test that forgets stop() still lets jest exit, which takes the server down with it.
  child.unref();
  (child.stderr as Socket | null)?.unref();
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) =>
      resolve(`failed to start: ${error.message} (install the Debian package "${debianPackage}")`),
    );
    child.once('exit', (code, signal) => resolve(`exited with ${signal ?? code}`));
  });

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const outcome = await Promise.race([exited, ready(port).then((ok) => (ok ? 'ready' : undefined))]);
    if (outcome === 'ready') return { ok: true, child };
    if (outcome !== undefined) {
      const why = `${name} (${binary}) ${outcome} before it was ready: ${stderr.trim() || '(no output)'}`;
      return { ok: false, why, portTaken: /address already in use/.test(stderr) };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await kill(child);
  return {
    ok: false,
    why: `${name} not ready on port ${port} within ${READY_TIMEOUT_MS} ms: ${stderr}`,
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

/** Stops the server (SIGTERM, then SIGKILL after a grace period) and removes its dir. */
export async function stopServer(child: ChildProcess, dir: string): Promise<void> {
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
