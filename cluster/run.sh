#!/usr/bin/env bash
# Starts a liveweb cluster on loopback: N nodes and HAProxy in front (cluster/haproxy.cfg.template),
# for SECONDS (default: until Ctrl-C or SIGTERM); everything started here is stopped at exit.
#   cluster/run.sh [N=3] [SECONDS]
# Environment: LW_BIN (default target/release/liveweb), CLUSTER_DIR (default
# target/cluster: node data directories, haproxy.cfg, logs; kept, so a second run recovers
# the nodes' records), LW_FLAGS (extra flags for every node), CHECK (HAProxy health-check
# timing, default "check inter 1s fall 2 rise 1"), FRONT_PORT (default: a free port).
# Writes CLUSTER_DIR/front (the HAProxy address) and CLUSTER_DIR/nodeK.addr once ready.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
SECONDS_TO_RUN=${2:-}
LW_BIN=${LW_BIN:-target/release/liveweb}
DIR=${CLUSTER_DIR:-target/cluster}
CHECK=${CHECK:-check inter 1s fall 2 rise 1}
read -r -a FLAGS <<< "${LW_FLAGS:-}"
command -v haproxy >/dev/null || { echo "cluster/run.sh: haproxy is needed (apt-get install haproxy)" >&2; exit 1; }
[ -x "$LW_BIN" ] || { echo "cluster/run.sh: no $LW_BIN (cargo build --release)" >&2; exit 1; }
mkdir -p "$DIR"
rm -f "$DIR/front" "$DIR"/node*.addr

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SERVERS=""
for k in $(seq 1 "$N"); do
  port=$(free_port)
  # HAProxy connects from 127.0.0.2 and names each client in a PROXY protocol header; a
  # node's own address (nodeK.addr) still answers direct requests from 127.0.0.1.
  "$LW_BIN" --listen "127.0.0.1:$port" --data-dir "$DIR/node$k" --allow-upstream 127.0.0.0/8 \
    --proxy-protocol-from 127.0.0.2/32 "${FLAGS[@]}" 2> "$DIR/node$k.log" &
  PIDS+=($!)
  SERVERS+="    server node$k 127.0.0.1:$port"$'\n'
  echo "127.0.0.1:$port" > "$DIR/node$k.addr.pending"
done
for k in $(seq 1 "$N"); do
  for _ in $(seq 300); do
    grep -q "listening on" "$DIR/node$k.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$DIR/node$k.log" || { echo "node$k did not start:" >&2; cat "$DIR/node$k.log" >&2; exit 1; }
  mv "$DIR/node$k.addr.pending" "$DIR/node$k.addr"
done

FRONT="127.0.0.1:${FRONT_PORT:-$(free_port)}"
sed -e "s|@FRONT@|$FRONT|" -e "s|@CHECK@|$CHECK|" cluster/haproxy.cfg.template \
  | awk -v servers="$SERVERS" '{ if ($0 == "@SERVERS@") printf "%s", servers; else print }
      /^backend liveweb/ { print "    source 127.0.0.2" }' > "$DIR/haproxy.cfg"
haproxy -c -q -f "$DIR/haproxy.cfg"
haproxy -W -db -f "$DIR/haproxy.cfg" 2> "$DIR/haproxy.log" &
HAPROXY=$!
PIDS+=("$HAPROXY")
up=
for _ in $(seq 100); do
  if python3 -c "import socket; socket.create_connection(('${FRONT%:*}', ${FRONT##*:}), 1)" 2>/dev/null; then
    up=1
    break
  fi
  kill -0 "$HAPROXY" 2>/dev/null || break
  sleep 0.1
done
[ -n "$up" ] || { echo "cluster/run.sh: HAProxy did not start:" >&2; cat "$DIR/haproxy.log" >&2; exit 1; }
echo "$FRONT" > "$DIR/front"
echo "cluster: $N nodes behind HAProxy at http://$FRONT (logs and data in $DIR)"
# `wait` returns on a signal, so Ctrl-C and SIGTERM stop the cluster at once.
if [ -n "$SECONDS_TO_RUN" ]; then
  sleep "$SECONDS_TO_RUN" &
  PIDS+=($!)
  wait $!
else
  wait
fi
