import { randomUUID } from 'node:crypto';
import { envReferences, EXTERNAL_TIMEOUT_MAX_MS, type HttpCall } from '../../domain/external';
import { formatDuration } from '../../domain/duration';
import { REDACTED, redactUrlCredentials } from '../../domain/redact';
import { oneLine } from '../../domain/text';
import { bodyExcerpt, describeFetchError, readBodyBounded } from '../fetch-errors';
import { DELIVERY_HEADER, signatureHeaders } from './signing';
import type { ExternalOutcome, ExternalRequest, HttpCaller } from './types';

/** An answer past this is refused unread: a deploy API's answer is a small JSON document. */
export const MAX_ANSWER_BYTES = 1024 * 1024;
/** How many progress messages an outcome keeps. */
const LAST_LINES = 5;
/** Longest message or progress line quoted from an answer. */
const MAX_QUOTE = 500;
/** What a last poll before the deadline is left for its own request. */
const LAST_POLL_MS = 1000;
/** Values shorter than this are not hidden in messages: hiding "1" or "prod" would garble every message. */
const MIN_HIDDEN_LENGTH = 4;

/** Retry-After of a 202 answer, clamped: a hostile or buggy API can neither spin us nor park the step for an hour. */
export interface PollBounds {
  minMs: number;
  maxMs: number;
  /** When the answer has no (readable) Retry-After. */
  defaultMs: number;
}
export const POLL_BOUNDS: PollBounds = { minMs: 1000, maxMs: 60_000, defaultMs: 2000 };

export interface SignedHttpCallerOptions {
  /** Where `${NAME}` in header values and `secretEnv` are looked up. */
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
  /**
   * The whole call, the first request and every poll: past it the outcome is `timeout`. By default the longest any
   * external call may take, which leaves a margin under the activities' 10-minute start-to-close timeout.
   */
  deadlineMs?: number;
  /** Tests shorten these. */
  poll?: Partial<PollBounds>;
}

type Kind = ExternalOutcome['kind'];

/** One request's answer, its body already read (bounded) and with every secret value hidden. */
interface Answer {
  status: number;
  headers: Headers;
  /** undefined: larger than MAX_ANSWER_BYTES. */
  text: string | undefined;
  /** The raw body, for a 2xx result: data for the caller to validate, not a message. */
  raw: string | undefined;
  url: URL;
}

/** How far one call has got: what its messages must hide, and what it has said so far. */
interface CallState {
  started: number;
  deadline: number;
  secrets: string[];
  lines: string[];
}

/** What every request of a call carries, resolved once. */
interface Prepared {
  headers: Record<string, string>;
  secret: string | undefined;
  /** Every value taken from the environment, hidden wherever the endpoint's words are shown. */
  secrets: string[];
}

/**
 * Calls a user's endpoint: JSON body, signed like the notifications, accepted-then-poll for long work. Never throws:
 * every answer, or the lack of one, is an outcome; only an abort of `request.signal` rejects (with its reason).
 */
export class SignedHttpCaller implements HttpCaller {
  readonly #env: NodeJS.ProcessEnv;
  readonly #fetch: typeof fetch;
  readonly #deadlineMs: number;
  readonly #poll: PollBounds;

  constructor(options: SignedHttpCallerOptions = {}) {
    this.#env = options.env ?? process.env;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#deadlineMs = options.deadlineMs ?? EXTERNAL_TIMEOUT_MAX_MS;
    this.#poll = { ...POLL_BOUNDS, ...options.poll };
  }

  async call(call: HttpCall, request: ExternalRequest): Promise<ExternalOutcome> {
    request.signal?.throwIfAborted();
    const started = Date.now();
    const state: CallState = { started, deadline: started + this.#deadlineMs, secrets: [], lines: [] };
    try {
      const prepared = this.prepare(call);
      if (typeof prepared === 'string') return outcome(state, 'failed', prepared);
      state.secrets = prepared.secrets;
      return await this.converse(call, request, prepared, state);
    } catch (error) {
      if (request.signal?.aborted) throw request.signal.reason;
      // A bug of ours, or a payload JSON cannot carry: the same call would fail the same way.
      return outcome(state, 'failed', `cannot call ${origin(call.url)}: ${(error as Error)?.message ?? String(error)}`);
    }
  }

  /** The headers every request of the call carries, with `${NAME}` resolved; or why the call cannot be made. */
  private prepare(call: HttpCall): Prepared | string {
    const secrets: string[] = [];
    const headers: Record<string, string> = {};
    for (const [name, template] of Object.entries(call.headers)) {
      let value = template;
      for (const variable of envReferences(template)) {
        const resolved = this.#env[variable];
        if (resolved === undefined || resolved === '') {
          return `header "${name}": environment variable ${variable} is not set`;
        }
        // What fetch would refuse, it refuses with an error that quotes the value: checked here, the value unsaid.
        if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(resolved)) {
          return `header "${name}": environment variable ${variable} holds characters a header cannot carry`;
        }
        secrets.push(resolved);
        value = value.split(`\${${variable}}`).join(resolved);
      }
      headers[name] = value;
    }
    let secret: string | undefined;
    if (call.secretEnv !== undefined) {
      secret = this.#env[call.secretEnv];
      if (secret === undefined || secret === '') {
        return `secretEnv: environment variable ${call.secretEnv} is not set (it should hold the signing key)`;
      }
      secrets.push(secret);
    }
    // Longest first, so a secret that contains another is hidden whole.
    const hidden = [...new Set(secrets.filter((s) => s.length >= MIN_HIDDEN_LENGTH))].sort(
      (a, b) => b.length - a.length,
    );
    return { headers, secret, secrets: hidden };
  }

  /** The POST, then a poll for as long as the endpoint answers 202. */
  private async converse(
    call: HttpCall,
    request: ExternalRequest,
    prepared: Prepared,
    state: CallState,
  ): Promise<ExternalOutcome> {
    const delivery = randomUUID();
    const headersFor = (body: Uint8Array): Headers => {
      const headers = new Headers(prepared.headers);
      // Ours win over the user's: the key and the signature are the contract, not something a header may replace.
      headers.set('accept', 'application/json');
      headers.set('user-agent', 'tollgate');
      headers.set('idempotency-key', request.key);
      headers.set(DELIVERY_HEADER, delivery);
      if (body.byteLength > 0) headers.set('content-type', 'application/json');
      if (prepared.secret !== undefined) {
        for (const [name, value] of Object.entries(signatureHeaders(prepared.secret, body))) headers.set(name, value);
      }
      return headers;
    };
    const home = new URL(call.url);
    const body = Buffer.from(JSON.stringify(request.payload), 'utf8');
    let answer = await this.exchange(home, 'POST', body, headersFor(body), call, request, state);
    let polling: URL | undefined;
    for (let poll = 1; ; poll++) {
      if (!('status' in answer)) return answer;
      if (answer.text === undefined) return outcome(state, 'failed', `HTTP ${answer.status}: answer larger than 1 MiB`);
      if (answer.status !== 202) return final(answer, state);

      const next = pollUrl(answer, home, polling);
      if (typeof next === 'string') return outcome(state, 'failed', next);
      polling = next;
      const line = shown(
        progressMessage(answer.text) ?? (poll === 1 ? 'accepted' : `in progress (poll ${poll})`),
        state,
      );
      state.lines.push(line);
      if (state.lines.length > LAST_LINES) state.lines.shift();
      request.onLine?.(line, 'stdout');

      // A wait that would cross the deadline is cut, so one last poll still fits before it, with time of its own;
      // with no room for that, the step is out of time.
      const latest = state.deadline - Date.now() - LAST_POLL_MS;
      if (latest <= 0) return unfinished(state);
      await pause(Math.min(this.retryAfter(answer.headers.get('retry-after')), latest), request.signal);
      const empty = new Uint8Array(0);
      answer = await this.exchange(next, 'GET', undefined, headersFor(empty), call, request, state);
    }
  }

  /** One request and its whole answer, bounded by the call's own timeout and what is left of the deadline. */
  private async exchange(
    url: URL,
    method: 'POST' | 'GET',
    body: Uint8Array | undefined,
    headers: Headers,
    call: HttpCall,
    request: ExternalRequest,
    state: CallState,
  ): Promise<Answer | ExternalOutcome> {
    const left = state.deadline - Date.now();
    if (left <= 0) return unfinished(state);
    const limitMs = Math.min(call.timeout, left);
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, limitMs);
    const cancel = () => controller.abort(request.signal?.reason);
    request.signal?.addEventListener('abort', cancel, { once: true });
    try {
      const response = await this.#fetch(url, {
        method,
        headers,
        ...(body !== undefined && { body }),
        // A redirect would resend a signed request, and the user's tokens, somewhere nobody configured.
        redirect: 'manual',
        signal: controller.signal,
      });
      const raw = await readBodyBounded(response, MAX_ANSWER_BYTES);
      return { status: response.status, headers: response.headers, text: raw && hide(raw, state.secrets), raw, url };
    } catch (error) {
      if (request.signal?.aborted) throw request.signal.reason;
      if (timedOut && limitMs < call.timeout) return unfinished(state);
      // Timed out, refused, reset: the next attempt may well get through, and the Idempotency-Key makes it safe.
      return outcome(state, 'retry', describeFetchError(error, limitMs, { url: origin(call.url) }));
    } finally {
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', cancel);
    }
  }

  /** Retry-After in seconds or as an HTTP date, clamped to the poll bounds. */
  private retryAfter(header: string | null): number {
    const { minMs, maxMs, defaultMs } = this.#poll;
    let ms = defaultMs;
    const text = header?.trim() ?? '';
    if (/^\d{1,9}$/.test(text)) ms = Number(text) * 1000;
    else if (text !== '' && Number.isFinite(Date.parse(text))) ms = Date.parse(text) - Date.now();
    return Math.min(maxMs, Math.max(minMs, ms));
  }
}

/** What a non-202 answer means: 2xx done, 408/429/5xx worth another attempt, anything else final. */
function final(answer: Answer, state: CallState): ExternalOutcome {
  const { status } = answer;
  const text = answer.text ?? '';
  if (status >= 200 && status < 300) {
    const raw = answer.raw ?? '';
    if (raw.trim() === '') return outcome(state, 'ok', undefined);
    try {
      return outcome(state, 'ok', JSON.parse(raw) as unknown);
    } catch {
      return outcome(state, 'failed', `HTTP ${status}: the answer is not JSON: ${bodyExcerpt(text)}`);
    }
  }
  const retryable = status === 408 || status === 429 || status >= 500;
  const redirect = status >= 300 && status < 400 ? ' (redirects are not followed)' : '';
  return outcome(state, retryable ? 'retry' : 'failed', `HTTP ${status}${redirect}: ${apiMessage(text)}`);
}

/**
 * Where a 202 says to poll: its Location, on the origin the call was configured with and nowhere else. A poll's own
 * 202 may leave it out: the same URL again.
 */
function pollUrl(answer: Answer, home: URL, polling: URL | undefined): URL | string {
  const location = answer.headers.get('location');
  if (location === null || location.trim() === '') return polling ?? `HTTP 202 without a Location header to poll`;
  let next: URL;
  try {
    next = new URL(location.trim(), answer.url);
  } catch {
    return `HTTP 202 with a Location that is not a URL: ${bodyExcerpt(location)}`;
  }
  if (next.origin !== home.origin) {
    return `HTTP 202 with a Location on ${next.origin}: polls go only to ${home.origin}, where the call was sent`;
  }
  // fetch refuses a URL with credentials, quoting them; and none belong in a poll.
  if (next.username !== '' || next.password !== '') return 'HTTP 202 with a Location that carries credentials';
  next.hash = '';
  return next;
}

/** The `error` (or `error.message`) or `message` of a JSON answer, else an excerpt of the body. */
function apiMessage(text: string): string {
  const said = jsonField(text, (body) => {
    const error = body.error;
    if (typeof error === 'string') return error;
    if (error !== null && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
      return (error as { message: string }).message;
    }
    return typeof body.message === 'string' ? body.message : undefined;
  });
  return said !== undefined && said.trim() !== '' ? said : bodyExcerpt(text);
}

const progressMessage = (text: string): string | undefined =>
  jsonField(text, (body) =>
    typeof body.message === 'string' && body.message.trim() !== '' ? body.message : undefined,
  );

function jsonField(text: string, pick: (body: Record<string, unknown>) => string | undefined): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  return body !== null && typeof body === 'object' && !Array.isArray(body)
    ? pick(body as Record<string, unknown>)
    : undefined;
}

/** Waits `ms`; an abort ends the wait at once, rejecting with the signal's reason. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the contract: the signal's own reason
      reject(signal.reason);
      return;
    }
    const abort = () => {
      clearTimeout(timer);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- as above
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', abort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', abort, { once: true });
  });
}

const origin = (url: string): string => new URL(url).origin;

/** Every occurrence of every secret as `***`, until none is left (a secret is longer than `***`, so this ends). */
function hide(text: string, secrets: readonly string[]): string {
  let out = text;
  for (let changed = true; changed;) {
    changed = false;
    for (const secret of secrets) {
      if (out.includes(secret)) {
        out = out.split(secret).join(REDACTED);
        changed = true;
      }
    }
  }
  return out;
}

/** A message as it may be shown: one printable line, URL credentials and every secret value hidden. */
const shown = (text: string, state: CallState): string =>
  hide(redactUrlCredentials(oneLine(hide(text, state.secrets), MAX_QUOTE)), state.secrets);

function unfinished(state: CallState): ExternalOutcome {
  const last = state.lines.at(-1);
  const within = formatDuration(state.deadline - state.started);
  return outcome(state, 'timeout', `no final answer within ${within}${last ? ` (last: ${last})` : ''}`);
}

function outcome(state: CallState, kind: 'ok', result: unknown): ExternalOutcome;
function outcome(state: CallState, kind: Exclude<Kind, 'ok'>, message: string): ExternalOutcome;
function outcome(state: CallState, kind: Kind, detail: unknown): ExternalOutcome {
  const common = { lastLines: [...state.lines], durationMs: Date.now() - state.started };
  if (kind === 'ok') return { kind, result: detail, ...common };
  return { kind, message: shown(String(detail), state), ...common };
}
