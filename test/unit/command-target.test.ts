import { ApplicationFailure } from '@temporalio/common';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { stringify } from 'yaml';
import { ConfigError } from '../../src/config/env';
import { hasUnsafeCharacters } from '../../src/domain/text';
import { createTarget } from '../../src/providers';
import { CommandTarget, callFor } from '../../src/providers/targets/command';
import { LOOKUP_TIMEOUT_MAX_MS } from '../../src/providers/targets/external';
import { ExternalStepError, ExternalTryAgainError } from '../../src/providers/targets/external';
import type { DeployStep } from '../../src/providers/targets/types';

/**
 * The command target over real processes (test/fixtures/commands/tool.sh, a user's tool that logs every run): the
 * step contract (stdin, TOLLGATE_* variables, results), what each outcome becomes for Temporal, and the ledger that
 * makes each step apply once from Tollgate's side.
 */

jest.setTimeout(30_000);

const TOOL = resolve(__dirname, '..', 'fixtures', 'commands', 'tool.sh');

let dir: string;
let runLog: string;
let logged: Array<Record<string, unknown>>;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tg-command-target-'));
  runLog = join(dir, 'runs.log');
  logged = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const logger = () =>
  pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) });

/** A command target over tool.sh, each action behaving as `behaviours` say (e.g. "deploy=exit:3"). */
const target = (behaviours: string[] = [], extra: { timeout?: number } = {}) =>
  new CommandTarget(
    { command: [TOOL, runLog, ...behaviours], stateDir: join(dir, 'state'), timeout: extra.timeout ?? 20_000 },
    { logger: logger() },
  );

/** What the tool ran, in order: "<action> <key>" per run. */
const runs = (): string[] => (existsSync(runLog) ? readFileSync(runLog, 'utf8').trim().split('\n') : []);
const payloads = () =>
  readFileSync(`${runLog}.payloads`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const envs = () => readFileSync(`${runLog}.env`, 'utf8').trim().split('\n');

const step = (over: Partial<DeployStep> = {}): DeployStep => ({
  key: 'release-checkout/run-1/canary',
  releaseId: 'release-checkout/run-1',
  service: 'checkout',
  version: '1.4.2',
  stableVersion: '1.4.1',
  track: 'canary',
  canaryInstances: 2,
  ...over,
});

async function failure(attempt: Promise<unknown>): Promise<Error & { type?: string; nonRetryable?: boolean }> {
  return attempt.then(
    () => {
      throw new Error('expected the step to fail');
    },
    (err: unknown) => err as Error & { type?: string; nonRetryable?: boolean },
  );
}

describe('the step contract', () => {
  it('a deploy gets the step on stdin and as TOLLGATE_* variables; its lines reach the worker log, labelled', async () => {
    const receipt = await target(['deploy=result:{"changes":["web-1 → 1.4.2 (canary)"]}']).apply(step());
    expect(receipt).toEqual({ key: step().key, applied: true, changes: ['web-1 → 1.4.2 (canary)'] });
    expect(payloads()).toEqual([
      {
        action: 'deploy',
        key: 'release-checkout/run-1/canary',
        releaseId: 'release-checkout/run-1',
        service: 'checkout',
        version: '1.4.2',
        stableVersion: '1.4.1',
        stage: 'canary',
        track: 'canary',
        canaryInstances: 2,
      },
    ]);
    expect(envs()).toEqual([
      [
        'TOLLGATE_ACTION=deploy',
        'TOLLGATE_CANARY_INSTANCES=2',
        'TOLLGATE_KEY=release-checkout/run-1/canary',
        'TOLLGATE_RELEASE_ID=release-checkout/run-1',
        'TOLLGATE_SERVICE=checkout',
        'TOLLGATE_STABLE_VERSION=1.4.1',
        'TOLLGATE_STAGE=canary',
        'TOLLGATE_TRACK=canary',
        'TOLLGATE_VERSION=1.4.2',
      ].join(' '),
    ]);
    expect(logged.find((l) => l.msg === 'running deploy')).toMatchObject({
      target: 'command',
      releaseId: 'release-checkout/run-1',
      service: 'checkout',
      version: '1.4.2',
      stage: 'canary',
      track: 'canary',
      action: 'deploy',
      stream: 'stdout',
    });
  });

  it('a first release has no stable version: null on stdin, TOLLGATE_STABLE_VERSION unset; a wave passes its percent', async () => {
    await target().apply(
      step({ key: 'r/wave-1', track: 'production', stableVersion: undefined, canaryInstances: undefined, percent: 50 }),
    );
    expect(payloads()[0]).toMatchObject({ stableVersion: null, track: 'production', stage: 'production', percent: 50 });
    expect(payloads()[0]).not.toHaveProperty('canaryInstances');
    expect(envs()[0]).toContain('TOLLGATE_PERCENT=50');
    expect(envs()[0]).not.toContain('TOLLGATE_STABLE_VERSION');
  });

  it('mark-stable runs with stage done, and read answers stableVersion; without an answer the ledger does', async () => {
    const silent = target();
    expect(await silent.stableVersion('checkout')).toBeUndefined();
    await silent.markStable('checkout', '1.4.2');
    expect(await silent.stableVersion('checkout')).toBe('1.4.2');
    expect(runs()).toEqual(['read read/checkout', 'mark-stable mark-stable/checkout/1.4.2', 'read read/checkout']);
    expect(payloads()[1]).toEqual({
      action: 'mark-stable',
      key: 'mark-stable/checkout/1.4.2',
      service: 'checkout',
      version: '1.4.2',
      stableVersion: null,
      stage: 'done',
      track: 'production',
    });
    expect(payloads()[2]).toEqual({
      action: 'read',
      key: 'read/checkout',
      service: 'checkout',
      stableVersion: '1.4.2',
    });

    const answering = target(['read=result:{"stableVersion":"2.0.0"}']);
    expect(await answering.stableVersion('checkout')).toBe('2.0.0');
    const none = target(['read=result:{"stableVersion":null}']);
    expect(await none.stableVersion('checkout')).toBeUndefined();
  });
});

describe('outcomes', () => {
  it('exit 75 is a plain error Temporal retries; the key stays open, so the retry runs the tool again', async () => {
    const err = await failure(target(['deploy=exit:75']).apply(step()));
    expect(err).toBeInstanceOf(ExternalTryAgainError);
    expect(err).not.toBeInstanceOf(ApplicationFailure);
    expect(err.message).toBe('deploy: exited with status 75 (try again); last lines: running deploy | failing with 75');
    expect((await target().apply(step())).applied).toBe(true);
    expect(runs()).toHaveLength(2);
  });

  it('any other status fails the step for good, with the action, why and the last lines in the message', async () => {
    const err = await failure(target(['deploy=exit:3']).apply(step()));
    expect(err).toBeInstanceOf(ExternalStepError);
    expect(err).toMatchObject({ type: 'ExternalStepFailed', nonRetryable: true });
    expect(err.message).toBe('deploy: exited with status 3; last lines: running deploy | failing with 3');
    // It may have done half of its work: the undo runs the tool's undo.
    await target().undo(step());
    expect(runs()).toEqual([`deploy ${step().key}`, `undo ${step().key}`]);
  });

  it('a timeout fails the step for good, typed apart', async () => {
    const err = await failure(target(['deploy=sleep:30'], { timeout: 1_000 }).apply(step()));
    expect(err).toMatchObject({
      type: 'ExternalStepTimedOut',
      nonRetryable: true,
      message: 'deploy: timed out after 1s; its process group was killed; last lines: running deploy',
    });
  });

  it('cancellation reaches the command: killed, and the activity sees the cancellation', async () => {
    const abort = new AbortController();
    const applying = target(['deploy=sleep:30']).apply(step(), { signal: abort.signal });
    await new Promise((r) => setTimeout(r, 300));
    const reason = new Error('cancelled by the workflow');
    abort.abort(reason);
    await expect(applying).rejects.toBe(reason);
  });
});

describe('the ledger: each step applies once from Tollgate’s side', () => {
  it('an applied key is not run again; an undo runs once; a late deploy after the undo runs nothing', async () => {
    const t = target();
    expect((await t.apply(step())).applied).toBe(true);
    expect(await target().apply(step())).toEqual({ key: step().key, applied: false, changes: [] });
    expect((await t.undo(step())).applied).toBe(true);
    expect(await target().undo(step())).toEqual({ key: step().key, applied: false, changes: [] });
    expect((await t.apply(step())).applied).toBe(false);
    expect(runs()).toEqual([`deploy ${step().key}`, `undo ${step().key}`]);
  });

  it('an undo of a step never started runs nothing', async () => {
    expect(await target().undo(step({ key: 'release-checkout/run-1/wave-1' }))).toEqual({
      key: 'release-checkout/run-1/wave-1',
      applied: false,
      changes: [],
    });
    expect(runs()).toEqual([]);
  });

  it('the tool may say it found the step already done (applied: false)', async () => {
    expect(await target(['deploy=result:{"applied":false}']).apply(step())).toEqual({
      key: step().key,
      applied: false,
      changes: [],
    });
  });

  it('a ledger that is not JSON is named, never guessed around', async () => {
    const t = target();
    await t.apply(step());
    writeFileSync(join(dir, 'state', 'checkout.ledger.json'), '{ half');
    const err = await failure(t.apply(step({ key: 'r/other' })));
    expect(err).toMatchObject({ type: 'ExternalStepRefused', nonRetryable: true });
    expect(err.message).toContain('checkout.ledger.json is not JSON');
  });
});

describe('hostile results', () => {
  it('escape sequences in changes are escaped, and a long list is cut', async () => {
    const changes = ['\u001b]8;;https://evil\u0007click', ...Array.from({ length: 60 }, (_, i) => `c${i}`)];
    const receipt = await target([`deploy=result:${JSON.stringify({ changes })}`]).apply(step());
    expect(receipt.changes).toHaveLength(51);
    expect(receipt.changes[0]).toBe('\\u{001b}]8;;https://evil\\u{0007}click');
    expect(receipt.changes.at(-1)).toBe('… and 11 more');
    expect(receipt.changes.every((c) => !hasUnsafeCharacters(c))).toBe(true);
  });

  it.each([
    ['deploy=result:{"changes":"all of them"}', 'deploy: result.changes: expected a list of strings'],
    ['deploy=result:{"applied":"yes"}', 'deploy: result.applied: expected true or false'],
    ['deploy=result:[1,2]', 'deploy: result:'],
    ['deploy=result:not json', 'deploy: TOLLGATE_RESULT is not JSON'],
  ])('a result that breaks the contract (%s) fails the step, naming the field', async (behaviour, message) => {
    const err = await failure(target([behaviour]).apply(step()));
    expect(err.nonRetryable).toBe(true);
    expect(err.message.startsWith(message)).toBe(true);
  });

  it('a read answering a stable version that is not a version is refused, named', async () => {
    const err = await failure(target(['read=result:{"stableVersion":"1.0 ; rm -rf"}']).stableVersion('checkout'));
    expect(err).toMatchObject({ type: 'ExternalResultInvalid' });
    expect(err.message).toMatch(/^read: result\.stableVersion: expected a version/);
  });
});

describe('in the targets file', () => {
  function targetsFile(content: unknown): string {
    const file = join(dir, 'targets.yaml');
    writeFileSync(file, stringify(content));
    return file;
  }

  it('a command entry serves its service, and one as default serves any service', async () => {
    const entry = { kind: 'command', command: [TOOL, runLog], stateDir: join(dir, 'state'), timeout: '30s' };
    const routing = await createTarget(targetsFile({ default: entry, services: { checkout: entry } }), logger());
    expect(routing.targetFor!('checkout').kind).toBe('command');
    expect(routing.targetFor!('payments').kind).toBe('command');
    await routing.apply(step({ service: 'payments', key: 'release-payments/run-1/canary' }));
    expect(runs()).toEqual(['deploy release-payments/run-1/canary']);
  });

  it.each([
    [{ kind: 'command', stateDir: '/tmp/x' }, 'services.checkout.command: '],
    [{ kind: 'command', command: [], stateDir: '/tmp/x' }, 'services.checkout.command: expected the executable'],
    [{ kind: 'command', command: ['./deploy.sh'] }, 'services.checkout.stateDir: '],
    [{ kind: 'command', command: ['./deploy.sh'], stateDir: '/tmp/x', shell: true }, 'services.checkout: '],
    [{ kind: 'command', command: ['./d.sh'], stateDir: '/tmp/x', timeout: '1h' }, 'services.checkout.timeout: '],
    [{ kind: 'command', command: ['./d.sh'], stateDir: '/tmp/x', env: ['A-B'] }, 'services.checkout.env.0: '],
    [
      { kind: 'command', command: ['./d.sh'], stateDir: '/tmp/x', env: ['PATH', 'TG_NOT_SET_ANYWHERE'] },
      'services.checkout.env.1: environment variable TG_NOT_SET_ANYWHERE is not set',
    ],
  ])('a bad entry is refused at start, naming it: %j', async (entry, message) => {
    const file = targetsFile({ services: { checkout: entry } });
    const err = await failure(createTarget(file, logger()));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain(message);
  });

  it('a bad default entry is named as default', async () => {
    const err = await failure(createTarget(targetsFile({ default: { kind: 'command' } }), logger()));
    expect(err.message).toContain('invalid configuration: default.command: ');
  });

  it('read and mark-stable fit in the quick activities: their timeout is capped', () => {
    const call = { command: ['x'], env: [], timeout: 5 * 60_000 };
    expect(callFor(call, 'deploy').timeout).toBe(5 * 60_000);
    expect(callFor(call, 'undo').timeout).toBe(5 * 60_000);
    expect(callFor(call, 'read').timeout).toBe(LOOKUP_TIMEOUT_MAX_MS);
    expect(callFor(call, 'mark-stable').timeout).toBe(LOOKUP_TIMEOUT_MAX_MS);
  });
});
