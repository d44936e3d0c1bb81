import { policyOverrideSchema, servicePolicySchema } from '../../src/domain/policy';
import { describeZodError } from '../../src/domain/zod-errors';

/** A service policy whose canary analysis has exactly `check`; the errors as a person reading the policy sees them. */
function errorsFor(check: Record<string, unknown>): string {
  const parsed = servicePolicySchema.safeParse({
    service: 'checkout',
    trafficCycle: { duration: '1h' },
    canary: { analysis: { checks: [check] } },
  });
  return parsed.success ? '' : describeZodError(parsed.error);
}

const web = (over: Record<string, unknown> = {}) => ({
  url: 'https://metrics.example.com/q?service={service}&version={version}&from={start}',
  jsonPath: '$.data.value',
  ...over,
});
const CHECK = 'canary.analysis.checks.0';

describe('checks with a web or job provider, as written in a policy', () => {
  it('accepts a web check and a job check, with their defaults', () => {
    const policy = servicePolicySchema.parse({
      service: 'checkout',
      trafficCycle: { duration: '1h' },
      canary: {
        analysis: {
          checks: [
            { name: 'api-errors', provider: { web: web() }, max: 0.01 },
            { name: 'synthetic', provider: { job: { command: ['./checkout-probe.sh'] } }, critical: true },
          ],
        },
      },
    });
    const [webCheck, jobCheck] = policy.canary.analysis.checks;
    expect(webCheck?.provider?.web).toMatchObject({ method: 'GET', headers: {}, timeout: 10_000 });
    expect(jobCheck?.provider?.job).toMatchObject({ command: ['./checkout-probe.sh'], env: [], timeout: 120_000 });
  });

  it.each([
    ['$..value', 'recursive descent ("..") is not supported (at character 2)'],
    ['$.data[?(@.x)]', 'filters ([?…]) are not supported (at character 8)'],
    ['data.value', 'expected "$" (the document) at the start'],
    ['$.data[', 'expected a quoted name, an index or "*" after "[" (at character 8)'],
  ])('refuses the jsonPath %j where it is written, at its character', (jsonPath, why) => {
    const errors = errorsFor({ name: 'api', provider: { web: web({ jsonPath }) }, max: 1 });
    expect(errors).toContain(`${CHECK}.provider.web.jsonPath: expected a JSONPath such as $.data.value: ${why}`);
  });

  it('refuses an unknown placeholder in the url or the body, naming the field and what is known', () => {
    const inUrl = errorsFor({ name: 'api', provider: { web: web({ url: 'https://m.example/q?e={env}' }) }, max: 1 });
    expect(inUrl).toContain(`${CHECK}.provider.web.url: unknown placeholder {env}: expected one of {service}`);
    const inBody = errorsFor({
      name: 'api',
      provider: { web: web({ method: 'POST', body: '{"q": "{query}"}' }) },
      max: 1,
    });
    expect(inBody).toContain(`${CHECK}.provider.web.body: unknown placeholder {query}`);
  });

  it('refuses a body on a GET', () => {
    const errors = errorsFor({ name: 'api', provider: { web: web({ body: '{}' }) }, max: 1 });
    expect(errors).toContain(`${CHECK}.provider.web.body: a GET request has no body: set method: POST`);
  });

  it.each([
    ['max', { max: 0.01 }],
    ['min', { min: 1 }],
    ['baseline', { baseline: {} }],
  ])('refuses a job check with %s: its exit status is the verdict', (field, judge) => {
    const errors = errorsFor({ name: 'probe', provider: { job: { command: ['./probe'] } }, ...judge });
    expect(errors).toContain(`${CHECK}.${field}: a job check is judged by its exit status`);
  });

  it('refuses a provider next to a Prometheus query or template: a check has one source', () => {
    for (const source of [{ query: 'sum(up)' }, { template: 'error-ratio' }]) {
      const errors = errorsFor({ name: 'api', provider: { web: web() }, max: 1, ...source });
      expect(errors).toContain(`${CHECK}.provider: "provider" replaces "template" and "query": a check has one source`);
    }
  });

  it('refuses a provider that is both web and job, or neither', () => {
    const both = errorsFor({ name: 'api', provider: { web: web(), job: { command: ['./x'] } }, max: 1 });
    expect(both).toContain(`${CHECK}.provider: expected exactly one provider: "web" or "job"`);
    expect(errorsFor({ name: 'api', provider: {}, max: 1 })).toContain(`${CHECK}.provider: expected exactly one`);
  });

  it('refuses a web check with nothing to judge it by', () => {
    expect(errorsFor({ name: 'api', provider: { web: web() } })).toContain(
      `${CHECK}.max: a check needs "max", "min" or "baseline"`,
    );
  });

  it('refuses a web or job check in a release request: only the service policy may name a URL or a command', () => {
    for (const provider of [{ web: web() }, { job: { command: ['./probe'] } }]) {
      const parsed = policyOverrideSchema.safeParse({
        canary: { analysis: { checks: [{ name: 'api', provider }] } },
        staging: { smokeChecks: [{ name: 'smoke', provider }] },
      });
      expect(parsed.success).toBe(false);
      const errors = describeZodError(parsed.error!);
      expect(errors).toContain('canary.analysis.checks.0.provider: a release request may add Prometheus checks only');
      expect(errors).toContain('staging.smokeChecks.0.provider: a release request may add Prometheus checks only');
    }
  });
});
