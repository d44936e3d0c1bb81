import { execFile, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import pino from 'pino';
import { createLogger, type Logger } from '../src/logger';
import { ProcessRunner } from '../src/providers/external/command-runner';
import { signatureHeaders } from '../src/providers/external/signing';
import { CommandTarget } from '../src/providers/targets/command';
import { DryRunTarget } from '../src/providers/targets/dry-run';
import { payloadEnv, stepPayload } from '../src/providers/targets/external';
import { HttpTarget } from '../src/providers/targets/http';
import type { DeployStep } from '../src/providers/targets/types';
import { startDeployApi, SYNC } from '../test/helpers/deploy-api';
import type { Goal } from './report';
import type { BenchReport, SectionOutcome } from './run';
import { num, summarize, type Summary } from './stats';

/**
 * §7: the `command` and `http` targets, the user's own deploy tool, on this machine alone (no Temporal). Per-step
 * latency of each target against the dry-run floor and against the tool's own run without Tollgate, interleaved
 * round by round so every kind sees the same machine; the worker's memory while a command floods its output; and
 * the ledger when several attempts of one step race each other.
 */

/** Steps of each fast kind (fresh keys, one service); the 202-then-poll kind waits ≥ 1 s a step, so fewer. */
const STEPS = 500;
const POLL_STEPS = 12;
const WARM_UP = 10;
/** The ledger's own cap per service (LEDGER_STEPS_MAX in src/providers/targets/external.ts): a long-lived service. */
const FULL_LEDGER = 2_000;
const FLOOD_BYTES = 200 * 1024 * 1024;
const RSS_SAMPLE_MS = 50;
/** Concurrent attempts of one step per target instance; two instances share the state dir. */
const RACERS = 8;
/** The race, with the latency tool (returning at once) and with one that takes half a second, so many times each. */
const RACES = [
  { toolSeconds: 0, trials: 5 },
  { toolSeconds: 0.5, trials: 2 },
] as const;
const SECRET = 'bench-signing-secret-0123456789';
const SECRET_ENV = 'TOLLGATE_BENCH_DEPLOY_SECRET';
const SERVICE = 'checkout';
const FULL_SERVICE = 'checkout-full';

/**
 * The bench's deploy tool: its result to TOLLGATE_RESULT. With a file named, one line per run appended to it; with
 * seconds after that, it takes that long (a deploy that does some work).
 */
const TOOL = `#!/bin/bash
set -eu
if [ $# -gt 0 ]; then printf '%s %s\\n' "$TOLLGATE_ACTION" "$TOLLGATE_KEY" >> "$1"; fi
if [ $# -gt 1 ]; then sleep "$2"; fi
printf '{"changes":["%s %s → %s"],"applied":true}\\n' "$TOLLGATE_SERVICE" "$TOLLGATE_TRACK" "$TOLLGATE_VERSION" > "$TOLLGATE_RESULT"
`;

export const LATENCY_KINDS = [
  'dryRunMemory',
  'dryRunFile',
  'spawnTrue',
  'runnerTrue',
  'spawnTool',
  'runnerTool',
  'command',
  'commandFullLedger',
  'fetch',
  'http',
] as const;
export type LatencyKind = (typeof LATENCY_KINDS)[number];

export interface FloodResult {
  name: string;
  /** What bash -c ran, and as the table shows it. */
  script: string;
  shown: string;
  bytes: number;
  wallMs: number;
  mibPerSecond: number;
  /** Lines that reached onLine (the worker log), the "… more lines not shown" notice left out. */
  delivered: number;
  /** Lines the notice says never reached it. */
  dropped: number;
  outcome: string;
  rssBeforeMiB: number;
  peakRssMiB: number;
  growthMiB: number;
  samples: number;
}

export interface RaceResult {
  /** How long the tool takes (sleeps) per run. */
  toolSeconds: number;
  calls: number;
  /** Lines the tool appended: one per run. */
  runs: number;
  applied: number;
  notApplied: number;
  failures: string[];
  wallMs: number;
}

export interface ExternalResult {
  steps: number;
  latency: Record<LatencyKind, Summary>;
  /** HttpTarget.apply against a 202, then 200 at the first poll (Retry-After 1, the poll bounds' minimum). */
  poll: Summary;
  /** Entries in the fresh service's ledger after the run. */
  ledgerEntries: number;
  floods: FloodResult[];
  race: RaceResult[];
  wallMs: number;
}

const quietLogger = (): Logger => createLogger('info', pino.destination({ dest: '/dev/null', sync: true }));

const step = (key: string, service = SERVICE): DeployStep => ({
  key,
  releaseId: key.split('/').slice(0, 2).join('/'),
  service,
  version: '1.4.2',
  stableVersion: '1.4.1',
  track: 'canary',
  canaryInstances: 2,
});

/** Spawned as ProcessRunner spawns (own process group, pipes, the step on stdin), without anything around it. */
function bareSpawn(file: string, args: string[], env: Record<string, string>, stdin: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.resume();
    child.stderr.resume();
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${file} exited with ${code}`))));
  });
}

const ok = (outcome: { kind: string }) => {
  if (outcome.kind !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(outcome)}`);
};
const applied = (receipt: { applied: boolean }) => {
  if (!receipt.applied) throw new Error('a fresh key was not applied');
};

export async function runExternalBench(options: { steps?: number; deadline: number; log?: (line: string) => void }) {
  const steps = options.steps ?? STEPS;
  const t0 = Date.now();
  const log = options.log ?? (() => undefined);
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-bench-external-'));
  const api = await startDeployApi({ secret: SECRET });
  try {
    const tool = join(dir, 'tool.sh');
    await writeFile(tool, TOOL);
    await chmod(tool, 0o755);
    const logger = quietLogger();
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const run = Date.now().toString(36);
    const keyOf = (kind: string, i: number) => `release-${SERVICE}/${run}-${kind}/step-${i}`;

    const dryMemory = new DryRunTarget({ [SERVICE]: '1.4.1' });
    const dryFile = new DryRunTarget({ [SERVICE]: '1.4.1' }, { stateDir: join(dir, 'dry-run') });
    const runner = new ProcessRunner({ runningDir: join(dir, 'runner', 'running') });
    const commandState = join(dir, 'command');
    const command = new CommandTarget({ command: [tool], stateDir: commandState, timeout: '30s' }, { logger });
    // A long-lived service: its ledger already at the cap, as ExternalTarget writes it.
    await mkdir(commandState, { recursive: true });
    const old = Array.from({ length: FULL_LEDGER }, (_, i): [string, object] => [
      `release-${FULL_SERVICE}/old-${i}/canary`,
      { version: '1.4.1', status: 'applied', at: new Date(t0 - 1000 * (FULL_LEDGER - i)).toISOString() },
    ]);
    const full = { steps: Object.fromEntries(old) };
    await writeFile(join(commandState, `${FULL_SERVICE}.ledger.json`), `${JSON.stringify(full, null, 2)}\n`);
    const http = new HttpTarget(
      { url: api.url, secretEnv: SECRET_ENV, timeout: '30s', stateDir: join(dir, 'http') },
      { logger, caller: { env: { [SECRET_ENV]: SECRET }, poll: { minMs: 1000 } } },
    );
    api.plan = (body) => (body.key.includes('-poll/') ? { kind: 'accepted', polls: 1, retryAfter: '1' } : SYNC);

    const bareEnv = (s: DeployStep, resultPath: string) => ({
      ...env,
      ...payloadEnv(stepPayload('deploy', s)),
      TOLLGATE_RESULT: resultPath,
    });
    const request = (s: DeployStep) => {
      const payload = stepPayload('deploy', s);
      return { payload: { ...payload }, env: payloadEnv(payload), key: s.key };
    };
    const bareResult = join(dir, 'bare-result.json');
    const kinds: Record<LatencyKind, (i: number) => Promise<unknown>> = {
      dryRunMemory: async (i) => applied(await dryMemory.apply(step(keyOf('dry-memory', i)))),
      dryRunFile: async (i) => applied(await dryFile.apply(step(keyOf('dry-file', i)))),
      spawnTrue: (i) => {
        const s = step(keyOf('spawn-true', i));
        return bareSpawn('/bin/true', [], bareEnv(s, bareResult), `${JSON.stringify(stepPayload('deploy', s))}\n`);
      },
      runnerTrue: async (i) =>
        ok(
          await runner.run(
            { command: ['/bin/true'], env: [], timeout: 30_000 },
            request(step(keyOf('runner-true', i))),
          ),
        ),
      spawnTool: (i) => {
        const s = step(keyOf('spawn-tool', i));
        return bareSpawn(tool, [], bareEnv(s, bareResult), `${JSON.stringify(stepPayload('deploy', s))}\n`);
      },
      runnerTool: async (i) =>
        ok(await runner.run({ command: [tool], env: [], timeout: 30_000 }, request(step(keyOf('runner-tool', i))))),
      command: async (i) => applied(await command.apply(step(keyOf('command', i)))),
      commandFullLedger: async (i) =>
        applied(await command.apply(step(keyOf('command-full', i).replace(SERVICE, FULL_SERVICE), FULL_SERVICE))),
      fetch: async (i) => {
        const s = step(keyOf('fetch', i));
        const body = Buffer.from(JSON.stringify(stepPayload('deploy', s)), 'utf8');
        const response = await fetch(api.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json',
            'idempotency-key': s.key,
            ...signatureHeaders(SECRET, body),
          },
          body,
        });
        await response.text();
        if (response.status !== 200) throw new Error(`the deploy API answered ${response.status}`);
      },
      http: async (i) => applied(await http.apply(step(keyOf('http', i)))),
    };

    const times = Object.fromEntries(LATENCY_KINDS.map((k) => [k, [] as number[]])) as Record<LatencyKind, number[]>;
    for (let i = -WARM_UP; i < steps && Date.now() < options.deadline - 60_000; i++) {
      // Each round in another order: no kind always runs right after the same one.
      const order = LATENCY_KINDS.map((_, j) => LATENCY_KINDS[(j + i + WARM_UP) % LATENCY_KINDS.length]!);
      for (const kind of order) {
        const start = performance.now();
        await kinds[kind](i + WARM_UP);
        if (i >= 0) times[kind].push(performance.now() - start);
      }
      if (i % 100 === 99) log(`external: ${i + 1} of ${steps} rounds`);
    }
    const pollTimes: number[] = [];
    for (let i = 0; i < POLL_STEPS && Date.now() < options.deadline - 40_000; i++) {
      const start = performance.now();
      applied(await http.apply(step(keyOf('http-poll', i))));
      pollTimes.push(performance.now() - start);
    }
    const polled = api.requests.filter((r) => r.method === 'GET').length;
    if (polled !== pollTimes.length) throw new Error(`expected one poll per step, the API saw ${polled}`);
    const ledger = JSON.parse(await readFile(join(commandState, `${SERVICE}.ledger.json`), 'utf8')) as {
      steps: Record<string, unknown>;
    };
    log('external: floods');
    const floods: FloodResult[] = [];
    for (const flood of FLOODS) floods.push(await floodInChild(flood.name));
    log('external: ledger race');
    const race: RaceResult[] = [];
    for (const { toolSeconds, trials } of RACES)
      for (let i = 0; i < trials; i++)
        race.push(await ledgerRace(join(dir, `race-${race.length}`), tool, toolSeconds, logger));
    return {
      steps: times.command.length,
      latency: Object.fromEntries(LATENCY_KINDS.map((k) => [k, summarize(times[k])])) as Record<LatencyKind, Summary>,
      poll: summarize(pollTimes),
      ledgerEntries: Object.keys(ledger.steps).length,
      floods,
      race,
      wallMs: Date.now() - t0,
    } satisfies ExternalResult;
  } finally {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- the flood ----

const FLOODS = [
  {
    name: 'one line of 200 MiB (no line feed)',
    script: `head -c ${FLOOD_BYTES} /dev/zero | tr '\\0' x`,
    shown: `head -c ${FLOOD_BYTES} /dev/zero | tr '\\0' x`,
  },
  {
    name: '200 MiB in 100-byte lines',
    script: `yes ${'x'.repeat(99)} | head -c ${FLOOD_BYTES}`,
    shown: `yes xxx…x | head -c ${FLOOD_BYTES}`,
  },
] as const;

/** Each flood in a fresh Node process, as a worker runs it: its RSS is the worker's, not the bench driver's. */
async function floodInChild(name: string): Promise<FloodResult> {
  const { stdout } = await promisify(execFile)(process.execPath, [__filename, 'flood', name], {
    timeout: 60_000,
    maxBuffer: 1024 * 1024,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as FloodResult;
}

const rssMiB = () => process.memoryUsage().rss / 1024 / 1024;

/** In the child: ProcessRunner runs the flood, its lines logged as ExternalTarget logs them, RSS sampled. */
async function flood(name: string): Promise<FloodResult> {
  const spec = FLOODS.find((f) => f.name === name);
  if (!spec) throw new Error(`no flood ${name}`);
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-bench-flood-'));
  try {
    const log = quietLogger().child({ target: 'command', action: 'deploy' });
    const runner = new ProcessRunner({ runningDir: join(dir, 'running') });
    let delivered = 0;
    let dropped = 0;
    const go = (script: string, key: string) =>
      runner.run(
        { command: ['/bin/bash', '-c', script], env: [], timeout: 60_000 },
        {
          payload: { action: 'deploy', key },
          env: {},
          key,
          onLine: (line, stream) => {
            const notice = /^… (\d+) more lines not shown/.exec(line);
            if (notice) dropped += Number(notice[1]);
            else delivered++;
            log.info({ stream }, line);
          },
        },
      );
    // Warm: the runner's code compiled, pipes and the logger's buffers allocated, before the baseline.
    await go(spec.script.replace(String(FLOOD_BYTES), String(1024 * 1024)), 'warm-up');
    delivered = dropped = 0;
    const rssBeforeMiB = rssMiB();
    let peak = rssBeforeMiB;
    let samples = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMiB());
      samples++;
    }, RSS_SAMPLE_MS);
    const start = performance.now();
    const outcome = await go(spec.script, 'flood');
    const wallMs = performance.now() - start;
    clearInterval(sampler);
    peak = Math.max(peak, rssMiB());
    return {
      name,
      script: spec.script,
      shown: spec.shown,
      bytes: FLOOD_BYTES,
      wallMs,
      mibPerSecond: FLOOD_BYTES / 1024 / 1024 / (wallMs / 1000),
      delivered,
      dropped,
      outcome: outcome.kind === 'ok' ? 'ok' : `${outcome.kind}: ${outcome.message}`,
      rssBeforeMiB,
      peakRssMiB: peak,
      growthMiB: peak - rssBeforeMiB,
      samples,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- the ledger race ----

/** RACERS attempts of one step from each of two targets sharing a state dir, all at once. */
async function ledgerRace(dir: string, tool: string, toolSeconds: number, logger: Logger): Promise<RaceResult> {
  const stateDir = join(dir, 'state');
  const runs = join(dir, 'runs.log');
  const command = [tool, runs, String(toolSeconds)];
  const targets = [0, 1].map(
    () => new CommandTarget({ command, stateDir, timeout: '30s' }, { logger, lockWaitMs: 30_000 }),
  );
  const s = step(`release-${SERVICE}/race/canary`);
  const start = performance.now();
  const settled = await Promise.allSettled(targets.flatMap((t) => Array.from({ length: RACERS }, () => t.apply(s))));
  const wallMs = performance.now() - start;
  const text = await readFile(runs, 'utf8').catch(() => '');
  const receipts = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  return {
    toolSeconds,
    calls: settled.length,
    runs: text.split('\n').filter((l) => l.trim() !== '').length,
    applied: receipts.filter((r) => r.applied).length,
    notApplied: receipts.filter((r) => !r.applied).length,
    failures: settled.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : [])),
    wallMs,
  };
}

// ---- the section ----

const HEADING = '## 7. Your own deploy tool: command and HTTP targets';
const GOAL_OVERHEAD_P99_MS = 50;
const GOAL_FLOOD_MIB = 64;
const ms = (x: number, digits = x < 1 ? 2 : 1) => `${num(x, digits)} ms`;
const pair = (s: Summary) => `${ms(s.p50)} / ${ms(s.p99)}`;
/** Tollgate's share: the difference of the percentiles of two interleaved kinds. */
const over = (s: Summary, own: Summary) => ({ p50: s.p50 - own.p50, p99: s.p99 - own.p99 });
const overPair = (s: Summary, own: Summary) => {
  const o = over(s, own);
  return `${ms(o.p50)} / ${ms(o.p99)}`;
};

export function externalSection(
  outcome: SectionOutcome<ExternalResult>,
  report: Pick<BenchReport, 'command' | 'startedAt' | 'quick'>,
  goals: Goal[],
  findings: string[],
): string {
  const overheadGoal = `command target: Tollgate's overhead per step ≤ ${GOAL_OVERHEAD_P99_MS} ms p99 over the tool's own run`;
  const floodGoal = `a 200 MB output flood costs ≤ ${GOAL_FLOOD_MIB} MiB of worker memory`;
  const r = outcome.result;
  if (!r) {
    goals.push({ goal: overheadGoal, measured: 'n/a', met: undefined });
    goals.push({ goal: floodGoal, measured: 'n/a', met: undefined });
    return `${HEADING}\n\n_The external-target bench did not complete: ${outcome.error ?? 'no result'}_\n`;
  }
  const l = r.latency;
  const fresh = over(l.command, l.spawnTool);
  const full = over(l.commandFullLedger, l.spawnTool);
  const worst = Math.max(fresh.p99, full.p99);
  goals.push({
    goal: overheadGoal,
    measured:
      `p99 ${ms(fresh.p99)} over the tool's ${ms(l.spawnTool.p99)} (p50 ${ms(fresh.p50)}); ` +
      `${ms(full.p99)} (p50 ${ms(full.p50)}) with the ledger at its ${num(FULL_LEDGER)}-key cap (n = ${num(r.steps)} each)`,
    met: worst <= GOAL_OVERHEAD_P99_MS,
  });
  const growth = Math.max(...r.floods.map((f) => f.growthMiB));
  goals.push({
    goal: floodGoal,
    measured: r.floods
      .map((f) => `${num(f.growthMiB, 1)} MiB peak RSS growth for ${f.name} (${num(f.mibPerSecond)} MiB/s)`)
      .join('; '),
    met: r.floods.length > 0 && r.floods.every((f) => f.outcome === 'ok') && growth <= GOAL_FLOOD_MIB,
  });
  const ledgerShare = over(l.command, l.runnerTool);
  findings.push(
    `- **A command step costs Tollgate ${ms(fresh.p50)} p50, ${ms(fresh.p99)} p99 on top of the tool's own run** ` +
      `(${pair(l.spawnTool)} for a bash tool spawned bare; ${pair(l.command)} through the command target): ` +
      `the runner's share (temp dir, result file, running record) is ${overPair(l.runnerTool, l.spawnTool)}, the ledger's ` +
      `(two locked read-modify-writes of \`<service>.ledger.json\`) ${ms(ledgerShare.p50)} / ${ms(ledgerShare.p99)}, ` +
      `${overPair(l.commandFullLedger, l.runnerTool)} once the ledger holds its ${num(FULL_LEDGER)} keys. An HTTP step ` +
      `answered at once costs ${overPair(l.http, l.fetch)} over a bare signed fetch; one answered 202 costs the ` +
      `Retry-After wait (≥ 1 s) and little else (${pair(r.poll)}, n = ${num(r.poll.n)}).`,
  );
  const quick = r.race.filter((t) => t.toolSeconds === 0);
  const slow = r.race.filter((t) => t.toolSeconds > 0);
  const runsOf = (trials: RaceResult[]) => trials.map((t) => num(t.runs)).join(', ');
  const killed = (t: RaceResult) => t.failures.filter((f) => f.includes('SIGKILL')).length;
  const once = r.race.length > 0 && r.race.every((t) => t.runs === 1);
  const raceFigures =
    `a tool returning at once: ${runsOf(quick)} of ${num(RACERS * 2)}; one taking ${num(slow[0]?.toolSeconds ?? NaN, 1)} s: ` +
    `${runsOf(slow)} of ${num(RACERS * 2)} (${slow.map((t) => num(t.failures.length)).join(', ')} attempts failed)`;
  goals.push({
    goal: `ledger: ${num(RACERS * 2)} concurrent attempts of one step, from two targets sharing a state dir, run the tool once`,
    measured: `runs of the tool per trial — ${raceFigures}`,
    met: once,
  });
  findings.push(
    once
      ? `- **The ledger holds under a race**: ${num(RACERS * 2)} concurrent attempts of one step from two targets ` +
          `sharing a state dir ran the tool once in every trial (${raceFigures}).`
      : `- **The ledger stops a step that has finished from running again, not one still running**: ` +
          `${num(RACERS * 2)} concurrent attempts of one step from two targets sharing a state dir ran a tool returning ` +
          `at once ${runsOf(quick)} of ${num(RACERS * 2)} times (the first attempt often finishes before the others get ` +
          `the lock), and one taking ${num(slow[0]?.toolSeconds ?? NaN, 1)} s ${runsOf(slow)} of ${num(RACERS * 2)} times, ` +
          `${slow.map(killed).join(', ')} of the attempts failing "killed by SIGKILL": an entry still \`started\` reads ` +
          'as an attempt that died, so each newcomer runs the step again, and its runner first kills the process group ' +
          'the running attempt recorded. Under Temporal only an attempt that outlived its timeout overlaps its retry ' +
          "(README's one case the ledger cannot cover); two workers handed one step key any other way both deploy it.",
  );
  const rows: Array<[string, string, Summary, string]> = [
    ['dry-run target, in memory', '`DryRunTarget.apply`, no state dir', l.dryRunMemory, '—'],
    [
      'dry-run target, state dir',
      '`DryRunTarget.apply`: one locked read-modify-write of its state file',
      l.dryRunFile,
      '—',
    ],
    [
      '`/bin/true`, spawned bare',
      '`spawn` as the runner spawns (own group, pipes, the step on stdin), until it exits',
      l.spawnTrue,
      '—',
    ],
    [
      '`/bin/true` through `ProcessRunner`',
      '`ProcessRunner.run`: + temp dir, result file, running record, output lines',
      l.runnerTrue,
      overPair(l.runnerTrue, l.spawnTrue),
    ],
    [
      "the tool, spawned bare (the tool's own run)",
      'the bash tool writing its JSON result, as `/bin/true` above',
      l.spawnTool,
      '—',
    ],
    [
      'the tool through `ProcessRunner`',
      'as `/bin/true` through it',
      l.runnerTool,
      overPair(l.runnerTool, l.spawnTool),
    ],
    [
      '**command target**',
      '`CommandTarget.apply`: ledger, runner, result checked',
      l.command,
      `**${overPair(l.command, l.spawnTool)}**`,
    ],
    [
      `**command target, ledger at its ${num(FULL_LEDGER)}-key cap**`,
      'the same, for a service whose ledger is full',
      l.commandFullLedger,
      `**${overPair(l.commandFullLedger, l.spawnTool)}**`,
    ],
    [
      "signed `fetch`, bare (the API's own time)",
      'one signed POST to the loopback deploy API, answered 200',
      l.fetch,
      '—',
    ],
    [
      '**HTTP target**, answered 200',
      '`HttpTarget.apply`: ledger, signed POST, result checked',
      l.http,
      `**${overPair(l.http, l.fetch)}**`,
    ],
  ];
  const table = rows.map(
    ([name, what, s, extra]) =>
      `| ${name} | ${what} | ${num(s.n)} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.max)} | ${extra} |`,
  );
  const floodRows = r.floods.map(
    (f) =>
      `| ${f.name} | \`${f.shown.replaceAll('|', '\\|')}\` | ${num(f.wallMs / 1000, 2)} s | ${num(f.mibPerSecond)} MiB/s | ${num(f.delivered)} | ${num(f.dropped)} | ${f.outcome} | ${num(f.rssBeforeMiB)} MiB | **${num(f.growthMiB, 1)} MiB** (${num(f.samples)} samples) |`,
  );
  return `${HEADING}

_Measured by \`${report.command}\` on ${report.startedAt}${report.quick ? ' — **quick mode: figures not for keeping**' : ''}._

The \`command\` and \`http\` targets in one process on this machine, no Temporal: what a step costs Tollgate around
the user's tool. Per-step latency over ${num(r.steps)} steps of each kind, fresh keys, one service (plus
${num(FULL_LEDGER)} keys already in the ledger for the "at its cap" row), after ${WARM_UP} warm-up rounds; the kinds run
interleaved, one of each per round in a rotating order, so each sees the same machine. The tool is a 5-line bash
script writing \`{"changes": […], "applied": true}\` to \`$TOLLGATE_RESULT\`; the deploy API is
[\`test/helpers/deploy-api.ts\`](test/helpers/deploy-api.ts) on 127.0.0.1, verifying every request's signature.
The targets log to /dev/null through the product's logger. "Over the tool's own run" is the difference of the
percentiles of the step and of the tool spawned bare (or, for HTTP, a bare signed fetch), not a percentile of
differences.

| step | what it runs | n | p50 | p99 | max | over the tool's own run, p50 / p99 |
| --- | --- | --- | --- | --- | --- | --- |
${table.join('\n')}

HTTP answered 202 with \`Retry-After: 1\` (the poll bounds' minimum), then 200 at the first poll: p50 ${ms(r.poll.p50)},
p99 ${ms(r.poll.p99)}, max ${ms(r.poll.max)} (n = ${num(r.poll.n)}); the 1 s wait is the step, Tollgate's share
beyond it ${ms(r.poll.p50 - 1000)} p50. The fresh service's ledger held ${num(r.ledgerEntries)} keys at the end: every
ledger update reads and rewrites the whole file, so a step costs more as it fills, up to its cap.

**Output flood.** \`ProcessRunner\` running \`bash -c\` that prints ${num(FLOOD_BYTES / 1024 / 1024)} MiB to stdout as
fast as it can, each line to the logger as the target logs it, in a fresh Node process (a worker's, not the bench
driver's heap), its RSS sampled every ${RSS_SAMPLE_MS} ms from just before the flood (after a 1 MiB warm-up run):

| flood | command | wall | throughput | lines delivered | lines dropped | outcome | RSS before | peak RSS growth |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${floodRows.join('\n')}

A line is cut at 4 KiB and at most 10,000 lines a call reach the log; the rest are counted and drained, so the
pipe never blocks the command and memory does not grow with the output.

**The ledger under a race.** ${num(RACERS * 2)} concurrent \`CommandTarget.apply\` calls of one step key, ${RACERS}
from each of two targets sharing one state dir (two workers of one machine), the tool appending a line per run to
count them; each trial on a fresh state dir:

| tool | runs of the tool | applied | found it already done | failed | wall |
| --- | --- | --- | --- | --- | --- |
${r.race.map((t) => `| ${t.toolSeconds === 0 ? 'returns at once' : `takes ${num(t.toolSeconds, 1)} s`} | **${num(t.runs)} of ${num(t.calls)} calls** | ${num(t.applied)} | ${num(t.notApplied)} | ${num(t.failures.length)}${t.failures.length > 0 ? `: ${[...new Set(t.failures)].map((f) => `“${f}”`).join(', ')}` : ''} | ${ms(t.wallMs, 0)} |`).join('\n')}

Section wall time: ${num(r.wallMs / 1000)} s.
`;
}

/**
 * `node dist/bench/external.js`: the section alone, printed (run.ts puts it into BENCHMARKS.md).
 * `node dist/bench/external.js flood <name>`: one flood, its figures as JSON (the section runs each so).
 */
if (require.main === module) {
  const [mode, name] = process.argv.slice(2);
  const work =
    mode === 'flood'
      ? flood(name ?? '').then((result) => process.stdout.write(`${JSON.stringify(result)}\n`))
      : runExternalBench({ deadline: Date.now() + 180_000, log: (line) => process.stderr.write(`${line}\n`) }).then(
          (result) =>
            process.stdout.write(
              `${externalSection({ result }, { command: 'node dist/bench/external.js', startedAt: new Date().toISOString(), quick: false }, [], [])}\n${JSON.stringify(result)}\n`,
            ),
        );
  work.then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
