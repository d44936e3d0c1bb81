import { join } from 'node:path';

export const BUNDLE_DIR = join(__dirname, '..', '..', 'test-results', 'bundles');

/** Entry points bundled once per jest run (global setup), so no test file pays for webpack. */
export const WORKFLOW_ENTRIES = {
  release: join(__dirname, '..', '..', 'src', 'workflows', 'index.ts'),
  fixtures: join(__dirname, '..', 'fixtures', 'workflows.ts'),
} as const;

export function workflowBundle(name: keyof typeof WORKFLOW_ENTRIES): { codePath: string } {
  return { codePath: join(BUNDLE_DIR, `${name}.js`) };
}
