import { ed25519 } from '@noble/curves/ed25519';
import { sha256, sha512 } from '@noble/hashes/sha2';
import { sameIdentity } from './identity';
import { ascii, base64Decode, base64Encode, concat, Malformed, WireReader, wireString } from './ssh-wire';

/*
 * Signed controls: a person proves a decision with the SSH key they already have (`ssh-keygen -Y sign`, git's
 * allowed_signers model) or a raw Ed25519 key. Pure code: the workflow verifies inside its sandbox, so the check is
 * replayed with the history and anyone can re-run it later from the history alone.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** What one signature decides: nothing else is signed, and nothing of it is left out. */
export interface ControlStatement {
  workflowId: string;
  runId: string;
  action: string;
  /** The gate or stage the action applies to. */
  target: string;
  by: string;
  /** ISO 8601 in `Date.prototype.toISOString` form, so one instant has one spelling. */
  at: string;
  /** 16–64 lowercase hex characters, fresh per control: the workflow refuses one it has seen. */
  nonce: string;
}

export const SIGNATURE_NAMESPACE = 'tollgate';
const FIELDS = ['workflowId', 'runId', 'action', 'target', 'by', 'at', 'nonce'] as const;
const LABELS: Record<(typeof FIELDS)[number], string> = {
  workflowId: 'workflow',
  runId: 'run',
  action: 'action',
  target: 'target',
  by: 'by',
  at: 'at',
  nonce: 'nonce',
};
const MAX_FIELD = 512;
/** Far above any armored Ed25519 signature or key line (under 400 characters), far below anything costly. */
const MAX_TEXT = 4_096;
/** Control characters and line/paragraph separators: any of them could make one statement read as another. */
const UNSAFE = /[\p{Cc}\u2028\u2029]/u;

function fieldProblem(c: Record<string, unknown>): string | undefined {
  for (const name of FIELDS) {
    const value = c[name];
    if (typeof value !== 'string' || value === '') return `${name} must be a non-empty string`;
    if (value.length > MAX_FIELD) return `${name} is longer than ${MAX_FIELD} characters`;
    if (UNSAFE.test(value)) return `${name} contains a newline or control character`;
  }
  return undefined;
}

/** The exact text a control signs (UTF-8, one `label value` line each). Throws on a field that is refused. */
export function controlStatement(c: ControlStatement): string {
  const problem = fieldProblem(c as unknown as Record<string, unknown>);
  if (problem) throw new RangeError(problem);
  return ['tollgate-control v1', ...FIELDS.map((f) => `${LABELS[f]} ${c[f]}`)].join('\n') + '\n';
}

// ---- OpenSSH public keys -------------------------------------------------------------------------------------

export interface OpenSshKey {
  /** The 32-byte Ed25519 public key. */
  key: Uint8Array;
  /** The wire-format blob (`string "ssh-ed25519" || string key`), what fingerprints are taken over. */
  blob: Uint8Array;
  fingerprint: string;
}

/** As `ssh-keygen -l` prints it. */
export const fingerprint = (key: Pick<OpenSshKey, 'blob'>): string => `SHA256:${base64Encode(sha256(key.blob), false)}`;

const refused = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** Catches the wire reader's and base64's refusals (and only those), naming what was being read. */
function reading<T>(what: string, read: () => Parsed<T>): Parsed<T> {
  try {
    return read();
  } catch (err) {
    if (err instanceof Malformed) return refused(`${what}: ${err.message}`);
    throw err;
  }
}

function keyFromBlob(blob: Uint8Array): Parsed<OpenSshKey> {
  const r = new WireReader(blob);
  const type = r.text();
  if (type !== 'ssh-ed25519') return refused(`a ${type} key: only ssh-ed25519 keys are accepted`);
  const key = r.string();
  r.end();
  if (key.length !== 32) return refused(`an ssh-ed25519 key of ${key.length} bytes, not 32`);
  return { ok: true, value: { key, blob, fingerprint: fingerprint({ blob }) } };
}

/** One `ssh-ed25519 AAAA… comment` line, as in `authorized_keys`, `allowed_signers` or a `.pub` file. */
export function parseOpenSshKey(text: unknown): Parsed<OpenSshKey> {
  if (typeof text !== 'string' || text.length > MAX_TEXT)
    return refused('an OpenSSH public key must be a short string');
  const [type, data] = text.trim().split(/\s+/);
  if (type !== 'ssh-ed25519' || !data) return refused('not an OpenSSH key line starting with ssh-ed25519');
  return reading('an OpenSSH public key', () => keyFromBlob(base64Decode(data)));
}

// ---- SSH signatures (OpenSSH PROTOCOL.sshsig) ---------------------------------------------------------------

export interface SshSignature {
  publicKey: OpenSshKey;
  namespace: string;
  reserved: Uint8Array;
  hashAlgorithm: 'sha256' | 'sha512';
  /** The raw 64-byte Ed25519 signature. */
  signature: Uint8Array;
}

const MAGIC = ascii('SSHSIG');
const ARMOR = /^-----BEGIN SSH SIGNATURE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END SSH SIGNATURE-----$/;

/** The armored block `ssh-keygen -Y sign` writes. */
export function parseSshSignature(text: unknown): Parsed<SshSignature> {
  if (typeof text !== 'string' || text.length > MAX_TEXT) return refused('an SSH signature must be a short string');
  const armored = ARMOR.exec(text.trim());
  if (!armored?.[1]) return refused('not an armored SSH SIGNATURE block');
  const body = armored[1].replace(/\s+/g, '');
  return reading('an SSH signature', () => {
    const r = new WireReader(base64Decode(body));
    if (!r.bytesN(6).every((b, i) => b === MAGIC[i])) return refused('an SSH signature without the SSHSIG preamble');
    const version = r.uint32();
    if (version !== 1) return refused(`an SSH signature of version ${version}, not 1`);
    const publicKey = keyFromBlob(r.string());
    if (!publicKey.ok) return publicKey;
    const namespace = r.text();
    const reserved = r.string();
    const hashAlgorithm = r.text();
    if (hashAlgorithm !== 'sha256' && hashAlgorithm !== 'sha512')
      return refused(`an SSH signature hashed with ${hashAlgorithm}, not sha512 or sha256`);
    const inner = new WireReader(r.string());
    r.end();
    const sigType = inner.text();
    if (sigType !== 'ssh-ed25519') return refused(`an SSH signature of type ${sigType}, not ssh-ed25519`);
    const signature = inner.string();
    inner.end();
    if (signature.length !== 64) return refused(`an Ed25519 signature of ${signature.length} bytes, not 64`);
    return { ok: true, value: { publicKey: publicKey.value, namespace, reserved, hashAlgorithm, signature } };
  });
}

/** What an SSHSIG signature is made over: the message's hash, bound to the namespace so no other use can be replayed. */
function sshsigSignedData(sig: SshSignature, message: Uint8Array): Uint8Array {
  const digest = sig.hashAlgorithm === 'sha512' ? sha512(message) : sha256(message);
  return concat(
    MAGIC,
    wireString(ascii(sig.namespace)),
    wireString(sig.reserved),
    wireString(ascii(sig.hashAlgorithm)),
    wireString(digest),
  );
}

function ed25519Verifies(signature: Uint8Array, message: Uint8Array, key: Uint8Array): boolean {
  try {
    // Strict RFC 8032 (not ZIP 215), as OpenSSH verifies: a signature valid here is valid for `ssh-keygen -Y verify`.
    return ed25519.verify(signature, message, key, { zip215: false });
  } catch {
    return false; // a key that is not a curve point
  }
}

// ---- verifying a signed control ------------------------------------------------------------------------------

export interface Signer {
  name: string;
  /** OpenSSH public key lines (`ssh-ed25519 AAAA… comment`). */
  keys: readonly string[];
}

export interface VerifyRules {
  signers: readonly Signer[];
  now: number;
  maxSkewMs: number;
  seenNonces: ReadonlySet<string>;
}

export type Verdict = { ok: true; identity: string; fingerprint: string } | { ok: false; reason: string };

const NONCE = /^[0-9a-f]{16,64}$/;
const RAW_PREFIX = 'ed25519:';

/**
 * Checks a signed control: `input` is the signer's `by`, `at`, `nonce` and `signature` with the workflow's own
 * `workflowId`, `runId`, `action` and `target` laid over them (what it expects, never what the sender claims).
 * Never throws: any JSON value may arrive in a signal. On success `identity` is the policy's spelling of the name.
 */
export function verifySignedControl(input: unknown, rules: VerifyRules): Verdict {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    return refused('a signed control must be an object');
  const c = input as Record<string, unknown>;
  const problem = fieldProblem(c);
  if (problem) return refused(problem);
  const s = c as unknown as ControlStatement;
  if (typeof c.signature !== 'string') return refused('signature must be a string');
  if (!NONCE.test(s.nonce)) return refused('nonce must be 16–64 lowercase hex characters');
  const at = Date.parse(s.at);
  if (Number.isNaN(at) || new Date(at).toISOString() !== s.at)
    return refused('at must be an ISO timestamp like 2026-12-02T16:00:00.000Z');
  const skew = at - rules.now;
  if (Math.abs(skew) > rules.maxSkewMs)
    return refused(
      `signed at ${s.at}, ${Math.round(Math.abs(skew) / 1000)}s ${skew > 0 ? 'ahead of' : 'behind'} the workflow's clock (at most ${Math.round(rules.maxSkewMs / 1000)}s allowed)`,
    );
  if (rules.seenNonces.has(s.nonce)) return refused(`nonce ${s.nonce} was already used: a signature is good once`);

  if (!rules.signers.some((signer) => sameIdentity(signer.name, s.by)))
    return refused(`${s.by} is not a listed signer`);
  const keys = listedKeys(rules.signers);
  const message = new TextEncoder().encode(controlStatement(s));
  return c.signature.startsWith(RAW_PREFIX)
    ? verifyRaw(c.signature.slice(RAW_PREFIX.length), message, s.by, keys)
    : verifySshsig(c.signature, message, s.by, keys);
}

interface ListedKey {
  owner: string;
  key: OpenSshKey;
}

/** Keys a policy lists that do not parse can never verify anything; the policy's own schema reports them. */
function listedKeys(signers: readonly Signer[]): ListedKey[] {
  return signers.flatMap((signer) =>
    signer.keys.flatMap((line) => {
      const parsed = parseOpenSshKey(line);
      return parsed.ok ? [{ owner: signer.name, key: parsed.value }] : [];
    }),
  );
}

const MISMATCH = 'the signature does not match this release, run, action and gate';
const borrowed = (owner: string, by: string) => refused(`signed with ${owner}'s key, not ${by}'s`);

function verifySshsig(text: string, message: Uint8Array, by: string, keys: ListedKey[]): Verdict {
  const sig = parseSshSignature(text);
  if (!sig.ok) return sig;
  const { namespace, publicKey } = sig.value;
  if (namespace !== SIGNATURE_NAMESPACE)
    return refused(
      `signed for namespace ${namespace}, not ${SIGNATURE_NAMESPACE} (ssh-keygen -Y sign -n ${SIGNATURE_NAMESPACE})`,
    );
  const holders = keys.filter((k) => k.key.fingerprint === publicKey.fingerprint);
  const own = holders.find((k) => sameIdentity(k.owner, by));
  if (!own) {
    const other = holders[0];
    return other
      ? borrowed(other.owner, by)
      : refused(`signed with ${publicKey.fingerprint}, a key not listed for ${by}`);
  }
  if (!ed25519Verifies(sig.value.signature, sshsigSignedData(sig.value, message), own.key.key))
    return refused(MISMATCH);
  return { ok: true, identity: own.owner, fingerprint: own.key.fingerprint };
}

/** How many other people's keys a refused raw signature is tried against, to say whose it was. */
const MAX_KEYS_NAMED = 20;

/** A bare signature names no key: the signer's own keys are tried, then everyone else's to say whose it was. */
function verifyRaw(text: string, message: Uint8Array, by: string, keys: ListedKey[]): Verdict {
  const signature = reading('an ed25519: signature', () => ({ ok: true, value: base64Decode(text) }));
  if (!signature.ok) return signature;
  if (signature.value.length !== 64) return refused(`an Ed25519 signature of ${signature.value.length} bytes, not 64`);
  const signedBy = (k: ListedKey) => ed25519Verifies(signature.value, message, k.key.key);
  const own = keys.find((k) => sameIdentity(k.owner, by) && signedBy(k));
  if (own) return { ok: true, identity: own.owner, fingerprint: own.key.fingerprint };
  // Naming a borrowed key costs a verification per key: bounded, so no forged signal can stall a workflow task.
  const other = keys
    .filter((k) => !sameIdentity(k.owner, by))
    .slice(0, MAX_KEYS_NAMED)
    .find(signedBy);
  return other ? borrowed(other.owner, by) : refused(`${MISMATCH}, with any key listed for ${by}`);
}
