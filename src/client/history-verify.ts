import { reverifyIdentityToken } from '../activities/identity-token';
import { proofProblem, type SigningView } from '../domain/controls';
import { identityKey } from '../domain/identity';
import type { MachineIdentity } from '../domain/identity-token';
import { CONTROL_SCHEMAS, type ControlName } from '../domain/messages';
import { releaseRequestSchema, releaseWorkflowId } from '../domain/release';
import { parseOpenSshKey, type Signer } from '../domain/signatures';
import { POLICY_FIRST_PATCH, START_RUN, type Signable, type Signed } from '../domain/signing-policy';
import { printable, printableLines } from '../domain/text';
import { describeZodError } from '../domain/zod-errors';
import { EXPORT_FORMAT } from './history-export';

/*
 * `tollgate history --verify FILE`: every signature in a release's history checked again, offline, with the policy
 * the history itself recorded, and which decisions that let the release go further are proven. A history file is
 * anyone's: nothing in it is trusted, nothing in it can make this throw, and what it says is shown printable.
 */

export type Via = 'start' | 'update' | 'signal';
export type ProofVerdict = 'proven' | 'unsigned' | 'invalid';
/** What the workflow did with a decision, as far as history tells: a signal's fate is decided after it is recorded. */
export type Taken = 'accepted' | 'may-have-accepted' | 'refused';

export interface VerifiedDecision {
  runId: string;
  eventId: number;
  /** The event's time (the workflow checks against its own task time, within a minute of it). */
  at: string;
  action: Signable;
  via: Via;
  by: string;
  /** The gate or stage the signature names (for a start, the version). */
  target?: string;
  verdict: ProofVerdict;
  /** The signer as the policy spells the name, or the CI machine identity. */
  identity?: string;
  fingerprint?: string;
  /** A start proven by a CI pipeline's OIDC token: who issued it, for whom. */
  token?: { issuer: string; subject: string };
  reason?: string;
  workflow: Taken;
}

export interface VerifiedRun {
  runId: string;
  events: number;
  /** Where the run's policy came from: its resolvePolicy activity, the run it continued, or nowhere. */
  policy: 'resolved' | 'carried' | 'none';
  /** Who could sign in this run: compare the fingerprints with the keys you know. */
  signers: { name: string; fingerprints: string[] }[];
}

export interface VerifySummary {
  /** Every decision that let the release go further, taken or maybe taken, is proven, and nothing contradicts. */
  ok: boolean;
  decisions: number;
  proven: number;
  /** Starts, approvals, promotions and resumes taken (or maybe taken) without a proof. */
  unproven: number;
  /** Decisions the workflow accepted whose proof does not hold here: the history is not what the workflow saw. */
  invalid: number;
  /** Messages the workflow refused (a signal whose signature failed; a start it would not prove). */
  refused: number;
  /** Why `ok` is false, one line each. */
  problems: string[];
}

export interface VerifyReport {
  workflowId?: string;
  runs: VerifiedRun[];
  decisions: VerifiedDecision[];
  summary: VerifySummary;
}

/** The decisions that let a release go further: these must be proven. */
const FORWARD: readonly Signable[] = ['start', 'approve', 'promote', 'resume'];
/** The workflow checks a signature's time against its own task's; the history shows the event's. */
export const SKEW_TOLERANCE_MS = 60_000;
const MAX_RUNS = 1_000;
const MAX_EVENTS = 1_000_000;
/** Temporal refuses payloads over 2 MiB by default; base64 makes 4 characters of 3 bytes. */
const MAX_PAYLOAD_CHARS = 4 * 1024 * 1024;
/** What a policy may list (signersSchema, signerSchema); more is not a policy the workflow resolved. */
const MAX_SIGNERS = 500;
const MAX_KEYS = 10;
/** Ed25519 verifications (about a millisecond each) spent on one file: a flood of forgeries is bounded. */
const KEY_CHECKS = 10_000;
/** Every key is tried on a failed signature only to name whose it was, and only in a policy this small. */
const NAMING_KEYS = 200;
const REFUSED_START = new Set(['UnprovenStart', 'InvalidRequest', 'InvalidWorkflowId', 'InvalidPolicy', 'NoTarget']);
const TARGETS: Record<ControlName, readonly string[]> = {
  approve: ['canary', 'production', 'inconclusive'],
  promote: ['staging', 'canary', 'production', 'watch'],
  resume: ['staging', 'canary', 'production'],
  pause: ['staging', 'canary', 'production'],
  abort: ['staging', 'canary', 'production'],
  rollback: ['production'],
};
const CONTROLS = Object.keys(CONTROL_SCHEMAS) as ControlName[];
/** A refusal for the key or the bytes, which the other signers' keys may explain ("signed with alice's key"). */
const MISMATCH = /does not match|a key not listed for/;

// ---- reading proto3 JSON, bounded --------------------------------------------------------------------------

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
const asStr = (v: unknown, max = 1024): string | undefined =>
  typeof v === 'string' && v.length <= max ? v : undefined;
const own = (o: Obj, key: string): unknown => (Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined);
const cut = (text: string, max = 300): string => (text.length > max ? `${text.slice(0, max)}…` : text);

/** A field by its proto3 JSON name (lowerCamel), or by its proto name (snake_case), which parsers accept too. */
function field(o: unknown, name: string): unknown {
  const v = asObj(o);
  if (!v) return undefined;
  return (
    own(v, name) ??
    own(
      v,
      name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
    )
  );
}
const path = (o: unknown, ...names: string[]): unknown => names.reduce((v, n) => field(v, n), o);

interface Event {
  index: number;
  id: number;
  /** ms since the epoch, NaN when unreadable. */
  time: number;
  /** The attributes' name without `EventAttributes`: `workflowExecutionSignaled`, `activityTaskCompleted`… */
  kind: string;
  attrs: Obj;
}

function readEvent(raw: unknown, index: number): Event | undefined {
  const e = asObj(raw);
  if (!e) return undefined;
  for (const key in e) {
    const kind = /^(.{1,80})(?:EventAttributes|_event_attributes)$/.exec(key)?.[1];
    const attrs = asObj(e[key]);
    if (!kind || !attrs || !Object.prototype.hasOwnProperty.call(e, key)) continue;
    const rawId = field(e, 'eventId');
    const id = typeof rawId === 'number' ? rawId : Number(asStr(rawId, 20) ?? NaN);
    const time = Date.parse(asStr(field(e, 'eventTime'), 64) ?? '');
    return {
      index,
      id: Number.isSafeInteger(id) ? id : 0,
      time,
      kind: kind.replace(/_(.)/g, (_, c: string) => c.toUpperCase()),
      attrs,
    };
  }
  return undefined;
}

const ENCODING_JSON = 'json/plain';
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
type Decoded = { ok: true; value: unknown } | { ok: false; reason: string };

function base64Text(data: string): string | undefined {
  if (!BASE64.test(data)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(data, 'base64'));
  } catch {
    return undefined;
  }
}

/** The first payload of a `payloads` list, decoded as the default data converter wrote it. */
function firstPayload(payloads: unknown): Decoded {
  const list = field(payloads, 'payloads');
  const payload = Array.isArray(list) ? asObj(list[0]) : undefined;
  if (!payload) return { ok: false, reason: 'no payload' };
  const encodingData = asStr(field(payload, 'metadata') && field(field(payload, 'metadata'), 'encoding'), 200);
  const encoding = encodingData === undefined ? undefined : base64Text(encodingData);
  if (encoding === 'binary/null') return { ok: true, value: undefined };
  if (encoding !== ENCODING_JSON)
    return {
      ok: false,
      reason: `a payload encoded as ${encoding === undefined ? 'nothing readable' : cut(encoding, 60)}, not ${ENCODING_JSON} (decode a codec's payloads before verifying)`,
    };
  const data = field(payload, 'data');
  if (typeof data !== 'string') return { ok: false, reason: 'a json/plain payload without data' };
  if (data.length > MAX_PAYLOAD_CHARS) return { ok: false, reason: 'a payload larger than Temporal accepts' };
  const text = base64Text(data);
  if (text === undefined) return { ok: false, reason: 'a payload whose data is not base64 of UTF-8 text' };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'a payload that is not JSON' };
  }
}

// ---- the policy in force ------------------------------------------------------------------------------------

interface PolicyView {
  raw: unknown;
  signers: Signer[];
  /** identityKey of each signer's name, for choosing the signer a message names without re-folding per message. */
  keysOf: string[];
  keyCount: number;
  machines: MachineIdentity[];
  require: Signable[];
  maxSkewMs: number;
  /** The workflow checks signatures only with signers or requirements (see Controls.signing). */
  active: boolean;
  problems: string[];
}

function policyView(raw: unknown): PolicyView | undefined {
  const approvals = asObj(field(raw, 'approvals'));
  if (!asObj(raw)) return undefined;
  const problems: string[] = [];
  const listed = field(approvals, 'signers');
  const signers: Signer[] = [];
  for (const s of Array.isArray(listed) ? listed.slice(0, MAX_SIGNERS) : []) {
    const name = asStr(field(s, 'name'), 128);
    const keys = field(s, 'keys');
    if (name === undefined || !Array.isArray(keys)) continue;
    if (keys.length > MAX_KEYS) problems.push(`the policy lists more than ${MAX_KEYS} keys for ${cut(name, 60)}`);
    signers.push({ name, keys: keys.slice(0, MAX_KEYS).filter((k): k is string => typeof k === 'string') });
  }
  if (Array.isArray(listed) && listed.length > MAX_SIGNERS)
    problems.push(`the policy lists over ${MAX_SIGNERS} signers`);
  const signing = asObj(field(approvals, 'signing'));
  const require = field(signing, 'require');
  const maxSkew = field(signing, 'maxSkew');
  const machines = field(approvals, 'machines');
  const required = Array.isArray(require) ? require.filter((r): r is Signable => typeof r === 'string') : [];
  return {
    raw,
    signers,
    keysOf: signers.map((s) => identityKey(s.name)),
    keyCount: signers.reduce((n, s) => n + s.keys.length, 0),
    machines: Array.isArray(machines) ? (machines.slice(0, 50).filter(asObj) as MachineIdentity[]) : [],
    require: required,
    maxSkewMs: typeof maxSkew === 'number' && Number.isFinite(maxSkew) ? Math.max(0, maxSkew) : 0,
    active: signing !== undefined && (signers.length > 0 || required.length > 0),
    problems,
  };
}

// ---- one run -------------------------------------------------------------------------------------------------

interface Run {
  runId: string;
  events: Event[];
  started?: Event;
  input: Decoded;
  continuedFrom?: string;
  continuedAs?: string;
  failureType?: string;
  /** Activity results by type, with the index of the event that delivered each. */
  results: Map<string, { index: number; value: Decoded }>;
  /** Indices of workflow tasks that started and completed (a failed one handled nothing). */
  tasks: number[];
  /** Patches the run recorded (`patched(...)` markers): what the workflow's rules were for this release. */
  patches: Set<string>;
}

function readRun(runId: string | undefined, rawEvents: unknown[]): Run | string {
  const events: Event[] = [];
  for (let i = 0; i < Math.min(rawEvents.length, MAX_EVENTS); i++) {
    const e = readEvent(rawEvents[i], i);
    if (e) events.push(e);
  }
  const started = events.find((e) => e.kind === 'workflowExecutionStarted');
  const id = runId ?? asStr(field(started?.attrs, 'originalExecutionRunId'), 200);
  if (!started || id === undefined) return 'no WorkflowExecutionStarted event with a run ID';
  const scheduled = new Map<number, string>();
  const results = new Map<string, { index: number; value: Decoded }>();
  const tasks: number[] = [];
  let failureType: string | undefined;
  let continuedAs: string | undefined;
  let task: number | undefined;
  const patches = new Set<string>();
  for (const e of events) {
    if (e.kind === 'markerRecorded' && field(e.attrs, 'markerName') === 'core_patch') {
      const data = firstPayload(field(field(e.attrs, 'details'), 'patch-data'));
      const id = data.ok ? asStr(field(data.value, 'id'), 200) : undefined;
      if (id) patches.add(id);
    }
    if (e.kind === 'workflowTaskStarted') task = e.index;
    else if (e.kind === 'workflowTaskCompleted' && task !== undefined) tasks.push(task);
    if (e.kind.startsWith('workflowTask') && e.kind !== 'workflowTaskStarted') task = undefined;
    if (e.kind === 'activityTaskScheduled')
      scheduled.set(e.id, asStr(path(e.attrs, 'activityType', 'name'), 200) ?? '');
    else if (e.kind === 'activityTaskCompleted') {
      const type = scheduled.get(Number(asStr(field(e.attrs, 'scheduledEventId'), 20)));
      if (type && !results.has(type))
        results.set(type, { index: e.index, value: firstPayload(field(e.attrs, 'result')) });
    } else if (e.kind === 'workflowExecutionFailed')
      failureType = asStr(path(e.attrs, 'failure', 'applicationFailureInfo', 'type'), 200);
    else if (e.kind === 'workflowExecutionContinuedAsNew')
      continuedAs = asStr(field(e.attrs, 'newExecutionRunId'), 200);
  }
  return {
    runId: id,
    events,
    started,
    input: firstPayload(field(started.attrs, 'input')),
    continuedFrom: asStr(field(started.attrs, 'continuedExecutionRunId'), 200) || undefined,
    continuedAs,
    failureType,
    results,
    tasks,
    patches,
  };
}

/** Where the first task starting after `index` is in `run.tasks` (sorted: tasks start in history order). */
function firstTaskAfter(run: Run, index: number): number {
  let [lo, hi] = [0, run.tasks.length];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (run.tasks[mid]! > index) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Whether the policy was in force when the workflow decided on the message at `index`: the workflow checks no
 * signature before it has a policy, and the policy and a message delivered in one task may be handled in either order.
 */
function inForce(run: Run, policyIndex: number, index: number, via: Via): 'yes' | 'no' | 'unsure' {
  if (policyIndex < 0) return 'yes';
  if (!Number.isFinite(policyIndex) || index < policyIndex) return 'no';
  // A signal is handled by the first task that starts after it; an update by the task it was accepted in.
  const handled = via === 'signal' ? index : (run.tasks[firstTaskAfter(run, index) - 1] ?? -1);
  if (policyIndex > handled) return 'no';
  // The policy was set in a task before the one that handled the message.
  return (run.tasks[firstTaskAfter(run, policyIndex)] ?? Infinity) < handled ? 'yes' : 'unsure';
}

// ---- the whole release ---------------------------------------------------------------------------------------

interface Context {
  workflowId: string;
  seenNonces: Set<string>;
  keyChecks: number;
  decisions: VerifiedDecision[];
  problems: string[];
  /** Decisions the workflow accepted that it could not have, had the history been what it saw. */
  contradictions: number;
}

const iso = (time: number) => (Number.isFinite(time) && Math.abs(time) < 8.64e15 ? new Date(time).toISOString() : '?');
const claimedBy = (payload: unknown) => {
  const by = field(payload, 'by');
  return typeof by === 'string' && by.trim() !== '' ? cut(by.trim(), 128) : 'unreadable';
};
const where = (d: VerifiedDecision) => `${d.action} (${d.via} #${d.eventId} of run ${cut(d.runId, 40)}, by ${d.by})`;

/** verifySignedControl through the workflow's own proofProblem, charged to the file's budget of key checks. */
function checkProof(
  ctx: Context,
  action: Signable,
  by: string,
  signed: Signed,
  expected: { runId: string; target: string },
  policy: PolicyView,
  now: number,
): { reason: string } | { identity: string; fingerprint: string } {
  if (!Number.isFinite(now)) return { reason: 'the event has no readable time to check the signature against' };
  // Only the signer the message names can prove it; the rest are tried once, to say whose key it was.
  const named = identityKey(by);
  const own = policy.signers.filter((_, i) => policy.keysOf[i] === named);
  const attempt = (signers: Signer[]) => {
    ctx.keyChecks += signers.reduce((n, s) => n + s.keys.length, 0);
    const view: SigningView = {
      workflowId: ctx.workflowId,
      runId: expected.runId,
      now,
      require: policy.require,
      signers,
      maxSkewMs: policy.maxSkewMs + SKEW_TOLERANCE_MS,
      seenNonces: ctx.seenNonces,
    };
    return proofProblem(action, by, signed, { workflowId: ctx.workflowId, ...expected }, view);
  };
  if (ctx.keyChecks > KEY_CHECKS) {
    const reason = `not checked: this file holds more signatures than ${KEY_CHECKS} key checks cover`;
    // An unchecked signal is not a refused one: the whole file is then unproven.
    if (!ctx.problems.includes(reason)) ctx.problems.push(reason);
    return { reason };
  }
  let checked = attempt(own.length > 0 ? own : policy.signers.slice(0, 1));
  if (
    checked &&
    'reason' in checked &&
    own.length > 0 &&
    MISMATCH.test(checked.reason) &&
    policy.keyCount <= NAMING_KEYS
  )
    checked = attempt(policy.signers);
  if (!checked) return { reason: 'unsigned' };
  if ('reason' in checked)
    return { reason: checked.reason.replace(/^(start|approve|promote|resume|pause|abort|rollback) refused: /, '') };
  ctx.seenNonces.add(signed.nonce);
  return { identity: checked.identity, fingerprint: checked.proof.fingerprint };
}

function record(ctx: Context, d: VerifiedDecision, contradiction?: string): void {
  ctx.decisions.push(d);
  if (contradiction) {
    ctx.contradictions++;
    ctx.problems.push(`${where(d)}: ${contradiction}`);
  } else if (FORWARD.includes(d.action) && d.workflow !== 'refused' && d.verdict !== 'proven')
    ctx.problems.push(`${where(d)} is not proven: ${d.reason ?? d.verdict}`);
}

/** A control sent as a signal or accepted as an update, decided as the workflow decides (decideControl). */
function checkControl(
  ctx: Context,
  run: Run,
  e: Event,
  name: ControlName,
  payload: Decoded,
  via: Via,
  policy: PolicyView | undefined,
  policyIndex: number,
): void {
  const base = { runId: run.runId, eventId: e.id, at: iso(e.time), action: name, via };
  const accepted = via === 'update';
  const refuse = (by: string, reason: string, target?: string) =>
    record(
      ctx,
      {
        ...base,
        by,
        ...(target !== undefined && { target: cut(target, 80) }),
        verdict: 'invalid',
        reason,
        workflow: accepted ? 'accepted' : 'refused',
      },
      accepted ? `the workflow accepted it, but ${reason}` : undefined,
    );
  if (!payload.ok) return refuse('unreadable', payload.reason);
  const parsed = CONTROL_SCHEMAS[name].safeParse(payload.value);
  if (!parsed.success) return refuse(claimedBy(payload.value), `invalid ${name}: ${describeZodError(parsed.error)}`);
  const { by, signed } = parsed.data;
  const state = inForce(run, policyIndex, e.index, via);
  // Releases started since signed controls refuse every control but abort until their policy is known.
  if (run.patches.has(POLICY_FIRST_PATCH) && state === 'no' && name !== 'abort')
    return record(
      ctx,
      {
        ...base,
        by,
        verdict: signed ? 'invalid' : 'unsigned',
        reason: 'sent before the policy was resolved: the workflow refuses every control but abort then',
        workflow: accepted ? 'accepted' : 'refused',
      },
      accepted ? 'the workflow accepted a control before its policy was resolved' : undefined,
    );
  if (!signed) {
    const required = policy?.active === true && policy.require.includes(name);
    const reason = required
      ? state === 'yes'
        ? `${name} must be signed for this service`
        : `unsigned, sent before the policy requiring it signed was in force`
      : undefined;
    const refused = required && state === 'yes';
    return record(
      ctx,
      {
        ...base,
        by,
        verdict: 'unsigned',
        ...(reason && { reason }),
        workflow: accepted ? 'accepted' : refused ? 'refused' : 'may-have-accepted',
      },
      accepted && refused ? `the workflow accepted it unsigned, yet the policy requires ${name} signed` : undefined,
    );
  }
  if (!policy || state === 'no')
    return refuse(by, 'the workflow had no policy yet: it checks no signature then, and refuses it', signed.target);
  if (!policy.active) return refuse(by, 'this release lists no signers, so no signature can be checked', signed.target);
  if (!TARGETS[name].includes(signed.target))
    return refuse(by, `signed for ${cut(signed.target, 80)}, which ${name} never applies to`, signed.target);
  const checked = checkProof(ctx, name, by, signed, { runId: run.runId, target: signed.target }, policy, e.time);
  if ('reason' in checked) return refuse(by, checked.reason, signed.target);
  record(ctx, {
    ...base,
    by,
    target: signed.target,
    verdict: 'proven',
    ...checked,
    workflow: accepted ? 'accepted' : 'may-have-accepted',
  });
}

/** The release's start, from the request the first run was started with, proven as Release.proveStart does. */
async function checkStart(ctx: Context, run: Run, policy: PolicyView | undefined): Promise<void> {
  const e = run.started!;
  const base = { runId: run.runId, eventId: e.id, at: iso(e.time), action: 'start' as const, via: 'start' as const };
  const refused = run.failureType !== undefined && REFUSED_START.has(run.failureType);
  const workflow: Taken = refused ? 'refused' : 'accepted';
  const note = (d: Omit<VerifiedDecision, keyof typeof base | 'workflow'>) => record(ctx, { ...base, ...d, workflow });
  if (!run.input.ok)
    return note({ by: 'unreadable', verdict: 'invalid', reason: `the request is ${run.input.reason}` });
  const parsed = releaseRequestSchema.safeParse(run.input.value);
  if (!parsed.success)
    return note({
      by: claimedBy(run.input.value),
      verdict: 'invalid',
      reason: `invalid release request: ${describeZodError(parsed.error)}`,
    });
  const request = parsed.data;
  const by = request.initiator;
  const target = request.version;
  if (!request.signed && !request.identityToken) {
    const required = policy?.require.includes('start') === true;
    return note({
      by,
      target,
      verdict: 'unsigned',
      ...(required && { reason: 'start must be proven for this service' }),
    });
  }
  if (!policy)
    return note({ by, target, verdict: 'invalid', reason: 'no policy in this history to check the start with' });
  if (request.signed) {
    const checked = checkProof(ctx, 'start', by, request.signed, { runId: START_RUN, target }, policy, e.time);
    return note({ by, target, verdict: 'reason' in checked ? 'invalid' : 'proven', ...checked });
  }
  const recorded = run.results.get('verifyIdentityToken')?.value;
  const result = recorded?.ok ? asObj(recorded.value) : undefined;
  const verdict = asObj(result && field(result, 'verdict'));
  const fail = (reason: string) => note({ by, target, verdict: 'invalid', reason });
  if (!result || !verdict) return fail('no verifyIdentityToken result in this history to check the token with');
  if (field(verdict, 'ok') !== true)
    return fail(`the worker refused the token: ${cut(asStr(field(verdict, 'reason'), 2000) ?? 'no reason recorded')}`);
  const machineName = field(verdict, 'machine');
  const machine = policy.machines.find((m) => field(m, 'name') === machineName);
  if (!machine) return fail(`the policy lists no machine ${cut(String(asStr(machineName, 200) ?? '?'), 80)}`);
  const again = await reverifyIdentityToken(request.identityToken!, field(result, 'keys'), machine, iso(e.time));
  if (!again.ok) return fail(again.reason);
  note({
    by,
    target,
    verdict: 'proven',
    identity: again.machine,
    token: { issuer: cut(asStr(field(machine, 'issuer'), 512) ?? '', 512), subject: cut(again.subject, 200) },
  });
}

function signersOf(policy: PolicyView | undefined): VerifiedRun['signers'] {
  return (policy?.signers ?? []).map((s) => ({
    name: s.name,
    fingerprints: s.keys.flatMap((k) => {
      const parsed = parseOpenSshKey(k);
      return parsed.ok ? [parsed.value.fingerprint] : [];
    }),
  }));
}

async function verifyRuns(workflowId: string | undefined, runs: Run[], ctx: Context): Promise<VerifiedRun[]> {
  const reports: VerifiedRun[] = [];
  let previous: { runId: string; policy: unknown } | undefined;
  for (const [i, run] of runs.entries()) {
    const carried = run.continuedFrom !== undefined;
    if (i === 0 && carried)
      ctx.problems.push(
        `run ${cut(run.runId, 40)} continues ${cut(run.continuedFrom!, 40)}, which is not in this file: the start is not checked`,
      );
    if (previous && run.continuedFrom !== previous.runId)
      ctx.problems.push(
        `run ${cut(run.runId, 40)} does not continue run ${cut(previous.runId, 40)}, the one before it in this file`,
      );
    let raw: unknown;
    let policyIndex = -1;
    if (carried) raw = run.input.ok ? path(run.input.value, 'carried', 'policy') : undefined;
    else {
      const resolved = run.results.get('resolvePolicy');
      if (resolved?.value.ok) [raw, policyIndex] = [resolved.value.value, resolved.index];
    }
    const policy = policyView(raw);
    if (!policy) policyIndex = Infinity;
    for (const p of policy?.problems ?? []) ctx.problems.push(`run ${cut(run.runId, 40)}: ${p}`);
    if (previous && policy && JSON.stringify(previous.policy) !== JSON.stringify(policy.raw))
      ctx.problems.push(
        `the policy carried into run ${cut(run.runId, 40)} is not the one run ${cut(previous.runId, 40)} had`,
      );
    if (!carried) await checkStart(ctx, run, policy);
    for (const e of run.events) {
      const signal = e.kind === 'workflowExecutionSignaled';
      const update = e.kind === 'workflowExecutionUpdateAccepted';
      if (!signal && !update) continue;
      const at = update ? path(e.attrs, 'acceptedRequest', 'input') : e.attrs;
      const name = asStr(field(at, update ? 'name' : 'signalName'), 100) as ControlName | undefined;
      if (name === undefined || !CONTROLS.includes(name)) continue;
      const payload = firstPayload(field(at, update ? 'args' : 'input'));
      checkControl(ctx, run, e, name, payload, update ? 'update' : 'signal', policy, policyIndex);
    }
    reports.push({
      runId: run.runId,
      events: run.events.length,
      policy: !policy ? 'none' : carried ? 'carried' : 'resolved',
      signers: signersOf(policy),
    });
    previous = { runId: run.runId, policy: policy?.raw };
  }
  const last = runs.at(-1);
  if (last?.continuedAs)
    ctx.problems.push(
      `run ${cut(last.runId, 40)} continued as new as ${cut(last.continuedAs, 40)}, which is not in this file: its decisions are not checked`,
    );
  if (workflowId === undefined) ctx.problems.push('no workflow ID: neither the file nor a release request names it');
  return reports;
}

/** The release's runs from either shape of file, or why it is neither. */
function readDocument(doc: unknown): { workflowId?: string; runs: Run[]; problems: string[] } | string {
  const d = asObj(doc);
  if (!d) return 'not a history: expected a JSON object';
  const problems: string[] = [];
  const runs: Run[] = [];
  const format = own(d, 'format');
  let workflowId: string | undefined;
  if (format !== undefined) {
    if (format !== EXPORT_FORMAT)
      return `an unknown format ${cut(String(asStr(format, 100) ?? typeof format), 100)}, not ${EXPORT_FORMAT}`;
    workflowId = asStr(own(d, 'workflowId'), 512);
    const listed = own(d, 'runs');
    if (workflowId === undefined) return `a ${EXPORT_FORMAT} file without a workflowId`;
    if (!Array.isArray(listed) || listed.length === 0) return `a ${EXPORT_FORMAT} file without runs`;
    if (listed.length > MAX_RUNS) return `a file of ${listed.length} runs, more than ${MAX_RUNS}`;
    for (const [i, r] of listed.entries()) {
      const runId = asStr(field(r, 'runId'), 200);
      const events = field(r, 'events');
      const run = runId !== undefined && Array.isArray(events) ? readRun(runId, events) : 'no runId and events';
      if (typeof run === 'string') problems.push(`run ${i + 1} of the file is unreadable: ${run}`);
      else if (runs.some((earlier) => earlier.runId === run.runId))
        problems.push(`run ${cut(run.runId, 40)} is in the file twice`);
      else runs.push(run);
    }
  } else {
    const events = own(d, 'events');
    if (!Array.isArray(events))
      return 'not a history: expected a tollgate-history/v1 file or a Temporal JSON history ({"events": [...]})';
    const run = readRun(undefined, events);
    if (typeof run === 'string') return `the history is unreadable: ${run}`;
    runs.push(run);
  }
  // The workflow only ever runs as release-<service>: a file that names another was not a release's.
  const first = runs[0];
  const input = first?.input.ok ? first.input.value : undefined;
  const service = asStr(
    first?.continuedFrom !== undefined ? path(input, 'carried', 'request', 'service') : field(input, 'service'),
    100,
  );
  const expected = service === undefined ? undefined : releaseWorkflowId(service);
  if (workflowId !== undefined && expected !== undefined && workflowId !== expected)
    problems.push(
      `the file names workflow ${cut(workflowId, 80)}, but a release of ${cut(service!, 80)} runs as ${cut(expected, 80)}`,
    );
  return { workflowId: workflowId ?? expected, runs, problems };
}

const unreadable = (reason: string): VerifyReport => ({
  runs: [],
  decisions: [],
  summary: { ok: false, decisions: 0, proven: 0, unproven: 0, invalid: 0, refused: 0, problems: [reason] },
});

/**
 * Every signature in a release's history, checked again offline: `doc` is a `tollgate-history/v1` file
 * (`exportRelease`) or a Temporal JSON history of one run. Never throws: whatever the file holds, the answer is a report.
 */
export async function verifyHistory(doc: unknown): Promise<VerifyReport> {
  try {
    const read = readDocument(doc);
    if (typeof read === 'string') return unreadable(read);
    const ctx: Context = {
      workflowId: read.workflowId ?? '',
      seenNonces: new Set(),
      keyChecks: 0,
      decisions: [],
      problems: [...read.problems],
      contradictions: 0,
    };
    const runs = await verifyRuns(read.workflowId, read.runs, ctx);
    const { decisions, problems } = ctx;
    const count = (ok: (d: VerifiedDecision) => boolean) => decisions.filter(ok).length;
    return {
      ...(read.workflowId !== undefined && { workflowId: read.workflowId }),
      runs,
      decisions,
      summary: {
        ok: problems.length === 0 && decisions.length > 0,
        decisions: decisions.length,
        proven: count((d) => d.verdict === 'proven'),
        unproven: count((d) => FORWARD.includes(d.action) && d.workflow !== 'refused' && d.verdict !== 'proven'),
        invalid: ctx.contradictions,
        refused: count((d) => d.workflow === 'refused'),
        problems: problems.length === 0 && decisions.length === 0 ? ['the history holds no decision'] : problems,
      },
    };
  } catch (err) {
    return unreadable(
      `the file could not be checked: ${cut(err instanceof Error ? err.message : 'an unexpected value', 300)}`,
    );
  }
}

/** The report for a terminal: every string from the file shown printable, one decision a line. */
export function renderVerifyReport(report: VerifyReport): string {
  const p = (text: string, max = 200) => printable(text, max);
  const { summary } = report;
  const lines = [
    `${p(report.workflowId ?? 'unknown release')}: ${report.runs.length} run(s), ${summary.decisions} decision(s), ${summary.proven} proven` +
      ` — ${summary.ok ? 'OK: every decision that let the release go further is proven' : 'NOT PROVEN'}`,
  ];
  for (const [i, run] of report.runs.entries()) {
    const signers = run.signers.map(
      (s) => `${p(s.name, 128)} (${s.fingerprints.map((f) => p(f, 60)).join(', ') || 'no valid key'})`,
    );
    lines.push(
      `run ${i + 1} ${p(run.runId, 60)}: ${run.events} events, policy ${run.policy}; signers: ${signers.join(', ') || 'none'}`,
    );
    for (const d of report.decisions.filter((x) => x.runId === run.runId)) {
      const proof =
        d.verdict === 'proven'
          ? `proven: ${p(d.identity ?? '?', 128)} ${d.token ? `(token of ${p(d.token.issuer, 200)} for ${p(d.token.subject, 200)})` : p(d.fingerprint ?? '', 60)}`
          : `${d.verdict}${d.reason ? `: ${p(d.reason, 400)}` : ''}`;
      const taken =
        d.workflow === 'accepted'
          ? ''
          : ` [${d.workflow === 'refused' ? 'refused by the workflow' : 'signal: may have been accepted'}]`;
      lines.push(
        `  #${d.eventId} ${p(d.at, 40)} ${d.action} ${p(d.target ?? '-', 80)} via ${d.via} by ${p(d.by, 128)}: ${proof}${taken}`,
      );
    }
  }
  if (summary.problems.length > 0)
    lines.push('problems:', ...summary.problems.slice(0, 200).map((x) => `  - ${p(x, 600)}`));
  if (summary.problems.length > 200) lines.push(`  … and ${summary.problems.length - 200} more`);
  return printableLines(lines.join('\n')) + '\n';
}
