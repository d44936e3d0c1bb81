import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { DEFAULT_BUNDLE_PATH, workflowBundlerOptions } from '../src/worker';

async function main(): Promise<void> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../src/workflows'),
    logger: undefined,
    ...workflowBundlerOptions(),
  });
  await writeFile(DEFAULT_BUNDLE_PATH, code);
  console.log(`workflow bundle: ${join(DEFAULT_BUNDLE_PATH)} (${(code.length / 1024).toFixed(0)} KiB)`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
