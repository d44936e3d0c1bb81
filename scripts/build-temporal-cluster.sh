#!/usr/bin/env bash
# Builds the pieces of a real Temporal cluster from the Go module proxy (no registry here ships the server binary):
# the server (one binary, run once per service), its SQL schema tool and the standalone Web UI server. Into a cache
# outside the clone, keyed by version, so every clone and CI run on the machine reuses it. Idempotent: a warm cache
# returns at once. Cold: ≈ 15 min on 2 cores (../shared/TEMPORAL-CLUSTER-NOTES.md). Prints the bin directory on its
# last line.
set -euo pipefail

SERVER_VERSION=v1.29.1
UI_SERVER_VERSION=v2.54.1
cache="${TOLLGATE_CACHE:-$HOME/.cache/tollgate}/temporal-server-$SERVER_VERSION-ui-$UI_SERVER_VERSION"
bin="$cache/bin"

complete() {
  for name in temporal-server temporal-sql-tool temporal-ui-server; do [ -x "$bin/$name" ] || return 1; done
  [ -d "$cache/schema/postgresql" ]
}
if complete; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "build-temporal-cluster: go is required (the binaries build from the Go module proxy)" >&2; exit 1; }
mkdir -p "$bin"
log() { echo "build-temporal-cluster: $*" >&2; }

# Each tool installs into its own scratch GOBIN: all three are called `server` or `sql` by their package names.
build() { # module-path version name
  local scratch="$cache/gobin-$3"
  [ -x "$bin/$3" ] && return 0
  log "building $3 from $1@$2"
  rm -rf "$scratch" && mkdir -p "$scratch"
  GOBIN="$scratch" GOFLAGS=-mod=mod go install "$1@$2"
  mv "$scratch"/* "$bin/$3"
  rm -rf "$scratch"
}
build go.temporal.io/server/cmd/server "$SERVER_VERSION" temporal-server
build go.temporal.io/server/cmd/tools/sql "$SERVER_VERSION" temporal-sql-tool
build github.com/temporalio/ui-server/v2/cmd/server "$UI_SERVER_VERSION" temporal-ui-server

# The schema tool applies versioned SQL files shipped in the server module, not in the binary: keep a copy beside it.
if [ ! -d "$cache/schema/postgresql" ]; then
  moddir=$(go mod download -json "go.temporal.io/server@$SERVER_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$cache/schema"
  cp -r "$moddir/schema/postgresql" "$cache/schema/"
  chmod -R u+w "$cache/schema"
fi
complete
log "built into $bin"
echo "$bin"
