import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPayloadConverter } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { chromium, type Browser, type Page } from 'playwright-core';
import { PROJECT_ROOT } from '../../scripts/temporal-binaries';
import { signerFromKeyFile } from '../../src/client/signer';
import { TollgateClient } from '../../src/client/tollgate-client';
import { parseOpenSshKey } from '../../src/domain/signatures';
import { TollgateService } from '../../src/domain/search-attributes';
import { freePort } from '../../scripts/ports';
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

/** A raw Ed25519 key (PKCS#8 PEM) in `dir`, as a person signs with it; with its public key's fingerprint. */
async function pemSigner(dir: string, name: string) {
  const path = join(dir, `${name}.pem`);
  writeFileSync(path, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const signer = signerFromKeyFile(path);
  const publicKey = await signer.publicKey();
  const parsed = parseOpenSshKey(publicKey);
  if (!parsed.ok) throw new Error(parsed.reason);
  return { signer, publicKey, fingerprint: parsed.value.fingerprint };
}

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

  it('refuses an unsigned approval sent from the UI, and shows who approved with their key’s fingerprint', async () => {
    const keyDir = mkdtempSync(join(tmpdir(), 'tollgate-ui-keys-'));
    try {
      const [alice, bob] = await Promise.all([pemSigner(keyDir, 'alice'), pemSigner(keyDir, 'bob')]);
      const service = `payments-${randomUUID().slice(0, 6)}`;
      const workflowId = `release-${service}`;
      const policyDir = writePolicies(
        { minimums: { analysisChecks: 1, productionApproval: false, requireSignedApprovals: true } },
        [
          {
            service,
            // A one-hour cycle: once approved, the release stays in the canary bake until it is terminated.
            trafficCycle: { duration: '1h' },
            canary: { approval: true, analysis: { interval: '1m', checks: [errorsCheck] } },
            production: { approval: false },
            approvals: {
              fourEyes: true,
              signers: [
                { name: 'alice', keys: [alice.publicKey] },
                { name: 'bob', keys: [bob.publicKey] },
              ],
              signing: { require: ['start', 'approve', 'promote', 'resume'] },
            },
          },
        ],
      );
      const harness = await releaseHarness(env!, { policyDir, stable: { [service]: '7.0.0' } });
      const tollgate = new TollgateClient(env!.client, harness.taskQueue);
      await harness.worker.runUntil(async () => {
        tollgate.signer = alice.signer;
        const handle = await tollgate.start({ service, version: '7.1.0', initiator: 'alice' });
        try {
          await waitForStatus(handle, (s) => s.gate?.name === 'canary', { timeoutMs: 20_000 });

          // Temporal's own "Send a Signal", as anyone with access to the namespace could: unsigned, bob's name typed.
          const page = await browser!.newPage({ viewport: { width: 1280, height: 800 } });
          await page.goto(`${ui}/workflows/${workflowId}`);
          await page.getByRole('button', { name: 'More Actions' }).click(UI_WAIT);
          await page.getByRole('menuitem', { name: 'Send a Signal' }).click(UI_WAIT);
          const dialog = page.getByRole('dialog', { name: 'Send a Signal' });
          // The UI asks the workflow which signals it handles (its metadata query) and offers them to pick from.
          await dialog.getByRole('button', { name: 'Select a signal' }).click(UI_WAIT);
          await page.getByRole('option', { name: 'approve', exact: true }).click(UI_WAIT);
          await dialog.getByRole('textbox', { name: 'Data' }).fill('{"by":"bob"}', UI_WAIT);
          await dialog.getByRole('button', { name: 'Submit' }).click(UI_WAIT);
          await page.locator('#workflow-signal-success-toast').getByText('Workflow signaled.').waitFor(UI_WAIT);
          // What reached the workflow: the UI's signal as typed, bob's name and no signature.
          const signalled = ((await handle.fetchHistory()).events ?? []).flatMap((e) => {
            const signal = e.workflowExecutionSignaledEventAttributes;
            const payload = signal?.signalName === 'approve' ? signal.input?.payloads?.[0] : undefined;
            return payload ? [defaultPayloadConverter.fromPayload(payload)] : [];
          });
          expect(signalled).toEqual([{ by: 'bob' }]);

          const refused = await waitForStatus(
            handle,
            (s) => s.audit.some((e) => e.action === 'approve' && !e.accepted),
            { timeoutMs: 10_000 },
            'the UI’s approve to be refused',
          );
          expect(refused.gate?.name).toBe('canary');
          expect(refused.stage).toBe('canary');
          expect(refused.audit.filter((e) => e.action === 'approve')).toEqual([
            expect.objectContaining({
              actor: 'bob',
              accepted: false,
              detail: expect.stringContaining('approve must be signed') as unknown,
            }),
          ]);
          expect((await tollgate.status(service)).gate?.name).toBe('canary');

          // bob signs with his own key: the gate opens.
          tollgate.signer = bob.signer;
          await tollgate.approve(service, { by: 'bob' });
          const passed = await waitForStatus(handle, (s) => s.gate === undefined && s.stage === 'canary', {
            timeoutMs: 20_000,
          });
          expect(passed.startProof).toBe(alice.fingerprint);
          expect(passed.audit.filter((e) => e.action === 'approve').map((e) => [e.actor, e.accepted, e.proof])).toEqual(
            [
              ['bob', false, undefined],
              ['bob', true, bob.fingerprint],
            ],
          );

          // The UI reads current details once per page load.
          await page.goto(`${ui}/workflows/${workflowId}`);
          await page.getByRole('tab', { name: 'User Metadata' }).click(UI_WAIT);
          await page.waitForURL('**/user-metadata', UI_WAIT);
          const current = page.frameLocator('#user-metadata-current-details');
          await current.getByText(`started by alice — proven: ${alice.fingerprint}`).waitFor(UI_WAIT);
          const approval = current.locator('li', { hasText: `approve by bob (signed, key ${bob.fingerprint})` });
          await approval.waitFor(UI_WAIT);
          await approval.locator('code', { hasText: bob.fingerprint }).waitFor(UI_WAIT);
          // Only the accepted approval is a decision: the refused one is in the audit trail, not here.
          expect(await current.locator('li', { hasText: /approve by bob/ }).count()).toBe(1);
          await page.locator('#user-metadata-current-details').scrollIntoViewIfNeeded();
          await screenshot(page, 'ui-signed-approval.png');
          await page.close();
        } finally {
          await handle.terminate('test over').catch(() => undefined);
        }
      });
    } finally {
      rmSync(keyDir, { recursive: true, force: true });
    }
  });
});
