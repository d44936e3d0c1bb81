import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Temp dirs of servers the tests and the bench start (Prometheus, a Kubernetes control plane), each marked with the
 * PID of the process that owns it. The servers die with their owner; the dirs would pile up in /tmp, so the next
 * start removes those whose owner is gone.
 */
const OWNER_FILE = 'owner.pid';

export const markOwner = (dir: string): Promise<void> => writeFile(join(dir, OWNER_FILE), String(process.pid));

export async function sweepOrphans(prefix: string): Promise<void> {
  for (const name of await readdir(tmpdir())) {
    if (!name.startsWith(prefix)) continue;
    const dir = join(tmpdir(), name);
    const owner = Number(await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => ''));
    if (owner > 0 && !alive(owner)) await rm(dir, { recursive: true, force: true });
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
