import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { spawnDevServer, waitForPort } from './dev-server';
import { PROJECT_ROOT } from './temporal-binaries';

/** The main job: the Temporal dev server with its Web UI, and a Tollgate worker on it. Ctrl-C stops both. */
async function main(): Promise<void> {
  const children: ChildProcess[] = [];
  let stopping = false;
  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    for (const child of children.reverse()) if (child.exitCode === null) child.kill('SIGTERM');
    const exitWhenDone = () =>
      children.every((c) => c.exitCode !== null || c.signalCode !== null) && process.exit(code);
    for (const child of children) child.on('exit', exitWhenDone);
    exitWhenDone();
    setTimeout(() => process.exit(code), 35_000).unref();
  };
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));

  const server = spawnDevServer();
  children.push(server);
  server.on('exit', (code) => !stopping && (console.error(`temporal dev server exited (${code})`), stop(1)));
  await waitForPort(7233, 30_000);
  await waitForPort(8233, 30_000);

  const worker = spawn(process.execPath, [join(PROJECT_ROOT, 'dist', 'src', 'worker.js')], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, NODE_ENV: 'production' },
  });
  children.push(worker);
  worker.on('exit', (code) => !stopping && (console.error(`worker exited (${code})`), stop(1)));

  console.log(
    [
      '',
      'Tollgate is up.',
      '  Temporal Web UI:  http://127.0.0.1:8233',
      '  Temporal server:  127.0.0.1:7233 (state in .tollgate/temporal.db survives restarts)',
      '  Worker metrics:   http://127.0.0.1:9464/metrics',
      'Press Ctrl-C to stop everything.',
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
