#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
bash scripts/provision.sh
npm run --silent build
exec node dist/scripts/start.js
