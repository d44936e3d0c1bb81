import { ApplicationFailure, defaultFailureConverter, defaultPayloadConverter } from '@temporalio/common';
import { ConfigError } from '../../src/config/env';
import { FleetStepError } from '../../src/providers/targets/haproxy-fleet';

/**
 * What an activity's error becomes on its way to the server and back into the workflow: the same conversion the
 * worker and the workflow sandbox run, without a server.
 */
function throughTemporal(err: Error) {
  const failure = defaultFailureConverter.errorToFailure(err, defaultPayloadConverter);
  return { failure, inWorkflow: defaultFailureConverter.failureToError(failure, defaultPayloadConverter) };
}

describe.each([
  ['FleetStepError', () => new FleetStepError('canary step canary-1: canaryInstances must be 1..9 for a fleet of 10')],
  ['ConfigError', () => new ConfigError('no deployment target configured for service "billing"')],
])('%s: retrying cannot help', (name, make) => {
  it('is sent as a non-retryable failure of its own type, so Temporal does not retry the activity', () => {
    const err = make();
    const { failure } = throughTemporal(err);
    expect(failure.applicationFailureInfo).toMatchObject({ type: name, nonRetryable: true });
  });

  it('reaches the workflow with its message', () => {
    const err = make();
    const { inWorkflow } = throughTemporal(err);
    expect(inWorkflow).toBeInstanceOf(ApplicationFailure);
    expect(inWorkflow).toMatchObject({ type: name, nonRetryable: true, message: err.message });
  });

  it('is still an error of its own class where it is raised', () => {
    const err = make();
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe(name);
    expect(String(err)).toBe(`${name}: ${err.message}`);
  });
});

it('tells its own class apart from the other', () => {
  expect(new FleetStepError('x')).not.toBeInstanceOf(ConfigError);
  expect(new ConfigError('x')).not.toBeInstanceOf(FleetStepError);
});
