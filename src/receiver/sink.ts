import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import type { ConnectionSettings } from '../config/connection';
import type { AlertSignal } from '../domain/alerts';
import { alertSignal } from '../domain/messages';
import { releaseWorkflowId } from '../domain/release';

/**
 * Where the receiver hands alerts: Temporal in production, a double in tests. `nothing-in-flight`: the service has
 * no release running, so there is nobody to tell. Anything else it cannot do, it throws.
 */
export interface AlertSink {
  signal(service: string, payload: AlertSignal): Promise<'delivered' | 'nothing-in-flight'>;
  close(): Promise<void>;
}

/** Signals `release-<service>` with the `alert` signal, each call bounded by `timeoutMs`. */
export class TemporalAlertSink implements AlertSink {
  private readonly client: Client;

  constructor(
    settings: ConnectionSettings,
    private readonly timeoutMs: number,
  ) {
    // Lazy: the receiver starts, and answers 503, while Temporal is down; gRPC reconnects on its own once it is back.
    const connection = Connection.lazy({
      address: settings.address,
      ...(settings.tls !== undefined && { tls: settings.tls }),
      ...(settings.apiKey && { apiKey: settings.apiKey }),
      // gRPC's reconnect backoff grows to two minutes by default: a Temporal that is back would go unnoticed as long.
      channelArgs: { 'grpc.initial_reconnect_backoff_ms': 250, 'grpc.max_reconnect_backoff_ms': 2_000 },
    });
    this.client = new Client({ connection, namespace: settings.namespace });
  }

  async signal(service: string, payload: AlertSignal): Promise<'delivered' | 'nothing-in-flight'> {
    const handle = this.client.workflow.getHandle(releaseWorkflowId(service));
    try {
      // The SDK retries an unavailable server until the deadline: a dead Temporal costs timeoutMs, then a 503.
      await this.client.withDeadline(Date.now() + this.timeoutMs, () => handle.signal(alertSignal, payload));
      return 'delivered';
    } catch (err) {
      // No such workflow, or it has closed: either way no release of the service is in flight.
      if (err instanceof WorkflowNotFoundError) return 'nothing-in-flight';
      throw err;
    }
  }

  close(): Promise<void> {
    return this.client.connection.close();
  }
}
