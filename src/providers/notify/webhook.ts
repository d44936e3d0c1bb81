import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ConfigError } from '../../config/env';
import { NOTIFY_ACTIVITY_TIMEOUT_MS, NOTIFY_DELIVERY_BUDGET_MS } from '../../domain/notify-budget';
import { redactUrlCredentials } from '../../domain/redact';
import { describeZodError } from '../../domain/zod-errors';
import { oneLine } from '../../domain/text';
import type { Logger } from '../../logger';
import { DELIVERY_HEADER, SIGNATURE_HEADER, sign, TIMESTAMP_HEADER } from '../external/signing';
import { bodyExcerpt, describeFetchError } from '../fetch-errors';
import { splitUrlCredentials } from '../url-credentials';
import { RELEASE_EVENTS, type Notifier, type ReleaseEvent, type ReleaseNotification } from './types';

// Signing moved to ../external/signing (shared with HTTP targets and hooks); re-exported for receivers that import it here.
export { DELIVERY_HEADER, SIGNATURE_HEADER, sign, TIMESTAMP_HEADER, verifySignature } from '../external/signing';

export interface WebhookNotifierOptions {
  /** `user:password@` in it is sent as HTTP basic auth, never as part of the URL. */
  url: string;
  format: 'json' | 'slack';
  /** HMAC key, already resolved by the caller (env var, file); never logged. */
  secret?: string;
  /** Per attempt, connect to last byte of the response. */
  timeoutMs?: number;
  /** Further attempts after a timeout, a refused connection, 408, 429 or 5xx. */
  retries?: number;
  /** First pause between attempts; doubles each time. */
  backoffMs?: number;
  /** Only these events are sent; all when left out. */
  events?: readonly ReleaseEvent[];
  logger: Logger;
  fetch?: typeof fetch;
}

const DEFAULTS = { timeoutMs: 3000, retries: 2, backoffMs: 250 } as const;

interface DeliveryTiming {
  timeoutMs: number;
  retries: number;
  backoffMs: number;
}

/** The longest one delivery can take as `notify` runs it: every attempt timing out, and every backoff pause slept. */
export function worstCaseDeliveryMs({ timeoutMs, retries, backoffMs }: DeliveryTiming): number {
  // Pauses before attempts 2..retries+1: backoffMs · (1 + 2 + … + 2^(retries-1)).
  return (retries + 1) * timeoutMs + backoffMs * (2 ** retries - 1);
}

/**
 * Refuses timing that cannot finish inside the notify activity's timeout, naming `retries` (or `timeoutMs` when even
 * one attempt is too long). MultiNotifier sends to every webhook at once, so each must fit on its own.
 */
function refineDeliveryBudget(timing: DeliveryTiming, ctx: z.RefinementCtx): void {
  const worst = worstCaseDeliveryMs(timing);
  if (worst <= NOTIFY_DELIVERY_BUDGET_MS) return;
  let fits = -1;
  while (worstCaseDeliveryMs({ ...timing, retries: fits + 1 }) <= NOTIFY_DELIVERY_BUDGET_MS) fits++;
  const field = fits >= 0 ? 'retries' : 'timeoutMs';
  const advice =
    fits >= 0 ? `at most ${fits} retries fit with this timeout and backoff` : 'one attempt must fit on its own';
  ctx.addIssue({
    code: 'custom',
    path: [field],
    message:
      `${timing.retries} retries of up to ${timing.timeoutMs} ms each, with backoff, can take ${worst / 1000} s: ` +
      `more than the ${NOTIFY_ACTIVITY_TIMEOUT_MS / 1000} s a notification may take; ${advice}`,
  });
}

const optionsSchema = z
  .object({
    url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
    format: z.enum(['json', 'slack']),
    secret: z.string().min(1, 'must not be empty').optional(),
    timeoutMs: z.number().int().min(1).max(60_000).default(DEFAULTS.timeoutMs),
    retries: z.number().int().min(0).max(10).default(DEFAULTS.retries),
    backoffMs: z.number().int().min(0).max(60_000).default(DEFAULTS.backoffMs),
    events: z.array(z.enum(RELEASE_EVENTS)).optional(),
  })
  .superRefine(refineDeliveryBudget);

type Attempt = { ok: true } | { ok: false; retryable: boolean; why: string };

/** Posts release notifications to one HTTP endpoint (a generic JSON receiver or a Slack incoming webhook). */
export class WebhookNotifier implements Notifier {
  readonly kind = 'webhook';
  readonly format: 'json' | 'slack';
  /** Only the origin is ever logged: Slack-style webhook URLs carry their credential in the path. */
  readonly target: string;
  readonly #url: URL;
  readonly #authorization: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #secret: string | undefined;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #backoffMs: number;
  readonly #events: ReadonlySet<ReleaseEvent> | undefined;
  readonly #logger: Logger;

  constructor(options: WebhookNotifierOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) throw new TypeError(`webhook notifier: ${describeZodError(parsed.error)}`);
    const { url, authorization } = splitUrlCredentials(parsed.data.url);
    this.#authorization = authorization;
    this.#url = url;
    this.target = url.origin;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.format = parsed.data.format;
    this.#secret = parsed.data.secret;
    this.#timeoutMs = parsed.data.timeoutMs;
    this.#retries = parsed.data.retries;
    this.#backoffMs = parsed.data.backoffMs;
    this.#events = parsed.data.events && new Set(parsed.data.events);
    this.#logger = options.logger;
  }

  async notify(n: ReleaseNotification): Promise<void> {
    if (this.#events && !this.#events.has(n.event)) return;
    const context = {
      event: n.event,
      service: n.service,
      version: n.version,
      stage: n.stage,
      track: n.track,
      releaseId: n.releaseId,
      target: this.target,
      format: this.format,
    };
    try {
      const body = Buffer.from(JSON.stringify(this.format === 'slack' ? slackPayload(n) : jsonPayload(n)), 'utf8');
      const delivery = randomUUID();
      const attempts = this.#retries + 1;
      let last: Attempt = { ok: false, retryable: false, why: 'not attempted' };
      for (let attempt = 1; attempt <= attempts; attempt++) {
        if (attempt > 1) await sleep(this.#backoffMs * 2 ** (attempt - 2));
        last = await this.post(body, n.event, delivery);
        if (last.ok) return;
        if (!last.retryable) break;
        if (attempt < attempts) this.#logger.debug({ ...context, attempt, why: last.why }, 'retrying notification');
      }
      if (!last.ok) this.#logger.warn({ ...context, why: last.why }, 'release notification not delivered');
    } catch (err) {
      // A payload that cannot be serialised (circular or BigInt details) is still only a lost notification.
      const why = this.hideUrl(err instanceof Error ? err.message : String(err));
      this.#logger.warn({ ...context, why }, 'release notification not delivered');
    }
  }

  private async post(body: Buffer, event: ReleaseEvent, delivery: string): Promise<Attempt> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'tollgate-notifier',
      'x-tollgate-event': event,
      [DELIVERY_HEADER]: delivery,
    };
    if (this.#authorization !== undefined) headers.authorization = this.#authorization;
    if (this.#secret !== undefined) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      headers[TIMESTAMP_HEADER] = timestamp;
      headers[SIGNATURE_HEADER] = sign(this.#secret, timestamp, body);
    }
    try {
      const response = await this.#fetch(this.#url, {
        method: 'POST',
        headers,
        body,
        // A redirect would resend a signed payload somewhere nobody configured.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const text = await response.text();
      if (response.status >= 200 && response.status < 300) return { ok: true };
      const status = response.status;
      const retryable = status === 408 || status === 429 || status >= 500;
      return { ok: false, retryable, why: `HTTP ${status}: ${bodyExcerpt(text)}` };
    } catch (error) {
      const receiver = { name: 'the receiver', hide: (text: string) => this.hideUrl(text) };
      return { ok: false, retryable: true, why: describeFetchError(error, this.#timeoutMs, receiver) };
    }
  }

  /** An error may quote the URL it failed on; its path can be the credential (Slack), so only the origin is shown. */
  private hideUrl(text: string): string {
    const path = this.#url.href.slice(this.#url.origin.length);
    const shown = path.length > 1 ? text.split(path).join('/…') : text;
    return redactUrlCredentials(shown);
  }
}

export function jsonPayload(n: ReleaseNotification): Record<string, unknown> {
  return { ...n, canary: n.track === 'canary', source: 'tollgate' };
}

const EMOJI: Record<ReleaseEvent, string> = {
  'release-started': ':rocket:',
  'canary-started': ':hatching_chick:',
  'check-failed': ':rotating_light:',
  'awaiting-approval': ':raised_hand:',
  'rolled-back': ':rewind:',
  'watch-started': ':eyes:',
  'rolled-back-after-promotion': ':rewind:',
  promoted: ':white_check_mark:',
  aborted: ':octagonal_sign:',
};
const LABEL: Record<ReleaseNotification['track'], string> = {
  staging: '[STAGING] ',
  canary: '[CANARY] ',
  production: '',
};

/** One line people can act on from a phone notification; canary and staging traffic say so up front. */
export function slackText(n: ReleaseNotification): string {
  const what: Record<ReleaseEvent, string> = {
    'release-started': 'release started',
    'canary-started': 'canary started',
    'check-failed': 'check failed',
    'awaiting-approval': 'awaiting approval',
    'rolled-back': n.stableVersion ? `rolled back to ${n.stableVersion}` : 'rolled back',
    'watch-started': 'out on every wave; production watched',
    'rolled-back-after-promotion': n.stableVersion
      ? `rolled back to ${n.stableVersion} after reaching all of production`
      : 'rolled back after reaching all of production',
    promoted: 'promoted',
    aborted: 'aborted',
  };
  const message = oneLine(n.message, 500);
  const line = `${n.service} ${n.version} ${what[n.event]}${message ? `: ${message}` : ''}`;
  return `${EMOJI[n.event]} ${n.dryRun ? '[DRY RUN] ' : ''}${LABEL[n.track]}${escapeSlack(line)}`;
}

function slackPayload(n: ReleaseNotification): { text: string; blocks: unknown[] } {
  const text = slackText(n);
  const facts = [
    `release \`${n.releaseId}\``,
    `stage ${n.stage}`,
    `track ${n.track}`,
    n.stableVersion && `stable ${n.stableVersion}`,
    n.at,
  ].filter(Boolean);
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: escapeSlack(oneLine(facts.join(' · '), 2000)) }] },
    ],
  };
}

/** Slack reads `<…>` as links and mentions (`<!channel>`); only &, < and > need escaping. */
function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Sends to every notifier at once; one failing (or throwing, if written elsewhere) never stops the others. */
export class MultiNotifier implements Notifier {
  readonly kind = 'multi';
  constructor(
    readonly notifiers: readonly Notifier[],
    private readonly logger?: Logger,
  ) {}

  async notify(n: ReleaseNotification): Promise<void> {
    const results = await Promise.allSettled(this.notifiers.map((notifier) => notifier.notify(n)));
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') return;
      const why = redactUrlCredentials(result.reason instanceof Error ? result.reason.message : String(result.reason));
      const { event, service, version, stage, track, releaseId } = n;
      this.logger?.warn(
        { event, service, version, stage, track, releaseId, notifier: this.notifiers[i]?.kind, why },
        'release notification not delivered',
      );
    });
  }
}

export const notifiersConfigSchema = z.strictObject({
  webhooks: z
    .array(
      z
        .strictObject({
          url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
          format: z.enum(['json', 'slack']),
          /** Name of the environment variable that holds the signing secret (never the secret itself). */
          secretEnv: z
            .string()
            .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected the name of an environment variable')
            .optional(),
          events: z.array(z.enum(RELEASE_EVENTS)).min(1, 'leave out "events" to send all of them').optional(),
          timeoutMs: z.number().int().min(1).max(60_000).optional(),
          retries: z.number().int().min(0).max(10).optional(),
        })
        .superRefine((hook, ctx) =>
          refineDeliveryBudget(
            {
              timeoutMs: hook.timeoutMs ?? DEFAULTS.timeoutMs,
              retries: hook.retries ?? DEFAULTS.retries,
              backoffMs: DEFAULTS.backoffMs,
            },
            ctx,
          ),
        ),
    )
    .default([]),
});
export type NotifiersConfig = z.input<typeof notifiersConfigSchema>;

/** Webhook notifiers from config; fails fast, naming the field or the missing environment variable. */
export function createNotifiers(config: unknown, deps: { logger: Logger; env?: NodeJS.ProcessEnv }): MultiNotifier {
  const parsed = notifiersConfigSchema.safeParse(config ?? {});
  if (!parsed.success) {
    throw new ConfigError(`invalid configuration: notifications: ${describeZodError(parsed.error)}`);
  }
  const env = deps.env ?? process.env;
  const notifiers = parsed.data.webhooks.map(({ secretEnv, ...hook }, i) => {
    let secret: string | undefined;
    if (secretEnv !== undefined) {
      secret = env[secretEnv];
      if (secret === undefined || secret.trim() === '') {
        throw new ConfigError(
          `invalid configuration: notifications.webhooks.${i}.secretEnv: environment variable ${secretEnv} ` +
            `is not set (it should hold the webhook's signing secret)`,
        );
      }
    }
    return new WebhookNotifier({ ...hook, secret, logger: deps.logger });
  });
  return new MultiNotifier(notifiers, deps.logger);
}
