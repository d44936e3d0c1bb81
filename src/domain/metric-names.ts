import { z } from 'zod';

/**
 * The metric and label names the check templates query. They are how an organisation instruments its services, so
 * they are set once for all of them, in the org policy (`metrics`); a check that needs anything else has `query`.
 * The defaults are the demo service's (demo/service.ts).
 */

/** A counter of requests served, labelled with the response's status code. */
export const REQUESTS_TOTAL = 'tollgate_demo_http_requests_total';
/** A histogram of request durations in seconds; the templates read its `_bucket` series. */
export const REQUEST_DURATION = 'tollgate_demo_http_request_duration_seconds';
const DEFAULT_LABELS = { service: 'service', version: 'version', track: 'track', statusCode: 'code' } as const;

// Names go into PromQL as they are: only what Prometheus allows in a name, so none can change a query's meaning.
const metricName = z
  .string()
  .regex(
    /^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$/,
    'expected a Prometheus metric name: letters, digits, "_" or ":", not starting with a digit',
  );
const labelName = z
  .string()
  .regex(
    /^[a-zA-Z_][a-zA-Z0-9_]{0,199}$/,
    'expected a Prometheus label name: letters, digits or "_", not starting with a digit',
  )
  .refine((name) => !name.startsWith('__'), 'label names starting with "__" are reserved by Prometheus');

export const metricNamesSchema = z.strictObject({
  requests: metricName.default(REQUESTS_TOTAL),
  requestDuration: metricName.default(REQUEST_DURATION),
  labels: z
    .strictObject({
      service: labelName.default(DEFAULT_LABELS.service),
      version: labelName.default(DEFAULT_LABELS.version),
      /** Says which population a series is from: `staging`, `canary` or `stable`. */
      track: labelName.default(DEFAULT_LABELS.track),
      /** The HTTP status code; the error ratio counts `5..` as errors. */
      statusCode: labelName.default(DEFAULT_LABELS.statusCode),
    })
    .prefault({}),
});
export type MetricNames = z.output<typeof metricNamesSchema>;

/** What the templates query when no policy names others (releases resolved before the org policy had `metrics`). */
export const DEFAULT_METRIC_NAMES: Readonly<MetricNames> = Object.freeze({
  requests: REQUESTS_TOTAL,
  requestDuration: REQUEST_DURATION,
  labels: DEFAULT_LABELS,
});
