import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import { ConfigError, type ConnectionEnv } from './env';

export interface ConnectionSettings {
  address: string;
  namespace: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
}

function readPem(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(
      `invalid configuration: ${variable}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

/** One place turns env settings into connection options, so the worker and the CLI connect the same way. */
export function connectionSettings(env: ConnectionEnv): ConnectionSettings {
  const mtls = env.TEMPORAL_TLS_CERT_PATH && env.TEMPORAL_TLS_KEY_PATH;
  // Plain TLS is on whenever any TLS setting or an API key is given; TEMPORAL_TLS=false turns it off even for a key.
  const wantsTls =
    env.TEMPORAL_TLS === 'true' ||
    (env.TEMPORAL_TLS !== 'false' && Boolean(mtls || env.TEMPORAL_TLS_CA_PATH || env.TEMPORAL_API_KEY));
  // `false`, not left out: given an API key and no `tls`, the SDK turns TLS on by itself.
  let tls: TLSConfig | boolean | undefined = env.TEMPORAL_TLS === 'false' ? false : undefined;
  if (wantsTls) {
    tls = {
      ...(mtls && {
        clientCertPair: {
          crt: readPem('TEMPORAL_TLS_CERT_PATH', env.TEMPORAL_TLS_CERT_PATH!),
          key: readPem('TEMPORAL_TLS_KEY_PATH', env.TEMPORAL_TLS_KEY_PATH!),
        },
      }),
      ...(env.TEMPORAL_TLS_CA_PATH && {
        serverRootCACertificate: readPem('TEMPORAL_TLS_CA_PATH', env.TEMPORAL_TLS_CA_PATH),
      }),
      ...(env.TEMPORAL_TLS_SERVER_NAME && { serverNameOverride: env.TEMPORAL_TLS_SERVER_NAME }),
    };
  }
  return {
    address: env.TEMPORAL_ADDRESS,
    namespace: env.TEMPORAL_NAMESPACE,
    ...(tls !== undefined && { tls }),
    ...(env.TEMPORAL_API_KEY && { apiKey: env.TEMPORAL_API_KEY }),
  };
}
