import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signerFromKeyFile } from '../../src/client/signer';

// ssh-keygen as the CLI runs it: the statement on stdin, the key from a file.
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-signer-'));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice', '-f', join(dir, 'alice')]);
  writeFileSync(join(dir, 'garbage'), 'not a key\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('a real key signs and names its public key', async () => {
  const signer = signerFromKeyFile(join(dir, 'alice'));
  expect(await signer.sign('statement')).toMatch(
    /^-----BEGIN SSH SIGNATURE-----\n[\s\S]+-----END SSH SIGNATURE-----\n?$/,
  );
  expect(await signer.publicKey()).toMatch(/^ssh-ed25519 AAAA\S+( alice)?$/);
});

// ssh-keygen gives up on a key it cannot load before reading its input: a statement larger than the pipe's buffer
// then meets a closed pipe. The caller must get ssh-keygen's reason, not an EPIPE thrown past the promise.
test.each([
  ['sign', (path: string) => signerFromKeyFile(path).sign('x'.repeat(1 << 20))],
  ['publicKey', (path: string) => signerFromKeyFile(path).publicKey()],
])('%s with a key ssh-keygen cannot load fails with its reason', async (_name, call) => {
  await expect(call(join(dir, 'garbage'))).rejects.toThrow(/^ssh-keygen .*failed: /);
  await expect(call(join(dir, 'garbage'))).rejects.not.toThrow(/EPIPE/);
});
