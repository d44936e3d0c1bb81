import { spawn, execFile } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { waitForPort } from '../../scripts/dev-server';
import { stopProcess } from '../../src/providers/targets/fleet-process';
import { HAPROXY_BIN } from './fleet';
import { freePort } from '../../scripts/ports';

const run = promisify(execFile);

/** A certificate and its key, as PEM files. */
export interface CertPair {
  cert: string;
  key: string;
}

/**
 * What the TLS suites run on, generated with `openssl` at test time: the CA the proxy trusts for clients and the
 * clients trust for the proxy, the proxy's certificate (SANs 127.0.0.1 and localhost), Tollgate's client
 * certificate, and a client certificate from a second CA that the proxy must refuse.
 */
export interface TestPki {
  caPem: string;
  /** Certificate then key, one file: what HAProxy's `crt` takes. */
  serverPem: string;
  server: CertPair;
  client: CertPair;
  rogueCaPem: string;
  rogueClient: CertPair;
}

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

/** Every openssl call is bounded: a prompt it should never show must not hang the suite. */
const openssl = (args: string[], cwd: string) => run('openssl', args, { cwd, timeout: 10_000 });

async function key(dir: string, name: string): Promise<string> {
  // P-256 in PKCS#8: what both Node (the CLI) and rustls (the worker's core) read, and fast to generate.
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  return join(dir, `${name}.key`);
}

async function ca(dir: string, name: string, cn: string): Promise<CertPair> {
  await key(dir, name);
  await openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-subj',
      `/CN=${cn}`,
      '-days',
      '2',
      '-config',
      'openssl.cnf',
    ].concat(['-extensions', 'ca', '-out', `${name}.pem`]),
    dir,
  );
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

async function leaf(dir: string, name: string, cn: string, issuer: string, profile: 'server' | 'client') {
  await key(dir, name);
  await openssl(
    ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-config', 'openssl.cnf', '-out', `${name}.csr`],
    dir,
  );
  await openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.pem`, '-CAkey', `${issuer}.key`, '-set_serial'].concat([
      String(Date.now()),
      '-days',
      '2',
      '-extfile',
      'openssl.cnf',
      '-extensions',
      profile,
      '-out',
      `${name}.pem`,
    ]),
    dir,
  );
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

export async function makeTestPki(dir: string): Promise<TestPki> {
  await writeFile(join(dir, 'openssl.cnf'), OPENSSL_CONFIG);
  const [trusted, rogue] = await Promise.all([ca(dir, 'ca', 'Tollgate test CA'), ca(dir, 'rogue-ca', 'Some other CA')]);
  const [server, client, rogueClient] = await Promise.all([
    leaf(dir, 'server', 'localhost', 'ca', 'server'),
    leaf(dir, 'client', 'tollgate-worker', 'ca', 'client'),
    leaf(dir, 'rogue-client', 'tollgate-worker', 'rogue-ca', 'client'),
  ]);
  const serverPem = join(dir, 'server-bundle.pem');
  await writeFile(serverPem, `${await readFile(server.cert, 'utf8')}${await readFile(server.key, 'utf8')}`);
  return { caPem: trusted.cert, serverPem, server, client, rogueCaPem: rogue.cert, rogueClient };
}

export interface TlsProxy {
  /** TLS with a client certificate from the test CA required (`verify required`). */
  mtlsAddress: string;
  /** TLS without a client certificate; a request passes only with `authorization: Bearer <apiKey>`. */
  apiKeyAddress: string;
  logPath: string;
  stop(): Promise<void>;
}

/**
 * A real HAProxy terminating TLS in front of a plaintext gRPC frontend (the dev server's): HTTP/2 on both sides.
 * gRPC calls are long (a worker's poll is held up to about 70 s by the server), hence the 90 s timeouts.
 * A request without the API key is answered as gRPC would answer it, UNAUTHENTICATED (16) in a trailers-only
 * response, so a client shows the reason instead of a protocol error; the key reaches HAProxy through its
 * environment, never its config file.
 */
export function proxyConfig(o: { pki: TestPki; backend: string; mtlsPort: number; apiKeyPort: number }): string {
  return [
    'global',
    '  maxconn 512',
    '  log stdout format raw local0 info',
    '',
    'defaults',
    '  mode http',
    '  log global',
    '  option httplog',
    '  timeout connect 2s',
    '  timeout client 90s',
    '  timeout server 90s',
    '',
    'frontend fe_mtls',
    `  bind 127.0.0.1:${o.mtlsPort} ssl crt ${o.pki.serverPem} ca-file ${o.pki.caPem} verify required alpn h2`,
    // The client certificate's CN on each request's log line: which identity came through.
    '  http-request capture ssl_c_s_dn(cn) len 64',
    '  default_backend be_temporal',
    '',
    'frontend fe_api_key',
    `  bind 127.0.0.1:${o.apiKeyPort} ssl crt ${o.pki.serverPem} alpn h2`,
    '  acl key_ok req.hdr(authorization) -m str "Bearer ${TOLLGATE_PROXY_API_KEY}"',
    // `content-type` as a header: HAProxy's own keyword is dropped from a reply without a payload.
    '  http-request return status 200 hdr content-type application/grpc hdr grpc-status 16 ' +
      'hdr grpc-message "missing or wrong API key" unless key_ok',
    '  default_backend be_temporal',
    '',
    'backend be_temporal',
    `  server temporal ${o.backend} proto h2`,
    '',
  ].join('\n');
}

export async function startTlsProxy(o: {
  dir: string;
  pki: TestPki;
  /** The plaintext gRPC frontend, host:port. */
  backend: string;
  apiKey: string;
}): Promise<TlsProxy> {
  const [mtlsPort, apiKeyPort] = [await freePort(), await freePort()];
  const cfgPath = join(o.dir, 'haproxy.cfg');
  await writeFile(cfgPath, proxyConfig({ pki: o.pki, backend: o.backend, mtlsPort, apiKeyPort }));
  const logPath = join(o.dir, 'haproxy.log');
  const fd = openSync(logPath, 'a');
  const child = spawn(HAPROXY_BIN, ['-db', '-f', cfgPath], {
    stdio: ['ignore', fd, fd],
    env: { PATH: process.env.PATH, TOLLGATE_PROXY_API_KEY: o.apiKey },
  });
  closeSync(fd);
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
  child.once('error', (err) => (exited = `${err.message} (is the Debian package "haproxy" installed?)`));
  const stop = async () => {
    if (child.pid !== undefined && exited === undefined) await stopProcess(child.pid, 5_000);
  };
  try {
    await Promise.all([waitForPort(mtlsPort, 10_000), waitForPort(apiKeyPort, 10_000)]);
  } catch (err) {
    await stop();
    const log = await readFile(logPath, 'utf8').catch(() => '');
    throw new Error(
      `HAProxy ${exited ? `exited (${exited})` : (err as Error).message}; ${logPath}:\n${log.slice(-800)}`,
    );
  }
  return { mtlsAddress: `127.0.0.1:${mtlsPort}`, apiKeyAddress: `127.0.0.1:${apiKeyPort}`, logPath, stop };
}
