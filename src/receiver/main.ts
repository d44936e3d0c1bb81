import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connectionSettings } from '../config/connection';
import { ConfigError } from '../config/env';
import { PolicyStore } from '../config/policies';
import { loadReceiverConfig, type ReceiverConfig } from '../config/receiver-config';
import { createLogger, type Logger } from '../logger';
import { createReceiverServer } from './server';
import { TemporalAlertSink, type AlertSink } from './sink';

/** In-flight webhook calls get this long to finish on SIGTERM; then their connections are cut. */
const STOP_GRACE_MS = 10_000;

/**
 * The label naming an alert's service, from the org policy, read once at start: the worker reads policies per
 * release, but a receiver that routed by a half-edited file would signal the wrong releases; restart it instead.
 */
export async function serviceLabelFrom(policyDir: string): Promise<string> {
  return (await new PolicyStore(policyDir).metricNames()).labels.service;
}

export interface RunningReceiver {
  /** host:port it listens on (the real port when configured with 0). */
  address: string;
  serviceLabel: string;
  stop(): Promise<void>;
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        new ConfigError(
          `invalid configuration: TOLLGATE_RECEIVER_ADDRESS: cannot listen on ${host}:${port} (${err.code ?? err.message})`,
        ),
      );
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Starts the receiver; `sink` stands in for Temporal in tests. */
export async function startReceiver(
  config: ReceiverConfig,
  logger: Logger,
  sink?: AlertSink,
): Promise<RunningReceiver> {
  const serviceLabel = await serviceLabelFrom(config.TOLLGATE_POLICY_DIR);
  const alerts = sink ?? new TemporalAlertSink(connectionSettings(config), config.TOLLGATE_RECEIVER_SIGNAL_TIMEOUT);
  const server = createReceiverServer({ auth: config.auth, serviceLabel, sink: alerts, logger });
  try {
    await listen(server, config.host, config.port);
  } catch (err) {
    await alerts.close();
    throw err;
  }
  const { address: ip, port } = server.address() as AddressInfo;
  const address = ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
  // The one line scripts wait for.
  logger.info(
    {
      address,
      serviceLabel,
      scheme: config.auth.scheme,
      temporal: config.TEMPORAL_ADDRESS,
      namespace: config.TEMPORAL_NAMESPACE,
    },
    `receiver listening on ${address}`,
  );
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const cut = setTimeout(() => server.closeAllConnections(), STOP_GRACE_MS);
      await closed;
      clearTimeout(cut);
      await alerts.close().catch(() => undefined);
      logger.info({ address }, 'receiver stopped');
    })());
  return { address, serviceLabel, stop };
}

/** `tollgate receiver`: runs until SIGTERM or SIGINT, then finishes the calls in flight. */
export async function runReceiver(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadReceiverConfig(env);
  const logger = createLogger(config.TOLLGATE_LOG_LEVEL);
  const receiver = await startReceiver(config, logger);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      logger.info({ signal }, 'receiver stopping');
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await receiver.stop();
}
