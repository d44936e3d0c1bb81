import type { Logger } from '../logger';
import { contractEnv } from '../providers/external/contract-env';
import type { ExternalOutcome, ExternalRunners } from '../providers/external/types';
import type { HookInput, HookResult } from './types';

/** A hook's answer that is worth another attempt: thrown, so Temporal retries the activity. */
export class HookRetryError extends Error {
  override readonly name = 'HookRetryError';
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * Runs one hook: its command or its HTTP call, with the release and (after a deploy) the step. A final answer —
 * passed or failed — is returned for the release to record and act on; "try again" is thrown for Temporal to retry.
 */
export async function runHook(
  external: ExternalRunners,
  log: Logger,
  input: HookInput,
  signal: AbortSignal | undefined,
): Promise<HookResult> {
  const { hook, context, step } = input;
  const key = `${context.releaseId}/hook/${hook.name}/${step ? step.key.split('/').pop() : hook.at}`;
  const hookLog = log.child({ hook: hook.name, at: hook.at });
  // The same facts twice: as the JSON document, and as TOLLGATE_* variables for a command.
  const release = {
    hook: hook.name,
    at: hook.at,
    key,
    releaseId: context.releaseId,
    service: context.service,
    version: context.version,
    stage: context.stage,
    track: context.track,
  };
  const request = {
    payload: {
      ...release,
      stableVersion: context.stableVersion ?? null,
      ...(step && {
        step: {
          key: step.key,
          track: step.track,
          ...(step.percent !== undefined && { percent: step.percent }),
          ...(step.canaryInstances !== undefined && { canaryInstances: step.canaryInstances }),
        },
      }),
    },
    env: contractEnv({
      ...release,
      stableVersion: context.stableVersion,
      percent: step?.percent,
      canaryInstances: step?.canaryInstances,
    }),
    key,
    ...(signal && { signal }),
    onLine: (line: string, stream: 'stdout' | 'stderr') => hookLog.info({ stream }, line),
  };
  const outcome: ExternalOutcome = hook.exec
    ? await external.commands.run(hook.exec, request)
    : await external.http.call(hook.http!, request);
  const tail = outcome.lastLines.length > 0 ? `; last output: ${outcome.lastLines.slice(-5).join(' | ')}` : '';
  switch (outcome.kind) {
    case 'ok':
      hookLog.info({ durationMs: outcome.durationMs }, 'hook passed');
      return { outcome: 'passed', reason: `passed in ${seconds(outcome.durationMs)}`, durationMs: outcome.durationMs };
    case 'retry':
      hookLog.warn({ reason: outcome.message }, 'hook asked to be tried again');
      throw new HookRetryError(`${outcome.message}${tail}`);
    case 'failed':
    case 'timeout':
      hookLog.warn({ reason: outcome.message, kind: outcome.kind }, 'hook failed');
      return { outcome: 'failed', reason: `${outcome.message}${tail}`, durationMs: outcome.durationMs };
  }
}
