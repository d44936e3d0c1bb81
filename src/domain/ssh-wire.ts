// SSH's wire encoding and base64, by hand: Buffer, atob and node:crypto do not exist in the workflow sandbox.

/** Thrown by the reader on bytes that cannot be what they claim; the parsers turn it into a refusal's reason. */
export class Malformed extends Error {}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const VALUE = new Map([...ALPHABET].map((c, i) => [c, i]));

export function base64Encode(bytes: Uint8Array, pad = true): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const [a = 0, b = 0, c = 0] = bytes.subarray(i, i + 3);
    const n = (a << 16) | (b << 8) | c;
    const chars = [18, 12, 6, 0].map((shift) => ALPHABET[(n >> shift) & 63]).join('');
    const kept = Math.min(4, Math.ceil(((bytes.length - i) * 4) / 3));
    out += chars.slice(0, kept) + (pad ? '='.repeat(4 - kept) : '');
  }
  return out;
}

/**
 * Standard, padded base64 in its one canonical spelling: anything that does not re-encode to itself is refused, so
 * a signature or key has exactly one textual form (no malleable padding bits, no stray characters).
 */
export function base64Decode(text: string): Uint8Array {
  if (text.length % 4 !== 0) throw new Malformed('base64 of a length that is not a multiple of 4');
  const body = text.replace(/={1,2}$/, '');
  const bytes = new Uint8Array(Math.floor((body.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let at = 0;
  for (const ch of body) {
    const v = VALUE.get(ch);
    if (v === undefined) throw new Malformed('not base64');
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes[at++] = (acc >> bits) & 0xff;
    }
  }
  if (base64Encode(bytes) !== text) throw new Malformed('not canonical base64');
  return bytes;
}

/** Reads RFC 4251 values (uint32, length-prefixed strings) and refuses to read past the end. */
export class WireReader {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}

  bytesN(n: number): Uint8Array {
    if (n > this.bytes.length - this.at) throw new Malformed('truncated');
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  uint32(): number {
    const [a = 0, b = 0, c = 0, d = 0] = this.bytesN(4);
    return ((a << 24) >>> 0) + (b << 16) + (c << 8) + d;
  }

  string(): Uint8Array {
    return this.bytesN(this.uint32());
  }

  /** A string that must be printable ASCII (key types, namespaces, algorithm names). */
  text(): string {
    const bytes = this.string();
    if (bytes.length > 256) throw new Malformed('a name longer than 256 bytes');
    if (bytes.some((b) => b < 0x20 || b > 0x7e)) throw new Malformed('a name that is not printable ASCII');
    return String.fromCharCode(...bytes);
  }

  end(): void {
    if (this.at !== this.bytes.length) throw new Malformed('trailing bytes');
  }
}

export function wireString(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));
