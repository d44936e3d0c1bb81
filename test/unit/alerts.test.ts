import fc from 'fast-check';
import { matches, parseMatcher, type Matcher } from '../../src/domain/alert-matchers';
import {
  alertmanagerWebhookSchema,
  alertRuleSchema,
  describeAlert,
  firingKey,
  judgeAlert,
  type Alert,
  type AlertRule,
  webhookAlertSchema,
} from '../../src/domain/alerts';
import { DEFAULT_METRIC_NAMES } from '../../src/domain/metric-names';
import { orgPolicySchema, servicePolicySchema } from '../../src/domain/policy';
import { resolvePolicy } from '../../src/domain/policy-resolution';
import { describeZodError } from '../../src/domain/zod-errors';
import { recordHostileRows, type HostileRow } from '../helpers/reliability-report';

const RUNS = { numRuns: 300, seed: 20261202 };
const rows: HostileRow[] = [];
afterAll(() => recordHostileRows('alert-rules', rows));

const matcher = (text: string): Matcher => {
  const m = parseMatcher(text);
  if (typeof m === 'string') throw new Error(m);
  return m;
};

const ctx = { service: 'checkout', version: '2.0.0', labels: DEFAULT_METRIC_NAMES.labels };
const alert = (labels: Record<string, string>): Alert => ({
  fingerprint: 'f1',
  status: 'firing',
  labels: { alertname: 'TollgateErrorRatioHigh', service: 'checkout', version: '2.0.0', track: 'canary', ...labels },
  annotations: { summary: 'errors' },
  startsAt: '2026-01-01T00:00:00.123456789Z',
});
const rule = (over: Partial<AlertRule>): AlertRule =>
  alertRuleSchema.parse({ name: 'r', matchers: ['alertname="TollgateErrorRatioHigh"'], action: 'rollback', ...over });

describe('alert matchers (Alertmanager syntax, no backtracking)', () => {
  it.each([
    ['severity="critical"', { severity: 'critical' }, true],
    ['severity="critical"', { severity: 'critical2' }, false],
    ['severity!="critical"', { severity: 'page' }, true],
    ['severity!="critical"', {}, true],
    ['severity=""', {}, true],
    ['severity=~"critical|page"', { severity: 'page' }, true],
    ['severity=~"critical|page"', { severity: 'pager' }, false],
    ['alertname=~"Tollgate.*High"', { alertname: 'TollgateLatencyHigh' }, true],
    ['alertname=~"Tollgate.*High"', { alertname: 'TollgateLatencyHighish' }, false],
    ['alertname=~"Tollgate.+"', { alertname: 'Tollgate' }, false],
    ['alertname!~"Watchdog|Info.*"', { alertname: 'InfoInhibitor' }, false],
    ['version=~"1\\.2\\..*"', { version: '1.2.0' }, true],
    ['version=~"1\\.2\\..*"', { version: '1x2.0' }, false],
    ['team="a \\"quoted\\" name"', { team: 'a "quoted" name' }, true],
  ])('%s on %j → %s', (text, labels, expected) => {
    expect(matches(matcher(text), labels)).toBe(expected);
  });

  it.each([
    ['severity', 'expected label="value"'],
    ['severity=critical', 'expected label="value"'],
    ['1abc="x"', 'expected label="value"'],
    ['a=~"(a+)+"', '"(" is not supported'],
    ['a=~"a{1,3}"', '"{" is not supported'],
    ['a=~"\\d+"', '"\\d" is not supported'],
    ['a=~"x\\"', 'expected label="value"'],
  ])('refuses %s, saying why', (text, why) => {
    expect(parseMatcher(text)).toEqual(expect.stringContaining(why));
  });

  it('matches in bounded time on hostile labels: a pattern of stars against a long near-miss', () => {
    const m = matcher(`a=~"${'.*a'.repeat(40)}b"`);
    const started = process.hrtime.bigint();
    expect(matches(m, { a: 'a'.repeat(1024) })).toBe(false);
    // Backtracking would take years here; the wildcard walk is pattern × value at worst.
    expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(500);
  });

  it('never throws, for any matcher text and any labels', () => {
    let thrown = 0;
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.dictionary(fc.string(), fc.string()), (text, labels) => {
        try {
          const m = parseMatcher(text);
          if (typeof m !== 'string') matches(m, labels);
        } catch {
          thrown++;
        }
      }),
      RUNS,
    );
    rows.push({
      class: 'alert matchers: any text as a matcher, any labels',
      cases: RUNS.numRuns,
      jams: thrown,
      bypasses: 0,
      loosenings: 0,
      seed: RUNS.seed,
      file: 'test/unit/alerts.test.ts',
    });
    expect(thrown).toBe(0);
  });
});

describe('judging an alert', () => {
  it('rolls back a known error on the canary, and the strongest matching rule wins', () => {
    const rules = [rule({ name: 'show-all', matchers: ['alertname=~".*"'], action: 'show' }), rule({ name: 'errors' })];
    expect(judgeAlert(alert({}), rules, ctx)).toEqual({ action: 'rollback', track: 'canary', rule: 'errors' });
    expect(judgeAlert(alert({ alertname: 'Other' }), rules, ctx)).toEqual({
      action: 'show',
      track: 'canary',
      rule: 'show-all',
    });
    expect(judgeAlert(alert({ alertname: 'Other' }), [], ctx)).toEqual({ action: 'show', track: 'canary' });
  });

  it('leaves stable and untracked alerts to rules that list the stable track', () => {
    const rules = [rule({ name: 'errors' })];
    expect(judgeAlert(alert({ track: 'stable' }), rules, ctx).action).toBe('show');
    const { track: _t, ...untracked } = alert({}).labels;
    expect(judgeAlert({ ...alert({}), labels: untracked }, rules, ctx)).toMatchObject({
      action: 'show',
      track: 'stable',
    });
    expect(judgeAlert(alert({ track: 'stable' }), [rule({ tracks: ['stable'] })], ctx).action).toBe('rollback');
  });

  it("ignores another service's alerts and another version's canary", () => {
    const rules = [rule({})];
    expect(judgeAlert(alert({ service: 'payments' }), rules, ctx).action).toBe('ignore');
    expect(judgeAlert(alert({ version: '1.9.0' }), rules, ctx).action).toBe('ignore');
    const { service: _s, ...noService } = alert({}).labels;
    expect(judgeAlert({ ...alert({}), labels: noService }, rules, ctx).action).toBe('ignore');
  });

  it("reads the org's label names", () => {
    const labels = { ...DEFAULT_METRIC_NAMES.labels, service: 'app', track: 'deployment_track' };
    const judged = judgeAlert(
      alert({ app: 'checkout', service: 'wrong', deployment_track: 'canary', track: 'stable' }),
      [rule({})],
      { ...ctx, labels },
    );
    expect(judged).toMatchObject({ action: 'rollback', track: 'canary' });
  });

  it('never rolls back what no rollback rule on its track matches (property)', () => {
    let widened = 0;
    const track = fc.constantFrom('canary', 'stable', 'staging', 'production', 'x');
    fc.assert(
      fc.property(track, fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })), (t, extra) => {
        const judged = judgeAlert(alert({ ...extra, track: t }), [rule({ tracks: ['canary'] })], ctx);
        const canaryError =
          (extra.track ?? t) === 'canary' &&
          (extra.alertname ?? 'TollgateErrorRatioHigh') === 'TollgateErrorRatioHigh' &&
          (extra.service ?? 'checkout') === 'checkout' &&
          (extra.version ?? '2.0.0') === '2.0.0';
        if (judged.action === 'rollback' && !canaryError) widened++;
      }),
      RUNS,
    );
    rows.push({
      class: 'alert labels: only a rollback rule on the alert’s own track rolls back',
      cases: RUNS.numRuns,
      jams: 0,
      bypasses: 0,
      loosenings: widened,
      seed: RUNS.seed,
      file: 'test/unit/alerts.test.ts',
    });
    expect(widened).toBe(0);
  });

  it('keys a firing by fingerprint and start, and describes it on one printable line', () => {
    expect(firingKey(alert({}))).toBe('f1@2026-01-01T00:00:00.123Z');
    const shown = describeAlert(alert({ summary: 'x' }), 'canary');
    expect(shown).toBe(
      'alert TollgateErrorRatioHigh on the canary: errors {service="checkout", version="2.0.0", track="canary", summary="x"}',
    );
    const hostile = describeAlert({ ...alert({}), annotations: { summary: 'a\nforged line\u001b[2J' } }, 'canary');
    // eslint-disable-next-line no-control-regex
    expect(hostile).not.toMatch(/[\n\u001b]/);
  });
});

describe('alert rules in policies', () => {
  const service = (rules: unknown) =>
    servicePolicySchema.safeParse({ service: 'checkout', trafficCycle: { duration: '1h' }, alerts: { rules } });

  it.each([
    [[{ name: 'a', matchers: ['severity=critical'], action: 'rollback' }], 'alerts.rules.0.matchers.0'],
    [[{ name: 'a', matchers: [], action: 'rollback' }], 'alerts.rules.0.matchers'],
    [[{ name: 'a', matchers: ['a="b"'], action: 'page' }], 'alerts.rules.0.action'],
    [[{ name: 'org.x', matchers: ['a="b"'], action: 'show' }], 'alerts.rules.0.name'],
    [[{ name: 'a', matchers: ['a="b"'], action: 'show', tracks: ['production'] }], 'alerts.rules.0.tracks.0'],
    [
      [
        { name: 'a', matchers: ['a="b"'], action: 'show' },
        { name: 'a', matchers: ['a="c"'], action: 'show' },
      ],
      'alerts.rules.1.name',
    ],
  ])('refuses %j naming %s', (rules, field) => {
    const parsed = service(rules);
    expect(parsed.success).toBe(false);
    if (!parsed.success) expect(describeZodError(parsed.error)).toContain(field);
  });

  it("adds the org's critical-canary rule when the org asks for it, and only then", () => {
    const svc = servicePolicySchema.parse({ service: 'checkout', trafficCycle: { duration: '1h' } });
    const sources = { org: 'org.yaml', service: 'checkout.yaml' };
    const lax = orgPolicySchema.parse({ minimums: { analysisChecks: 0 } });
    expect(resolvePolicy(lax, svc, undefined, sources).alerts.rules).toEqual([]);
    const strict = orgPolicySchema.parse({ minimums: { analysisChecks: 0, criticalCanaryAlertsRollBack: true } });
    expect(resolvePolicy(strict, svc, undefined, sources).alerts.rules).toEqual([
      { name: 'org.critical-canary', matchers: ['severity="critical"'], action: 'rollback', tracks: ['canary'] },
    ]);
  });

  it('reads an Alertmanager webhook, nanosecond timestamps included, and refuses another version', () => {
    const body = {
      version: '4',
      groupKey: '{}:{alertname="X"}',
      truncatedAlerts: 0,
      status: 'firing',
      receiver: 'tollgate',
      groupLabels: {},
      commonLabels: {},
      commonAnnotations: {},
      externalURL: 'http://127.0.0.1:9093',
      alerts: [
        {
          ...alert({}),
          endsAt: '0001-01-01T00:00:00Z',
          generatorURL: 'http://127.0.0.1:9090/graph',
          fingerprint: 'a1b2c3d4e5f60718',
        },
      ],
    };
    const [first] = alertmanagerWebhookSchema.parse(body).alerts;
    expect(webhookAlertSchema.parse(first).fingerprint).toBe('a1b2c3d4e5f60718');
    const old = alertmanagerWebhookSchema.safeParse({ ...body, version: '3' });
    expect(old.success).toBe(false);
  });
});
