import fc from 'fast-check';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { JsonPathError, parseJsonPath, selectJsonPath } from '../../src/domain/json-path';
import { servicePolicySchema } from '../../src/domain/policy';
import { releaseRequestSchema } from '../../src/domain/release';
import { SignedHttpCaller } from '../../src/providers/external/http-caller';
import { MetricsQueryError } from '../../src/providers/metrics/types';
import { WebMetrics, type WebQuery } from '../../src/providers/metrics/web';
import { ExternalStepError, ExternalTarget } from '../../src/providers/targets/external';
import type { DeployStep } from '../../src/providers/targets/types';
import { recordHostileRows, type HostileRow } from '../helpers/reliability-report';

/*
 * What a user's own tools send back is hostile too: a deploy script's result, a deploy API's answer, a metrics API's
 * body, and the hooks and checks written in policy files. Each class: nothing throws past its contract, nothing
 * shown acts on a terminal, no secret leaks, and no garbage counts as a pass.
 */

const RUNS = { numRuns: 200, seed: 20261202 };
const FILE = 'test/unit/hostile-external.property.test.ts';
const rows: HostileRow[] = [];
afterAll(() => recordHostileRows('external', rows));
const tally = (label: string, cases: number, found: Partial<Pick<HostileRow, 'jams' | 'bypasses' | 'loosenings'>>) =>
  rows.push({ class: label, cases, jams: 0, bypasses: 0, loosenings: 0, ...found, seed: RUNS.seed, file: FILE });

const ACTS_ON_TERMINAL =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/u;
const SECRET = 'sk-live-hostile-0123456789';

const attack = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.constantFrom(
    '\u001b[2J\u001b[H',
    '\u001b]8;;https://evil.example\u0007click\u001b]8;;\u0007',
    '\u009b31m',
    'ok\r\nforged: promoted',
    '\u202eevorppa',
    `token ${SECRET} echoed back`,
    '{"stableVersion": "1.0.0\\u001b[2J"}',
  ),
);
/** Any JSON, with hostile strings in it. */
const hostileJson = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  attack,
  fc.array(attack, { maxLength: 5 }),
  fc.dictionary(attack, attack),
);

const step = (key: string): DeployStep => ({
  key,
  releaseId: 'release-checkout/run',
  service: 'checkout',
  version: '2.0.0',
  stableVersion: '1.0.0',
  track: 'canary',
  canaryInstances: 1,
});

describe("hostile answers from users' own tools", () => {
  it('deploy tool results (command and http targets): a receipt of printable changes, or a step error', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'tollgate-hostile-ledger-'));
    // A tool that answers `result`; every case deploys a step of its own, so the ledger never answers for it.
    const answering = (result: unknown) =>
      new ExternalTarget(() => Promise.resolve({ kind: 'ok', result, lastLines: [], durationMs: 1 }), {
        kind: 'command',
        stateDir,
        logger: pino({ level: 'silent' }),
      });
    let cases = 0;
    let jams = 0;
    let leaks = 0;
    await fc.assert(
      fc.asyncProperty(hostileJson, async (result) => {
        cases++;
        try {
          const receipt = await answering(result).apply(step(`release-checkout/run/canary-${cases}`));
          if (receipt.changes.some((c) => ACTS_ON_TERMINAL.test(c))) leaks++;
          expect(receipt.changes.some((c) => ACTS_ON_TERMINAL.test(c))).toBe(false);
        } catch (err) {
          if (!(err instanceof ExternalStepError)) jams++;
          expect(err).toBeInstanceOf(ExternalStepError);
          expect((err as Error).message).not.toMatch(ACTS_ON_TERMINAL);
        }
      }),
      RUNS,
    );
    tally('deploy tool results, any JSON (command and http targets)', cases, { jams, loosenings: leaks });
  });

  it('deploy API answers (any status, headers and body): an outcome, printable, without the secret', async () => {
    let cases = 0;
    let jams = 0;
    let leaks = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 200, max: 599 }),
        fc.oneof(
          hostileJson.map((v) => JSON.stringify(v) ?? 'null'),
          attack,
        ),
        fc.option(fc.oneof(attack, fc.constantFrom('/status/1', 'https://evil.example/steal', '//evil.example/x'))),
        async (status, body, location) => {
          cases++;
          const headers = new Headers();
          if (location !== null) {
            try {
              headers.set('location', location);
            } catch {
              // Not a header value fetch could ever hand us.
            }
          }
          const caller = new SignedHttpCaller({
            env: { TOKEN: SECRET, HMAC: SECRET },
            fetch: () =>
              Promise.resolve(new Response(status === 204 || status === 205 ? null : body, { status, headers })),
            deadlineMs: 50,
            poll: { minMs: 1, maxMs: 1, defaultMs: 1 },
          });
          let outcome;
          try {
            outcome = await caller.call(
              {
                url: 'https://deploy.example.com/tollgate',
                secretEnv: 'HMAC',
                headers: { authorization: 'Bearer ${TOKEN}' },
                timeout: 1000,
              },
              { payload: { action: 'deploy' }, env: {}, key: `k-${cases}` },
            );
          } catch {
            jams++;
            throw new Error('call() threw');
          }
          const shown = ['message' in outcome ? outcome.message : '', ...outcome.lastLines].join('\n');
          if (ACTS_ON_TERMINAL.test(shown.replace(/\n/g, '')) || shown.includes(SECRET)) leaks++;
          expect(shown.replace(/\n/g, '')).not.toMatch(ACTS_ON_TERMINAL);
          expect(shown).not.toContain(SECRET);
        },
      ),
      RUNS,
    );
    tally('deploy API answers: any status, Location and body (http targets and hooks)', cases, {
      jams,
      loosenings: leaks,
    });
  });

  it('metrics API answers (web checks): finite samples, or an error saying why — never garbage judged', async () => {
    const web: WebQuery = {
      url: 'https://metrics.example.com/q?service={service}&track={track}',
      method: 'GET',
      headers: { authorization: 'Bearer ${TOKEN}' },
      jsonPath: '$.data[*]',
      timeout: 1000,
    };
    let cases = 0;
    let jams = 0;
    let loosenings = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 200, max: 599 }),
        fc.oneof(
          hostileJson.map((v) => JSON.stringify({ data: v })),
          hostileJson.map((v) => JSON.stringify(v) ?? ''),
          attack,
        ),
        async (status, body) => {
          cases++;
          const metrics = new WebMetrics({
            env: { TOKEN: SECRET },
            fetch: () => Promise.resolve(new Response(status === 204 || status === 205 ? null : body, { status })),
          });
          try {
            const samples = await metrics.query(web, {
              service: 'checkout',
              version: '2.0.0',
              stableVersion: '1.0.0',
              track: 'canary',
              start: '0',
              end: '60',
              startIso: '1970-01-01T00:00:00Z',
              endIso: '1970-01-01T00:01:00Z',
              window: '60',
              step: '60',
            });
            if (!samples.every(Number.isFinite) || status >= 300) loosenings++;
            expect(samples.every(Number.isFinite)).toBe(true);
            expect(status).toBeLessThan(300);
          } catch (err) {
            if (!(err instanceof MetricsQueryError)) jams++;
            expect(err).toBeInstanceOf(MetricsQueryError);
            expect((err as Error).message).not.toMatch(ACTS_ON_TERMINAL);
            expect((err as Error).message).not.toContain(SECRET);
          }
        },
      ),
      RUNS,
    );
    tally('metrics API answers: any status and body (web checks)', cases, { jams, loosenings });
  });

  it('JSONPath: any text parses or is refused with its position; any JSON is selected without throwing', () => {
    let cases = 0;
    let jams = 0;
    fc.assert(
      fc.property(
        fc.oneof(attack, fc.stringMatching(/^\$(\.[a-z*]{1,3}|\[(-?\d{1,2}|\*|'[a-z]{0,3}')\]){0,6}$/)),
        hostileJson,
        (source, document) => {
          cases++;
          try {
            const path = parseJsonPath(source);
            selectJsonPath(path, document);
          } catch (err) {
            if (!(err instanceof JsonPathError)) jams++;
            expect(err).toBeInstanceOf(JsonPathError);
          }
        },
      ),
      RUNS,
    );
    tally('JSONPath expressions and documents (web checks)', cases, { jams });
  });

  it('hooks, web and job checks: policy files never throw; a release request can never add one', () => {
    const check = fc.record({
      name: fc.constantFrom('x', 'errors'),
      provider: fc.oneof(
        hostileJson,
        fc.record({ job: fc.record({ command: fc.array(attack, { minLength: 1, maxLength: 3 }) }) }),
        fc.record({ web: fc.record({ url: attack, jsonPath: fc.constant('$.v') }) }),
      ),
      max: fc.option(fc.double(), { nil: undefined }),
    });
    const hook = fc.record({
      name: fc.oneof(attack, fc.constant('smoke')),
      at: fc.oneof(attack, fc.constantFrom('before-staging', 'after-deploy', 'after-rollback')),
      exec: fc.oneof(hostileJson, fc.record({ command: fc.array(attack, { maxLength: 3 }) })),
      http: fc.option(fc.oneof(hostileJson, fc.record({ url: attack })), { nil: undefined }),
    });
    let cases = 0;
    let jams = 0;
    let bypasses = 0;
    fc.assert(
      fc.property(fc.array(hook, { maxLength: 3 }), fc.array(check, { maxLength: 3 }), (hooks, checks) => {
        cases++;
        let request;
        try {
          servicePolicySchema.safeParse({
            service: 'checkout',
            trafficCycle: { duration: '1h' },
            hooks,
            canary: { analysis: { checks } },
          });
          request = releaseRequestSchema.safeParse({
            service: 'checkout',
            version: '2.0.0',
            initiator: 'alice',
            policy: { hooks, canary: { analysis: { checks } }, staging: { smokeChecks: checks } },
          });
        } catch {
          jams++;
          throw new Error('a schema threw');
        }
        const added = request.success ? (request.data.policy?.canary?.analysis?.checks ?? []) : [];
        if (request.success && (hooks.length > 0 || added.some((c) => c.provider))) bypasses++;
        expect(request.success && hooks.length > 0).toBe(false);
        expect(added.some((c) => c.provider)).toBe(false);
      }),
      RUNS,
    );
    tally('hooks, web and job checks in policy files and release requests', cases, { jams, bypasses });
  });
});
