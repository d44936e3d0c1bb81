import { randomUUID } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { chromium, type Browser, type Page } from 'playwright-core';
import { PROJECT_ROOT } from '../../scripts/temporal-binaries';
import { TollgateClient } from '../../src/client/tollgate-client';
import { TollgateService } from '../../src/domain/search-attributes';
import { freePort } from '../helpers/fleet';
import { errorsCheck, writePolicies } from '../helpers/policies';
import { waitForStatus } from '../helpers/release-handle';
import { releaseHarness } from '../helpers/release-harness';
import { startDevServer } from '../helpers/temporal-servers';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps dialling Google, and this closed network refuses it.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SCREENSHOTS = join(PROJECT_ROOT, 'docs', 'screenshots');
const UI_WAIT = { timeout: 20_000 };

/** The README shows these screenshots (generated here, never committed): keep them small enough to browse. */
async function screenshot(page: Page, name: string): Promise<void> {
  const path = join(SCREENSHOTS, name);
  await page.screenshot({ path });
  expect(statSync(path).size).toBeLessThan(300 * 1024);
}

describe('Temporal Web UI', () => {
  let env: TestWorkflowEnvironment | undefined;
  let browser: Browser | undefined;
  let worker: Worker | undefined;
  let workerRun: Promise<void> | undefined;
  let ui = '';

  beforeAll(async () => {
    const uiPort = await freePort();
    ui = `http://127.0.0.1:${uiPort}/namespaces/default`;
    [env, browser] = await Promise.all([
      startDevServer({ uiPort }),
      chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
    ]);
    mkdirSync(SCREENSHOTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    if (worker?.getState() === 'RUNNING') worker.shutdown();
    await workerRun?.catch(() => undefined);
    await env?.teardown();
  });

  it('lists a running release, filters by TollgateService, and shows its summary and bake progress', async () => {
    const service = `webshop-${randomUUID().slice(0, 6)}`;
    const other = `billing-${randomUUID().slice(0, 6)}`;
    const version = '4.2.0';
    // A one-hour traffic cycle keeps the release in the canary bake for the whole test.
    const policyDir = writePolicies({ minimums: { analysisChecks: 1, productionApproval: false } }, [
      {
        service,
        trafficCycle: { duration: '1h' },
        canary: { analysis: { interval: '1m', checks: [errorsCheck] } },
        production: { approval: false },
      },
    ]);
    const harness = await releaseHarness(env!, { policyDir, stable: { [service]: '4.1.0' } });
    worker = harness.worker;
    workerRun = worker.run();
    const tollgate = new TollgateClient(env!.client, harness.taskQueue);

    // Another service's release, on a queue no worker polls, for the filter to leave out.
    await env!.client.workflow.start('releaseWorkflow', {
      taskQueue: `${harness.taskQueue}-idle`,
      workflowId: `release-${other}`,
      args: [{ service: other, version: '1.0.0', initiator: 'bob' }],
      typedSearchAttributes: [{ key: TollgateService, value: other }],
    });
    const handle = await tollgate.start({ service, version, initiator: 'alice', reason: 'spring sale' });
    const workflowId = `release-${service}`;
    expect(handle.workflowId).toBe(workflowId);
    // The UI reads current details once per page load: open it only when the bake has begun.
    await waitForStatus(handle, (s) => s.stage === 'canary' && s.state === 'baking', { timeoutMs: 20_000 });

    const page = await browser!.newPage({ viewport: { width: 1280, height: 800 } });
    const release = page.getByRole('link', { name: workflowId, exact: true });
    const otherRelease = page.getByRole('link', { name: `release-${other}`, exact: true });

    await page.goto(`${ui}/workflows`);
    await release.waitFor(UI_WAIT);
    await otherRelease.waitFor(UI_WAIT);

    // The UI keeps its list filter in the `query` parameter: the visibility query, URL-encoded.
    const query = `TollgateService="${service}"`;
    await page.goto(`${ui}/workflows?query=${encodeURIComponent(query)}`);
    await page.getByText(`TollgateService = "${service}"`).waitFor(UI_WAIT);
    await page.getByText('1 Workflow', { exact: true }).waitFor(UI_WAIT);
    await release.waitFor(UI_WAIT);
    await otherRelease.waitFor({ state: 'detached', ...UI_WAIT });
    expect(await page.getByRole('link', { name: /^release-/ }).count()).toBe(1);
    await screenshot(page, 'ui-workflow-list.png');

    await release.click();
    await page.waitForURL(`**/workflows/${workflowId}/**`, UI_WAIT);
    await page.getByRole('tab', { name: 'User Metadata' }).click();
    await page.waitForURL('**/user-metadata', UI_WAIT);
    // Summary, details and current details are markdown, each rendered in its own iframe.
    const summary = page.frameLocator('#user-metadata-summary');
    await summary.getByText(`${service} ${version}: staging → canary → production`).waitFor(UI_WAIT);
    await page.frameLocator('#user-metadata-details').getByText('started by alice: spring sale').waitFor(UI_WAIT);
    const current = page.frameLocator('#user-metadata-current-details');
    await current.getByText(`${service} ${version} — stage canary, state baking`).waitFor(UI_WAIT);
    await current.locator('strong', { hasText: /^canary$/ }).waitFor(UI_WAIT);
    await current.getByText(/bake [█░]{20} \d+% — .+ of 1h, .+ left/).waitFor(UI_WAIT);
    await current.getByText('waiting for: 1h of baking').waitFor(UI_WAIT);
    await current.locator('li', { hasText: /errors: pass \(canary 0\.001\)/ }).waitFor(UI_WAIT);
    await page.locator('#user-metadata-current-details').scrollIntoViewIfNeeded();
    await screenshot(page, 'ui-release-details.png');

    expect((await handle.describe()).status.name).toBe('RUNNING');
  });
});
