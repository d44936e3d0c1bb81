#!/usr/bin/env bash
# A Tollgate command target (kind: command) that releases a Deployment with kubectl alone: no controller, no CRD.
#
#   services:
#     checkout:
#       kind: command
#       command: [examples/command-targets/kubectl.sh, --namespace, shop, --container, app,
#                 --image, "registry.example.com/checkout:{version}", --fleet-size, "4",
#                 --staging-namespace, shop-staging]
#       env: [KUBECONFIG]          # the worker's variables this script may see (besides PATH, HOME, LANG, TZ)
#       stateDir: /var/lib/tollgate/command
#       timeout: 5m
#
# What each action does, all of it safe to run again (Tollgate passes TOLLGATE_KEY, but nothing here needs it:
# every command below says what the end state is, not what to change):
#   deploy, staging     the Deployment <service> in the staging namespace runs the version (1 pod)
#   deploy, canary      the Deployment <service>-canary runs the version on TOLLGATE_CANARY_INSTANCES pods
#   deploy, production  TOLLGATE_PERCENT below 100: the canary gets that share of the --fleet-size pods and the
#                       stable Deployment <service> the rest; at 100: <service> itself runs the version on every
#                       pod and the canary goes
#   undo                back to TOLLGATE_STABLE_VERSION: the canary goes and <service> runs the stable version on
#                       every pod (staging: the staging Deployment runs it, or goes before a first release)
#   mark-stable         <service> runs the version on every pod, the canary goes
#   read                the version of <service>'s image (its tag, read through --image)
# Every step waits for its rollout (`kubectl rollout status`, bounded by --rollout-timeout).
#
# Exit status: 0 done; 75 "try again" when the API server could not be reached or answered busy (Tollgate's
# retry runs the step again); 1 for anything else (forbidden, not found, a rollout that never finished), which
# fails the step and rolls the release back. The last lines of stderr say why, in Tollgate's status.
#
# The canary's pod spec is this script's own (one container, the image, labels app/track/version): a real script
# would render the team's full pod spec (helm template, kustomize) the same way. kubectl-rbac.yaml holds the
# Role it needs. KUBECTL (or --kubectl) names the kubectl binary when it is not on PATH; arguments after -- go to
# every kubectl call (--context, --cache-dir, --request-timeout).
set -euo pipefail

kubectl=${KUBECTL:-kubectl}
namespace='' container='' image='' fleet='' staging_namespace='' rollout_timeout=120s
auth=()
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) namespace=$2 ;;
    --container) container=$2 ;;
    --image) image=$2 ;;
    --fleet-size) fleet=$2 ;;
    --staging-namespace) staging_namespace=$2 ;;
    --rollout-timeout) rollout_timeout=$2 ;;
    --kubeconfig) auth=(--kubeconfig "$2") ;;
    --kubectl) kubectl=$2 ;;
    # Everything after -- goes to every kubectl call: --context, --cache-dir, --request-timeout...
    --)
      shift
      auth+=("$@")
      break
      ;;
    *) echo "unknown argument $1" >&2 && exit 1 ;;
  esac
  shift 2
done
for required in namespace container image fleet; do
  [ -n "${!required}" ] || { echo "--${required/fleet/fleet-size} is required" >&2 && exit 1; }
done
[[ "$image" == *'{version}'* ]] || { echo '--image must contain {version}' >&2 && exit 1; }
staging_namespace=${staging_namespace:-$namespace}
service=$TOLLGATE_SERVICE
canary="$service-canary"
stable_version=${TOLLGATE_STABLE_VERSION:-}

errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
changes=()

# kubectl, its stdout returned; a failure ends the script: 75 when trying again may help, 1 otherwise. Called in
# $(...), its exit ends only that subshell: always assign the output to a variable, whose failing assignment then
# ends the script with the same status (set -e).
kc() {
  local out
  if out=$("$kubectl" "${auth[@]}" "$@" 2>"$errors"); then
    printf '%s' "$out"
    return 0
  fi
  cat "$errors" >&2
  if grep -qiE 'connection refused|i/o timeout|TLS handshake timeout|ServiceUnavailable|TooManyRequests|the object has been modified|etcdserver|unexpected EOF|connection reset' "$errors"; then
    echo "kubectl $1 $2: the API server is unavailable; try again" >&2
    exit 75
  fi
  echo "kubectl $*: failed" >&2
  exit 1
}

image_of() { printf '%s' "${image//\{version\}/$1}"; }
json_string() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
changed() {
  echo "$1"
  changes+=("$1")
}

# The Deployment $2 in namespace $1 with pods of track $3 running version $4, $5 of them; declarative, so again
# is a no-op.
apply_deployment() {
  local ns=$1 name=$2 track=$3 version=$4 replicas=$5 said
  said=$(kc apply -n "$ns" -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $name
  labels: {app: $service, track: $track}
spec:
  replicas: $replicas
  selector:
    matchLabels: {app: $service, track: $track}
  template:
    metadata:
      labels: {app: $service, track: $track, version: "$version"}
    spec:
      containers:
        - name: $container
          image: $(image_of "$version")
YAML
  )
  changed "$ns/$said ($track $version ×$replicas)"
}

rollout() { kc rollout status -n "$1" "deployment/$2" --timeout="$rollout_timeout" >/dev/null; }

scale() {
  local said
  said=$(kc scale -n "$1" "deployment/$2" --replicas="$3")
  changed "$1/$said to $3"
}

# The stable Deployment on `version`, on every pod of the fleet, its pods labelled with it; then the canary goes.
stable_on() {
  local version=$1 patch said deleted
  patch=$(printf '{"spec":{"replicas":%s,"template":{"metadata":{"labels":{"version":"%s"}},"spec":{"containers":[{"name":"%s","image":"%s"}]}}}}' \
    "$fleet" "$version" "$container" "$(image_of "$version")")
  said=$(kc patch -n "$namespace" "deployment/$service" --type=strategic -p "$patch")
  changed "$namespace/$said ($version ×$fleet)"
  rollout "$namespace" "$service"
  deleted=$(kc delete -n "$namespace" "deployment/$canary" --ignore-not-found)
  [ -z "$deleted" ] || changed "$namespace/$deleted"
}

case "$TOLLGATE_ACTION/${TOLLGATE_TRACK:-}" in
  deploy/staging)
    apply_deployment "$staging_namespace" "$service" staging "$TOLLGATE_VERSION" 1
    rollout "$staging_namespace" "$service"
    ;;
  deploy/canary)
    apply_deployment "$namespace" "$canary" canary "$TOLLGATE_VERSION" "${TOLLGATE_CANARY_INSTANCES:-1}"
    rollout "$namespace" "$canary"
    ;;
  deploy/production)
    percent=${TOLLGATE_PERCENT:-100}
    if [ "${percent%.*}" -ge 100 ]; then
      stable_on "$TOLLGATE_VERSION"
    else
      # ceil(fleet × percent / 100) pods on the new version, at least one; TOLLGATE_PERCENT may have decimals.
      on_new=$(awk -v n="$fleet" -v p="$percent" 'BEGIN { c = n * p / 100; r = int(c); if (r < c) r++; if (r < 1) r = 1; print r }')
      apply_deployment "$namespace" "$canary" canary "$TOLLGATE_VERSION" "$on_new"
      rollout "$namespace" "$canary"
      scale "$namespace" "$service" $((fleet - on_new))
      rollout "$namespace" "$service"
    fi
    ;;
  undo/staging)
    if [ -n "$stable_version" ]; then
      apply_deployment "$staging_namespace" "$service" staging "$stable_version" 1
      rollout "$staging_namespace" "$service"
    else
      deleted=$(kc delete -n "$staging_namespace" "deployment/$service" --ignore-not-found)
      [ -z "$deleted" ] || changed "$staging_namespace/$deleted"
    fi
    ;;
  undo/*)
    if [ -n "$stable_version" ]; then
      stable_on "$stable_version"
    else
      deleted=$(kc delete -n "$namespace" "deployment/$canary" --ignore-not-found)
      [ -z "$deleted" ] || changed "$namespace/$deleted"
      scale "$namespace" "$service" "$fleet"
      rollout "$namespace" "$service"
    fi
    ;;
  mark-stable/*)
    stable_on "$TOLLGATE_VERSION"
    ;;
  read/*)
    running=$(kc get -n "$namespace" "deployment/$service" -o "jsonpath={.spec.template.spec.containers[?(@.name==\"$container\")].image}")
    prefix=${image%%\{version\}*} suffix=${image#*\{version\}}
    version=''
    if [[ "$running" == "$prefix"* && "$running" == *"$suffix" ]]; then
      version=${running#"$prefix"}
      version=${version%"$suffix"}
    fi
    if [ -n "$version" ]; then
      printf '{"stableVersion":%s}' "$(json_string "$version")" >"$TOLLGATE_RESULT"
    else
      echo "deployment/$service runs $running, which $image does not match" >&2
      printf '{"stableVersion":null}' >"$TOLLGATE_RESULT"
    fi
    exit 0
    ;;
  *)
    echo "unknown action $TOLLGATE_ACTION" >&2
    exit 1
    ;;
esac

{
  printf '{"changes":['
  for i in "${!changes[@]}"; do
    [ "$i" -eq 0 ] || printf ','
    json_string "${changes[$i]}"
  done
  printf ']}'
} >"$TOLLGATE_RESULT"
