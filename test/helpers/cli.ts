import { main } from '../../src/client/cli';
import { eventually } from './until';

/** Runs the `tollgate` CLI in-process, capturing what it prints and its exit code. */
export async function tollgate(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const saved = { ...process.env };
  Object.assign(process.env, env);
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((out += String(chunk)), true));
  // The in-process worker's SDK log entries (timestamped) share stderr with the CLI; only the CLI's are its output.
  const stderr = jest
    .spyOn(process.stderr, 'write')
    .mockImplementation((chunk) => (/^\d{4}-\d\d-\d\dT/.test(String(chunk)) || (err += String(chunk)), true));
  try {
    const code = await main(args);
    return { code, out, err };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
    process.env = saved;
  }
}

/** Polls `tollgate status --json` until the release is in `state`. */
export const untilState = (service: string, state: string, env: Record<string, string>) =>
  eventually(
    () => tollgate(['status', service, '--json'], env),
    (s) => (JSON.parse(s.out) as { state: string }).state === state,
    `tollgate status to say ${state}`,
    { timeoutMs: 10_000, everyMs: 200 },
  );
