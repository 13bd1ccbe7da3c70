#!/usr/bin/env bash
# `make sandbox`: Panoptes running locally with no cluster. A real kube-apiserver + etcd (the
# test control plane), the CRDs, 3 simulated streamer nodes (streamer-sim, a SIMULATOR of
# Flussonic Media Server), the samples, and `panoptes run` with the facade. Prints how to use
# it, writes target/sandbox/env, and runs until Ctrl-C, which stops everything it started.
#
# A shell script rather than a Rust binary: it only starts processes and calls kubectl and
# curl, exactly what a newcomer would type, and needs no build of its own.
#
# Environment:
#   SANDBOX_EXIT_WHEN_READY=1  stop everything and exit 0 once Ready (used by tests/sandbox.rs)
#   SANDBOX_DIR                state directory (default target/sandbox)
#   SANDBOX_PORT               first port (default 18000): sim control, 3 nodes, probes, facade
#   SANDBOX_TIMEOUT            seconds to wait for the samples to be Ready (default 180)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${SANDBOX_DIR:-$ROOT/target/sandbox}
PORT=${SANDBOX_PORT:-18000}
TIMEOUT=${SANDBOX_TIMEOUT:-180}
NS=video                      # the samples' namespace
SYSTEM_NS=panoptes-system     # Leases, settings, the JWT key
BIN=${PANOPTES_CONTROLPLANE_BIN:-$ROOT/target/controlplane/bin}
SIM_CONTROL=$PORT
NODE_PORT=$((PORT + 1))       # nodes on NODE_PORT .. NODE_PORT+2 (the samples say 18001-18003)
PROBE_PORT=$((PORT + 80))
API_PORT=$((PORT + 81))
API_URL=http://127.0.0.1:$API_PORT/watcher/admin-api/v3

# fd 4/5: the terminal's stdout/stderr, for messages from inside redirected commands (a die()
# in a polled check, the cleanup on exit).
exec 4>&1 5>&2
if [[ -t 1 ]]; then BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' OFF=$'\e[0m'; else BOLD='' DIM='' RED='' OFF=''; fi
STEP=0
STEPS=8
T0=$SECONDS
step() { STEP=$((STEP + 1)); printf '%s[%d/%d]%s %s\n' "$BOLD" "$STEP" "$STEPS" "$OFF" "$*"; }
note() { printf '      %s%s%s\n' "$DIM" "$*" "$OFF"; }
die() {
  printf '\n%serror:%s %s\n' "$RED" "$OFF" "$*" >&5
  exit 1
}

# --- processes this script started, stopped on any exit (Ctrl-C, error, done) -----------
PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Whoever read our output may be gone (a closed pipe): stopping must not die of SIGPIPE.
  trap '' PIPE
  if ((${#PIDS[@]})); then
    printf '\nstopping the sandbox...\n' >&4 2>/dev/null || true
    # Newest first: the operator, then the nodes, then the control plane.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
  fi
  exec 3>&- 2>/dev/null || true
  rm -f "$DIR/pid" "$DIR/pids"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# If this script is killed outright (no trap runs), a watchdog stops what it started: every
# started pid is appended to $DIR/pids; the control plane also stops on its own (see step 2).
start_watchdog() {
  local me=$$
  (
    trap '' INT
    while kill -0 "$me" 2>/dev/null; do sleep 1; done
    xargs -r kill -TERM <"$DIR/pids" 2>/dev/null
  ) &
  PIDS+=($!)
}
started() {
  PIDS+=("$1")
  echo "$1" >>"$DIR/pids"
}

port_free() { ! (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until `$@` succeeds, printing a dot a second; gives up after $1 seconds.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start < limit)) || die "$what did not happen within ${limit}s"
    printf '.'
    sleep 1
  done
  printf ' %s(%ds)%s\n' "$DIM" $((SECONDS - start)) "$OFF"
}

mkdir -p "$DIR"
if [[ -f $DIR/pid ]] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
  die "a sandbox is already running (pid $(cat "$DIR/pid")); stop it with Ctrl-C first"
fi
echo $$ >"$DIR/pid"
: >"$DIR/pids"
for p in $SIM_CONTROL $NODE_PORT $((NODE_PORT + 1)) $((NODE_PORT + 2)) $PROBE_PORT $API_PORT; do
  port_free "$p" || die "port $p is in use (another sandbox? set SANDBOX_PORT to move every port)"
done

# --- 1. build --------------------------------------------------------------------------
step "building the control plane, panoptes and streamer-sim (first time: a few minutes)"
"$ROOT/tests/controlplane/build.sh" "$BIN" | sed 's/^/      /'
(cd "$ROOT" && cargo build --locked -p panoptes --bin panoptes -p streamer-sim --bin streamer-sim 2>&1 | sed 's/^/      /')
KUBECTL="$BIN/kubectl"

# --- 2. control plane ------------------------------------------------------------------
step "starting kube-apiserver and etcd (state in ${DIR#"$ROOT"/}/controlplane)"
rm -rf "$DIR/controlplane" "$DIR/env"
mkdir -p "$DIR/controlplane"
# The launcher stops etcd and kube-apiserver when its stdin closes: fd 3 holds a FIFO open for
# as long as this script lives, so even `kill -9` of the script leaves nothing behind.
mkfifo "$DIR/controlplane/stdin"
exec 3<>"$DIR/controlplane/stdin"
"$BIN/controlplane" --bin-dir "$BIN" --state-dir "$DIR/controlplane" \
  <"$DIR/controlplane/stdin" >"$DIR/controlplane.out" 2>"$DIR/controlplane.log" &
started $!
start_watchdog
printf '      '
wait_for 120 "the control plane start" grep -q '^READY ' "$DIR/controlplane.out"
KUBECONFIG=$(sed -n 's/^READY //p' "$DIR/controlplane.out")
export KUBECONFIG

# --- 3. CRDs and namespaces ------------------------------------------------------------
step "installing the CRDs and namespaces $NS, $SYSTEM_NS"
# As on a real cluster (README "Install"): server-side, since the CRDs are large.
"$KUBECTL" apply --server-side -f "$ROOT/crds/" | sed 's/^/      /'
"$KUBECTL" wait --for=condition=Established crd --all --timeout=60s >/dev/null
"$KUBECTL" create namespace "$NS" >/dev/null
"$KUBECTL" create namespace "$SYSTEM_NS" >/dev/null
# The README types `kubectl get panoptes`: the sandbox's kubeconfig defaults to the samples'
# namespace (best effort: a kubeconfig without a current context keeps "default").
"$KUBECTL" config set-context --current --namespace "$NS" >/dev/null 2>&1 || true
# What the Helm chart does on install: a random JWT signing key for the facade.
"$KUBECTL" create secret generic panoptes-jwt -n "$SYSTEM_NS" \
  --from-literal=signing-key="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" >/dev/null

# --- 4. samples ------------------------------------------------------------------------
step "applying manifests/samples (3 streamers, 3 presets, 2 organizations, 3 users, 12 cameras)"
"$KUBECTL" apply -n "$NS" -f "$ROOT/manifests/samples/" >"$DIR/samples.out"
note "$(wc -l <"$DIR/samples.out") objects created"
if ((NODE_PORT != 18001)); then
  for i in 1 2 3; do
    "$KUBECTL" patch streamer -n "$NS" "streamer-$i" --type merge \
      -p "{\"spec\":{\"apiUrl\":\"http://127.0.0.1:$((NODE_PORT + i - 1))\"}}" >/dev/null
  done
  note "streamers pointed at ports $NODE_PORT-$((NODE_PORT + 2))"
fi

# --- 5. simulated nodes ----------------------------------------------------------------
step "starting 3 simulated streamer nodes on 127.0.0.1:$NODE_PORT-$((NODE_PORT + 2)) (streamer-sim, a SIMULATOR)"
# The nodes accept the credentials of the samples' Secret (read back from the cluster, the one
# source of truth), passed through the environment rather than the command line `ps` shows.
secret() {
  "$KUBECTL" get secret streamer-credentials -n "$NS" -o "jsonpath={.data.$1}" | base64 -d
}
STREAMER_SIM_LOGIN=$(secret login) STREAMER_SIM_PASSWORD=$(secret password) \
  STREAMER_SIM_CLUSTER_KEY=$(secret clusterKey) \
  "$ROOT/target/debug/streamer-sim" --nodes 3 --base-port "$NODE_PORT" --control-port "$SIM_CONTROL" \
  --log warn >"$DIR/streamer-sim.log" 2>&1 &
started $!
printf '      '
wait_for 30 "the simulated nodes start" curl -sf "http://127.0.0.1:$SIM_CONTROL/_sim/nodes"

# --- 6. the operator -------------------------------------------------------------------
step "starting panoptes run (log: ${DIR#"$ROOT"/}/panoptes.log)"
"$ROOT/target/debug/panoptes" run --namespace "$NS" --system-namespace "$SYSTEM_NS" \
  --probe-addr "127.0.0.1:$PROBE_PORT" --api-addr "127.0.0.1:$API_PORT" --peer-addr 127.0.0.1:0 --log-format text \
  >"$DIR/panoptes.log" 2>&1 &
PANOPTES_PID=$!
started $PANOPTES_PID
operator_ready() {
  kill -0 "$PANOPTES_PID" 2>/dev/null || die "panoptes exited; last lines of its log:
$(tail -n 15 "$DIR/panoptes.log")"
  curl -sf "http://127.0.0.1:$PROBE_PORT/readyz"
}
printf '      /readyz '
wait_for 60 "panoptes readiness" operator_ready

# --- 7. wait for Ready -----------------------------------------------------------------
step "waiting for the samples to be Ready (the 2 cameras labelled unreachable are left out)"
# kind, label selector: every sample object but the deliberately unreachable cameras.
WAITS=("streamers" "" "presets" "" "organizations" "" "users" ""
  "streams" "sandbox.panoptes.dev/expect!=unreachable")
# One kubectl call a second for all kinds (kubectl start-up is not free on a small machine):
# a line per object, "Kind Ready-status expect-label".
ready_counts() {
  local rows line="" all=1 kind total ready
  rows=$("$KUBECTL" get streamers,presets,organizations,users,streams -n "$NS" -o jsonpath='{range .items[*]}{.kind} {.status.conditions[?(@.type=="Ready")].status}{" "}{.metadata.labels.sandbox\.panoptes\.dev/expect}{"\n"}{end}')
  for kind in Streamer Preset Organization User Stream; do
    total=$(awk -v k="$kind" '$1 == k && $NF != "unreachable"' <<<"$rows" | wc -l)
    ready=$(awk -v k="$kind" '$1 == k && $2 == "True" && $NF != "unreachable"' <<<"$rows" | wc -l)
    line+="${kind,,}s $ready/$total  "
    ((ready == total)) || all=0
  done
  # On a terminal the line updates in place; in a log, a new line only when a count changed.
  if [[ -t 1 ]]; then
    printf '\r      %s' "$line"
  elif [[ $line != "${LAST_COUNTS:-}" ]]; then
    printf '      %s\n' "$line"
  fi
  LAST_COUNTS=$line
  ((all))
}
START=$SECONDS
until ready_counts; do
  kill -0 "$PANOPTES_PID" 2>/dev/null || die "panoptes exited; see $DIR/panoptes.log"
  if ((SECONDS - START > TIMEOUT)); then
    printf '\n'
    note "not Ready after ${TIMEOUT}s:"
    "$KUBECTL" get streamers,presets,organizations,users,streams -n "$NS" \
      -o custom-columns='KIND:.kind,NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason,MESSAGE:.status.conditions[?(@.type=="Ready")].message' |
      grep -v ' True ' | sed 's/^/      /'
    die "the samples did not become Ready; logs in $DIR"
  fi
  sleep 1
done
# The authoritative check, as a user would run it.
for ((i = 0; i < ${#WAITS[@]}; i += 2)); do
  "$KUBECTL" wait --for=condition=Ready -n "$NS" "${WAITS[i]}" \
    ${WAITS[i + 1]:+-l "${WAITS[i + 1]}"} --all --timeout=10s >/dev/null
done
printf ' %s(%ds)%s\n' "$DIM" $((SECONDS - START)) "$OFF"

# --- 8. the facade ---------------------------------------------------------------------
step "logging in to the facade and listing streams"
ADMIN_USER='admin'
ADMIN_PASSWORD=$("$KUBECTL" get secret user-passwords -n "$NS" -o jsonpath='{.data.admin}' | base64 -d)
TOKEN=$(curl -sf -X POST -u "$ADMIN_USER:$ADMIN_PASSWORD" -H 'content-type: application/json' \
  --data null "$API_URL/login" | jq -r '.access_token // empty') ||
  die "POST $API_URL/login failed; see $DIR/panoptes.log"
[[ -n $TOKEN ]] || die "the login answer carried no token"
STREAMS=$(curl -sf -H "Authorization: Bearer $TOKEN" "$API_URL/streams?limit=100") ||
  die "GET $API_URL/streams failed"
note "GET /streams: $(jq '.streams | length' <<<"$STREAMS") streams, $(jq '[.streams[] | select(.stats.alive == true)] | length' <<<"$STREAMS") alive"

# KEY=value lines a shell can source (%q quotes anything unusual) and tools can read.
{
  printf 'KUBECONFIG=%q\n' "$KUBECONFIG"
  printf 'PANOPTES_API_URL=%q\n' "$API_URL"
  printf 'PANOPTES_ADMIN_USER=%q\n' "$ADMIN_USER"
  printf 'PANOPTES_ADMIN_PASSWORD=%q\n' "$ADMIN_PASSWORD"
  printf 'PANOPTES_NAMESPACE=%q\n' "$NS"
} >"$DIR/env"
chmod 600 "$DIR/env"

cat <<EOF

${BOLD}Panoptes sandbox is up${OFF} in $((SECONDS - T0))s.

  Facade (Watcher admin API)  $API_URL
  Admin login / password      $ADMIN_USER / $ADMIN_PASSWORD
  OpenAPI document            $API_URL/openapi.json
  Metrics                     http://127.0.0.1:$PROBE_PORT/metrics
  Simulated nodes             http://127.0.0.1:$NODE_PORT-$((NODE_PORT + 2))/streamer/api/v3  (control: http://127.0.0.1:$SIM_CONTROL/_sim/nodes)
  Logs                        $DIR/{panoptes,streamer-sim,controlplane}.log

  In another terminal:
    export KUBECONFIG=$KUBECONFIG
    $KUBECTL get streams,streamers -n $NS
    curl -s -u $ADMIN_USER:'$ADMIN_PASSWORD' -X POST $API_URL/login
  or: set -a; . $DIR/env; set +a

Ctrl-C stops everything.
EOF

[[ ${SANDBOX_EXIT_WHEN_READY:-0} == 1 ]] && exit 0
# Sleep in the background and wait for it, so Ctrl-C is handled at once.
while true; do
  sleep 3600 &
  PIDS+=($!)
  wait $! || true
done
