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
