import { createHash, timingSafeEqual } from 'node:crypto';
import type { ReceiverAuth } from '../config/receiver-config';

export type AuthVerdict = { ok: true } | { ok: false; why: string };

// Digests have one length whatever was sent, so timingSafeEqual never throws and the length of a guess tells nothing.
const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
const same = (sent: string, expected: string) => timingSafeEqual(digest(sent), digest(expected));

/** What a 401 says the receiver takes, so a person with curl sees what to send. */
export const challenge = (auth: ReceiverAuth): string =>
  auth.scheme === 'bearer' ? 'Bearer realm="tollgate-receiver"' : 'Basic realm="tollgate-receiver", charset="UTF-8"';

/**
 * Checks an `Authorization` header against the one configured scheme: `Bearer <token>` as Alertmanager's
 * `http_config.authorization` sends it, or `Basic base64(user:password)` as its `basic_auth` does. `why` is for the
 * log, and never quotes what was sent: a wrong token is often someone's right one for another system.
 */
export function checkAuthorization(header: string | undefined, auth: ReceiverAuth): AuthVerdict {
  if (header === undefined || header.trim() === '') return { ok: false, why: 'no Authorization header' };
  const match = /^([A-Za-z]+) +(\S+) *$/.exec(header);
  if (!match) return { ok: false, why: 'malformed Authorization header' };
  const [, scheme = '', credentials = ''] = match;
  const wanted = auth.scheme === 'bearer' ? 'bearer' : 'basic';
  if (scheme.toLowerCase() !== wanted) {
    return { ok: false, why: `${scheme.slice(0, 20).toLowerCase()} credentials where ${wanted} is configured` };
  }
  if (auth.scheme === 'bearer') return same(credentials, auth.token) ? { ok: true } : { ok: false, why: 'wrong token' };
  const decoded = /^[A-Za-z0-9+/]+={0,2}$/.test(credentials) ? Buffer.from(credentials, 'base64').toString('utf8') : '';
  const colon = decoded.indexOf(':');
  if (colon < 0) return { ok: false, why: 'malformed basic credentials' };
  // Both compared, whichever is wrong: which one failed must not show in the time taken.
  const userOk = same(decoded.slice(0, colon), auth.username);
  const passwordOk = same(decoded.slice(colon + 1), auth.password);
  return userOk && passwordOk ? { ok: true } : { ok: false, why: 'wrong username or password' };
}
