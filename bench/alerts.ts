import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { renderAlertRules } from '../src/domain/alert-rules';
import { ALERTMANAGER_BINARY, startAlertmanager } from '../test/helpers/alertmanager';
import { removeDir, tempStateDir } from '../test/helpers/fleet';
import { freePort } from '../scripts/ports';
import { PROMETHEUS_BINARY, startPrometheus } from '../test/helpers/prometheus';
import { runFleetBench, webhookToken, type AlertsInfra, type FleetResult } from './alerts-fleet';
import { runWebhookBench, type WebhookResult } from './alerts-webhook';
import { startDevServer } from './servers';

/**
 * §8, canary alerts (issue 15): one Temporal dev server, Prometheus (1 s scrapes, 1 s rule evaluation, Tollgate's
 * rendered alert templates) and Alertmanager (group_wait 0 s) for both parts: Alertmanager's webhook → first undo
 * over many releases on a dry-run target, then a bad canary on a real HAProxy fleet, analysis-only against
 * alert-driven. Everything started here is stopped here, whether a part completed or not.
 */

export const ALERTMANAGER_ROUTE = { groupWait: '0s', groupInterval: '1s', repeatInterval: '1m' } as const;
/** The webhook part's own bound; the fleet part has what is left of the section's, less the teardown's. */
const WEBHOOK_BOUND_MS = 100_000;
const TEARDOWN_MS = 20_000;

export interface Part<T> {
  result?: T;
  error?: string;
}

export interface AlertsResult {
  webhook: Part<WebhookResult>;
  fleet: Part<FleetResult>;
  prometheus: string;
  alertmanager: string;
  wallMs: number;
}

export interface AlertsOptions {
  releaseCode: string;
  bundlePath: string;
  fleetTrialsPerMode: number;
  webhookTrials: number;
  batch: number;
  deadline: number;
  log: (line: string) => void;
}

function versionOf(binary: string): string {
  try {
    const out = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: 'pipe' });
    const version = /version (\S+)/.exec(out)?.[1];
    return version ? `${version}, ${binary}` : binary;
  } catch (err) {
    // Alertmanager prints its version on stderr.
    const stderr = (err as { stderr?: unknown }).stderr;
    const out = typeof stderr === 'string' ? stderr : '';
    const version = /version (\S+)/.exec(out)?.[1];
    return version ? `${version}, ${binary}` : `${binary} (version unknown)`;
  }
}

export async function runAlertsBench(o: AlertsOptions): Promise<AlertsResult> {
  const t0 = Date.now();
  const part = async <T>(name: string, run: () => Promise<T>): Promise<Part<T>> => {
    try {
      return { result: await run() };
    } catch (err) {
      o.log(`alerts/${name}: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      return { error: err instanceof Error ? err.message : String(err) };
    }
  };
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    // Alertmanager needs the receiver's URL and Prometheus Alertmanager's, so the receiver's port comes first.
    const receiverPort = await freePort();
    const token = webhookToken();
    const alertmanager = await startAlertmanager({
      webhookUrl: `http://127.0.0.1:${receiverPort}/alertmanager`,
      bearerToken: token,
      ...ALERTMANAGER_ROUTE,
    });
    cleanups.push(() => alertmanager.stop());
    const sdDir = await tempStateDir('sd');
    cleanups.push(() => removeDir(sdDir));
    const fileSdPath = join(sdDir, 'targets.json');
    const env = await startDevServer();
    cleanups.push(() => env.teardown());
    // As the integration tests run it (test/helpers/release-stack.ts): the fleet's file SD, its own labels kept.
    const prometheus = await startPrometheus({
      scrapeIntervalSeconds: 1,
      fileSdPath,
      honorLabels: true,
      rules: renderAlertRules(),
      evaluationIntervalSeconds: 1,
      alertmanagerUrl: alertmanager.url,
    });
    cleanups.push(() => prometheus.stop());
    const infra: AlertsInfra = {
      env,
      // Compiled by the bench's own tsc step (bench/tsconfig.json), as the tests' swc step compiles it for them.
      serviceJs: join(__dirname, '..', 'demo', 'service.js'),
      fileSdPath,
      prometheusUrl: prometheus.url,
    };
    const webhook = await part('webhook', () =>
      runWebhookBench({
        env: infra.env,
        bundlePath: o.bundlePath,
        trials: o.webhookTrials,
        batch: o.batch,
        deadline: Math.min(o.deadline - TEARDOWN_MS, Date.now() + WEBHOOK_BOUND_MS),
        log: o.log,
      }),
    );
    const fleet = await part('fleet', () =>
      runFleetBench({
        infra,
        receiverPort,
        token,
        releaseCode: o.releaseCode,
        trialsPerMode: o.fleetTrialsPerMode,
        deadline: o.deadline - TEARDOWN_MS,
        log: o.log,
      }),
    );
    return {
      webhook,
      fleet,
      prometheus: versionOf(PROMETHEUS_BINARY),
      alertmanager: versionOf(ALERTMANAGER_BINARY),
      wallMs: Date.now() - t0,
    };
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}
