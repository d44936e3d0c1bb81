#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
npm run --silent build
exec node dist/scripts/dev-server.js
