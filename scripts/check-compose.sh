#!/usr/bin/env bash
# Validates docker-compose.yml and lints the Dockerfile (hadolint from .tools/venv, put there by provision.sh, or
# PATH) without a container engine. Installs a Compose parser if none is present: Debian's docker-compose (as root).
#
#   bash scripts/check-compose.sh [compose-file]      (default: docker-compose.yml at the repo root)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
compose_file="${1:-docker-compose.yml}"
[[ -f "$compose_file" ]] || { echo "check-compose: $compose_file not found" >&2; exit 1; }

# Prefer the Compose v2 plugin when an installation already has it; otherwise docker-compose (v1.29, Debian).
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  if ! command -v docker-compose >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then
      echo "check-compose: no Compose parser found; install one: sudo apt-get install -y --no-install-recommends docker-compose" >&2
      exit 1
    fi
    echo "check-compose: installing docker-compose (apt)..."
    export DEBIAN_FRONTEND=noninteractive
    # --no-install-recommends: the parser needs no engine (docker.io is only a Recommends).
    apt_get=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)
    "${apt_get[@]}" install --no-install-recommends docker-compose >/dev/null \
      || { "${apt_get[@]}" update >/dev/null && "${apt_get[@]}" install --no-install-recommends docker-compose >/dev/null; } \
      || { echo "check-compose: apt-get install docker-compose failed" >&2; exit 1; }
  fi
  compose=(docker-compose)
fi

# `config` parses, validates against the Compose schema and interpolates; it needs no engine.
if ! "${compose[@]}" -f "$compose_file" config -q; then
  echo "check-compose: $compose_file is INVALID (${compose[*]} config)" >&2
  exit 1
fi
echo "check-compose: $compose_file is valid ($("${compose[@]}" version --short 2>/dev/null || echo "${compose[*]}"))"

hadolint=.tools/venv/bin/hadolint
[[ -x "$hadolint" ]] || hadolint="$(command -v hadolint)" || {
  echo "check-compose: hadolint not found; run npm run provision" >&2
  exit 1
}
"$hadolint" Dockerfile
echo "check-compose: Dockerfile passes hadolint $("$hadolint" --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)"
