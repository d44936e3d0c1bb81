import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { kubernetesBinDir, startControlPlane } from '../scripts/kubernetes-control-plane';
import type { DeployStep } from '../src/providers/targets/types';
import { createStable, kubernetesTarget, openShop } from '../test/helpers/kubernetes';
import type { Goal } from './report';
import type { SectionOutcome } from './run';
import { summarize, type Summary } from './stats';

/**
 * The Kubernetes target against the same changes made by hand, on one real control plane (etcd, kube-apiserver,
 * controller-manager, scheduler, kwok): a canary step, and a whole promotion (canary, two waves, promotion), each
 * by Tollgate's target and by `kubectl apply/scale/set image` + `kubectl rollout status`, alternating, on fresh
 * Deployments of the same size. Tollgate's side counts its API requests per step.
 */

const FLEET = 10;
const CANARY = 1;
const WAVES = [50, 100];

export interface KubernetesResult {
  repetitions: number;
  fleet: number;
  controlPlaneStartMs: number;
  memoryMiB: Record<string, number>;
  tollgate: { canaryMs: Summary; promotionMs: Summary };
  kubectl: { canaryMs: Summary; promotionMs: Summary };
  /** API requests Tollgate sent, per step kind (median over the repetitions). */
  requests: { canary: Summary; wave: Summary; promotion: Summary };
}

export async function runKubernetesBench(repetitions: number, deadline: number): Promise<KubernetesResult> {
  const t0 = Date.now();
  const plane = await startControlPlane();
  const controlPlaneStartMs = Date.now() - t0;
  try {
    const { kubeconfig } = await openShop(plane);
    const kubectl = join(kubernetesBinDir(), 'kubectl');
    const byHand = (args: string[]) =>
      promisify(execFile)(kubectl, ['--kubeconfig', plane.adminKubeconfig, '-n', 'shop', ...args], {
        timeout: 120_000,
      });
    const times = {
      tollgate: { canary: [] as number[], promotion: [] as number[] },
      kubectl: { canary: [] as number[], promotion: [] as number[] },
    };
    const requests = { canary: [] as number[], wave: [] as number[], promotion: [] as number[] };
    for (let i = 0; i < repetitions && Date.now() < deadline; i++) {
      // Tollgate first on even repetitions, kubectl first on odd ones: neither always gets the warmer machine.
      const order = i % 2 === 0 ? (['tollgate', 'kubectl'] as const) : (['kubectl', 'tollgate'] as const);
      for (const who of order) {
        const name = `${who === 'tollgate' ? 'tg' : 'kc'}-${i}`;
        await createStable(plane, name, { replicas: FLEET });
        if (who === 'tollgate') {
          const r = await throughTollgate(name, kubeconfig);
          times.tollgate.canary.push(r.canaryMs);
          times.tollgate.promotion.push(r.promotionMs);
          requests.canary.push(r.requests.canary);
          requests.wave.push(...r.requests.waves);
          requests.promotion.push(r.requests.promotion);
        } else {
          const r = await throughKubectl(name, byHand);
          times.kubectl.canary.push(r.canaryMs);
          times.kubectl.promotion.push(r.promotionMs);
        }
      }
    }
    return {
      repetitions: times.tollgate.canary.length,
      fleet: FLEET,
      controlPlaneStartMs,
      memoryMiB: await plane.residentMemoryMiB(),
      tollgate: { canaryMs: summarize(times.tollgate.canary), promotionMs: summarize(times.tollgate.promotion) },
      kubectl: { canaryMs: summarize(times.kubectl.canary), promotionMs: summarize(times.kubectl.promotion) },
      requests: {
        canary: summarize(requests.canary),
        wave: summarize(requests.wave),
        promotion: summarize(requests.promotion),
      },
    };
  } finally {
    await plane.stop();
  }
}

async function throughTollgate(name: string, kubeconfig: string) {
  const target = kubernetesTarget(kubeconfig, name, FLEET);
  const releaseId = `release-${name}/run-1`;
  const step = (key: string, over: Partial<DeployStep>): DeployStep => ({
    key: `${releaseId}/${key}`,
    releaseId,
    service: name,
    version: '1.1.0',
    stableVersion: '1.0.0',
    track: 'production',
    ...over,
  });
  const counted = async (work: () => Promise<unknown>) => {
    const before = target.api.requests;
    await work();
    return target.api.requests - before;
  };
  const t0 = Date.now();
  const canary = await counted(() => target.apply(step('canary', { track: 'canary', canaryInstances: CANARY })));
  const canaryMs = Date.now() - t0;
  const waves: number[] = [];
  for (const [index, percent] of WAVES.entries())
    waves.push(await counted(() => target.apply(step(`wave-${index + 1}`, { percent }))));
  const promotion = await counted(() => target.markStable(name, '1.1.0'));
  return { canaryMs, promotionMs: Date.now() - t0, requests: { canary, waves, promotion } };
}

/** The same changes as a person would make them: each one, then `kubectl rollout status` until it is done. */
async function throughKubectl(name: string, kubectl: (args: string[]) => Promise<unknown>) {
  const canaryName = `${name}-canary`;
  const scale = async (deployment: string, replicas: number) => {
    await kubectl(['scale', `deployment/${deployment}`, `--replicas=${replicas}`]);
    await kubectl(['rollout', 'status', `deployment/${deployment}`, '--timeout=120s']);
  };
  const t0 = Date.now();
  await kubectl([
    'create',
    'deployment',
    canaryName,
    `--image=registry.example.com/${name}:1.1.0`,
    `--replicas=${CANARY}`,
  ]);
  await kubectl(['rollout', 'status', `deployment/${canaryName}`, '--timeout=120s']);
  await scale(name, FLEET - CANARY);
  const canaryMs = Date.now() - t0;
  for (const percent of WAVES) {
    const k = Math.ceil((FLEET * percent) / 100);
    await scale(canaryName, k);
    await scale(name, FLEET - k);
  }
  await kubectl(['set', 'image', `deployment/${name}`, `app=registry.example.com/${name}:1.1.0`]);
  await scale(name, FLEET);
  await kubectl(['delete', 'deployment', canaryName, '--wait=true']);
  return { canaryMs, promotionMs: Date.now() - t0 };
}

const ms = (s: Summary) => `${Math.round(s.median)} (${Math.round(s.min)}–${Math.round(s.max)})`;
/** Tollgate's time over kubectl's, in percent of kubectl's (negative: Tollgate is faster). */
const overhead = (tollgate: Summary, kubectl: Summary) => ((tollgate.median - kubectl.median) / kubectl.median) * 100;
const GOAL_OVERHEAD_PERCENT = 20;
const HEADING = '## 6. Kubernetes target (real control plane)';

export function kubernetesSection(
  outcome: SectionOutcome<KubernetesResult>,
  goals: Goal[],
  findings: string[],
): string {
  const goal = `Kubernetes: a canary step and a whole promotion through Tollgate within ${GOAL_OVERHEAD_PERCENT} % of kubectl + rollout status`;
  const r = outcome.result;
  if (!r) {
    goals.push({ goal, measured: 'n/a', met: undefined });
    return `${HEADING}

_The Kubernetes bench did not complete: ${outcome.error ?? 'no result'}_
`;
  }
  const canary = overhead(r.tollgate.canaryMs, r.kubectl.canaryMs);
  const promotion = overhead(r.tollgate.promotionMs, r.kubectl.promotionMs);
  const signed = (x: number) => `${x > 0 ? '+' : ''}${x.toFixed(0)} %`;
  goals.push({
    goal,
    measured: `canary step ${signed(canary)}, whole promotion ${signed(promotion)} (medians of ${r.repetitions})`,
    met: canary <= GOAL_OVERHEAD_PERCENT && promotion <= GOAL_OVERHEAD_PERCENT,
  });
  findings.push(
    `- **The Kubernetes target is as fast as doing it by hand**: a canary step takes ${Math.round(r.tollgate.canaryMs.median)} ms ` +
      `against ${Math.round(r.kubectl.canaryMs.median)} ms with kubectl + rollout status, a whole promotion ` +
      `${Math.round(r.tollgate.promotionMs.median)} against ${Math.round(r.kubectl.promotionMs.median)} ms, in ` +
      `${Math.round(r.requests.canary.median)}–${Math.round(r.requests.promotion.median)} API requests a step: kubectl pays a process ` +
      'start per command, Tollgate reads a rollout after 50 ms and then less and less often.',
  );
  const memory = Object.entries(r.memoryMiB)
    .map(([component, mib]) => `${component} ${Math.round(mib)}`)
    .join(', ');
  return [
    HEADING,
    '',
    "One control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok's fake node: pods turn",
    `Ready, no container runs) started in ${(r.controlPlaneStartMs / 1000).toFixed(1)} s; resident memory at the end, MiB: ${memory}.`,
    `A Deployment of ${r.fleet} pods, released to a canary of ${CANARY} pod, then in waves of ${WAVES.join(' and ')} %, and`,
    `promoted, ${r.repetitions} times each way on fresh Deployments, alternating who goes first: by Tollgate's`,
    '`kubernetes` target (`traffic: replicas`, as its activities call it, as its least-privilege ServiceAccount), and',
    'by the same changes with `kubectl create/scale/set image/delete` + `kubectl rollout status` (as admin: `kubectl',
    "scale` needs `deployments/scale`, which the target's Role does not grant). Median (min–max), ms:",
    '',
    '| change | Tollgate | kubectl + rollout status | Tollgate over kubectl (median) |',
    '| --- | --- | --- | --- |',
    `| canary step (canary Deployment created and Ready, stable shrunk and settled) | ${ms(r.tollgate.canaryMs)} | ${ms(r.kubectl.canaryMs)} | ${signed(canary)} |`,
    `| whole promotion (canary, ${WAVES.length} waves, promotion, canary removed) | ${ms(r.tollgate.promotionMs)} | ${ms(r.kubectl.promotionMs)} | ${signed(promotion)} |`,
    '',
    'API requests Tollgate sends per step (reads of the rollout included), median (min–max):',
    '',
    '| step | requests |',
    '| --- | --- |',
    `| canary | ${ms(r.requests.canary)} |`,
    `| production wave | ${ms(r.requests.wave)} |`,
    `| promotion | ${ms(r.requests.promotion)} |`,
    '',
    'kubectl pays a process start per command (≈ 10 commands a promotion) and watches rollouts; Tollgate reads the',
    'Deployment again after 50 ms, then 1.5× longer each time, up to `timeouts.pollMs` (1 s), and lists pods only',
    'while a rollout is stuck. Not measured here: the Temporal round trips of a release around these steps (§3).',
    '',
  ].join('\n');
}

/** `node dist/bench/kubernetes.js [repetitions]`: the section alone, printed (run.ts puts it into BENCHMARKS.md). */
if (require.main === module) {
  const repetitions = Number(process.argv[2] ?? 5);
  runKubernetesBench(repetitions, Date.now() + 600_000)
    .then((result) => process.stdout.write(`${kubernetesSection({ result }, [], [])}\n${JSON.stringify(result)}\n`))
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
