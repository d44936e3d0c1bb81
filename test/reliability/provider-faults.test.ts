import { randomUUID } from 'node:crypto';
import { TollgateClient } from '../../src/client/tollgate-client';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { abortUpdate } from '../../src/domain/messages';
import type { ReleaseResult } from '../../src/domain/release';
import type { ReleaseStatus } from '../../src/domain/status';
import { STABLE } from '../helpers/fleet';
import { FLEET_ORG, fleetPolicy, writePolicies } from '../helpers/policies';
import { startPrometheus } from '../helpers/prometheus';
import { brief, canaryBaking, resultWithin, waitForStatus, type ReleaseHandle } from '../helpers/release-handle';
import {
  progress,
  releaseNext,
  reliabilityStack,
  sleep,
  spawnWorker,
  startServices,
  stopServices,
  type Proc,
  type Service,
} from './support';
import {
  ORG_WITH_CHECKS,
  fakePrometheus,
  fleetVerdict,
  noSeries,
  stepsApplied,
  closeFakePrometheuses,
  targetsFile,
  waitForLog,
  type Answer,
  type CheckInput,
  type FakePrometheus,
} from './provider-support';

/**
 * Provider faults at release level: the real worker (child process), the dev server and an HAProxy fleet of the demo
 * service are real; what misbehaves is a provider. Prometheus answering too late or answering garbage must leave the
 * canary unpromoted, paused for a human on inconclusive analysis with the reason in `status` (the product's policy:
 * missing evidence never promotes, and never rolls back on its own); an abort then rolls it back. An HAProxy whose
 * admin socket hangs (SIGSTOP) must fail the deploy with a timeout naming the socket and the command, and the
 * rollback must be retried until HAProxy answers again (SIGCONT). A canary instance that crashes mid-bake must be
 * caught by a real check on a real Prometheus and rolled back. (Prometheus down and the socket refusing are in
 * test/integration/release-real-infra.test.ts.)
 */

const FILE = 'provider-faults.test.ts';
const INTERVAL_MS = 1_000;
const INCONCLUSIVE_LIMIT = 2;
/** The worker's per-query timeout against the misbehaving Prometheus, and how late that one answers. */
const METRICS_TIMEOUT_MS = 500;
const SLOW_MS = 2_000;
/** The fleet's per-command HAProxy timeout in the hang scenario (the product default is 5 s). */
const COMMAND_MS = 2_000;

const stack = reliabilityStack('provider-faults');
afterAll(closeFakePrometheuses);

interface Ctx {
  problems: string[];
  notes: string[];
  faults: number;
  expected: ReleaseResult['outcome'];
  result?: ReleaseResult;
  twice: string[];
}

/** Runs one scenario, records its row whatever happened, then fails the test on any problem. */
async function scenario(name: string, expected: ReleaseResult['outcome'], body: (ctx: Ctx) => Promise<void>) {
  const started = Date.now();
  const ctx: Ctx = { problems: [], notes: [], faults: 0, expected, twice: [] };
  try {
    await body(ctx);
  } catch (err) {
    ctx.problems.push(`error: ${(err as Error).message}`);
  } finally {
    const seconds = Math.round((Date.now() - started) / 1000);
    progress(`${name}: ${seconds} s; ${ctx.problems.length ? `problems: ${ctx.problems.join(' | ')}` : 'ok'}`);
    stack.rows.push({
      scenario: name,
      runs: 1,
      faults: ctx.faults,
      survived: ctx.problems.length === 0 ? 1 : 0,
      wrongOutcomes: ctx.result?.outcome === expected ? 0 : 1,
      appliedTwice: ctx.twice.length,
      dataLost: ctx.result ? 0 : 1,
      seconds,
      notes: [...ctx.notes, ...(ctx.problems.length ? [`problems: ${ctx.problems.join('; ')}`] : [])].join('; '),
      file: FILE,
    });
  }
  expect(ctx.problems).toEqual([]);
}

const check = (ok: boolean, ctx: Ctx, problem: string) => void (ok || ctx.problems.push(problem));

/** A check whose query the stand-in recognises by its `probe_<kind>` metric name. */
const probe = (name: string, kind: string): CheckInput => ({
  name,
  query: `sum(probe_${kind}{service="{{service}}",track="{{track}}",version="{{version}}"})`,
  max: 1,
});

/** A release judged by `checks` every INTERVAL_MS (failure limit 2), with 1-second production waves. */
const judgedBy = (service: string, checks: CheckInput[], inconclusiveLimit = INCONCLUSIVE_LIMIT) =>
  fleetPolicy(service, {
    cycleMs: 30_000,
    analysis: { interval: `${INTERVAL_MS}ms`, failureLimit: 2, inconclusiveLimit, checks },
    waveBakeMs: 1_000,
  });

/** Notes go into RELIABILITY.md (reasons in backticks): ports, paths and generated names would change it every run. */
const scrub = (text: string) =>
  text
    .replace(/http:\/\/127\.0\.0\.1:\d+\/?/g, '<prometheus>')
    .replace(/\/tmp\/\S+\.sock/g, '<socket>')
    .replace(/be_[a-z0-9-]+/g, 'be_<service>')
    .replace(/: (sum|min)\(.*$/, ': <query>');

const reasonsNote = (st: ReleaseStatus) =>
  st.analysis.checks.map((c) => `${c.check}: \`${scrub(c.reason)}\``).join(', ');

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The paused-on-inconclusive status every bad-metrics scenario must reach, judged and noted; returns it. */
async function expectInconclusivePause(
  ctx: Ctx,
  handle: ReleaseHandle,
  reasons: Record<string, RegExp>,
): Promise<ReleaseStatus> {
  const paused = await waitForStatus(
    handle,
    (st) => st.state === 'awaiting-approval' && st.gate?.name === 'inconclusive',
    { timeoutMs: 30_000 },
    'held at the inconclusive-analysis gate',
  );
  progress(`paused: ${brief(paused)}`);
  check(paused.stage === 'canary' && paused.outcome === undefined, ctx, `paused at ${paused.stage}/${paused.outcome}`);
  check(paused.pause === undefined, ctx, `a gate, not a pause; paused by ${paused.pause?.by}`);
  check(
    new RegExp(`\\d+ inconclusive analysis rounds in a row \\(limit ${INCONCLUSIVE_LIMIT}\\)`).test(
      paused.gate?.message ?? '',
    ),
    ctx,
    `gate message: ${paused.gate?.message}`,
  );
  check(paused.analysis.failures === 0, ctx, `${paused.analysis.failures} failed rounds on missing data`);
  for (const [name, pattern] of Object.entries(reasons)) {
    const result = paused.analysis.checks.find((c) => c.check === name);
    check(result?.verdict === 'inconclusive', ctx, `${name}: verdict ${result?.verdict}`);
    check(pattern.test(result?.reason ?? ''), ctx, `${name}: reason "${result?.reason}" does not match ${pattern}`);
    check((paused.gate?.message ?? '').includes(result?.reason ?? '\0'), ctx, `gate message lacks ${name}'s reason`);
  }
  ctx.notes.push(`paused on inconclusive analysis; ${reasonsNote(paused)}`);
  return paused;
}

/** Aborts as the operator would, then judges the rollback: aborted, canary and staging undone, fleet on stable. */
async function abortAndJudge(ctx: Ctx, handle: ReleaseHandle, service: Service): Promise<void> {
  await handle.executeUpdate(abortUpdate, {
    args: [{ by: 'reliability', reason: 'no evidence; not releasing blind' }],
  });
  ctx.result = await resultWithin(handle, 40_000);
  await judgeEnd(ctx, handle, service, ['canary', 'staging']);
}

async function judgeEnd(ctx: Ctx, handle: ReleaseHandle, service: Service, undone: string[]): Promise<ReleaseStatus> {
  check(
    ctx.result?.outcome === ctx.expected,
    ctx,
    `outcome ${ctx.result?.outcome ?? 'none'}, expected ${ctx.expected}`,
  );
  check(ctx.result?.stableVersion === STABLE, ctx, `stable version ${ctx.result?.stableVersion}`);
  const final = await waitForStatus(handle, (st) => st.state === 'done', { timeoutMs: 5_000 }, 'done');
  const undoneSteps = final.rollback?.undone.map((k) => k.split('/').pop()) ?? [];
  check(undoneSteps.join() === undone.join(), ctx, `undone ${undoneSteps.join()}, expected ${undone.join()}`);
  check(final.rollback?.finishedAt !== undefined, ctx, 'rollback not finished');
  const applied = await stepsApplied(service);
  check(!applied.some((s) => s.startsWith('wave')), ctx, `production steps applied: ${applied.join()}`);
  const { fleet, twice } = await fleetVerdict(service);
  ctx.twice = twice;
  check(fleet.length === 0, ctx, `fleet: ${fleet.join(', ')}`);
  check(twice.length === 0, ctx, `applied twice: ${twice.join(', ')}`);
  return final;
}

/**
 * A fleet, a stand-in Prometheus answering with `answer`, a worker querying it with `timeoutMs`, and a release
 * started on them; all torn down by the returned stop().
 */
async function misbehavingMetricsRun(
  id: string,
  answer: (query: string) => Answer,
  checks: CheckInput[],
  timeoutMs: number,
): Promise<{ service: Service; handle: ReleaseHandle; prometheus: FakePrometheus; stop(): Promise<void> }> {
  const prometheus = await fakePrometheus(answer);
  const [service] = await startServices([`${id}-${randomUUID().slice(0, 5)}`]);
  let worker: Proc | undefined;
  try {
    const env = stack.workerEnv(`reliability-${service!.name}`, {
      targetsFile: targetsFile(stack.dir, service!),
      policyDir: writePolicies(ORG_WITH_CHECKS, [judgedBy(service!.name, checks)]),
    });
    worker = await spawnWorker(env, `worker-${id}`, {
      TOLLGATE_METRICS: 'prometheus',
      TOLLGATE_PROMETHEUS_URL: prometheus.url,
      TOLLGATE_METRICS_TIMEOUT: `${timeoutMs}ms`,
    });
    const handle = await releaseNext(await stack.server.client(), env.taskQueue, service!.name, 'provider faults');
    return {
      service: service!,
      handle,
      prometheus,
      stop: async () => {
        await worker?.stop('SIGTERM');
        await stopServices([service!]);
        await prometheus.close();
      },
    };
  } catch (err) {
    await worker?.stop('SIGKILL');
    await stopServices([service!]);
    await prometheus.close();
    throw err;
  }
}

test('Prometheus answering after the query timeout: paused on inconclusive analysis naming the timeout, never promoted; an abort rolls back', async () => {
  await scenario(
    'Prometheus slow (answers 2 s late, query timeout 0.5 s): headers late, body stalled',
    'aborted',
    async (ctx) => {
      const late = (query: string): Answer =>
        query.includes('probe_slow_body')
          ? { ...noSeries(), stallBodyMs: SLOW_MS }
          : { ...noSeries(), delayMs: SLOW_MS };
      const run = await misbehavingMetricsRun(
        'prom-slow',
        late,
        [probe('late-headers', 'slow_headers'), probe('stalled-body', 'slow_body')],
        METRICS_TIMEOUT_MS,
      );
      const { prometheus } = run;
      try {
        ctx.faults = 1;
        const timedOut = (kind: string) =>
          new RegExp(
            `^query failed: timed out after ${METRICS_TIMEOUT_MS} ms at ${escape(prometheus.url)}/: sum\\(probe_${kind}\\{`,
          );
        await expectInconclusivePause(ctx, run.handle, {
          'late-headers': timedOut('slow_headers'),
          'stalled-body': timedOut('slow_body'),
        });
        const lateAnswers =
          (prometheus.seen.get('probe_slow_headers') ?? 0) + (prometheus.seen.get('probe_slow_body') ?? 0);
        check(lateAnswers >= 2 * INCONCLUSIVE_LIMIT, ctx, `only ${lateAnswers} slow queries reached the stand-in`);
        await abortAndJudge(ctx, run.handle, run.service);
      } finally {
        await run.stop();
      }
    },
  );
}, 80_000);

test('Prometheus answering garbage (not JSON, wrong shape, NaN): paused on inconclusive analysis saying what was wrong; an abort rolls back', async () => {
  await scenario('Prometheus answering garbage: HTML, JSON of the wrong shape, NaN samples', 'aborted', async (ctx) => {
    const garbage = (query: string): Answer => {
      if (query.includes('probe_html')) {
        return { contentType: 'text/html', body: '<html><body>502 Bad Gateway (nginx)</body></html>' };
      }
      if (query.includes('probe_shape')) {
        return { body: JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: { oops: 1 } } }) };
      }
      if (query.includes('probe_nan')) {
        const values = [[Date.now() / 1000, 'NaN']];
        return { body: JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: [{ values }] } }) };
      }
      return noSeries();
    };
    // The default timeout: garbage answers come at once, and must read as garbage, never as a timeout.
    const run = await misbehavingMetricsRun(
      'prom-garbage',
      garbage,
      [probe('html', 'html'), probe('shape', 'shape'), probe('nan', 'nan')],
      5_000,
    );
    try {
      ctx.faults = 3;
      const origin = escape(run.prometheus.url);
      await expectInconclusivePause(ctx, run.handle, {
        html: new RegExp(
          `^query failed: malformed response from ${origin} \\(not JSON\\): <html>.*: sum\\(probe_html\\{`,
        ),
        shape: new RegExp(
          `^query failed: malformed response from ${origin} at data\\.result: .*expected array.*: sum\\(probe_shape\\{`,
        ),
        nan: /^no data$/,
      });
      await abortAndJudge(ctx, run.handle, run.service);
    } finally {
      await run.stop();
    }
  });
}, 80_000);

test('HAProxy admin socket hanging (SIGSTOP): the deploy times out naming socket and command, the rollback is retried until HAProxy answers again', async () => {
  await scenario(
    'HAProxy admin socket hanging (SIGSTOP) from the canary bake until 2 undo attempts failed',
    'aborted',
    async (ctx) => {
      const [service] = await startServices([`hang-${randomUUID().slice(0, 5)}`]);
      const haproxy = service!.fleet.haproxyPid;
      let frozen = false;
      let worker: Proc | undefined;
      try {
        const env = stack.workerEnv(`reliability-${service!.name}`, {
          targetsFile: targetsFile(stack.dir, service!, {
            timeouts: { ...service!.fleet.target.options.timeouts, commandMs: COMMAND_MS },
          }),
          policyDir: writePolicies(FLEET_ORG, [fleetPolicy(service!.name, { cycleMs: 3_000 })]),
        });
        worker = await spawnWorker(env, 'worker-hang');
        const handle = await releaseNext(await stack.server.client(), env.taskQueue, service!.name, 'provider faults');
        await waitForStatus(handle, canaryBaking, { timeoutMs: 30_000 }, 'canary bake');

        process.kill(haproxy, 'SIGSTOP');
        frozen = true;
        ctx.faults = 1;
        progress(`HAProxy ${haproxy} stopped (SIGSTOP) in the canary bake`);

        // The bake needs no HAProxy; the first production wave does, and its deploy must time out, clearly.
        const socketTimeout = (command: string) =>
          new RegExp(
            `no answer from HAProxy admin socket ${escape(service!.fleet.socketPath)} to "${command}" within ${COMMAND_MS} ms`,
          );
        const showStat = `show stat ${service!.fleet.backend} 4 -1`;
        // What `tollgate status` shows while Temporal retries the deploy: the attempt and the error.
        const tollgate = new TollgateClient(await stack.server.client(), env.taskQueue);
        let deployError: string | undefined;
        for (let i = 0; i < 100 && deployError === undefined; i++) {
          const st = await tollgate.status(service!.name).catch(() => undefined);
          deployError = st?.retrying?.find((r) => r.activity === 'deploy')?.lastError;
          if (deployError === undefined) await sleep(200);
        }
        check(
          socketTimeout(showStat).test(deployError ?? ''),
          ctx,
          `deploy error: ${deployError ?? 'none within 20 s'}`,
        );
        const deploying = await waitForStatus(handle, () => true, { timeoutMs: 5_000 }, 'any');
        check(
          deploying.stage === 'production' && deploying.state === 'deploying',
          ctx,
          `while the deploy fails: ${deploying.stage}/${deploying.state}`,
        );
        ctx.notes.push(`wave-1 deploy failed: \`${scrub(deployError ?? '')}\``);

        // The operator aborts; undoing the canary needs HAProxy, so it fails until HAProxy runs again.
        await handle.executeUpdate(abortUpdate, { args: [{ by: 'reliability', reason: 'HAProxy is not answering' }] });
        const failing = await waitForStatus(
          handle,
          (st) => (st.rollback?.failedAttempts ?? 0) >= 2,
          { timeoutMs: 40_000 },
          '2 failed undo attempts',
        );
        progress(`rollback failing: ${brief(failing)}`);
        check(failing.state === 'rolling-back', ctx, `state ${failing.state} while the undo fails`);
        check(
          /\/canary: /.test(failing.rollback?.lastError ?? '') &&
            socketTimeout(showStat).test(failing.rollback?.lastError ?? ''),
          ctx,
          `rollback lastError: ${failing.rollback?.lastError}`,
        );
        process.kill(haproxy, 'SIGCONT');
        frozen = false;
        progress(`HAProxy ${haproxy} continued (SIGCONT)`);

        ctx.result = await resultWithin(handle, 60_000);
        const final = await judgeEnd(ctx, handle, service!, ['wave-1', 'canary', 'staging']);
        ctx.notes.push(
          `status while frozen: rolling-back, ${failing.rollback?.failedAttempts} failed undo attempts; ` +
            `rolled back after ${final.rollback?.failedAttempts} failed attempts once HAProxy answered`,
        );
      } finally {
        if (frozen) process.kill(haproxy, 'SIGCONT');
        await worker?.stop('SIGTERM');
        await stopServices([service!]);
      }
    },
  );
}, 85_000);

test('a canary instance SIGKILLed mid-bake: the up check on a real Prometheus fails it, and the rollback puts the fleet back on stable', async () => {
  await scenario(
    'demo canary instance SIGKILLed mid-bake, judged by `up` on a real Prometheus',
    'rolled_back',
    async (ctx) => {
      // The fleet and Prometheus start side by side; the file SD list exists (empty) before Prometheus reads it.
      const name = `crash-${randomUUID().slice(0, 5)}`;
      const fileSdPath = join(stack.dir, `${name}.sd.json`);
      writeFileSync(fileSdPath, '[]\n');
      const [services, started] = await Promise.allSettled([
        startServices([name]),
        startPrometheus({ scrapeIntervalSeconds: 1, fileSdPath }),
      ]);
      const service = services.status === 'fulfilled' ? services.value[0] : undefined;
      const prometheus = started.status === 'fulfilled' ? started.value : undefined;
      let worker: Proc | undefined;
      try {
        if (services.status === 'rejected') throw services.reason;
        if (!service || !prometheus) throw started.status === 'rejected' ? started.reason : new Error('no fleet');
        const canaryUp: CheckInput = {
          name: 'canary-up',
          query: 'min(up{service="{{service}}",track="{{track}}",version="{{version}}"})',
          min: 1,
          critical: true,
        };
        const env = stack.workerEnv(`reliability-${service.name}`, {
          targetsFile: targetsFile(stack.dir, service, { fileSdPath }),
          policyDir: writePolicies(ORG_WITH_CHECKS, [judgedBy(service.name, [canaryUp], 5)]),
        });
        worker = await spawnWorker(env, 'worker-crash', {
          TOLLGATE_METRICS: 'prometheus',
          TOLLGATE_PROMETHEUS_URL: prometheus.url,
        });
        const handle = await releaseNext(await stack.server.client(), env.taskQueue, service.name, 'provider faults');
        // The check must first see the canary up: it judges the real instance, not the absence of data. Healthy rounds
        // reach `status` only when their stretch ends, so they are read from the worker's log as they happen.
        const passed = await waitForLog(
          join(stack.dir, 'worker-crash.log'),
          (l) =>
            l.includes('"analysis round"') &&
            l.includes(`"service":"${service.name}"`) &&
            /"check":"canary-up","verdict":"pass"/.test(l),
          30_000,
        );
        check(passed, ctx, 'canary-up never passed before the kill');
        progress(`canary-up passed (worker log): killing the canary`);

        const canary = (await service.fleet.target.readState()).instances.find(
          (i) => i.track === 'canary' && i.slot !== null,
        );
        if (!canary) throw new Error('no canary instance in the fleet state');
        process.kill(canary.pid, 'SIGKILL');
        ctx.faults = 1;
        progress(`canary ${canary.id} (pid ${canary.pid}) SIGKILLed`);

        ctx.result = await resultWithin(handle, 40_000);
        check(
          /^critical check failed — canary-up: mean 0 < min 1$/.test(ctx.result?.reason ?? ''),
          ctx,
          `reason: ${ctx.result?.reason}`,
        );
        const final = await judgeEnd(ctx, handle, service, ['canary', 'staging']);
        check(final.rollback?.failedAttempts === 0, ctx, `${final.rollback?.failedAttempts} failed undo attempts`);
        ctx.notes.push(`canary instance killed after canary-up passed; rolled back: \`${ctx.result?.reason}\``);
      } finally {
        await worker?.stop('SIGTERM');
        if (service) await stopServices([service]);
        await prometheus?.stop();
      }
    },
  );
}, 85_000);
