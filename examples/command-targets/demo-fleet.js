#!/usr/bin/env node
'use strict';
/**
 * A Tollgate command target (kind: command) that releases the demo's HAProxy fleet: the fleet provider Tollgate
 * ships (src/providers/targets/haproxy-fleet.ts), used as a library by a plain Node script, the way a team would
 * wrap the deploy library it already has.
 *
 *   services:
 *     checkout:
 *       kind: command
 *       command: [node, examples/command-targets/demo-fleet.js, .tollgate/fleet.json]
 *       stateDir: .tollgate/command-state
 *
 * fleet.json holds the fleet's options as the `haproxy-fleet` target takes them (service, haproxySocket, backend,
 * fleetSize, basePort, stagingPort, command, stateDir, ...). The provider is loaded from the compiled tree,
 * dist/ (`npm run build`, which `npm start` runs), or from the one `--dist <dir>` names.
 *
 * The step comes as JSON on stdin; the result (changes, applied; or stableVersion for `read`) goes to the file
 * TOLLGATE_RESULT names; the fleet's own log lines go to stderr, which Tollgate puts in the worker log labelled
 * with the release. The fleet keeps its own ledger of step keys, so every action is safe to run again.
 *
 * Exit status: 0 done; 75 "try again" for what the built-in target lets Temporal retry (the fleet's lock held
 * elsewhere, HAProxy not answering, an instance that did not start); 1 for a step the fleet can never carry out
 * (another service, a corrupt state file, bad options), which fails the step and rolls the release back.
 */
const { readFileSync, writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');

const TRY_AGAIN = 75;
/** Errors retrying cannot help with, by name: the built-in target fails these without Temporal's retries. */
const FINAL = new Set(['FleetStepError', 'FleetConfigError', 'FleetStateError', 'FleetCapacityError', 'SyntaxError']);

function parseArgs(argv) {
  const args = { config: undefined, dist: join(__dirname, '..', '..', 'dist') };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--dist') args.dist = argv[++i];
    else args.config = argv[i];
  }
  if (!args.config) throw Object.assign(new Error('usage: demo-fleet.js <fleet.json> [--dist <dir>]'), { final: 1 });
  return args;
}

function readStdin() {
  return new Promise((done, fail) => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => (text += chunk));
    process.stdin.on('end', () => done(text));
    process.stdin.on('error', fail);
  });
}

/** The step as the fleet target takes it: a null stable version (a first release) is none. */
const deployStep = (p) => ({
  key: p.key,
  releaseId: p.releaseId,
  service: p.service,
  version: p.version,
  stableVersion: p.stableVersion === null ? undefined : p.stableVersion,
  track: p.track,
  ...(p.percent !== undefined && { percent: p.percent }),
  ...(p.canaryInstances !== undefined && { canaryInstances: p.canaryInstances }),
});

async function act(fleet, step) {
  switch (step.action) {
    case 'deploy': {
      const receipt = await fleet.apply(deployStep(step));
      return { changes: receipt.changes, applied: receipt.applied };
    }
    case 'undo': {
      const receipt = await fleet.undo(deployStep(step));
      return { changes: receipt.changes, applied: receipt.applied };
    }
    case 'mark-stable':
      await fleet.markStable(step.service, step.version);
      return { changes: [`${step.service} ${step.version} stable`] };
    case 'read':
      return { stableVersion: (await fleet.stableVersion(step.service)) ?? null };
    default:
      throw Object.assign(new Error(`unknown action ${step.action}`), { final: 1 });
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const dist = resolve(args.dist);
  const { HaproxyFleetTarget } = require(join(dist, 'src', 'providers', 'targets', 'haproxy-fleet.js'));
  const pino = require('pino');
  const options = JSON.parse(readFileSync(args.config, 'utf8'));
  const step = JSON.parse(await readStdin());
  // stderr: Tollgate reads both streams line by line, and keeps stdout and stderr apart in the worker log.
  const logger = pino({ level: process.env.DEMO_FLEET_LOG_LEVEL || 'info' }, pino.destination(2));
  const fleet = new HaproxyFleetTarget({ ...options, logger });
  const result = await act(fleet, step);
  writeFileSync(process.env.TOLLGATE_RESULT, JSON.stringify(result));
  console.log(`${step.action} ${step.key}: ${JSON.stringify(result)}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`${err.name}: ${err.message}`);
    process.exit(err.final || FINAL.has(err.name) || err.nonRetryable ? 1 : TRY_AGAIN);
  },
);
