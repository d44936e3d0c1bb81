import {
  ALERTS_PER_SIGNAL,
  webhookAlertSchema,
  type Alert,
  type AlertmanagerWebhook,
  type AlertSignal,
} from '../domain/alerts';
import { serviceNameSchema } from '../domain/release';
import { describeZodError } from '../domain/zod-errors';

/** One `alert` signal to send: to the release of `service`. */
export interface Delivery {
  service: string;
  payload: AlertSignal;
}

/** An alert no release can be named for, or no alert at all: acknowledged, logged, never signalled. */
export interface Unrouted {
  fingerprint: string;
  /** The service label's value as sent (unsanitised: whoever logs it passes it through `oneLine`). */
  value: string | undefined;
  /** Set when the alert itself is malformed: what is wrong with it. */
  invalid?: string;
}

export interface Routing {
  deliveries: Delivery[];
  unrouted: Unrouted[];
}

/**
 * Groups a webhook's alerts by the label that names their service, one signal per ALERTS_PER_SIGNAL alerts. A group
 * in Alertmanager may span services (`group_by` is the team's choice), so one call may reach several releases.
 * Only the fields of an `Alert` are sent: whatever else Alertmanager adds (endsAt, generatorURL) stays out of the
 * release's history.
 */
export function routeAlerts(webhook: AlertmanagerWebhook, serviceLabel: string): Routing {
  const byService = new Map<string, Alert[]>();
  const unrouted: Unrouted[] = [];
  for (const [i, raw] of webhook.alerts.entries()) {
    const parsed = webhookAlertSchema.safeParse(raw);
    if (!parsed.success) {
      const fingerprint = (raw as { fingerprint?: unknown } | null)?.fingerprint;
      unrouted.push({
        fingerprint: typeof fingerprint === 'string' ? fingerprint : `alerts[${i}]`,
        value: undefined,
        invalid: describeZodError(parsed.error, `alerts.${i}`),
      });
      continue;
    }
    const a = parsed.data;
    const value = Object.hasOwn(a.labels, serviceLabel) ? a.labels[serviceLabel] : undefined;
    const service = serviceNameSchema.safeParse(value);
    if (!service.success) {
      unrouted.push({ fingerprint: a.fingerprint, value });
      continue;
    }
    const alert: Alert = {
      fingerprint: a.fingerprint,
      status: a.status,
      labels: a.labels,
      annotations: a.annotations,
      startsAt: a.startsAt,
    };
    const group = byService.get(service.data);
    if (group) group.push(alert);
    else byService.set(service.data, [alert]);
  }
  const deliveries: Delivery[] = [];
  for (const [service, alerts] of byService) {
    for (let i = 0; i < alerts.length; i += ALERTS_PER_SIGNAL) {
      deliveries.push({
        service,
        payload: {
          alerts: alerts.slice(i, i + ALERTS_PER_SIGNAL),
          // An empty receiver says nothing in the audit trail.
          ...(webhook.receiver !== '' && { receiver: webhook.receiver }),
        },
      });
    }
  }
  return { deliveries, unrouted };
}
