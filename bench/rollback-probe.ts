import { Agent, request } from 'node:http';
import type { Fleet } from '../src/providers/targets/haproxy-fleet-bootstrap';
import { HaproxyRuntime } from '../src/providers/targets/haproxy-runtime';
import { sleepMs } from './fixtures';

/**
 * §9's clocks on the fleet: what users get through the frontend (one request every few milliseconds, the version
 * each answer names), and, to cross-check how finely those answers sample the switch, what HAProxy itself has in
 * rotation (its admin socket, the fleet's state for which version listens where).
 */

export interface Answer {
  sentAt: number;
  /** The answer's `x-version`; absent when HAProxy answered itself (a 503) or there was no answer. */
  version?: string;
  status?: number;
  error?: string;
}

/** Bounded: a stuck frontend cannot pile up sockets; a request not sent is counted, never silently dropped. */
const MAX_IN_FLIGHT = 32;

/** Requests through the frontend every `everyMs`, each on its own (a slow answer never delays the next one). */
export class FrontendProbe {
  readonly answers: Answer[] = [];
  skipped = 0;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT, timeout: 4_000 });
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    private readonly url: string,
    everyMs: number,
  ) {
    this.loop = this.run(everyMs);
  }

  private async run(everyMs: number): Promise<void> {
    for (let next = Date.now(); !this.stopped; next += everyMs) {
      if (this.inFlight.size >= MAX_IN_FLIGHT) this.skipped += 1;
      else this.fire();
      await sleepMs(Math.max(0, next + everyMs - Date.now()));
    }
  }

  private fire(): void {
    const answer: Answer = { sentAt: Date.now() };
    this.answers.push(answer);
    const done = new Promise<void>((resolve) => {
      const req = request(this.url, { agent: this.agent, timeout: 5_000 }, (res) => {
        answer.status = res.statusCode;
        const version = res.headers['x-version'];
        if (typeof version === 'string') answer.version = version;
        res.resume();
        res.on('error', (err: NodeJS.ErrnoException) => (answer.error = `response ${err.code ?? err.message}`));
        res.on('close', resolve);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => {
        answer.error = err.code ?? err.message;
        resolve();
      });
      req.end();
    });
    this.inFlight.add(done);
    void done.then(() => this.inFlight.delete(done));
  }

  /** Stops sending and waits for every answer (each request has its own timeout). */
  async stop(): Promise<Answer[]> {
    this.stopped = true;
    await this.loop;
    await Promise.all(this.inFlight);
    this.agent.destroy();
    return this.answers;
  }
}

/** One look at HAProxy's backend: the versions of the servers in rotation (UP, not drained or in maintenance). */
export interface RotationSample {
  at: number;
  versions: string[];
}

/** Polls HAProxy's admin socket every `everyMs`; an address the fleet's state does not know reads as `unknown`. */
export class RotationWatch {
  readonly samples: RotationSample[] = [];
  errors = 0;
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(fleet: Fleet, everyMs: number) {
    const runtime = new HaproxyRuntime(fleet.socketPath, 2_000);
    const host = fleet.target.options.host;
    this.loop = (async () => {
      while (!this.stopped) {
        const at = Date.now();
        try {
          const [stats, state] = await Promise.all([runtime.serverStats(fleet.backend), fleet.target.readState()]);
          const byAddr = new Map(state.instances.map((i) => [`${host}:${i.port}`, i.version]));
          const versions = stats.filter((s) => s.status.startsWith('UP')).map((s) => byAddr.get(s.addr) ?? 'unknown');
          this.samples.push({ at, versions });
        } catch {
          this.errors += 1;
        }
        await sleepMs(Math.max(0, at + everyMs - Date.now()));
      }
    })();
  }

  async stop(): Promise<RotationSample[]> {
    this.stopped = true;
    await this.loop;
    return this.samples;
  }
}

export interface Switched {
  /** The first request sent after the last one answered by anything but `previous`: from then on, only `previous`. */
  allPreviousAt: number;
  /** The last request answered by another version (or not by a version at all) at or after `since`. */
  lastOtherAt: number | undefined;
}

/**
 * When every answer came from `previous` for good, judged on the answers to requests sent from `since` on. Undefined
 * when the last answer is not from `previous` (the switch did not finish while the probe ran).
 */
export function switchedAt(answers: readonly Answer[], previous: string, since: number): Switched | undefined {
  const after = answers.filter((a) => a.sentAt >= since).sort((a, b) => a.sentAt - b.sentAt);
  let last = -1;
  after.forEach((a, n) => {
    if (a.version !== previous || a.error !== undefined) last = n;
  });
  const first = after[last + 1];
  if (!first) return undefined;
  return { allPreviousAt: first.sentAt, lastOtherAt: last < 0 ? undefined : after[last]!.sentAt };
}

/** The first look from which on HAProxy had only `previous` in rotation, at or after `since`. */
export function rotationAt(samples: readonly RotationSample[], previous: string, since: number): number | undefined {
  const after = samples.filter((s) => s.at >= since);
  let last = -1;
  after.forEach((s, n) => {
    if (s.versions.length === 0 || s.versions.some((v) => v !== previous)) last = n;
  });
  return after[last + 1]?.at;
}
