import { ApplicationFailure } from '@temporalio/common';
import { join } from 'node:path';
import { z } from 'zod';
import { serviceNameSchema, versionSchema } from '../../domain/release';
import { printable } from '../../domain/text';
import type { Logger } from '../../logger';
import { contractEnv } from '../external/contract-env';
import type { ExternalOutcome, ExternalRequest } from '../external/types';
import { readStateFile, withFileLock, writeAtomic } from './state-file';
import type { DeployReceipt, DeploymentTarget, DeployStep, StepOptions } from './types';

/**
 * A target whose every step is carried out by the user's own tool — an executable (`kind: command`) or an HTTP
 * endpoint (`kind: http`) — with one contract for both: the action and the step as a JSON document and as
 * `TOLLGATE_*` variables, an optional JSON result, and four outcomes (ok, try again, failed, timed out).
 *
 * Tollgate keeps its own ledger of keys in `stateDir`, so each step applies once from its side whatever the tool
 * does: a key already applied (or undone) is not run again, an undo of a key never started runs nothing. The key
 * is passed on, so the tool can be idempotent too — it has to be for the one case the ledger cannot cover: a
 * worker that dies after the tool finished and before the ledger said so runs the step again.
 */

export const EXTERNAL_ACTIONS = ['deploy', 'undo', 'mark-stable', 'read'] as const;
export type ExternalAction = (typeof EXTERNAL_ACTIONS)[number];

/**
 * `read` and `mark-stable` run in the workflow's quick activities, whose start-to-close timeout is one minute: past
 * that Temporal would start another attempt while this one still runs. Cut short first, they fail with a reason.
 */
export const LOOKUP_TIMEOUT_MAX_MS = 50_000;

/** How one action reaches the user's tool: the only thing a command target and an HTTP target do differently. */
export type RunAction = (action: ExternalAction, request: ExternalRequest) => Promise<ExternalOutcome>;

export interface ExternalTargetOptions {
  /** The target's kind as a release reports it: `command`, `http`. */
  kind: string;
  /** The ledger's directory, shared by every worker that serves the same services. */
  stateDir: string;
  logger: Logger;
  /** How long a step waits for another worker's ledger update (each holds it for milliseconds). */
  lockWaitMs?: number;
}

/** The document the tool gets for an action, on stdin or as a request body. Absent fields do not apply to it. */
export interface StepPayload {
  action: ExternalAction;
  key: string;
  releaseId?: string;
  service: string;
  version?: string;
  /** What `undo` goes back to; null before a service's first release. */
  stableVersion: string | null;
  stage?: string;
  track?: string;
  percent?: number;
  canaryInstances?: number;
}

/** A step that cannot succeed as asked: Temporal does not retry it, the release rolls back with this message. */
export class ExternalStepError extends ApplicationFailure {
  override readonly name = 'ExternalStepError';
  constructor(
    message: string,
    type: 'ExternalStepFailed' | 'ExternalStepTimedOut' | 'ExternalResultInvalid' | 'ExternalStepRefused',
  ) {
    super(message, type, true);
  }
}

/** The tool said "not now": Temporal's retry policy runs the step again. */
export class ExternalTryAgainError extends Error {
  override readonly name = 'ExternalTryAgainError';
}

/** What Tollgate shows of the tool's last lines in an error: enough to see why, never a wall of output. */
const SHOWN_LINES = 5;
const SHOWN_LINE_CHARS = 300;
const MESSAGE_CHARS = 2_000;
const CHANGES_MAX = 50;
const CHANGE_CHARS = 300;
/** Ledger entries kept per service: a late retry of a step older than the last few hundred releases is not expected. */
const LEDGER_STEPS_MAX = 2_000;

/** `deploy: exited with status 3; last lines: a | b`, one line, sanitised, bounded. */
export function outcomeMessage(action: ExternalAction, outcome: Exclude<ExternalOutcome, { kind: 'ok' }>): string {
  const tail = outcome.lastLines.slice(-SHOWN_LINES).map((l) => printable(l, SHOWN_LINE_CHARS));
  const text = `${action}: ${outcome.message}${tail.length > 0 ? `; last lines: ${tail.join(' | ')}` : ''}`;
  return printable(text, MESSAGE_CHARS);
}

/** The step's document for `action` (see StepPayload). */
export function stepPayload(action: 'deploy' | 'undo', step: DeployStep): StepPayload {
  return {
    action,
    key: step.key,
    releaseId: step.releaseId,
    service: step.service,
    version: step.version,
    stableVersion: step.stableVersion ?? null,
    // A deploy step's stage is its track: staging, canary, production.
    stage: step.track,
    track: step.track,
    ...(step.percent !== undefined && { percent: step.percent }),
    ...(step.canaryInstances !== undefined && { canaryInstances: step.canaryInstances }),
  };
}

/** The payload as `TOLLGATE_*` variables; a field the action lacks (or a null stable version) is left out. */
export const payloadEnv = (p: StepPayload): Record<string, string> => contractEnv({ ...p });

/** A deploy's or undo's result: what changed, and whether the tool found it already done (`applied: false`). */
const stepResultSchema = z
  .looseObject({
    changes: z.array(z.string(), { error: 'expected a list of strings' }).optional(),
    applied: z.boolean({ error: 'expected true or false' }).optional(),
  })
  .nullish();
const readResultSchema = z.looseObject({ stableVersion: versionSchema.nullable().optional() }).nullish();

const ledgerSchema = z.object({
  /** The version the last `markStable` recorded. */
  stableVersion: z.string().optional(),
  steps: z.record(
    z.string(),
    z.object({ version: z.string(), status: z.enum(['started', 'applied', 'undone']), at: z.string() }),
  ),
});
type Ledger = z.output<typeof ledgerSchema>;
type LedgerEntry = Ledger['steps'][string];

/** Own entries only: a key such as `constructor` must not find Object.prototype's. */
const entryOf = (ledger: Ledger, key: string): LedgerEntry | undefined =>
  Object.hasOwn(ledger.steps, key) ? ledger.steps[key] : undefined;

const ledgerError = (message: string) =>
  new ExternalStepError(`external target ledger: ${message}`, 'ExternalStepRefused');

export class ExternalTarget implements DeploymentTarget {
  readonly kind: string;
  private readonly log: Logger;
  private readonly stateDir: string;
  private readonly lockWaitMs: number;

  constructor(
    private readonly runAction: RunAction,
    options: ExternalTargetOptions,
  ) {
    this.kind = options.kind;
    this.stateDir = options.stateDir;
    this.lockWaitMs = options.lockWaitMs ?? 10_000;
    this.log = options.logger.child({ target: options.kind });
  }

  async apply(step: DeployStep, options: StepOptions = {}): Promise<DeployReceipt> {
    const fresh = await this.ledger(step.service, (ledger) => {
      const entry = entryOf(ledger, step.key);
      // Undone counts as done: a late attempt must never redeploy a version that was rolled back.
      if (entry && entry.status !== 'started') return false;
      ledger.steps[step.key] = { version: step.version, status: 'started', at: new Date().toISOString() };
      return true;
    });
    if (!fresh) return { key: step.key, applied: false, changes: [] };
    const result = await this.runStep('deploy', step, options.signal);
    await this.ledger(step.service, (ledger) => {
      const entry = entryOf(ledger, step.key);
      if (entry?.status === 'started') entry.status = 'applied';
    });
    return { key: step.key, applied: result.applied ?? true, changes: result.changes };
  }

  async undo(step: DeployStep, options: StepOptions = {}): Promise<DeployReceipt> {
    const entry = await this.ledger(step.service, (ledger) => entryOf(ledger, step.key));
    // Never started: the tool never heard of the step. Undone: it has already put things back.
    if (!entry || entry.status === 'undone') return { key: step.key, applied: false, changes: [] };
    const result = await this.runStep('undo', step, options.signal);
    await this.ledger(step.service, (ledger) => {
      const current = entryOf(ledger, step.key);
      if (current) current.status = 'undone';
    });
    return { key: step.key, applied: result.applied ?? true, changes: result.changes };
  }

  /** The tool's answer to `read`; when it gives none, what the last `markStable` recorded. */
  async stableVersion(service: string): Promise<string | undefined> {
    const recorded = await this.ledger(service, (ledger) => ledger.stableVersion);
    const payload: StepPayload = { action: 'read', key: `read/${service}`, service, stableVersion: recorded ?? null };
    const result = await this.call(payload, this.log.child({ service, action: 'read' }));
    const parsed = readResultSchema.safeParse(result);
    if (!parsed.success) throw resultError('read', parsed.error);
    const answered = parsed.data?.stableVersion;
    return answered === undefined ? recorded : (answered ?? undefined);
  }

  async markStable(service: string, version: string): Promise<void> {
    const before = await this.ledger(service, (ledger) => ledger.stableVersion);
    const payload: StepPayload = {
      action: 'mark-stable',
      key: `mark-stable/${service}/${version}`,
      service,
      version,
      stableVersion: before ?? null,
      stage: 'done',
      track: 'production',
    };
    await this.call(
      payload,
      this.log.child({ service, version, stage: 'done', track: 'production', action: 'mark-stable' }),
    );
    await this.ledger(service, (ledger) => {
      ledger.stableVersion = version;
    });
  }

  /** Runs a deploy or an undo; its result, bounded and sanitised. */
  private async runStep(action: 'deploy' | 'undo', step: DeployStep, signal: AbortSignal | undefined) {
    const log = this.log.child({
      releaseId: step.releaseId,
      service: step.service,
      version: step.version,
      stage: step.track,
      track: step.track,
      action,
    });
    const result = await this.call(stepPayload(action, step), log, signal);
    const parsed = stepResultSchema.safeParse(result);
    if (!parsed.success) throw resultError(action, parsed.error);
    const changes = parsed.data?.changes ?? [];
    const shown = changes.slice(0, CHANGES_MAX).map((c) => printable(c, CHANGE_CHARS));
    if (changes.length > CHANGES_MAX) shown.push(`… and ${changes.length - CHANGES_MAX} more`);
    return { changes: shown, applied: parsed.data?.applied };
  }

  /** One call to the tool; its result when it succeeded, otherwise the error the activity fails with. */
  private async call(payload: StepPayload, log: Logger, signal?: AbortSignal): Promise<unknown> {
    const outcome = await this.runAction(payload.action, {
      payload: { ...payload },
      env: payloadEnv(payload),
      key: payload.key,
      ...(signal && { signal }),
      onLine: (line, stream) => log.info({ stream }, line),
    });
    const fields = { key: payload.key, outcome: outcome.kind, durationMs: outcome.durationMs };
    if (outcome.kind === 'ok') {
      log.info(fields, `${payload.action} done`);
      return outcome.result;
    }
    const message = outcomeMessage(payload.action, outcome);
    log.warn({ ...fields, error: message }, `${payload.action} ${outcome.kind}`);
    if (outcome.kind === 'retry') throw new ExternalTryAgainError(message);
    throw new ExternalStepError(message, outcome.kind === 'timeout' ? 'ExternalStepTimedOut' : 'ExternalStepFailed');
  }

  /** Read-modify-write of `service`'s ledger under its lock; `change` may also only read. */
  private async ledger<T>(service: string, change: (ledger: Ledger) => T): Promise<T> {
    // The name becomes a file name: only what a release request may name (checked there too).
    if (!serviceNameSchema.safeParse(service).success)
      throw new ExternalStepError(`service ${printable(service, 80)}: not a service name`, 'ExternalStepRefused');
    const path = join(this.stateDir, `${service}.ledger.json`);
    return withFileLock(`${path}.lock`, this.lockWaitMs, async () => {
      const ledger: Ledger = (await readStateFile(path, ledgerSchema, ledgerError)) ?? { steps: {} };
      const before = JSON.stringify(ledger);
      const value = change(ledger);
      const keys = Object.keys(ledger.steps);
      // Oldest first (insertion order): the entries a late retry could still ask about are the newest.
      for (const key of keys.slice(0, Math.max(0, keys.length - LEDGER_STEPS_MAX))) delete ledger.steps[key];
      const after = JSON.stringify(ledger, null, 2);
      if (JSON.stringify(ledger) !== before) await writeAtomic(path, `${after}\n`);
      return value;
    });
  }
}

/** A result the tool wrote that is not what the action's contract says: named by field. */
function resultError(action: ExternalAction, error: z.ZodError): ExternalStepError {
  const issue = error.issues[0];
  const field = ['result', ...(issue?.path ?? []).map(String)].join('.');
  return new ExternalStepError(
    printable(`${action}: ${field}: ${issue?.message ?? 'invalid'}`, MESSAGE_CHARS),
    'ExternalResultInvalid',
  );
}
