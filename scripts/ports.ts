import { randomInt } from 'node:crypto';
import { portIsFree } from '../src/providers/targets/fleet-process';

/**
 * Loopback ports for the processes scripts, tests and benchmarks start. A port is picked here and bound later by
 * another process, so it must not be one the kernel may hand out meanwhile: the kernel takes ephemeral ports
 * (listen(0), and the source port of every outgoing connection) from 32768 up, so a port `listen(0)` just returned
 * can be some connection's source port a second later — a staging instance then fails with EADDRINUSE. Below 32768
 * only explicit listeners compete. Single ports and blocks come from 10000–19999; the HAProxy fleets' instance port
 * blocks (test/helpers/fleet.ts) sit at 20000–31999.
 */
const LOW = 10_000;
const HIGH = 19_999;
const HOST = '127.0.0.1';

/** `count` distinct ports that can be bound now, at random places (two test files picking at once rarely collide). */
export async function freePorts(count: number, attempts = 50): Promise<number[]> {
  const ports = new Set<number>();
  for (let attempt = 0; attempt < attempts * count && ports.size < count; attempt++) {
    const port = randomInt(LOW, HIGH + 1);
    if (!ports.has(port) && (await portIsFree(HOST, port))) ports.add(port);
  }
  if (ports.size < count) throw new Error(`no ${count} free loopback ports in ${LOW}..${HIGH}`);
  return [...ports];
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error(`no free loopback port in ${LOW}..${HIGH}`);
  return port;
}

/** The first of `span` consecutive ports that can all be bound now. */
export async function freePortBlock(span: number, attempts = 50): Promise<number> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const base = randomInt(LOW, HIGH - span + 2);
    const free = await Promise.all(Array.from({ length: span }, (_, i) => portIsFree(HOST, base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no block of ${span} free loopback ports in ${LOW}..${HIGH} after ${attempts} tries`);
}
