import type { CommandCall, HttpCall } from '../../src/domain/external';
import type { Hook } from '../../src/domain/policy';
import type { ExternalOutcome, ExternalRequest, ExternalRunners } from '../../src/providers/external/types';

export type Answer = ExternalOutcome['kind'] | ((request: ExternalRequest) => ExternalOutcome['kind']);

/**
 * Hook runners standing in for the real process runner and HTTP caller: each call recorded, answered by the hook's
 * name (`ok` when not named). The real activity, workflow and records run on the time-skipping server.
 */
export function scriptedRunners(answers: Record<string, Answer> = {}) {
  const calls: { via: 'exec' | 'http'; request: ExternalRequest }[] = [];
  const answer = (via: 'exec' | 'http', request: ExternalRequest): Promise<ExternalOutcome> => {
    calls.push({ via, request });
    const scripted = answers[request.env.TOLLGATE_HOOK ?? ''] ?? 'ok';
    const kind = typeof scripted === 'function' ? scripted(request) : scripted;
    const lastLines = ['checking…', `${kind}: the hook's own words`];
    if (kind === 'ok') return Promise.resolve({ kind, result: undefined, lastLines, durationMs: 12 });
    return Promise.resolve({ kind, message: `${request.env.TOLLGATE_HOOK} said ${kind}`, lastLines, durationMs: 12 });
  };
  const runners: ExternalRunners = {
    commands: { run: (_call: CommandCall, request) => answer('exec', request) },
    http: { call: (_call: HttpCall, request) => answer('http', request) },
  };
  /** Which hook ran where, in order: `name@moment[ step]`. */
  const ran = () =>
    calls.map(({ request }) => {
      const step = (request.payload.step as { key?: string } | undefined)?.key?.split('/').pop();
      return `${request.env.TOLLGATE_HOOK}@${request.env.TOLLGATE_AT}${step ? ` ${step}` : ''}`;
    });
  return { runners, calls, ran };
}

/** A hook that runs `./hooks/<name>` at `at`. */
export const execHook = (name: string, at: Hook['at'], extra: Partial<Hook> = {}) => ({
  name,
  at,
  exec: { command: ['./hooks/' + name] },
  ...extra,
});
