import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../config/env';
import { DRY_RUN_TARGETS } from '../config/worker-config';
import { describeZodError } from '../domain/zod-errors';
import type { Logger } from '../logger';
import { PrometheusProvider } from './metrics/prometheus';
import type { Notifier } from './notify/types';
import { createNotifiers } from './notify/webhook';
import type { MetricsProvider } from './metrics/types';
import { CommandTarget, commandTargetOptionsSchema, unsetCommandVariables } from './targets/command';
import { DryRunTarget } from './targets/dry-run';
import { HaproxyFleetTarget, haproxyFleetOptionsSchema } from './targets/haproxy-fleet';
import { HttpTarget, httpTargetOptionsSchema, unsetVariables } from './targets/http';
import { KubernetesTarget, kubernetesOptionsSchema } from './targets/kubernetes';
import type { DeploymentTarget, DeployReceipt, DeployStep, StepOptions } from './targets/types';

const targetSpecSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('dry-run'),
    /** What each service runs before any release marks a version stable. */
    stable: z.record(z.string(), z.string()).optional(),
    /** Shared by every worker given the same directory; without it each worker keeps its own, in memory. */
    stateDir: z.string().min(1).optional(),
  }),
  haproxyFleetOptionsSchema.extend({ kind: z.literal('haproxy-fleet'), service: z.string().optional() }),
  // Checked whole when the target is built, where the service name (the entry's key) is known.
  z.looseObject({ kind: z.literal('kubernetes') }),
  // Checked whole when the target is built, so the error names the entry (services.<name> or default).
  z.looseObject({ kind: z.literal('command') }),
  // The same: checked whole at build, naming the entry's field.
  z.looseObject({ kind: z.literal('http') }),
]);
const targetsFileSchema = z.strictObject({
  /** Used for services without their own entry; leave out to refuse unknown services. */
  default: targetSpecSchema.optional(),
  services: z.record(z.string(), targetSpecSchema).default({}),
});
type TargetSpec = z.infer<typeof targetSpecSchema>;

function build(spec: TargetSpec, service: string | undefined, logger: Logger): DeploymentTarget {
  switch (spec.kind) {
    case 'dry-run':
      return new DryRunTarget(spec.stable, { stateDir: spec.stateDir });
    case 'haproxy-fleet': {
      const fleetService = spec.service ?? service;
      if (!fleetService) throw new ConfigError('invalid configuration: a haproxy-fleet target needs a "service"');
      return new HaproxyFleetTarget({ ...spec, service: fleetService, logger });
    }
    case 'kubernetes': {
      if (!service)
        throw new ConfigError('invalid configuration: a kubernetes target serves one service: list it under services');
      const { kind: _kind, ...options } = spec;
      const parsed = kubernetesOptionsSchema.safeParse({ service, ...options });
      if (!parsed.success)
        throw new ConfigError(`invalid configuration: services.${service}: ${describeZodError(parsed.error)}`);
      try {
        return new KubernetesTarget(parsed.data, { logger });
      } catch (err) {
        // The kubeconfig (or the in-cluster service account) is read here: a worker that cannot connect never starts.
        throw new ConfigError(
          `invalid configuration: services.${service}: cannot load its connection: ${(err as Error).message}`,
        );
      }
    }
    case 'command':
    case 'http': {
      // Any entry, `default` included: the service comes with each step, and the ledger is kept per service.
      const { kind, ...options } = spec;
      const entry = service ? `services.${service}` : 'default';
      return kind === 'command'
        ? externalTarget(
            commandTargetOptionsSchema,
            options,
            entry,
            unsetCommandVariables,
            (o) => new CommandTarget(o, { logger }),
          )
        : externalTarget(httpTargetOptionsSchema, options, entry, unsetVariables, (o) => new HttpTarget(o, { logger }));
    }
  }
}

/**
 * A command or HTTP entry, checked whole so errors name its field; a variable it names that the worker lacks stops
 * the worker here, not every release at its first step.
 */
function externalTarget<S extends z.ZodType>(
  schema: S,
  options: unknown,
  entry: string,
  unsetIn: (options: z.output<S>) => string[],
  make: (options: z.output<S>) => DeploymentTarget,
): DeploymentTarget {
  const parsed = schema.safeParse(options);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${describeZodError(parsed.error, entry)}`);
  const unset = unsetIn(parsed.data).map((problem) => `${entry}.${problem}`);
  if (unset.length > 0) throw new ConfigError(`invalid configuration: ${unset.join('; ')}`);
  return make(parsed.data);
}

/** Sends each step to its service's target; a service without one is refused, never deployed somewhere else. */
export class RoutingTarget implements DeploymentTarget {
  readonly kind = 'routing';
  constructor(
    private readonly targets: Map<string, DeploymentTarget>,
    private readonly fallback: DeploymentTarget | undefined,
  ) {}

  targetFor(service: string): DeploymentTarget {
    const target = this.targets.get(service) ?? this.fallback;
    if (!target) throw new ConfigError(`no deployment target configured for service "${service}"`);
    return target;
  }
  apply = (step: DeployStep, options?: StepOptions): Promise<DeployReceipt> =>
    this.targetFor(step.service).apply(step, options);
  undo = (step: DeployStep, options?: StepOptions): Promise<DeployReceipt> =>
    this.targetFor(step.service).undo(step, options);
  stableVersion = (service: string) => this.targetFor(service).stableVersion(service);
  markStable = (service: string, version: string) => this.targetFor(service).markStable(service, version);
  retirePrevious = (step: DeployStep, options?: StepOptions): Promise<DeployReceipt> => {
    const target = this.targetFor(step.service);
    return target.retirePrevious
      ? target.retirePrevious(step, options)
      : Promise.resolve({ key: step.key, applied: false, changes: [] });
  };
}

/**
 * Targets from a YAML file (`TOLLGATE_TARGETS_FILE`). `dry-run` in its place, or no file at all (which the worker
 * config refuses in production), sends every service to a dry-run target that deploys nothing; said at start, since
 * a release on it still promotes.
 */
export async function createTarget(file: string | undefined, logger: Logger): Promise<DeploymentTarget> {
  if (!file || file === DRY_RUN_TARGETS) {
    logger.warn(
      { targets: file || '(none)' },
      'every service goes to the dry-run target: releases deploy nothing, and stable versions live in this worker only',
    );
    return new DryRunTarget();
  }
  const parsed = targetsFileSchema.safeParse(await readConfigFile('TOLLGATE_TARGETS_FILE', file));
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${file}: ${describeZodError(parsed.error)}`);
  const targets = new Map(
    Object.entries(parsed.data.services).map(([service, spec]) => [service, build(spec, service, logger)]),
  );
  return new RoutingTarget(targets, parsed.data.default && build(parsed.data.default, undefined, logger));
}

export function createMetrics(kind: 'prometheus' | 'none', url: string, timeoutMs: number): MetricsProvider {
  if (kind === 'prometheus') return new PrometheusProvider({ url, timeoutMs });
  // No metrics source: every check is inconclusive, so releases pause for a human instead of promoting blind.
  return {
    kind: 'none',
    isOnline: () => Promise.resolve(false),
    query: () => Promise.resolve(undefined),
    queryRange: () => Promise.resolve([]),
  };
}

/** Webhooks from a YAML file (`TOLLGATE_NOTIFY_FILE`); without one, releases send no notifications. */
export async function createNotifier(file: string | undefined, logger: Logger): Promise<Notifier | undefined> {
  if (!file) return undefined;
  return createNotifiers(await readConfigFile('TOLLGATE_NOTIFY_FILE', file), { logger });
}

/** The YAML in `file`, which the environment variable `variable` named; unreadable or not YAML: a ConfigError. */
async function readConfigFile(variable: string, file: string): Promise<unknown> {
  try {
    return parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${variable}: cannot read ${file}: ${(err as Error).message}`);
  }
}
