import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { transform } from '@swc/core';
import pino from 'pino';

const ROOT = resolve(__dirname, '..', '..');
export const HAPROXY_BIN = '/usr/sbin/haproxy';
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

/** A port the kernel just handed out, so no two test files collide on a fixed number. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/** A base for a block of instance ports, away from the kernel's ephemeral range (32768+) and from other runs. */
export function randomBasePort(): number {
  return 20_000 + Math.floor(Math.random() * 120) * 100;
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
