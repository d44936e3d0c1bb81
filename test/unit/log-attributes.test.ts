import type { LogLevel, LogMetadata } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { releaseFieldsOf, releaseLogAttributes } from '../../src/interceptors/log-attributes';
import type { DeployStep } from '../../src/providers/targets/types';

const step: DeployStep = {
  key: 'release-checkout/r1/canary',
  releaseId: 'release-checkout/r1',
  service: 'checkout',
  version: '1.1.0',
  stableVersion: '1.0.0',
  track: 'canary',
  canaryInstances: 1,
};

describe('release fields of an activity input', () => {
  it.each([
    [
      'a deploy step (its track is its stage)',
      step,
      { releaseId: step.releaseId, service: 'checkout', version: '1.1.0', stage: 'canary', track: 'canary' },
    ],
    [
      'an analysis input, by its context',
      {
        context: { releaseId: 'r1', service: 'cart', version: '2.0.0', stage: 'production', track: 'production' },
        maxRounds: 3,
      },
      { releaseId: 'r1', service: 'cart', version: '2.0.0', stage: 'production', track: 'production' },
    ],
    ['a policy request', { service: 'cart', override: { trafficCycle: {} } }, { service: 'cart' }],
    ['a bare service name', 'cart', { service: 'cart' }],
    ['nothing it knows', 42, {}],
  ])('%s', (_what, input, fields) => {
    expect(releaseFieldsOf(input)).toEqual(fields);
  });
});

it('puts the release fields on the SDK’s own "Activity failed" line', async () => {
  const lines: Array<{ level: LogLevel; message: string; meta?: LogMetadata }> = [];
  const log = (level: LogLevel) => (message: string, meta?: LogMetadata) => void lines.push({ level, message, meta });
  const logger = {
    log: (level: LogLevel, message: string, meta?: LogMetadata) => log(level)(message, meta),
    trace: log('TRACE'),
    debug: log('DEBUG'),
    info: log('INFO'),
    warn: log('WARN'),
    error: log('ERROR'),
  };
  const env = new MockActivityEnvironment({}, { interceptors: [releaseLogAttributes], logger });
  const deploy = (s: DeployStep) => Promise.reject(new Error(`HAProxy admin socket gone while deploying ${s.key}`));
  await expect(env.run(deploy, step)).rejects.toThrow('HAProxy admin socket gone');
  const failed = lines.find((l) => l.message === 'Activity failed');
  expect(failed?.level).toBe('WARN');
  expect(failed?.meta).toMatchObject({ service: 'checkout', version: '1.1.0', stage: 'canary', track: 'canary' });
});
