import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { markOwner, sweepOrphans } from '../../scripts/orphan-dirs';
import { startOnFreePort, stopServer } from './prometheus';

/** Debian's package `prometheus-alertmanager` (`scripts/provision.sh` installs it). */
export const ALERTMANAGER_BINARY = process.env.TOLLGATE_ALERTMANAGER_BIN ?? '/usr/bin/prometheus-alertmanager';

/** Alertmanager's route timings, as Alertmanager durations (`0s`, `100ms`, `1m`). */
export interface AlertmanagerOptions {
  /** Where the one receiver sends its webhooks (version 4), e.g. the test's own loopback server. */
  webhookUrl: string;
  bearerToken?: string;
  basicAuth?: { username: string; password: string };
  /** How long a new group waits for more alerts before its first notification. */
  groupWait?: string;
  /** How long a group waits before notifying about alerts added to it (or resolved). */
  groupInterval?: string;
  /** How long before an unchanged group is notified again. */
  repeatInterval?: string;
  /** The labels a group is made of; the default is one group per alert, service, version and track. */
  groupBy?: string[];
  /** The receiver's name, as it arrives in the webhook's `receiver` field. */
  receiver?: string;
}

/** An alert as `POST /api/v2/alerts` takes it (Prometheus sends the same). */
export interface PostableAlert {
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  startsAt?: string;
  endsAt?: string;
  generatorURL?: string;
}

/** The fields of `GET /api/v2/alerts` the tests read. */
export interface GettableAlert {
  fingerprint: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  status: { state: 'active' | 'suppressed' | 'unprocessed' };
  receivers: { name: string }[];
}

export interface RunningAlertmanager {
  url: string;
  port: number;
  /** Alerts straight to Alertmanager, for tests that leave Prometheus out. */
  postAlerts(alerts: PostableAlert[]): Promise<void>;
  alerts(): Promise<GettableAlert[]>;
  stop(): Promise<void>;
}

export const DEFAULT_GROUP_BY = ['alertname', 'service', 'version', 'track'];

/**
 * An Alertmanager on a free 127.0.0.1 port with its own config and data dir in a temp dir; `stop()` removes both.
 * Clustering is off (`--cluster.listen-address=`): it would take a second port, and a lone peer still waits to
 * settle its gossip before it sends a first notification.
 */
export async function startAlertmanager(options: AlertmanagerOptions): Promise<RunningAlertmanager> {
  await sweepOrphans(DIR_PREFIX);
  const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  try {
    await markOwner(dir);
    const configFile = join(dir, 'alertmanager.yml');
    await writeFile(configFile, stringify(alertmanagerConfig(options)));
    const { child, port } = await startOnFreePort({
      name: 'alertmanager',
      binary: ALERTMANAGER_BINARY,
      debianPackage: 'prometheus-alertmanager',
      flags: (port) => [
        `--config.file=${configFile}`,
        `--storage.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--cluster.listen-address=',
        '--log.level=warn',
      ],
    });
    const url = `http://127.0.0.1:${port}`;
    return {
      url,
      port,
      postAlerts: (alerts) => postAlerts(url, alerts),
      alerts: () => getAlerts(url),
      stop: () => stopServer(child, dir),
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

const DIR_PREFIX = 'tollgate-alertmanager-';

/** One route to one webhook receiver, as a team would point its Alertmanager at `tollgate receiver`. */
export function alertmanagerConfig(options: AlertmanagerOptions): unknown {
  const receiver = options.receiver ?? 'tollgate';
  if (options.bearerToken !== undefined && options.basicAuth !== undefined) {
    throw new Error('alertmanager: a bearer token or basic auth, not both');
  }
  const httpConfig = {
    ...(options.bearerToken !== undefined && {
      authorization: { type: 'Bearer', credentials: options.bearerToken },
    }),
    ...(options.basicAuth && { basic_auth: options.basicAuth }),
  };
  return {
    route: {
      receiver,
      group_by: options.groupBy ?? DEFAULT_GROUP_BY,
      group_wait: options.groupWait ?? '0s',
      group_interval: options.groupInterval ?? '1s',
      repeat_interval: options.repeatInterval ?? '1h',
    },
    receivers: [
      {
        name: receiver,
        webhook_configs: [
          {
            url: options.webhookUrl,
            send_resolved: true,
            ...(Object.keys(httpConfig).length > 0 && { http_config: httpConfig }),
          },
        ],
      },
    ],
  };
}

export async function postAlerts(url: string, alerts: PostableAlert[]): Promise<void> {
  const response = await fetch(`${url}/api/v2/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(alerts),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`alertmanager refused the alerts: HTTP ${response.status} ${text}`);
}

export async function getAlerts(url: string): Promise<GettableAlert[]> {
  const response = await fetch(`${url}/api/v2/alerts`, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`alertmanager /api/v2/alerts: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as GettableAlert[];
}
