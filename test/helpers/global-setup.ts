import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { BUNDLE_DIR, WORKFLOW_ENTRIES } from './bundles';

export default async function globalSetup(): Promise<void> {
  await mkdir(BUNDLE_DIR, { recursive: true });
  for (const [name, workflowsPath] of Object.entries(WORKFLOW_ENTRIES)) {
    const { code } = await bundleWorkflowCode({ workflowsPath, logger: quietLogger });
    await writeFile(join(BUNDLE_DIR, `${name}.js`), code);
  }
}

const noop = () => undefined;
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error };
