import { normalizeTlsConfig } from '@temporalio/common/lib/internal-non-workflow';
import { connectionSettings } from '../../src/config/connection';
import { connectionEnvSchema, parseEnv } from '../../src/config/env';

const settings = (env: NodeJS.ProcessEnv) => connectionSettings(parseEnv(connectionEnvSchema, env));
/** TLS as the SDK will set up the connection (client and worker both normalise `tls` and `apiKey` this way). */
const sdkTls = (env: NodeJS.ProcessEnv) => {
  const s = settings(env);
  return normalizeTlsConfig(s.tls, s.apiKey);
};

const API_KEY = 'tcld-key-never-log-me';

describe('TLS as the README promises it', () => {
  it('is off by default, and on with an API key', () => {
    expect(sdkTls({})).toBeUndefined();
    expect(sdkTls({ TEMPORAL_API_KEY: API_KEY })).toEqual({});
  });

  it('TEMPORAL_TLS=false turns it off even with an API key, which then travels in plaintext', () => {
    const s = settings({ TEMPORAL_TLS: 'false', TEMPORAL_API_KEY: API_KEY });
    expect(s).toMatchObject({ tls: false, apiKey: API_KEY });
    expect(normalizeTlsConfig(s.tls, s.apiKey)).toBeUndefined();
  });

  it('TEMPORAL_TLS=true turns it on with nothing else set', () => {
    expect(sdkTls({ TEMPORAL_TLS: 'true' })).toEqual({});
  });

  it('names the server for TLS when asked', () => {
    expect(sdkTls({ TEMPORAL_TLS_SERVER_NAME: 'temporal.internal', TEMPORAL_TLS: 'true' })).toEqual({
      serverNameOverride: 'temporal.internal',
    });
  });
});

describe('parseEnv', () => {
  it('shows a bad value without the credentials in it', () => {
    expect(() => parseEnv(connectionEnvSchema, { TEMPORAL_ADDRESS: 'https://ops:s3cr3t-pw@temporal:7233' })).toThrow(
      'invalid configuration: TEMPORAL_ADDRESS: expected host:port, e.g. 127.0.0.1:7233 (got "https://***@temporal:7233")',
    );
  });
});
