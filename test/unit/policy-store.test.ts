import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PolicyFileError, PolicyStore } from '../../src/config/policies';
import { orgPolicySchema } from '../../src/domain/policy';

let dir: string;
let store: PolicyStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tollgate-policies-'));
  await mkdir(join(dir, 'services'));
  store = new PolicyStore(dir);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const writeOrg = (text: string) => writeFile(join(dir, 'org.yaml'), text);
const writeService = (name: string, text: string) => writeFile(join(dir, 'services', `${name}.yaml`), text);

/** The PolicyFileError message `promise` rejects with. */
async function failure(promise: Promise<unknown>): Promise<string> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PolicyFileError);
  return (err as PolicyFileError).message;
}

const CHECKOUT = `
service: checkout
trafficCycle:
  duration: 24h
  minCanaryRequests: 500
  peakWindows:
    - name: lunch
      days: [mon, fri]
      start: 12:00
      end: 14:00
canary:
  analysis:
    interval: 30s
    checks:
      - name: errors
        template: error-ratio
        max: 0.01
        critical: true
production:
  waves:
    - percent: 25
      bake: 1h
    - percent: 100
windows:
  freezes:
    - from: 2026-12-20T00:00:00Z
      to: 2026-12-27T00:00:00Z
      reason: year end
`;

describe('PolicyStore paths', () => {
  it('reads org.yaml and services/<service>.yaml under its directory', () => {
    expect(store.orgPath()).toBe(join(dir, 'org.yaml'));
    expect(store.servicePath('checkout')).toBe(join(dir, 'services', 'checkout.yaml'));
  });
});

describe('PolicyStore.org', () => {
  it('parses the org file, durations included', async () => {
    await writeOrg(
      'trafficCycle:\n  minDuration: 1d\n  requirePeakWindow: true\nminimums:\n  maxAnalysisInterval: 5m\n',
    );
    const org = await store.org();
    expect(org.trafficCycle).toEqual({ minDuration: 86_400_000, minCanaryRequests: 0, requirePeakWindow: true });
    expect(org.minimums.maxAnalysisInterval).toBe(300_000);
    expect(org.minimums.analysisChecks).toBe(1);
  });

  it('takes an empty file as all defaults', async () => {
    await writeOrg('');
    // What the defaults are is pinned in malformed-input.test.ts ("an empty org policy").
    expect(await store.org()).toEqual(orgPolicySchema.parse({}));
  });

  it('names the missing file', async () => {
    expect(await failure(store.org())).toBe(`no org policy at ${join(dir, 'org.yaml')}`);
  });

  it('names the file and the line of invalid YAML', async () => {
    await writeOrg('trafficCycle: [oops\n');
    expect(await failure(store.org())).toMatch(
      new RegExp(`^${escape(join(dir, 'org.yaml'))} is not valid YAML: .*line \\d+, column \\d+`),
    );
  });

  it('names the file and the field of an invalid value (YAML 1.2: "yes" is not a boolean)', async () => {
    await writeOrg('minimums:\n  fourEyes: yes\n');
    expect(await failure(store.org())).toBe(
      `${join(dir, 'org.yaml')}: minimums.fourEyes: Invalid input: expected boolean, received string`,
    );
  });

  it('names an unknown field', async () => {
    await writeOrg('minimums:\n  analysisCheck: 2\n');
    expect(await failure(store.org())).toBe(`${join(dir, 'org.yaml')}: minimums: Unrecognized key: "analysisCheck"`);
  });

  it('names a bad duration', async () => {
    await writeOrg('trafficCycle:\n  minDuration: a week\n');
    expect(await failure(store.org())).toContain('org.yaml: trafficCycle.minDuration: expected a duration');
  });

  it('refuses a file that is not a mapping', async () => {
    await writeOrg('- a\n- b\n');
    expect(await failure(store.org())).toBe(
      `${join(dir, 'org.yaml')}: (input): Invalid input: expected object, received array`,
    );
  });

  it('reads the file again on every call', async () => {
    await writeOrg('minimums:\n  analysisChecks: 2\n');
    expect((await store.org()).minimums.analysisChecks).toBe(2);
    await writeOrg('minimums:\n  analysisChecks: 3\n');
    expect((await store.org()).minimums.analysisChecks).toBe(3);
  });
});

describe('PolicyStore.service', () => {
  it('parses a service file, with unquoted HH:MM times read as text', async () => {
    await writeService('checkout', CHECKOUT);
    const policy = await store.service('checkout');
    expect(policy.service).toBe('checkout');
    expect(policy.trafficCycle).toEqual({
      duration: 86_400_000,
      minCanaryRequests: 500,
      peakWindows: [{ name: 'lunch', days: ['mon', 'fri'], start: '12:00', end: '14:00' }],
    });
    expect(policy.canary.analysis.interval).toBe(30_000);
    expect(policy.canary.analysis.checks).toEqual([
      { name: 'errors', template: 'error-ratio', max: 0.01, critical: true },
    ]);
    expect(policy.production).toEqual({
      approval: true,
      waves: [
        { percent: 25, bake: 3_600_000 },
        { percent: 100, bake: 0 },
      ],
    });
    expect(policy.windows.freezes).toEqual([
      { from: '2026-12-20T00:00:00Z', to: '2026-12-27T00:00:00Z', reason: 'year end' },
    ]);
  });

  it('names the service and the missing file', async () => {
    expect(await failure(store.service('payments'))).toBe(
      `no policy for service "payments" at ${join(dir, 'services', 'payments.yaml')}`,
    );
  });

  it('names a file that cannot be read, with the error code', async () => {
    await mkdir(join(dir, 'services', 'odd.yaml'));
    expect(await failure(store.service('odd'))).toBe(`cannot read ${join(dir, 'services', 'odd.yaml')}: EISDIR`);
  });

  it('refuses a file whose service field names another service', async () => {
    await writeService('payments', CHECKOUT);
    expect(await failure(store.service('payments'))).toBe(
      `${join(dir, 'services', 'payments.yaml')}: service: says "checkout", expected "payments"`,
    );
  });

  it('names the nested field of an invalid value', async () => {
    await writeService('x', 'service: x\ntrafficCycle:\n  duration: 24h\ncanary:\n  analysis:\n    failureLimit: 0\n');
    expect(await failure(store.service('x'))).toBe(
      `${join(dir, 'services', 'x.yaml')}: canary.analysis.failureLimit: Too small: expected number to be >=1`,
    );
  });

  it('names a missing required field', async () => {
    await writeService('x', 'service: x\n');
    expect(await failure(store.service('x'))).toBe(
      `${join(dir, 'services', 'x.yaml')}: trafficCycle: Invalid input: expected object, received undefined`,
    );
  });

  it('names the wave rule a file breaks', async () => {
    await writeService('x', 'service: x\ntrafficCycle:\n  duration: 1h\nproduction:\n  waves:\n    - percent: 50\n');
    expect(await failure(store.service('x'))).toContain('x.yaml: production.waves: the last wave must reach 100%');
  });

  it('refuses duplicate keys as invalid YAML', async () => {
    await writeService('x', 'service: x\nservice: y\n');
    expect(await failure(store.service('x'))).toMatch(/x\.yaml is not valid YAML: Map keys must be unique/);
  });

  it('never answers a policy for a name that climbs out of services/', async () => {
    await writeOrg('trafficCycle:\n  minDuration: 1d\n');
    await expect(store.service('../org')).rejects.toBeInstanceOf(PolicyFileError);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
