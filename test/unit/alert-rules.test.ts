import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import {
  ALERT_NAMES,
  AlertRuleOptionsError,
  alertRules,
  renderAlertRules,
  type PrometheusRuleFile,
} from '../../src/domain/alert-rules';
import { main } from '../../src/client/cli';
import { DEFAULT_METRIC_NAMES, metricNamesSchema } from '../../src/domain/metric-names';
import { writePolicies } from '../helpers/policies';

/** Debian's package, with Prometheus (`scripts/provision.sh` installs it). */
const PROMTOOL = process.env.TOLLGATE_PROMTOOL_BIN ?? '/usr/bin/promtool';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-alert-rules-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync(PROMTOOL, args, { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  if (run.error) throw new Error(`cannot run ${PROMTOOL} (Debian package "prometheus"): ${run.error.message}`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

function checkRules(text: string, name: string): void {
  writeFileSync(join(dir, name), text);
  const { status, output } = promtool(['check', 'rules', name]);
  // One string, so a failure shows promtool's own words.
  expect(`exit ${status}: ${output}`).toMatch(/^exit 0: [^]*SUCCESS: 4 rules found/);
}

const custom = metricNamesSchema.parse({
  requests: 'http_server_requests_total',
  requestDuration: 'http_server_request_duration_seconds',
  labels: { service: 'app', version: 'app_version', track: 'deployment_track', statusCode: 'status' },
});

describe('alertRules', () => {
  test('the rendered default rule file passes promtool check rules', () => {
    checkRules(renderAlertRules(), 'default.yml');
  });

  test("an org's own metric and label names go into the queries and templates as they are", () => {
    const text = renderAlertRules(custom, { labels: { team: 'payments' }, interval: '15s', rateWindow: '2m' });
    checkRules(text, 'custom.yml');
    const file = parse(text) as PrometheusRuleFile;
    const rules = file.groups[0]!.rules;
    expect(file.groups[0]!.interval).toBe('15s');
    expect(rules.map((r) => r.alert)).toEqual(Object.values(ALERT_NAMES));
    const errorRatio = rules[0]!;
    expect(errorRatio.expr).toBe(
      '(sum by (app, app_version, deployment_track) (rate(http_server_requests_total{status=~"5.."}[2m]))' +
        ' / sum by (app, app_version, deployment_track) (rate(http_server_requests_total[2m]))) > 0.05' +
        ' and sum by (app, app_version, deployment_track) (rate(http_server_requests_total[2m])) >= 1',
    );
    expect(rules[1]!.expr).toContain('rate(http_server_request_duration_seconds_bucket[2m])');
    expect(rules[3]!.expr).toContain('up{app!=""}');
    for (const rule of rules) {
      expect(rule.expr).not.toMatch(/\b(service|version|track|code|tollgate_demo_\w+)\b/);
      expect(rule.expr).not.toMatch(/["']app|\\"/);
      const { severity, ...labels } = rule.labels;
      expect(['critical', 'warning']).toContain(severity);
      expect(labels).toEqual({ tollgate: 'template', team: 'payments' });
      expect(rule.annotations.summary).toContain(
        '{{ $labels.app }} {{ $labels.app_version }} on the {{ $labels.deployment_track }} track',
      );
      expect(rule.annotations.description.length).toBeGreaterThan(20);
    }
  });

  test('the YAML says exactly what the object says', () => {
    expect(parse(renderAlertRules(custom))).toEqual(alertRules(custom));
  });

  test('options that could not make a valid rule file are refused, naming the option', () => {
    const refused = (options: Parameters<typeof alertRules>[1]) => () => alertRules(DEFAULT_METRIC_NAMES, options);
    expect(refused({ rateWindow: '10 s' })).toThrow(/rateWindow/);
    expect(refused({ errorRatio: { threshold: Number.NaN } })).toThrow(/errorRatio.threshold/);
    expect(refused({ errorRatio: { threshold: 2 } })).toThrow(AlertRuleOptionsError);
    expect(refused({ latency: { for: '1m; drop' } })).toThrow(/latency.for/);
    expect(refused({ labels: { severity: 'page' } })).toThrow(/set by Tollgate/);
    expect(refused({ labels: { 'bad-name': 'x' } })).toThrow(/label name/);
  });
});

describe('promtool test rules', () => {
  const canary = 'service="checkout",version="1.2.0-bad",track="canary",instance="web-9"';
  const stable = 'service="checkout",version="1.1.0",track="stable",instance="web-1"';
  const series = (labels: string, code: string, perSecond: number) => ({
    series: `tollgate_demo_http_requests_total{${labels},code="${code}"}`,
    values: `0+${perSecond}x60`,
  });
  const summary = (labels: string, what: string) => ({
    summary: `checkout ${labels} track: ${what}`,
    description: 'More than 5% of requests were answered with a 5xx over the last 10s.',
  });

  test('the canary alerts labelled as canary; healthy, stopped or redeployed stable instances do not', () => {
    checkRules(renderAlertRules(), 'rules.yml');
    const errorAlert = {
      exp_labels: {
        severity: 'critical',
        tollgate: 'template',
        service: 'checkout',
        version: '1.2.0-bad',
        track: 'canary',
      },
      exp_annotations: summary('1.2.0-bad on the canary', '20% of requests failed (5xx)'),
    };
    const tests = {
      rule_files: ['rules.yml'],
      evaluation_interval: '1s',
      tests: [
        {
          // A canary failing one request in five next to a stable fleet that fails none.
          interval: '1s',
          input_series: [series(canary, '200', 8), series(canary, '500', 2), series(stable, '200', 40)],
          alert_rule_test: [
            // Two scrapes are the least a rate needs: the canary alerts on its first full window, `for: 0s`.
            { eval_time: '1s', alertname: ALERT_NAMES.errorRatio, exp_alerts: [errorAlert] },
            { eval_time: '30s', alertname: ALERT_NAMES.errorRatio, exp_alerts: [errorAlert] },
            { eval_time: '30s', alertname: ALERT_NAMES.saturation, exp_alerts: [] },
          ],
        },
        {
          // Stable only, healthy, and a trickle of canary traffic whose one failure is no ratio yet.
          interval: '1s',
          input_series: [
            series(stable, '200', 40),
            { series: `tollgate_demo_http_requests_total{${canary},code="200"}`, values: '0+0x60' },
            { series: `tollgate_demo_http_requests_total{${canary},code="500"}`, values: '0x10 1+0x50' },
          ],
          alert_rule_test: [
            { eval_time: '15s', alertname: ALERT_NAMES.errorRatio, exp_alerts: [] },
            { eval_time: '30s', alertname: ALERT_NAMES.errorRatio, exp_alerts: [] },
          ],
        },
        {
          // A canary instance that keeps restarting; stable instances: one healthy, one stopped and dropped from
          // scraping (its last scrapes failed), one redeployed in place (one failed scrape); the worker, down.
          interval: '1s',
          input_series: [
            { series: `up{${canary},job="fleet"}`, values: '1 1 1 0 0 1 1 0 0 1 1 0 0 1 1 0 0 1 1 0 0 1 1 1 1' },
            { series: `up{${stable},job="fleet"}`, values: '1x40' },
            { series: `up{${stable.replace('web-1', 'web-2')},job="fleet"}`, values: '1x20 0x3 stale' },
            { series: `up{${stable.replace('web-1', 'web-3')},job="fleet"}`, values: '1x20 0 1x20' },
            { series: 'up{job="tollgate-worker",instance="127.0.0.1:9464"}', values: '0x40' },
          ],
          alert_rule_test: [
            { eval_time: '5s', alertname: ALERT_NAMES.crashLoop, exp_alerts: [] },
            {
              eval_time: '20s',
              alertname: ALERT_NAMES.crashLoop,
              exp_alerts: [
                {
                  exp_labels: errorAlert.exp_labels,
                  exp_annotations: {
                    summary: 'checkout 1.2.0-bad on the canary track: 1 instance(s) down or restarting',
                    description: 'Instances answered fewer than 90% of their scrapes over the last 1m.',
                  },
                },
              ],
            },
            // Had web-2 not been dropped, its failed last scrapes would keep it under 90% for a minute.
            {
              eval_time: '40s',
              alertname: ALERT_NAMES.crashLoop,
              exp_alerts: [
                {
                  exp_labels: errorAlert.exp_labels,
                  exp_annotations: {
                    summary: 'checkout 1.2.0-bad on the canary track: 1 instance(s) down or restarting',
                    description: 'Instances answered fewer than 90% of their scrapes over the last 1m.',
                  },
                },
              ],
            },
          ],
        },
        {
          // An instance that never comes up again.
          interval: '1s',
          input_series: [{ series: `up{${canary},job="fleet"}`, values: '1x5 0x30' }],
          alert_rule_test: [
            { eval_time: '8s', alertname: ALERT_NAMES.crashLoop, exp_alerts: [] },
            {
              eval_time: '25s',
              alertname: ALERT_NAMES.crashLoop,
              exp_alerts: [
                {
                  exp_labels: errorAlert.exp_labels,
                  exp_annotations: {
                    summary: 'checkout 1.2.0-bad on the canary track: 1 instance(s) down or restarting',
                    description: 'Instances answered fewer than 90% of their scrapes over the last 1m.',
                  },
                },
              ],
            },
          ],
        },
      ],
    };
    writeFileSync(join(dir, 'tests.yml'), stringify(tests));
    const { status, output } = promtool(['test', 'rules', 'tests.yml']);
    expect(`exit ${status}: ${output}`).toMatch(/^exit 0: [^]*SUCCESS/);
  });
});

describe('tollgate alert-rules', () => {
  /** The CLI in process: what it printed, and its exit code. */
  async function cli(args: string[], policyDir: string) {
    const out: string[] = [];
    const err: string[] = [];
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
    const before = process.env.TOLLGATE_POLICY_DIR;
    process.env.TOLLGATE_POLICY_DIR = policyDir;
    try {
      const code = await main(args);
      return { code, out: out.join(''), err: err.join('') };
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
      if (before === undefined) delete process.env.TOLLGATE_POLICY_DIR;
      else process.env.TOLLGATE_POLICY_DIR = before;
    }
  }

  test("prints the rule file in the org's metric names, which promtool accepts", async () => {
    const policyDir = writePolicies({ metrics: custom }, []);
    const { code, out } = await cli(['alert-rules', '--rate-window', '2m'], policyDir);
    expect(code).toBe(0);
    expect(out).toContain('rate(http_server_requests_total{status=~"5.."}[2m])');
    expect(out).toContain('by (app, app_version, deployment_track)');
    checkRules(out, 'cli.yml');
  });

  test('names what is wrong: a bad rate window, a broken org policy', async () => {
    const bad = await cli(['alert-rules', '--rate-window', 'soon'], writePolicies({}, []));
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^tollgate: --rate-window: /);
    const broken = writePolicies({ metrics: { requests: '0bad' } }, []);
    const refused = await cli(['alert-rules'], broken);
    expect(refused.code).toBe(2);
    expect(refused.err).toContain('metrics.requests');
  });
});
