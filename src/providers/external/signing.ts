import { createHmac, timingSafeEqual } from 'node:crypto';

/*
 * Signed requests, the same for notifications, HTTP targets and hooks. With a secret configured, every request carries
 *
 *   X-Tollgate-Timestamp: <unix seconds when this attempt was sent>
 *   X-Tollgate-Signature: sha256=<lowercase hex HMAC-SHA256(secret, timestamp + "." + raw body bytes)>
 *
 * (a GET signs the empty body). Receivers verify against the raw body exactly as received (before any JSON parsing),
 * compare in constant time (`verifySignature` below), and should refuse timestamps too far from their clock to stop
 * replays. A retried request is re-signed with a fresh timestamp but keeps its X-Tollgate-Delivery id (and, for a
 * target step, its Idempotency-Key), so receivers can drop duplicates (a timed-out attempt may still have arrived).
 */
export const SIGNATURE_HEADER = 'x-tollgate-signature';
export const TIMESTAMP_HEADER = 'x-tollgate-timestamp';
export const DELIVERY_HEADER = 'x-tollgate-delivery';

export function sign(secret: string, timestamp: string, body: Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

/** The signature headers for `body`, stamped now. */
export function signatureHeaders(secret: string, body: Uint8Array): Record<string, string> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  return { [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: sign(secret, timestamp, body) };
}

/**
 * True when `header` is the signature of `timestamp` and `body` under `secret`. Pass `maxAgeSeconds`
 * to also refuse stale (replayed) or future timestamps.
 */
export function verifySignature(
  secret: string,
  timestamp: string | number | undefined,
  body: string | Uint8Array,
  header: string | undefined,
  options: { maxAgeSeconds?: number; nowSeconds?: number } = {},
): boolean {
  if (!secret || timestamp === undefined || header === undefined) return false;
  const ts = String(timestamp);
  if (!/^\d{1,12}$/.test(ts)) return false;
  if (options.maxAgeSeconds !== undefined) {
    const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
    if (Math.abs(now - Number(ts)) > options.maxAgeSeconds) return false;
  }
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const expected = Buffer.from(sign(secret, ts, bytes), 'utf8');
  const actual = Buffer.from(header.trim(), 'utf8');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
