import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { connectionSettings } from '../config/connection';
import { ConfigError, connectionEnvSchema, parseEnv } from '../config/env';
import type { ReleaseRequestInput } from '../domain/release';
import type { ReleaseStatus } from '../domain/status';
import type { releaseWorkflow } from '../workflows';
import { runReceiver } from '../receiver/main';
import { PolicyStore } from '../config/policies';
import { AlertRuleOptionsError, renderAlertRules } from '../domain/alert-rules';
import { printable, printableDeep, printableJson, printableLines } from '../domain/text';
import { TollgateError } from './errors';
import { renderList, renderStatus } from './render';
import { exportRelease } from './history-export';
import { renderVerifyReport, verifyHistory } from './history-verify';
import { signerFromKeyFile } from './signer';
import { TollgateClient } from './tollgate-client';

/**
 * Exit codes: 0 ok / promoted, 1 error, 2 bad usage or input, 10 rolled back (before or after promotion), 11 aborted,
 * 12 ended without an outcome (the workflow failed, was terminated or timed out).
 */
const EXIT = { ok: 0, error: 1, usage: 2, rolled_back: 10, aborted: 11, ended: 12 } as const;

const HELP = `tollgate — start, watch and steer releases (staging → canary for a traffic cycle → production)

usage:
  tollgate start <service> <version> [--reason TEXT] [--policy FILE] [--initiator NAME] [--supersede]
                                        --supersede: abort the release in flight (its rollback included), then start
                                        [--identity-token FILE]: a CI pipeline's OIDC token (or env
                                        TOLLGATE_IDENTITY_TOKEN holding the token)
  tollgate status <service>
  tollgate watch <service>              live view; exits when the release ends: 0 promoted, 10 rolled back
                                        (also after promotion), 11 aborted, 12 failed or terminated
  tollgate approve <service> --by NAME [--reason TEXT]
  tollgate abort   <service> --by NAME --reason TEXT
  tollgate pause   <service> --by NAME --reason TEXT
  tollgate resume  <service> --by NAME [--reason TEXT]
  tollgate promote <service> --by NAME --reason TEXT   skip the rest of the current bake
  tollgate rollback <service> --by NAME --reason TEXT  while production is watched after the last wave: back to
                                                       the previous version (kept warm: a traffic switch)
  tollgate list [--service NAME] [--state STATE]        releases in flight
  tollgate history <service> [--export FILE]            past releases and their outcomes; --export writes the latest
                                                        release's full history (every run) for --verify
  tollgate history --verify FILE                        offline: re-checks every signature in an exported history
                                                        and says which decisions are proven (exit 0 when all are)
  tollgate signer --by NAME --sign-key FILE             prints the policy entry (approvals.signers) for your key
  tollgate receiver                                     run the Alertmanager webhook receiver (env TOLLGATE_RECEIVER_*)
  tollgate alert-rules [--rate-window 2m]               print Tollgate's Prometheus alert rules, in the org's metric
                                                        names (env TOLLGATE_POLICY_DIR, default policies)

options:
  --json                 machine-readable output on every command
  --address HOST:PORT    Temporal frontend (env TEMPORAL_ADDRESS, default 127.0.0.1:7233)
  --namespace NAME       (env TEMPORAL_NAMESPACE, default "default")
  --task-queue NAME      (env TOLLGATE_TASK_QUEUE, default tollgate-releases)
  --sign-key FILE        sign starts and controls (env TOLLGATE_SIGNING_KEY): an SSH private key, or its .pub
                         with the key in ssh-agent (ssh-keygen -Y sign), or a PKCS#8 Ed25519 PEM key file
  TLS and API keys come from the same environment variables as the worker (TEMPORAL_TLS_*, TEMPORAL_API_KEY).

examples:
  tollgate start checkout 1.4.2 --reason "fix rounding in tax totals"
  tollgate watch checkout
  tollgate approve checkout --by bob --reason "canary looks clean" --sign-key ~/.ssh/id_ed25519
  tollgate abort checkout --by alice --reason "support tickets about totals"
  tollgate rollback checkout --by alice --reason "checkout totals wrong at full traffic"
  tollgate list --state awaiting-approval --json`;

const options = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  by: { type: 'string' },
  reason: { type: 'string' },
  comment: { type: 'string' },
  policy: { type: 'string' },
  initiator: { type: 'string' },
  service: { type: 'string' },
  state: { type: 'string' },
  address: { type: 'string' },
  namespace: { type: 'string' },
  'task-queue': { type: 'string' },
  interval: { type: 'string' },
  'rate-window': { type: 'string' },
  supersede: { type: 'boolean' },
  'sign-key': { type: 'string' },
  'identity-token': { type: 'string' },
  export: { type: 'string' },
  verify: { type: 'string' },
} as const;

class UsageError extends Error {}

type Values = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>['values'];

function need(value: string | undefined, what: string): string {
  if (!value) throw new UsageError(`missing ${what}; see tollgate --help`);
  return value;
}

function readFileFor(what: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** A CI pipeline's token, from a file or the environment; trimmed, as files end with a newline. */
function identityToken(values: Values): string | undefined {
  const token = values['identity-token']
    ? readFileFor('identity token', values['identity-token'])
    : process.env.TOLLGATE_IDENTITY_TOKEN;
  return token?.trim() || undefined;
}

function readPolicy(path: string): unknown {
  const text = readFileFor('policy file', path);
  try {
    return parseYaml(text) as unknown;
  } catch (err) {
    throw new UsageError(`policy file ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** Everything the CLI shows passes here: text from a release is hostile until made printable. */
const say = (text: string) => process.stdout.write(`${printableLines(text)}\n`);

function print(values: Values, human: string, data: unknown): void {
  if (values.json) process.stdout.write(`${printableJson(data, 2)}\n`);
  else say(human);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function watch(client: TollgateClient, service: string, values: Values): Promise<number> {
  const tty = process.stdout.isTTY && !values.json;
  let last = '';
  for (;;) {
    let status: ReleaseStatus;
    try {
      status = await client.status(service);
    } catch (err) {
      // The release may have just ended and the query raced it: fall through to its result.
      if (!(err instanceof TollgateError) || err.code !== 'unknown-release') throw err;
      status = await client.status(service);
    }
    const view = renderStatus(status);
    if (tty) {
      // The one control sequence the CLI writes itself: clear and home, before the sanitised view.
      process.stdout.write('\x1b[2J\x1b[H');
      say(view);
    } else if (values.json) {
      // One line per change: everything the live view shows, without the audit trail and resolved policy.
      const { stage, state, bake, gate, pause, retrying, rollback, outcome, ended } = status;
      const { rounds, failures, inconclusive } = status.analysis;
      const checks = status.analysis.checks.map(({ check, verdict, reason }) => ({ check, verdict, reason }));
      const line = printableJson({
        stage,
        state,
        bake,
        gate,
        pause,
        analysis: { rounds, failures, inconclusive, checks },
        retrying,
        rollback,
        outcome,
        ended,
      });
      if (line !== last) process.stdout.write(`${line}\n`);
      last = line;
    } else {
      const line = `${new Date().toISOString()} ${status.stage}/${status.state}${status.bake ? ` bake ${Math.floor((status.bake.elapsedMs / Math.max(1, status.bake.cycleMs)) * 100)}%` : ''}`;
      if (line.slice(25) !== last.slice(25)) say(line);
      last = line;
    }
    if (status.ended) {
      if (!values.json)
        say(`release ${printable(status.ended.status.toLowerCase())}: ${printable(status.ended.message)}`);
      return EXIT.ended;
    }
    if (status.state === 'done') {
      // The workflow reports `done` a step before its execution closes (a last notification): wait for the close,
      // so that whoever starts the next release right after `watch` is not refused as still in flight.
      const { outcome } = await client.result(service);
      if (!values.json) say(`release ${printable(outcome)}`);
      return outcome === 'promoted' ? EXIT.ok : outcome === 'aborted' ? EXIT.aborted : EXIT.rolled_back;
    }
    await sleep(values.interval ? Number.parseInt(values.interval, 10) * 1000 || 2000 : 2000);
  }
}

type Command = (client: TollgateClient) => Promise<number>;

/** The command line, checked whole before connecting: a typo never waits on the network, nor blames it. */
function commandFor(values: Values, positionals: string[]): Command {
  const [command, service, version] = positionals;
  switch (command) {
    case 'start': {
      const request = {
        service: need(service, '<service>'),
        version: need(version, '<version>'),
        initiator: values.initiator ?? process.env.USER ?? userInfo().username,
        ...(values.reason !== undefined && { reason: values.reason }),
        ...(values.policy !== undefined && { policy: readPolicy(values.policy) as never }),
      };
      const token = identityToken(values);
      return (client) => start(client, token ? { ...request, identityToken: token } : request, values);
    }
    case 'status': {
      const name = need(service, '<service>');
      return async (client) => {
        const status = await client.status(name);
        print(values, renderStatus(status), status);
        return EXIT.ok;
      };
    }
    case 'watch': {
      const name = need(service, '<service>');
      return (client) => watch(client, name, values);
    }
    case 'approve':
    case 'abort':
    case 'pause':
    case 'resume':
    case 'promote':
    case 'rollback': {
      const name = need(service, '<service>');
      // approve and resume take an optional note (`comment` on the wire); --reason is accepted for it on every control.
      const note = values.reason ?? values.comment;
      const input = {
        by: need(values.by, '--by <name>'),
        ...(note !== undefined &&
          (command === 'approve' || command === 'resume' ? { comment: note } : { reason: note })),
      };
      return async (client) => {
        const status = await client.control(command, name, input);
        print(values, `${command}: accepted\n${renderStatus(status)}`, status);
        return EXIT.ok;
      };
    }
    case 'list':
      return async (client) => {
        const rows = await client.list({
          // Releases in flight, unless asked for the state only ended ones have.
          ...(values.state !== 'done' && { closed: false }),
          ...(values.service && { service: values.service }),
          ...(values.state && { state: values.state }),
        });
        print(values, renderList(rows), rows);
        return EXIT.ok;
      };
    case 'history': {
      const name = need(service, '<service>');
      if (values.export) {
        const file = values.export;
        return async (client) => {
          const exported = await exportRelease(client.client, client.handle(name).workflowId);
          writeFileSync(file, `${JSON.stringify(exported)}\n`);
          say(`wrote ${exported.runs.length} run(s) of ${exported.workflowId} to ${file}`);
          return EXIT.ok;
        };
      }
      return (client) => history(client, name, values);
    }
  }
  throw new UsageError(`unknown command "${command}"; see tollgate --help`);
}

async function start(client: TollgateClient, request: ReleaseRequestInput, values: Values): Promise<number> {
  let handle;
  if (values.supersede) {
    if (!values.json)
      say(`superseding the release of ${request.service} in flight, if any: aborting, then waiting for its rollback…`);
    const superseded = await client.supersede(request);
    handle = superseded.handle;
    if (superseded.ended && !values.json) {
      say(
        `${superseded.ended.service} ${superseded.ended.version}: ${superseded.ended.outcome} — ${superseded.ended.reason}`,
      );
    }
  } else handle = await client.start(request);
  // The worker resolves the policy: wait for it, so an unknown service or a refused policy fails this command.
  const state = await client.awaitPolicy(handle);
  if (state === undefined) {
    process.stderr.write(
      `tollgate: no worker has taken up ${handle.workflowId} yet; is one polling task queue ${client.taskQueue}?\n`,
    );
  }
  print(
    values,
    `started ${handle.workflowId} (run ${handle.firstExecutionRunId})${state ? `, now ${state}` : ''}\n` +
      `  watch:   tollgate watch ${request.service}\n  abort:   tollgate abort ${request.service} --by <name> --reason <why>`,
    { workflowId: handle.workflowId, runId: handle.firstExecutionRunId, state: state ?? null },
  );
  return EXIT.ok;
}

async function history(client: TollgateClient, service: string, values: Values): Promise<number> {
  const rows = await client.history(service);
  const withOutcomes = await Promise.all(
    rows.map(async (r) => {
      const outcome = await client.client.workflow
        .getHandle<typeof releaseWorkflow>(r.workflowId, r.runId)
        .result()
        .then((res): string => res.outcome)
        .catch((err: Error) => `failed: ${err.cause instanceof Error ? err.cause.message : err.message}`);
      return { ...r, outcome };
    }),
  );
  print(
    values,
    printableDeep(withOutcomes)
      .map((r) => `${r.startTime}  ${r.version.padEnd(16)} ${r.outcome}`)
      .join('\n') || 'no past releases',
    withOutcomes,
  );
  return EXIT.ok;
}

/** Far above a long release's history (a month-long one is a few MiB), far below what would exhaust memory. */
const MAX_EXPORT_BYTES = 128 * 1024 * 1024;

async function verifyFile(path: string, values: Values): Promise<number> {
  const size = statSync(path, { throwIfNoEntry: false })?.size;
  if (size !== undefined && size > MAX_EXPORT_BYTES)
    throw new UsageError(`${path} is ${size} bytes: an exported history is at most ${MAX_EXPORT_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(readFileFor('exported history', path)) as unknown;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${path} is not JSON: ${(err as Error).message}`);
  }
  const report = await verifyHistory(doc);
  print(values, renderVerifyReport(report), report);
  return report.summary.ok ? EXIT.ok : EXIT.error;
}

/** The rule file a team loads into its Prometheus: the org's metric names, so the alerts carry its labels. */
async function alertRulesFile(policyDir: string, rateWindow: string | undefined): Promise<string> {
  const names = await new PolicyStore(policyDir).metricNames();
  try {
    return renderAlertRules(names, rateWindow !== undefined ? { rateWindow } : {});
  } catch (err) {
    if (err instanceof AlertRuleOptionsError) throw new UsageError(`--rate-window: ${err.message}`);
    throw err;
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  if (values.help || positionals.length === 0) {
    process.stdout.write(`${HELP}\n`);
    return values.help ? EXIT.ok : EXIT.usage;
  }
  const overrides = {
    ...process.env,
    ...(values.address && { TEMPORAL_ADDRESS: values.address }),
    ...(values.namespace && { TEMPORAL_NAMESPACE: values.namespace }),
    ...(values['task-queue'] && { TOLLGATE_TASK_QUEUE: values['task-queue'] }),
  };
  // A long-running process of its own, connecting lazily: it must start (and answer 503) while Temporal is down.
  if (positionals[0] === 'receiver') {
    if (positionals.length > 1) throw new UsageError('tollgate receiver takes no arguments; see tollgate --help');
    await runReceiver(overrides);
    return EXIT.ok;
  }
  if (positionals[0] === 'alert-rules') {
    if (positionals.length > 1) throw new UsageError('tollgate alert-rules takes no arguments; see tollgate --help');
    process.stdout.write(await alertRulesFile(process.env.TOLLGATE_POLICY_DIR || 'policies', values['rate-window']));
    return EXIT.ok;
  }
  // Offline: an exported history is all it needs, so it runs where the cluster cannot be reached.
  if (positionals[0] === 'history' && values.verify) {
    if (positionals.length > 1)
      throw new UsageError('tollgate history --verify FILE takes no service; see tollgate --help');
    return verifyFile(values.verify, values);
  }
  if (positionals[0] === 'signer') {
    const by = need(values.by, '--by <name>');
    const key = await signerFromKeyFile(
      need(values['sign-key'] ?? process.env.TOLLGATE_SIGNING_KEY, '--sign-key FILE'),
    ).publicKey();
    print(
      values,
      `# add to approvals.signers (service policy) or signers (org policy):\n- name: ${JSON.stringify(by)}\n  keys: [${JSON.stringify(key)}]`,
      { name: by, keys: [key] },
    );
    return EXIT.ok;
  }
  const command = commandFor(values, positionals);
  const signKey = values['sign-key'] ?? process.env.TOLLGATE_SIGNING_KEY;
  const signer = signKey ? signerFromKeyFile(signKey) : undefined;
  const env = parseEnv(connectionEnvSchema, overrides);
  const client = await TollgateClient.connect(connectionSettings(env), env.TOLLGATE_TASK_QUEUE);
  client.signer = signer;
  try {
    return await command(client);
  } finally {
    await client.close();
  }
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  try {
    return await run(argv);
  } catch (err) {
    const usage =
      err instanceof UsageError ||
      err instanceof ConfigError ||
      (err instanceof TollgateError && err.code === 'invalid-input');
    const known =
      usage ||
      err instanceof TollgateError ||
      (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'));
    const message = known ? (err as Error).message : `unexpected error: ${String(err)}`;
    const code = err instanceof TollgateError ? err.code : usage || known ? 'usage' : 'unexpected';
    // With --json the error is one JSON line too, so scripts can branch on its code.
    // Errors quote what the server or a release said (a rejection's reason): sanitised like any output.
    process.stderr.write(
      argv.includes('--json')
        ? `${printableJson({ error: message, code })}\n`
        : `tollgate: ${printable(message, 10_000)}\n`,
    );
    return usage || (err instanceof TypeError && 'code' in err) ? EXIT.usage : EXIT.error;
  }
}

if (require.main === module) void main().then((code) => process.exit(code));
