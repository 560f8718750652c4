#!/usr/bin/env bash
# The local multi-node topology on loopback: Redis Cluster (3 masters + 3 replicas), mosquitto
# (persistence on), 2 bridges (one shared-subscription group, distinct client ids), 2 edges and a
# bounded simulator. Every process has a PID file and a log in the state directory.
#
#   deploy/local/cluster.sh up      # or: go tool task cluster:up
#   deploy/local/cluster.sh down    # or: go tool task cluster:down
#   deploy/local/cluster.sh status
#
# Environment:
#   MESHCAST_CLUSTER_DIR   state directory (default ./tmp/cluster, relative to the repository)
#   MESHCAST_CLUSTER_PORT  first port tried (default 17000); each service takes the next free
#                          port at or above it (Redis also needs port+10000 for its cluster bus)
#   MESHCAST_SIM_TAXIS     simulated taxis (default 300)
#   MESHCAST_SIM_DURATION  how long the simulator runs (default 10m; the rest keeps running)
#   MESHCAST_BIN           a meshcast binary to use instead of building one
#   MESHCAST_CLUSTER_WAIT  seconds to wait for each service to be up (default 60)
# Needs redis-server, redis-cli and mosquitto (Debian packages; see .ci/deps), and go unless
# MESHCAST_BIN is set.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${MESHCAST_CLUSTER_DIR:-$ROOT/tmp/cluster}
case $STATE in /*) ;; *) STATE=$ROOT/$STATE ;; esac
PIDS=$STATE/pids
LOGS=$STATE/logs
MOSQUITTO=/usr/sbin/mosquitto
[ -x $MOSQUITTO ] || MOSQUITTO=$(command -v mosquitto || true)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# port_free P: nothing listens on 127.0.0.1:P.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

NEXT_PORT=${MESHCAST_CLUSTER_PORT:-17000}
# How long to wait for each service to come up: generous, because a loaded machine (a CI run
# with other test packages in parallel) can take many seconds to start six redis-servers.
WAIT=${MESHCAST_CLUSTER_WAIT:-60}
# take_port [bus]: sets PORT to the next free port from NEXT_PORT (with "bus": port+10000 free
# too). Not called in $(...): it must advance NEXT_PORT in this shell.
take_port() {
  local p=$NEXT_PORT
  while ! port_free "$p" || { [ "${1:-}" = bus ] && ! port_free $((p + 10000)); }; do
    p=$((p + 1))
    [ $p -lt 55000 ] || die "no free port"
  done
  NEXT_PORT=$((p + 1))
  PORT=$p
}

# wait_for WHAT SECONDS CMD...: run CMD every 0.1 s until it succeeds, fail after SECONDS.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      tail -n 5 "$LOGS"/*.log >&2 2>/dev/null || true
      die "timed out after ${secs}s waiting for $what (logs: $LOGS)"
    fi
    sleep 0.1
  done
}

# start NAME CMD...: run CMD in the background with its log and PID file.
start() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

http_ok() { (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3 && head -1 <&3 | grep -q ' 200 '); }

redis_ok() { [ "$(redis-cli -p "$1" ping)" = PONG ]; }

cluster_ok() {
  local p
  for p in "${REDIS_PORTS[@]}"; do
    redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' || return 1
    [ "$(redis-cli -p "$p" cluster nodes | wc -l)" -eq ${#REDIS_PORTS[@]} ] || return 1
  done
}

up() {
  if [ -d "$PIDS" ] && ls "$PIDS"/*.pid >/dev/null 2>&1; then
    for f in "$PIDS"/*.pid; do
      alive "$(basename "$f" .pid)" && die "already running (state in $STATE): run down first"
    done
  fi
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || die "redis-server/redis-cli missing (bash .ci/deps)"
  [ -n "$MOSQUITTO" ] || die "mosquitto missing (bash .ci/deps)"
  rm -rf "$STATE"
  mkdir -p "$PIDS" "$LOGS" "$STATE/redis" "$STATE/mosquitto"
  # A failed start leaves nothing running (but keeps the logs for a look).
  trap 'log "start failed; stopping what was started (logs kept in $STATE.failed)"; rm -rf "$STATE.failed"; cp -r "$LOGS" "$STATE.failed" 2>/dev/null || true; down >/dev/null 2>&1 || true' EXIT

  BIN=${MESHCAST_BIN:-}
  if [ -z "$BIN" ]; then
    log "building meshcast"
    (cd "$ROOT" && go build -o "$STATE/meshcast" .)
    BIN=$STATE/meshcast
  fi

  # Redis Cluster: 6 nodes, then 3 masters with one replica each.
  REDIS_PORTS=()
  for i in 1 2 3 4 5 6; do
    take_port bus
    p=$PORT
    REDIS_PORTS+=("$p")
    mkdir -p "$STATE/redis/$p"
    start "redis-$p" redis-server --port "$p" --bind 127.0.0.1 --protected-mode no --daemonize no \
      --dir "$STATE/redis/$p" --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --cluster-replica-validity-factor 0
  done
  for p in "${REDIS_PORTS[@]}"; do wait_for "redis $p" "$WAIT" redis_ok "$p"; done
  args=()
  for p in "${REDIS_PORTS[@]}"; do args+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${args[@]}" --cluster-replicas 1 --cluster-yes >"$LOGS/redis-cluster-create.log" 2>&1
  wait_for "cluster_state:ok" "$WAIT" cluster_ok
  BUS="redis+cluster://$(IFS=,; echo "${args[*]}")"

  # mosquitto with persistence (sessions and queued QoS 1 messages survive a restart).
  take_port
  MQTT_PORT=$PORT
  {
    echo "listener $MQTT_PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence true"
    echo "persistence_location $STATE/mosquitto/"
    echo "autosave_interval 1"
    echo "max_queued_messages 1000000"
    [ "$(id -u)" -ne 0 ] || echo "user root"
  } >"$STATE/mosquitto/mosquitto.conf"
  start mosquitto "$MOSQUITTO" -c "$STATE/mosquitto/mosquitto.conf"
  wait_for "mosquitto" "$WAIT" bash -c "exec 3<>/dev/tcp/127.0.0.1/$MQTT_PORT"
  BROKER=mqtt://127.0.0.1:$MQTT_PORT

  ZONES=$ROOT/deploy/zones/tokyo.geojson
  for n in a b; do
    take_port
    adm=$PORT
    eval "BRIDGE_ADMIN_$n=$adm"
    start "bridge-$n" "$BIN" bridge -broker "$BROKER" -bus "$BUS" -client-id "local-bridge-$n" \
      -group meshcast -zones "$ZONES" -admin "127.0.0.1:$adm"
  done
  # Local only: no rider auth and a short drain, when this build of the edge has those flags.
  noauth=()
  help=$("$BIN" edge -help 2>&1 || true)
  ! grep -q -- '-insecure-no-auth' <<<"$help" || noauth+=(-insecure-no-auth)
  ! grep -q -- '-drain-window' <<<"$help" || noauth+=(-drain-window 2s)
  for n in a b; do
    take_port
    lis=$PORT
    take_port
    adm=$PORT
    eval "EDGE_LISTEN_$n=$lis EDGE_ADMIN_$n=$adm"
    start "edge-$n" "$BIN" edge -bus "$BUS" -listen "127.0.0.1:$lis" -admin "127.0.0.1:$adm" "${noauth[@]}"
  done
  for n in a b; do
    eval "adm=\$BRIDGE_ADMIN_$n"
    wait_for "bridge-$n /readyz" "$WAIT" http_ok "$adm" /readyz
    eval "adm=\$EDGE_ADMIN_$n"
    wait_for "edge-$n /readyz" "$WAIT" http_ok "$adm" /readyz
  done
  start sim "$BIN" sim -broker "$BROKER" -zones "$ZONES" -taxis "${MESHCAST_SIM_TAXIS:-300}" \
    -duration "${MESHCAST_SIM_DURATION:-10m}" -time-scale 30 -stats 30s
  trap - EXIT

  cat >"$STATE/endpoints" <<END
redis cluster   $BUS
mqtt broker     $BROKER
bridge a admin  http://127.0.0.1:$BRIDGE_ADMIN_a/metrics
bridge b admin  http://127.0.0.1:$BRIDGE_ADMIN_b/metrics
edge a          http://127.0.0.1:$EDGE_LISTEN_a/  (map page; gRPC, gRPC-Web, /v1/ws, /v1/sse)  admin http://127.0.0.1:$EDGE_ADMIN_a/metrics
edge b          http://127.0.0.1:$EDGE_LISTEN_b/  (map page; gRPC, gRPC-Web, /v1/ws, /v1/sse)  admin http://127.0.0.1:$EDGE_ADMIN_b/metrics
simulator       ${MESHCAST_SIM_TAXIS:-300} taxis for ${MESHCAST_SIM_DURATION:-10m}
state           $STATE (logs/, pids/)
END
  log "up"
  cat "$STATE/endpoints"
  echo "try: grpcurl -plaintext -d '{\"lat\":35.681236,\"lon\":139.767125}' 127.0.0.1:$EDGE_LISTEN_a meshcast.v1.RiderService/Watch"
}

# stop NAME: SIGTERM, wait up to 15 s for a graceful stop, then SIGKILL.
stop() {
  local f=$PIDS/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  [ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  local n
  # Producers first, then the tiers, then the infrastructure; stop each tier in parallel.
  # (wait only for the stoppers: this shell may also be the parent of the services.)
  local stoppers=()
  stop sim
  for n in edge-a edge-b bridge-a bridge-b; do
    stop "$n" &
    stoppers+=($!)
  done
  wait "${stoppers[@]}"
  stop mosquitto
  stoppers=()
  for f in "$PIDS"/redis-*.pid; do
    [ -e "$f" ] || continue
    stop "$(basename "$f" .pid)" &
    stoppers+=($!)
  done
  [ ${#stoppers[@]} -eq 0 ] || wait "${stoppers[@]}"
  rm -rf "$STATE"
  log "down; removed $STATE"
}

status() {
  [ -d "$PIDS" ] || { log "not running"; return 1; }
  local f n
  for f in "$PIDS"/*.pid; do
    n=$(basename "$f" .pid)
    if alive "$n"; then echo "running  $n (pid $(cat "$f"))"; else echo "stopped  $n"; fi
  done
  [ ! -f "$STATE/endpoints" ] || cat "$STATE/endpoints"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
