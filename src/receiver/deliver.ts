import type { Delivery } from './routing';
import type { AlertSink } from './sink';

/** Services signalled at once: a group spanning hundreds of services must not open hundreds of calls. */
const CONCURRENCY = 8;

export interface Delivered {
  delivered: string[];
  nothingInFlight: string[];
}

/** A service's alerts not taken (its error as `cause`); the webhook call is answered 503 and sent again. */
export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
  constructor(
    readonly service: string,
    cause: unknown,
  ) {
    super(causes(cause), { cause });
  }
}

/** An error and its causes in one line: the SDK's "Failed to signal Workflow" says why only in its cause. */
function causes(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 4; depth++) {
    const message = e instanceof Error ? e.message : typeof e === 'string' ? e : (JSON.stringify(e) ?? 'unknown error');
    if (!parts.some((p) => p.includes(message))) parts.push(message);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}

/**
 * Sends every delivery, each service's in order. The first failure stops the rest (the call is answered 503 and
 * Alertmanager sends all of it again), so a dead Temporal costs one signal timeout, not one per service.
 */
export async function deliverAll(deliveries: Delivery[], sink: AlertSink, budgetMs: number): Promise<Delivered> {
  const byService = new Map<string, Delivery[]>();
  for (const d of deliveries) byService.set(d.service, [...(byService.get(d.service) ?? []), d]);
  const queue = [...byService.entries()];
  const outcomes = new Map<string, 'delivered' | 'nothing-in-flight'>();
  const deadline = Date.now() + budgetMs;
  let failure: DeliveryError | undefined;

  const work = async () => {
    for (let next = queue.shift(); next && !failure; next = queue.shift()) {
      const [service, chunks] = next;
      try {
        let outcome: 'delivered' | 'nothing-in-flight' = 'delivered';
        for (const chunk of chunks) {
          // The whole call's time is spent: Alertmanager's own timeout would cut it short anyway.
          if (Date.now() > deadline) throw new Error(`the webhook call took over ${budgetMs} ms`);
          outcome = await sink.signal(service, chunk.payload);
          // The rest would meet the same absence.
          if (outcome === 'nothing-in-flight') break;
        }
        outcomes.set(service, outcome);
      } catch (err) {
        failure ??= new DeliveryError(service, err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, queue.length) }, work));
  if (failure) throw failure;
  // In the webhook's order, not the order the calls happened to finish in: the same call gets the same answer.
  const services = [...byService.keys()];
  return {
    delivered: services.filter((s) => outcomes.get(s) === 'delivered'),
    nothingInFlight: services.filter((s) => outcomes.get(s) === 'nothing-in-flight'),
  };
}
