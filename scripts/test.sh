#!/usr/bin/env bash
# The test command: provisions what is missing, runs every jest suite against the real Temporal servers,
# and ends with one plain line of counts for CI.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
bash scripts/provision.sh
mkdir -p test-results
status=0
# --forceExit: a child process a suite failed to reap must not hold CI past its results.
npx jest --json --outputFile=test-results/jest.json --forceExit "$@" || status=$?
node -e '
  const r = require("./test-results/jest.json");
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed`);
  process.exit(r.numFailedTests > 0 || r.numPassedTests === 0 || !r.success ? 1 : 0);
' || status=1
exit "$status"
