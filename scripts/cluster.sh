#!/usr/bin/env bash
# `npm run cluster`: a real Temporal cluster on PostgreSQL in the foreground (scripts/cluster.ts), Ctrl-C stops it.
# Options after `--`: npm run cluster -- --port-base 7233 --state-dir .tollgate/cluster --fresh --no-ui
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
# Warm: returns at once. Cold: ≈ 15 min on 2 cores, progress on stderr.
bash scripts/build-temporal-cluster.sh >/dev/null
npm run --silent build
exec node dist/scripts/cluster.js "$@"
