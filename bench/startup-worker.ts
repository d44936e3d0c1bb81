import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';

/**
 * A worker process for the start-up bench: `node startup-worker.js <prebuilt|bundle> <address> <taskQueue> <path>`,
 * where path is the prebuilt bundle file or the workflows entry to bundle at start. Prints its own milestones
 * (epoch ms) as one JSON line; the parent reads the first polled task's time from the server's history.
 */
async function main(): Promise<void> {
  const [mode, address, taskQueue, path] = process.argv.slice(2);
  if ((mode !== 'prebuilt' && mode !== 'bundle') || !address || !taskQueue || !path) {
    throw new Error('usage: startup-worker <prebuilt|bundle> <address> <taskQueue> <path>');
  }
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const createStart = Date.now();
  const connection = await NativeConnection.connect({ address });
  const worker = await Worker.create({
    connection,
    taskQueue,
    ...(mode === 'prebuilt' ? { workflowBundle: { codePath: path } } : { workflowsPath: path }),
    shutdownGraceTime: '1s',
  });
  const created = Date.now();
  process.stdout.write(`${JSON.stringify({ processStart: performance.timeOrigin, createStart, created })}\n`);
  await worker.run();
  await connection.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
