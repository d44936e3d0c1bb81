import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { commandLineOf } from '../src/providers/targets/fleet-process';

/** CPU and memory of a process and every process under it, from Linux /proc. */
export interface TreeUsage {
  /** User + system time of the live processes and of the children they have reaped (PostgreSQL's backends). */
  cpuMs: number;
  /**
   * Proportional set size: each page shared by k processes counts 1/k to each, so the sum over PostgreSQL's
   * backends counts its shared buffers once (their RSS would count them once per backend).
   */
  pssMiB: number;
}

/** Usage of a server's parts (the dev server; PostgreSQL and each Temporal service), by name. */
export type ServerProbe = () => Record<string, TreeUsage>;

const conf = (name: string, fallback: number) =>
  Number(execFileSync('getconf', [name], { encoding: 'utf8' }).trim()) || fallback;
const TICK_MS = 1000 / conf('CLK_TCK', 100);

function pssMiB(pid: number): number {
  try {
    const kib = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1];
    return Number(kib ?? 0) / 1024;
  } catch {
    return 0;
  }
}

interface Stat {
  ppid: number;
  cpuMs: number;
}

function stat(pid: number): Stat | undefined {
  try {
    // The command name (field 2) may hold spaces and parentheses: fields are counted from its closing one.
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // Fields 4 (ppid) and 14–17 (utime, stime, cutime, cstime), counted from 1 as proc(5) does.
    const at = (n: number) => Number(f[n - 3]);
    return { ppid: at(4), cpuMs: (at(14) + at(15) + at(16) + at(17)) * TICK_MS };
  } catch {
    return undefined;
  }
}

function table(): Map<number, Stat> {
  const out = new Map<number, Stat>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(Number(entry));
    if (s) out.set(Number(entry), s);
  }
  return out;
}

/** Each root's usage with all of its descendants'; a root that is gone reads as zero. */
export function treeUsage(roots: Record<string, number | undefined>): Record<string, TreeUsage> {
  const procs = table();
  const children = new Map<number, number[]>();
  for (const [pid, s] of procs) {
    const siblings = children.get(s.ppid);
    if (siblings) siblings.push(pid);
    else children.set(s.ppid, [pid]);
  }
  const sum = (pid: number): TreeUsage => {
    const below = (children.get(pid) ?? []).map(sum);
    return {
      cpuMs: (procs.get(pid)?.cpuMs ?? 0) + below.reduce((n, u) => n + u.cpuMs, 0),
      pssMiB: pssMiB(pid) + below.reduce((n, u) => n + u.pssMiB, 0),
    };
  };
  return Object.fromEntries(
    Object.entries(roots).map(([name, pid]) => [name, pid === undefined ? { cpuMs: 0, pssMiB: 0 } : sum(pid)]),
  );
}

/** The dev server this process started for `address` (the SDK spawns `temporal server start-dev --port N`). */
export function devServerPid(address: string): number | undefined {
  const port = address.slice(address.lastIndexOf(':') + 1);
  for (const [pid, s] of table()) {
    if (s.ppid !== process.pid) continue;
    const argv = commandLineOf(pid) ?? [];
    if (argv.includes('start-dev') && argv[argv.indexOf('--port') + 1] === port) return pid;
  }
  return undefined;
}
