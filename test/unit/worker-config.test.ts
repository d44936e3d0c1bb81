import { ConfigError } from '../../src/config/env';
import { loadWorkerConfig } from '../../src/config/worker-config';
import { workerCapacity } from '../../src/worker';

describe('worker capacity settings', () => {
  it('caches 1,000 workflows, runs 2,000 activities at once and forwards a heartbeat a minute by default', () => {
    expect(workerCapacity(loadWorkerConfig({}))).toEqual({
      maxCachedWorkflows: 1_000,
      maxConcurrentActivityTaskExecutions: 2_000,
      maxHeartbeatThrottleInterval: 60_000,
    });
  });

  it('takes the heartbeat throttle from TOLLGATE_MAX_HEARTBEAT_THROTTLE, and names it when it is not a duration', () => {
    expect(workerCapacity(loadWorkerConfig({ TOLLGATE_MAX_HEARTBEAT_THROTTLE: '10s' }))).toMatchObject({
      maxHeartbeatThrottleInterval: 10_000,
    });
    expect(() => loadWorkerConfig({ TOLLGATE_MAX_HEARTBEAT_THROTTLE: 'often' })).toThrow(
      'invalid configuration: TOLLGATE_MAX_HEARTBEAT_THROTTLE: expected a duration such as 30s, 500ms or 2m',
    );
  });

  it('heartbeats a running analysis only as liveness needs by default; round, liveness or a duration otherwise', () => {
    const cadence = (value?: string) =>
      loadWorkerConfig(value === undefined ? {} : { TOLLGATE_ANALYSIS_HEARTBEAT: value }).TOLLGATE_ANALYSIS_HEARTBEAT;
    expect(cadence()).toBe(Number.POSITIVE_INFINITY);
    expect(cadence('liveness')).toBe(Number.POSITIVE_INFINITY);
    expect(cadence('round')).toBe(0);
    expect(cadence('2m')).toBe(120_000);
    expect(() => cadence('often')).toThrow(ConfigError);
    expect(() => cadence('often')).toThrow(
      'invalid configuration: TOLLGATE_ANALYSIS_HEARTBEAT: expected liveness, round or a duration such as 2m',
    );
  });

  it('takes the workflow cache size from TOLLGATE_MAX_CACHED_WORKFLOWS', () => {
    expect(loadWorkerConfig({ TOLLGATE_MAX_CACHED_WORKFLOWS: '250' }).TOLLGATE_MAX_CACHED_WORKFLOWS).toBe(250);
  });

  it.each([
    ['10', 'must be at least 40'],
    ['1.5', 'expected a whole number of workflows'],
    ['many', 'expected number'],
  ])('refuses TOLLGATE_MAX_CACHED_WORKFLOWS=%s, naming the variable', (value, fragment) => {
    const load = () => loadWorkerConfig({ TOLLGATE_MAX_CACHED_WORKFLOWS: value });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(`invalid configuration: TOLLGATE_MAX_CACHED_WORKFLOWS: `);
    expect(load).toThrow(fragment);
  });
});

describe('the deployment target in production', () => {
  const refusal =
    'invalid configuration: TOLLGATE_TARGETS_FILE: required in production: a targets file, or "dry-run" to deploy nothing on purpose';

  it.each([
    ['left out', {}],
    ['empty', { TOLLGATE_TARGETS_FILE: '' }],
  ])('refuses to start with TOLLGATE_TARGETS_FILE %s: a release must not promote having deployed nothing', (_, env) => {
    const load = () => loadWorkerConfig({ NODE_ENV: 'production', ...env });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(refusal);
  });

  it.each(['/etc/tollgate/targets.yaml', 'dry-run'])('starts with TOLLGATE_TARGETS_FILE=%s', (file) => {
    const config = loadWorkerConfig({ NODE_ENV: 'production', TOLLGATE_TARGETS_FILE: file });
    expect(config.TOLLGATE_TARGETS_FILE).toBe(file);
  });

  it('outside production, leaving it out still means dry-run', () => {
    expect(loadWorkerConfig({ NODE_ENV: 'development' }).TOLLGATE_TARGETS_FILE).toBeUndefined();
    expect(loadWorkerConfig({}).TOLLGATE_TARGETS_FILE).toBeUndefined();
  });
});
