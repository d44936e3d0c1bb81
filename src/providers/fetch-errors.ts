import { redactUrlCredentials } from '../domain/redact';
import { oneLine } from '../domain/text';

/** How messages about a failed request name the other end. */
export type FetchPeer =
  /** A server whose URL (without credentials) every message may show. */
  | { url: string }
  /** One whose URL is a secret (a webhook's path can be its credential): named by a word, its URL hidden by `hide`. */
  | { name: string; hide: (text: string) => string };

/** Why a fetch failed, in words a person can act on: a timeout, a refused connection, an unknown host, or the cause. */
export function describeFetchError(error: unknown, timeoutMs: number, peer: FetchPeer): string {
  // Duck-typed: undici's errors and DOMException may come from another realm (e.g. under jest), so instanceof lies.
  const { name, cause } = (error ?? {}) as { name?: unknown; cause?: { code?: unknown; message?: unknown } };
  const where = (preposition: string) => ('url' in peer ? ` ${preposition} ${peer.url}` : '');
  if (name === 'TimeoutError' || name === 'AbortError') return `timed out after ${timeoutMs} ms${where('at')}`;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  if (code === 'ECONNREFUSED') return `connection refused${where('at')}`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve the host${where('of')}`;
  const detail = code ?? (typeof cause?.message === 'string' ? cause.message : String(error));
  return 'url' in peer
    ? `cannot reach ${peer.url}: ${redactUrlCredentials(detail)}`
    : `cannot reach ${peer.name}: ${peer.hide(detail)}`;
}

/** A response body as an error quotes it: one printable line, cut (an HTML error page is mostly markup). */
export function bodyExcerpt(text: string): string {
  const flat = oneLine(text, 200);
  return flat.length === 0 ? '(empty body)' : flat;
}

/**
 * A response's body as text, or undefined once it passes `maxBytes` (declared or streamed): the rest is never read,
 * the connection dropped, so a hostile or broken server cannot make us hold a huge answer.
 */
export async function readBodyBounded(response: Response, maxBytes: number): Promise<string | undefined> {
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (!response.body) return '';
  if (declared > maxBytes) {
    await response.body.cancel().catch(() => undefined);
    return undefined;
  }
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
