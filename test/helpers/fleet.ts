import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { dirname, join, relative, resolve } from 'node:path';
import { transform } from '@swc/core';
import pino from 'pino';
import { commandLineOf } from '../../src/providers/targets/fleet-process';
import { startFleet, type Fleet } from '../../src/providers/targets/haproxy-fleet-bootstrap';
import { HaproxyRuntime } from '../../src/providers/targets/haproxy-runtime';
import { freePort } from '../../scripts/ports';

const ROOT = resolve(__dirname, '..', '..');
export const HAPROXY_BIN = '/usr/sbin/haproxy';
/** The demo fleet the suites start from, as demo/versions.yaml knows it: four instances of 1.0.0, released to 1.1.0. */
export const STABLE = '1.0.0';
export const NEXT = '1.1.0';
export const FLEET_SIZE = 4;
export const CATALOGUE = join(ROOT, 'demo', 'versions.yaml');

/**
 * Compiles the demo's entry points (and every relative import they reach) with swc into test-results/,
 * inside the repository so `node_modules` resolves as usual. Instances then start as plain
 * `node service.js`: no type check, no per-process compiler, ~50 ms for the whole demo.
 */
export async function compileDemo(
  entries = ['demo/service.ts', 'demo/load.ts'],
): Promise<{ dir: string; js: (p: string) => string }> {
  const dir = join(ROOT, 'test-results', 'demo-build', randomUUID().slice(0, 8));
  const pending = entries.map((e) => join(ROOT, e));
  const done = new Set<string>();
  // Bounded by the number of files in the repository: each file is compiled once.
  while (pending.length > 0 && done.size < 500) {
    const file = pending.pop() as string;
    if (done.has(file)) continue;
    done.add(file);
    const source = await readFile(file, 'utf8');
    const { code } = await transform(source, {
      filename: file,
      swcrc: false,
      jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
      module: { type: 'commonjs' },
    });
    const out = join(dir, relative(ROOT, file)).replace(/\.ts$/, '.js');
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, code);
    for (const [, spec] of source.matchAll(/(?:from|import|require\()\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const base = resolve(dirname(file), spec as string);
      const target = [`${base}.ts`, join(base, 'index.ts')].find((p) => existsSync(p));
      if (target) pending.push(target);
    }
  }
  return { dir, js: (p: string) => join(dir, p.replace(/\.ts$/, '.js')) };
}

export function serviceCommand(serviceJs: string, catalogue = CATALOGUE): string[] {
  return [
    process.execPath,
    serviceJs,
    '--service',
    '{service}',
    '--version',
    '{version}',
    '--port',
    '{port}',
    '--instance',
    '{instance}',
    '--track',
    '{track}',
    '--catalogue',
    catalogue,
    '--log-level',
    'warn',
  ];
}

let portBlock = Math.floor(Math.random() * 60);

/**
 * A base for a block of 200 instance ports (the target's default range), away from the kernel's ephemeral range
 * (32768+): distinct within this process, and a random start keeps two test files apart most of the time.
 */
export function nextBasePort(): number {
  portBlock = (portBlock + 1) % 60;
  return 20_000 + portBlock * 200;
}

export async function tempStateDir(name: string): Promise<string> {
  // Short, under /tmp: the admin socket path must fit in 107 bytes.
  const dir = join('/tmp', `tg-${name}-${randomUUID().slice(0, 8)}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

export const removeDir = (dir: string) => rm(dir, { recursive: true, force: true });

export function quietLogger(): pino.Logger {
  return pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
}

export interface DemoFleetOptions {
  service: string;
  /** STABLE by default. */
  version?: string;
  /** FLEET_SIZE by default. */
  fleetSize?: number;
  /** The compiled demo service (`compileDemo`). */
  serviceJs: string;
  /** Where the fleet lists its instances for Prometheus (file SD): a path, or `true` for a file in its state dir. */
  fileSd?: string | true;
  /** HAProxy's own retries (on by default, as in production). */
  retries?: boolean;
}

export interface DemoFleet extends Fleet {
  stateDir: string;
  stagingPort: number;
  fileSdPath: string | undefined;
}

/**
 * An HAProxy fleet of demo-service instances, in a state dir of its own and on ports no other fleet of this process
 * uses. `stop()` stops it and removes its state dir.
 */
export async function startDemoFleet(o: DemoFleetOptions): Promise<DemoFleet> {
  const stateDir = await tempStateDir(o.service.slice(0, 12));
  const fileSdPath = o.fileSd === true ? join(stateDir, 'file_sd.json') : o.fileSd;
  const stagingPort = await freePort();
  try {
    const fleet = await startFleet({
      service: o.service,
      version: o.version ?? STABLE,
      fleetSize: o.fleetSize ?? FLEET_SIZE,
      frontendPort: await freePort(),
      basePort: nextBasePort(),
      stagingPort,
      command: serviceCommand(o.serviceJs),
      stateDir,
      ...(fileSdPath !== undefined && { fileSdPath }),
      ...(o.retries !== undefined && { retries: o.retries }),
      logger: quietLogger(),
    });
    return {
      ...fleet,
      stateDir,
      stagingPort,
      fileSdPath,
      stop: async () => {
        try {
          await fleet.stop();
        } finally {
          await removeDir(stateDir);
        }
      },
    };
  } catch (err) {
    await removeDir(stateDir);
    throw err;
  }
}

/** Live processes of `service`'s instances (by their `--instance <service>-N` argument) that `known` lacks. */
export function strayInstances(service: string, known: Set<string>): string[] {
  const strays: string[] = [];
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    const argv = commandLineOf(Number(entry)) ?? [];
    const id = argv[argv.indexOf('--instance') + 1];
    if (argv.includes('--instance') && id?.startsWith(`${service}-`) && !known.has(id))
      strays.push(`${id} (pid ${entry})`);
  }
  return strays;
}

/**
 * Problems with a fleet's end state: FLEET_SIZE members, every one on `version`, labelled stable, serving and UP in
 * HAProxy, and no instance process running that the fleet's state does not know (one a crash left behind).
 */
export async function fleetProblems(fleet: Fleet, version: string): Promise<string[]> {
  const problems: string[] = [];
  const state = await fleet.target.readState();
  const known = new Set(state.instances.map((i) => i.id));
  for (const stray of strayInstances(state.service, known)) problems.push(`stray instance ${stray}`);
  const members = state.instances.filter((i) => i.slot !== null);
  const wrong = members.filter((i) => `${i.version} ${i.track} ${i.status}` !== `${version} stable serving`);
  if (members.length !== FLEET_SIZE) problems.push(`${members.length} members, expected ${FLEET_SIZE}`);
  for (const i of wrong) problems.push(`${i.id}: ${i.version} ${i.track} ${i.status}`);
  if (state.stableVersion !== version) problems.push(`stable version ${state.stableVersion}, expected ${version}`);
  const up = (await serversUp(fleet)).join();
  const expected = members
    .map((i) => `127.0.0.1:${i.port}`)
    .sort()
    .join();
  if (up !== expected) problems.push(`HAProxy UP [${up}], expected [${expected}]`);
  return problems;
}

/** HAProxy's view through its admin socket: the addresses of the servers it sends traffic to, sorted. */
export async function serversUp(fleet: Fleet): Promise<string[]> {
  const stats = await new HaproxyRuntime(fleet.socketPath).serverStats(fleet.backend);
  return stats
    .filter((s) => s.status.startsWith('UP'))
    .map((s) => s.addr)
    .sort();
}

/** Sends `count` requests over `concurrency` keep-alive connections; counts answers by version ("500:1.2.0" for errors). */
export async function versionsServing(url: string, count: number, concurrency = 8): Promise<Record<string, number>> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const counts: Record<string, number> = {};
  let next = 0;
  const one = () =>
    new Promise<string>((resolve, reject) => {
      const req = request(url, { agent, timeout: 5_000 }, (res) => {
        res.resume();
        const version = String(res.headers['x-version']);
        res.on('end', () => resolve(res.statusCode === 200 ? version : `${res.statusCode}:${version}`));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  const worker = async () => {
    while (next < count) {
      next += 1;
      const key = await one();
      counts[key] = (counts[key] ?? 0) + 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return counts;
}

export function share(counts: Record<string, number>, key: string): number {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return total === 0 ? 0 : (counts[key] ?? 0) / total;
}
