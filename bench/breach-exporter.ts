import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { REQUESTS_TOTAL } from '../src/domain/metric-names';

/**
 * A scrape target standing in for the demo fleet: request counters of any number of services' stable baselines and
 * canary versions, each growing at a steady rate with its own share of 5xx answers, which the bench can change at a
 * recorded moment. Counters are integrated piecewise, so a flip changes the slope from that instant on.
 */

const REQUESTS_PER_SECOND = 200;

interface Series {
  service: string;
  track: 'canary' | 'stable';
  version: string;
  errorShare: number;
  requests: number;
  errors: number;
  at: number;
}

export class BreachExporter {
  private readonly series = new Map<string, Series>();
  private readonly server: Server;

  private constructor(services: string[], stableVersion: string) {
    this.server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.render(Date.now()));
    });
    for (const service of services) this.set(service, 'stable', stableVersion, 0);
  }

  /** Listening on 127.0.0.1, serving each of `services`' stable fleet; `target` is what Prometheus scrapes. */
  static async start(services: string[], stableVersion: string): Promise<{ exporter: BreachExporter; target: string }> {
    const exporter = new BreachExporter(services, stableVersion);
    exporter.server.listen(0, '127.0.0.1');
    await once(exporter.server, 'listening');
    return { exporter, target: `127.0.0.1:${(exporter.server.address() as AddressInfo).port}` };
  }

  /** Starts or changes a series' error share; returns the moment the new share applies from. */
  set(service: string, track: Series['track'], version: string, errorShare: number): number {
    const now = Date.now();
    const key = `${service}/${track}/${version}`;
    const s = this.series.get(key);
    if (s) {
      this.advance(s, now);
      s.errorShare = errorShare;
    } else {
      this.series.set(key, { service, track, version, errorShare, requests: 0, errors: 0, at: now });
    }
    return now;
  }

  remove(service: string, track: Series['track'], version: string): void {
    this.series.delete(`${service}/${track}/${version}`);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private advance(s: Series, now: number): void {
    const served = (REQUESTS_PER_SECOND * (now - s.at)) / 1000;
    s.requests += served;
    s.errors += served * s.errorShare;
    s.at = now;
  }

  private render(now: number): string {
    const lines = [`# TYPE ${REQUESTS_TOTAL} counter`];
    for (const s of this.series.values()) {
      this.advance(s, now);
      const labels = `service="${s.service}",track="${s.track}",version="${s.version}"`;
      lines.push(`${REQUESTS_TOTAL}{${labels},code="200"} ${s.requests - s.errors}`);
      lines.push(`${REQUESTS_TOTAL}{${labels},code="500"} ${s.errors}`);
    }
    return `${lines.join('\n')}\n`;
  }
}
