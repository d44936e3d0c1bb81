#!/usr/bin/env bash
# Builds a real Kubernetes control plane from the Go module proxy (no registry here ships kube-apiserver):
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from k8s.io/kubernetes, etcd from
# go.etcd.io/etcd, and kwok (fake nodes whose pods turn Ready). Into a cache outside the clone, keyed by version,
# so every clone and CI run on the machine reuses it. Idempotent: a warm cache returns at once.
# Cold: ≈ 15 min on 2 cores (../shared/KUBERNETES-NOTES.md). Prints the bin directory on its last line.
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.8
KWOK_VERSION=v0.8.0
cache="${TOLLGATE_CACHE:-$HOME/.cache/tollgate}/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
bin="$cache/bin"
wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

complete() {
  for name in "${wanted[@]}"; do [ -x "$bin/$name" ] || return 1; done
}
if complete; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "build-kubernetes: go is required (the binaries build from the Go module proxy)" >&2; exit 1; }
mkdir -p "$bin" "$cache/src"
log() { echo "build-kubernetes: $*" >&2; }

# kube-*: k8s.io/kubernetes replaces its staging modules with ./staging/..., so `go install` refuses it. A wrapper
# module requires it and points each staging module at its published v0.x twin instead.
if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ] || [ ! -x "$bin/kube-scheduler" ] || [ ! -x "$bin/kubectl" ]; then
  src="$cache/src/kubernetes"
  mkdir -p "$src"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging_version="v0.${K8S_VERSION#v1.}"
  {
    echo "module tollgate.local/kubernetes"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n '/^replace (/,/^)/p' "$gomod" | sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging_version"'#p'
    echo ")"
  } >"$src/go.mod"
  cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  log "resolving k8s.io/kubernetes $K8S_VERSION ($(grep -c ' => ' "$src/go.mod") staging modules)"
  (cd "$src" && go mod tidy -e >/dev/null 2>&1 || true; cd "$src" && go mod tidy)
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$bin/$name" ] && continue
    log "building $name"
    (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$bin/$name.partial" "k8s.io/kubernetes/cmd/$name")
    mv "$bin/$name.partial" "$bin/$name"
  done
fi

# etcd: its go.mod carries replace directives too, so it also builds through a wrapper module.
if [ ! -x "$bin/etcd" ]; then
  src="$cache/src/etcd"
  mkdir -p "$src"
  printf 'module tollgate.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$src/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$src/tools.go"
  log "building etcd $ETCD_VERSION"
  (cd "$src" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$bin/etcd.partial" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd.partial" "$bin/etcd"
fi

if [ ! -x "$bin/kwok" ]; then
  log "building kwok $KWOK_VERSION"
  GOBIN="$cache/src/kwok-bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$cache/src/kwok-bin/kwok" "$bin/kwok"
fi

complete
log "ready in $bin"
echo "$bin"
