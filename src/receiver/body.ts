import type { IncomingMessage } from 'node:http';

export type BodyRead = { kind: 'body'; text: string } | { kind: 'too-large' } | { kind: 'aborted' };

/**
 * A request's body, or `too-large` as soon as it passes `maxBytes` (declared or streamed): reading stops there, so
 * a sender cannot make the receiver hold more than that. The caller answers and closes the connection.
 */
export function readRequestBounded(req: IncomingMessage, maxBytes: number): Promise<BodyRead> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > maxBytes) {
    req.pause();
    return Promise.resolve({ kind: 'too-large' });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (read: BodyRead) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      resolve(read);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > maxBytes) {
        req.pause();
        settle({ kind: 'too-large' });
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => settle({ kind: 'body', text: Buffer.concat(chunks).toString('utf8') }));
    req.once('error', () => settle({ kind: 'aborted' }));
    // Emitted after `end` too, when it changes nothing; before it, the sender went away mid-body.
    req.once('close', () => settle({ kind: 'aborted' }));
  });
}
