import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { z } from 'zod';
import { isAlive } from './fleet-process';

/** Another process has held a state lock for longer than we are willing to wait. */
export class StateLockBusyError extends Error {
  override readonly name = 'StateLockBusyError';
}

/** A lock file with no owner written yet is only that old while its owner is between create and write. */
const UNWRITTEN_LOCK_STALE_MS = 5_000;
const LOCK_POLL_MS = 10;

const missing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** The text of `path`, or undefined when there is no such file (yet, or any more). */
const readIfThere = (path: string): Promise<string | undefined> =>
  readFile(path, 'utf8').catch((err: unknown) => {
    if (missing(err)) return undefined;
    throw err;
  });

/**
 * What the JSON file at `path` holds, or undefined while there is none. A file that is not JSON, or not what `schema`
 * expects, is never guessed around: `fail` makes the error thrown.
 */
export async function readStateFile<T extends z.ZodTypeAny>(
  path: string,
  schema: T,
  fail: (message: string) => Error,
): Promise<z.output<T> | undefined> {
  const text = await readIfThere(path);
  if (text === undefined) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw fail(`${path} is not JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) throw fail(`${path}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/** Replaces `path` by rename, so a reader (another worker) never sees half a file. */
export async function writeAtomic(path: string, content: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  try {
    await writeFile(tmp, content);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(ignoreMissing);
    throw err;
  }
}

/** The lock's owner, or undefined while it has none on record (just created, or left empty by a crash). */
async function lockOwner(lockPath: string): Promise<{ pid: number | undefined; token: string } | undefined> {
  const token = await readIfThere(lockPath);
  if (token === undefined) return undefined;
  const pid = Number(token.split(' ')[0]);
  return { pid: Number.isInteger(pid) && pid > 0 ? pid : undefined, token };
}

async function isStale(lockPath: string, owner: { pid: number | undefined }): Promise<boolean> {
  if (owner.pid !== undefined) return !(await isAlive(owner.pid));
  const written = await stat(lockPath).then(
    (s) => s.mtimeMs,
    (err: unknown) => {
      if (missing(err)) return Date.now();
      throw err;
    },
  );
  return Date.now() - written > UNWRITTEN_LOCK_STALE_MS;
}

/**
 * Runs `fn` holding an exclusive lock file, for read-modify-write of state that several worker processes share. A
 * lock whose owner process died is taken over; waiting for a live one is bounded by `waitMs`.
 */
export async function withFileLock<T>(lockPath: string, waitMs: number, fn: () => Promise<T>): Promise<T> {
  await mkdir(dirname(lockPath), { recursive: true });
  const token = `${process.pid} ${randomUUID()}`;
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await writeFile(lockPath, token, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = await lockOwner(lockPath);
    if (owner && (await isStale(lockPath, owner))) {
      // Only if it is still the lock we judged: another waiter may have taken it over meanwhile.
      if ((await lockOwner(lockPath))?.token === owner.token) await unlink(lockPath).catch(ignoreMissing);
      if (Date.now() < deadline) continue;
    }
    if (Date.now() >= deadline) {
      throw new StateLockBusyError(
        `${lockPath} is held by process ${owner?.pid ?? 'unknown'}; gave up after ${waitMs} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
  try {
    return await fn();
  } finally {
    if ((await lockOwner(lockPath))?.token === token) await unlink(lockPath).catch(ignoreMissing);
  }
}

function ignoreMissing(err: unknown): void {
  if (!missing(err)) throw err;
}
