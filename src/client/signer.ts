import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { controlStatement, SIGNATURE_NAMESPACE, type ControlStatement } from '../domain/signatures';
import { ascii, base64Encode, concat, wireString } from '../domain/ssh-wire';
import type { Signed } from '../domain/signing-policy';
import { TollgateError } from './errors';

/**
 * Signs the statements of controls, as the person at the keyboard: with their SSH key through `ssh-keygen -Y sign`
 * (a private key file, or its `.pub` when the key lives in ssh-agent or a hardware token), or with a raw Ed25519
 * key in a PKCS#8 PEM file (`openssl genpkey -algorithm ed25519`).
 */
export interface StatementSigner {
  /** The signature over `statement`, as the workflow accepts it (an armored SSHSIG block, or `ed25519:<base64>`). */
  sign(statement: string): Promise<string>;
  /** The public key as an OpenSSH line: what goes into the policy's `approvals.signers`. */
  publicKey(): Promise<string>;
}

const SIGN_TIMEOUT_MS = 60_000; // a hardware key may wait for a touch

function run(command: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // The environment is passed explicitly: ssh-agent is found through SSH_AUTH_SOCK in it.
    const options = { timeout: SIGN_TIMEOUT_MS, maxBuffer: 64 * 1024, env: process.env };
    const child = execFile(command, args, options, (err, stdout, stderr) => {
      if (err) {
        const why = stderr.trim().split('\n').at(-1) || (err as Error).message;
        reject(new TollgateError(`${command} ${args.join(' ')} failed: ${why}`, 'invalid-input'));
      } else resolve(stdout);
    });
    // A child that exits without reading its input (a key it cannot load, or `-y`, which reads none) closes the pipe
    // under us: EPIPE here says nothing the exit status and stderr above do not say better.
    child.stdin?.on('error', () => {});
    if (input === undefined) child.stdin?.end();
    else child.stdin?.end(input);
  });
}

class SshKeygenSigner implements StatementSigner {
  constructor(private readonly path: string) {}

  sign(statement: string): Promise<string> {
    return run('ssh-keygen', ['-q', '-Y', 'sign', '-n', SIGNATURE_NAMESPACE, '-f', this.path], statement);
  }

  async publicKey(): Promise<string> {
    if (this.path.endsWith('.pub')) return readFileSync(this.path, 'utf8').trim();
    return (await run('ssh-keygen', ['-y', '-f', this.path])).trim();
  }
}

class Ed25519FileSigner implements StatementSigner {
  constructor(private readonly key: KeyObject) {}

  sign(statement: string): Promise<string> {
    return Promise.resolve(`ed25519:${sign(null, Buffer.from(statement, 'utf8'), this.key).toString('base64')}`);
  }

  publicKey(): Promise<string> {
    const jwk = createPublicKey(this.key).export({ format: 'jwk' });
    const raw = Buffer.from(jwk.x ?? '', 'base64url');
    const blob = concat(wireString(ascii('ssh-ed25519')), wireString(raw));
    return Promise.resolve(`ssh-ed25519 ${base64Encode(blob)}`);
  }
}

/** A key file, by what it holds: a PKCS#8 Ed25519 key is signed with here, anything else by ssh-keygen. */
export function signerFromKeyFile(path: string): StatementSigner {
  let head: string;
  try {
    head = readFileSync(path, 'utf8').slice(0, 64);
  } catch (err) {
    throw new TollgateError(
      `cannot read signing key ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      'invalid-input',
    );
  }
  if (!head.startsWith('-----BEGIN PRIVATE KEY-----')) return new SshKeygenSigner(path);
  const key = createPrivateKey(readFileSync(path));
  if (key.asymmetricKeyType !== 'ed25519')
    throw new TollgateError(
      `signing key ${path} is a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`,
      'invalid-input',
    );
  return new Ed25519FileSigner(key);
}

/** What the signer sees of the release: the fields of the statement the workflow will check against its own. */
export type Decision = Omit<ControlStatement, 'at' | 'nonce'>;

/** Signs one decision with a fresh nonce, at the current time (a test's server may keep time of its own). */
export async function signDecision(signer: StatementSigner, decision: Decision, when = new Date()): Promise<Signed> {
  const statement: ControlStatement = {
    ...decision,
    at: when.toISOString(),
    nonce: randomBytes(16).toString('hex'),
  };
  const signature = await signer.sign(controlStatement(statement));
  const { workflowId, runId, target, at, nonce } = statement;
  return { workflowId, runId, target, at, nonce, signature };
}
