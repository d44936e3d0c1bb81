import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { AnalysisHeartbeat } from '../activities/types';
import { CONTROL_SCHEMAS, CONTROL_UPDATES, statusQuery, type ControlInput, type ControlName } from '../domain/messages';
import {
  releaseRequestSchema,
  releaseWorkflowId,
  serviceNameSchema,
  type ReleaseRequestInput,
  type ReleaseResult,
} from '../domain/release';
import { describeZodError } from '../domain/zod-errors';
import { TollgateService, TollgateState, TollgateVersion } from '../domain/search-attributes';
import { formatDuration } from '../domain/duration';
import {
  initialStatus,
  RELEASE_STATES,
  type EndedExecution,
  type ReleaseState,
  type ReleaseStatus,
} from '../domain/status';
import type { ConnectionSettings } from '../config/connection';
import type { releaseWorkflow } from '../workflows';
import { controlTarget } from '../domain/controls';
import { START_RUN } from '../domain/signing-policy';
import { TollgateError } from './errors';
import { signDecision, type StatementSigner } from './signer';

/**
 * Retries what fails only while a release hands over to a new run (continue-as-new): the server refuses updates
 * while the workflow task that closes the run is being redone. Bounded: about 10 s.
 */
const GRPC_FAILED_PRECONDITION = 9;

async function handingOver<T>(send: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      const code = (err as { cause?: { code?: unknown } }).cause?.code ?? (err as { code?: unknown }).code;
      if (code !== GRPC_FAILED_PRECONDITION || attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

export interface ReleaseSummary {
  service: string;
  version: string;
  workflowId: string;
  runId: string;
  status: string;
  state: string | undefined;
  startTime: string;
  closeTime: string | undefined;
}

function serviceOf(service: string): string {
  const parsed = serviceNameSchema.safeParse(service);
  if (!parsed.success) throw new TollgateError(`invalid service: ${describeZodError(parsed.error)}`, 'invalid-input');
  return parsed.data;
}

const quote = (v: string) => `'${v.replace(/'/g, "\\'")}'`;

/**
 * The workflow recomputes bake progress when it wakes (at least every 5% of the cycle); between wake-ups the bake
 * clock runs on, so a live view projects it forward, and takes the request count from the running analysis.
 */
export function projectBake(status: ReleaseStatus, now: number): ReleaseStatus {
  const bake = status.bake;
  if (!bake) return status;
  const running = status.state === 'baking' && !status.pause;
  const elapsedMs = running
    ? Math.min(bake.cycleMs, bake.elapsedMs + Math.max(0, now - Date.parse(status.updatedAt)))
    : bake.elapsedMs;
  const remainingMs = Math.max(0, bake.cycleMs - elapsedMs);
  const requestsSeen = Math.max(bake.requestsSeen, status.analysis.requests);
  const waitingFor = [
    ...(remainingMs > 0 ? [`${formatDuration(remainingMs)} of baking`] : []),
    ...(requestsSeen < bake.requestsRequired ? [`${requestsSeen}/${bake.requestsRequired} requests`] : []),
    ...bake.waitingFor.filter((w) => !/ of baking$| requests$/.test(w)),
  ];
  return { ...status, bake: { ...bake, elapsedMs, remainingMs, requestsSeen, waitingFor } };
}

/** The innermost reason a connection failed (the server's "16 UNAUTHENTICATED: …"), never quoting the API key. */
function whyNot(err: unknown, apiKey: string | undefined): string {
  const messages: string[] = [];
  for (let e: unknown = err; e instanceof Error && messages.length < 5; e = e.cause) messages.push(e.message);
  const text = [...new Set(messages)].join(': ') || String(err);
  return apiKey ? text.split(apiKey).join('[redacted]') : text;
}

/** The typed way to start and steer releases; the `tollgate` CLI is a thin shell over it. */
export class TollgateClient {
  /** Signs every start and control this client sends, as its person (see src/client/signer.ts). */
  signer: StatementSigner | undefined;

  constructor(
    readonly client: Client,
    readonly taskQueue = 'tollgate-releases',
  ) {}

  static async connect(settings: ConnectionSettings, taskQueue?: string): Promise<TollgateClient> {
    // Lazy, so a connection that fails can be closed: its channel would otherwise stay open in a caller that retries.
    const connection = Connection.lazy({
      address: settings.address,
      ...(settings.tls !== undefined && { tls: settings.tls }),
      ...(settings.apiKey && { apiKey: settings.apiKey }),
      connectTimeout: '5s',
    });
    try {
      await connection.ensureConnected();
    } catch (err) {
      await connection.close().catch(() => undefined);
      throw new TollgateError(
        `cannot reach Temporal at ${settings.address}: ${whyNot(err, settings.apiKey)}`,
        'unreachable',
      );
    }
    return new TollgateClient(new Client({ connection, namespace: settings.namespace }), taskQueue);
  }

  close(): Promise<void> {
    return this.client.connection.close();
  }

  /** Validates everything first: a refused request starts nothing. */
  async start(input: ReleaseRequestInput): Promise<WorkflowHandleWithFirstExecutionRunId<typeof releaseWorkflow>> {
    const parsed = releaseRequestSchema.safeParse(input);
    if (!parsed.success)
      throw new TollgateError(`invalid release request: ${describeZodError(parsed.error)}`, 'invalid-input');
    const request = parsed.data;
    const workflowId = releaseWorkflowId(request.service);
    const signed = this.signer
      ? await signDecision(this.signer, {
          workflowId,
          runId: START_RUN,
          action: 'start',
          target: request.version,
          by: request.initiator,
        })
      : undefined;
    try {
      return await this.client.workflow.start('releaseWorkflow', {
        taskQueue: this.taskQueue,
        workflowId,
        args: [signed ? { ...input, signed } : input],
        // One release per service: Temporal's own workflow-ID rule, not a home-made lock.
        workflowIdConflictPolicy: 'FAIL',
        typedSearchAttributes: [
          { key: TollgateService, value: request.service },
          { key: TollgateVersion, value: request.version },
          { key: TollgateState, value: 'resolving-policy' },
        ],
        staticSummary: `${request.service} ${request.version}: staging → canary → production`,
        staticDetails: `started by ${request.initiator}${request.reason ? `: ${request.reason}` : ''}`,
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        const running = await this.describeRunning(request.service).catch(() => undefined);
        throw new TollgateError(
          `${request.service} already has a release in flight: ${workflowId}${running ? ` (${running})` : ''}; ` +
            'wait for it to end or abort it',
          'release-in-flight',
        );
      }
      throw err;
    }
  }

  /**
   * Supersede: aborts the release of the service in flight — its rollback included — and starts `input` once that
   * release has ended, both reasons naming the other in the audit trails. Validated first: a refused request aborts
   * nothing. `ended` says what became of the release that was superseded, if one was in flight.
   */
  async supersede(
    input: ReleaseRequestInput,
  ): Promise<{ handle: WorkflowHandleWithFirstExecutionRunId<typeof releaseWorkflow>; ended?: ReleaseResult }> {
    const parsed = releaseRequestSchema.safeParse(input);
    if (!parsed.success)
      throw new TollgateError(`invalid release request: ${describeZodError(parsed.error)}`, 'invalid-input');
    const request = parsed.data;
    const running = await this.status(request.service).catch((err: unknown) => {
      if (err instanceof TollgateError && err.code === 'unknown-release') return undefined;
      throw err;
    });
    if (!running || running.state === 'done') return { handle: await this.start(input) };
    const why = request.reason ? `: ${request.reason}` : '';
    await this.abort(request.service, {
      by: request.initiator,
      reason: cut(`superseded by ${request.version}${why}`, 2000),
    }).catch((err: unknown) => {
      // Already rolling back (or just ended): there is nothing to abort, only its end to wait for.
      if (!(err instanceof TollgateError && err.code === 'rejected')) throw err;
    });
    const ended = await this.result(request.service).catch(() => undefined);
    const supersedes = `supersedes ${running.version} (${ended?.outcome ?? 'ended'})`;
    const handle = await this.start({ ...input, reason: cut(`${supersedes}${why}`, 2000) });
    return { handle, ...(ended && { ended }) };
  }

  private async describeRunning(service: string): Promise<string> {
    const status = await this.status(service);
    return `version ${status.version}, ${status.stage}/${status.state}, started by ${status.initiator}`;
  }

  handle(service: string): WorkflowHandle<typeof releaseWorkflow> {
    return this.client.workflow.getHandle(releaseWorkflowId(serviceOf(service)));
  }

  /** The workflow's status, with the running analysis's latest round (from its heartbeat) when there is one. */
  async status(service: string): Promise<ReleaseStatus> {
    const handle = this.handle(service);
    try {
      const [status, description] = await Promise.all([handle.query(statusQuery), handle.describe()]);
      const pending = description.raw.pendingActivities ?? [];
      const live = pending.find((a) => a.activityType?.name === 'analyze')?.heartbeatDetails?.payloads?.[0];
      if (live) {
        const beat = defaultPayloadConverter.fromPayload<AnalysisHeartbeat>(live);
        if (beat.counters.rounds > status.analysis.rounds) {
          status.analysis = { ...beat.counters, checks: beat.checks.length > 0 ? beat.checks : status.analysis.checks };
        }
      }
      const retrying = pending.flatMap((a) =>
        a.lastFailure?.message
          ? [
              {
                activity: a.activityType?.name ?? 'activity',
                attempt: a.attempt ?? 1,
                lastError: a.lastFailure.message,
              },
            ]
          : [],
      );
      if (retrying.length > 0) status.retrying = retrying;
      const execution = description.status.name;
      if (execution !== 'RUNNING' && status.state !== 'done') status.ended = await this.endedWithout(handle, execution);
      return projectBake(status, Date.now());
    } catch (err) {
      const closed = await this.closedWithoutStatus(handle, service).catch(() => undefined);
      if (closed) return closed;
      throw this.translate(err, service);
    }
  }

  /**
   * The status of an execution that closed before it could answer a query (refused at its first task, or
   * terminated before one ran): what its description and search attributes say, and why it ended.
   */
  private async closedWithoutStatus(
    handle: WorkflowHandle<typeof releaseWorkflow>,
    service: string,
  ): Promise<ReleaseStatus | undefined> {
    const description = await handle.describe();
    const execution = description.status.name;
    if (execution === 'RUNNING') return undefined;
    const indexed = description.typedSearchAttributes.get(TollgateState);
    const at = (description.closeTime ?? description.startTime).toISOString();
    const version = description.typedSearchAttributes.get(TollgateVersion) ?? '';
    const state = (RELEASE_STATES as readonly string[]).includes(indexed ?? '') ? (indexed as ReleaseState) : 'done';
    return {
      ...initialStatus(`${handle.workflowId}/${description.runId}`, { service, version, initiator: '' }, state, at),
      ended: await this.endedWithout(handle, execution),
    };
  }

  /**
   * Waits until a worker has resolved the policy of a release just started (its TollgateState leaves
   * resolving-policy). A policy the worker refuses — an unknown service, an override below the org minimums — fails
   * the release before anything is deployed; that comes back as an error naming the field. Undefined when no worker
   * took the release up in time. Reads the execution's description, so it needs no worker to answer a query.
   */
  async awaitPolicy(handle: WorkflowHandle<typeof releaseWorkflow>, timeoutMs = 15_000): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const description = await handle.describe();
      const execution = description.status.name;
      const state = description.typedSearchAttributes.get(TollgateState);
      if (execution === 'COMPLETED') return state;
      if (execution !== 'RUNNING') {
        const ended = await this.endedWithout(handle, execution);
        throw new TollgateError(
          `${handle.workflowId} ${ended.status.toLowerCase()}: ${ended.message}`,
          'invalid-input',
        );
      }
      if (state && state !== 'resolving-policy') return state;
      if (Date.now() >= deadline) return undefined;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Why an execution closed without an outcome: its failure, or how it was terminated or timed out. */
  private async endedWithout(
    handle: WorkflowHandle<typeof releaseWorkflow>,
    execution: string,
  ): Promise<EndedExecution> {
    const message = await handle.result().then(
      () => 'completed',
      (err: Error) => (err.cause instanceof Error && err.cause.message ? err.cause.message : err.message),
    );
    return { status: execution, message };
  }

  async result(service: string): Promise<ReleaseResult> {
    return this.handle(service).result();
  }

  async control<N extends ControlName>(name: N, service: string, input: ControlInput<N>): Promise<ReleaseStatus> {
    const parsed = CONTROL_SCHEMAS[name].safeParse(input);
    if (!parsed.success) throw new TollgateError(`invalid ${name}: ${describeZodError(parsed.error)}`, 'invalid-input');
    try {
      const payload = this.signer ? await this.signControl(name, service, parsed.data as ControlInput<N>) : parsed.data;
      await handingOver(() =>
        this.handle(service).executeUpdate(CONTROL_UPDATES[name] as (typeof CONTROL_UPDATES)['approve'], {
          args: [payload as ControlInput<'approve'>],
        }),
      );
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        // Updates cannot reach a closed workflow: say that it ended rather than that it does not exist.
        const ended = await this.handle(service)
          .describe()
          .then((d) => d.status.name)
          .catch(() => undefined);
        if (ended) throw new TollgateError(`release-${service} has ended (${ended}); nothing to ${name}`, 'rejected');
      }
      throw this.translate(err, service);
    }
    // The update answers from inside the workflow task that applied it, before the release moved on in that same
    // task (an approved gate is already deploying): the status read after it shows where the release is now.
    return this.status(service);
  }

  /**
   * Signs what this control decides as the release stands now: its run, and the gate or stage it applies to. If the
   * release moves on before the control arrives, the workflow refuses it as signed for another gate: sign again.
   */
  private async signControl<N extends ControlName>(
    name: N,
    service: string,
    input: ControlInput<N>,
  ): Promise<ControlInput<N>> {
    const handle = this.handle(service);
    const [status, description] = await Promise.all([handle.query(statusQuery), handle.describe()]);
    const target = controlTarget(name, {
      gate: status.gate?.name,
      stage: status.stage,
      watching: status.bake?.watch === true,
    });
    const decision = { workflowId: handle.workflowId, runId: description.runId, action: name, target, by: input.by };
    return { ...input, signed: await signDecision(this.signer!, decision) };
  }

  approve = (service: string, input: ControlInput<'approve'>) => this.control('approve', service, input);
  abort = (service: string, input: ControlInput<'abort'>) => this.control('abort', service, input);
  pause = (service: string, input: ControlInput<'pause'>) => this.control('pause', service, input);
  resume = (service: string, input: ControlInput<'resume'>) => this.control('resume', service, input);
  promote = (service: string, input: ControlInput<'promote'>) => this.control('promote', service, input);
  rollback = (service: string, input: ControlInput<'rollback'>) => this.control('rollback', service, input);

  /** Releases by visibility query: running ones by default, filtered by service and state. */
  async list(filter: { service?: string; state?: string; closed?: boolean } = {}): Promise<ReleaseSummary[]> {
    const clauses = ["WorkflowType = 'releaseWorkflow'"];
    if (filter.service) clauses.push(`TollgateService = ${quote(serviceOf(filter.service))}`);
    if (filter.state) clauses.push(`TollgateState = ${quote(filter.state)}`);
    // A run that continued as new is part of a release still going (or ended in a later run): never a release.
    if (filter.closed !== undefined)
      clauses.push(
        filter.closed
          ? "ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'"
          : "ExecutionStatus = 'Running'",
      );
    const summaries: ReleaseSummary[] = [];
    for await (const wf of this.client.workflow.list({ query: clauses.join(' AND ') })) {
      summaries.push({
        service: wf.typedSearchAttributes.get(TollgateService) ?? '',
        version: wf.typedSearchAttributes.get(TollgateVersion) ?? '',
        workflowId: wf.workflowId,
        runId: wf.runId,
        status: wf.status.name,
        state: wf.typedSearchAttributes.get(TollgateState),
        startTime: wf.startTime.toISOString(),
        closeTime: wf.closeTime?.toISOString(),
      });
      if (summaries.length >= 1000) break;
    }
    return summaries;
  }

  history(service: string): Promise<ReleaseSummary[]> {
    return this.list({ service, closed: true });
  }

  private translate(err: unknown, service: string): unknown {
    if (err instanceof WorkflowNotFoundError) {
      return new TollgateError(
        `no release found for service ${service} (workflow ${releaseWorkflowId(service)})`,
        'unknown-release',
      );
    }
    if (err instanceof WorkflowUpdateFailedError) {
      return new TollgateError(`rejected: ${err.cause?.message ?? err.message}`, 'rejected');
    }
    if (err instanceof Error && /not found|ExecutionAlreadyCompleted|already completed/i.test(err.message)) {
      return new TollgateError(`no running release for service ${service}: ${err.message}`, 'unknown-release');
    }
    return err;
  }
}

/** A reason built from two cannot outgrow the schema's bound. */
const cut = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);
