import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundlerOptions } from '../../src/worker';
import { BUNDLE_DIR, WORKFLOW_ENTRIES } from './bundles';

export default async function globalSetup(): Promise<void> {
  await mkdir(BUNDLE_DIR, { recursive: true });
  for (const [name, workflowsPath] of Object.entries(WORKFLOW_ENTRIES)) {
    // The options the shipped bundle is built with (shared, frozen zod; no zod locales), so tests run what ships.
    const { code } = await bundleWorkflowCode({ workflowsPath, logger: quietLogger, ...workflowBundlerOptions() });
    await writeFile(join(BUNDLE_DIR, `${name}.js`), code);
  }
}

const noop = () => undefined;
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error };
