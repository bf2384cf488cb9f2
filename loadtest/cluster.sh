#!/usr/bin/env bash
# Throughput through HAProxy (cluster/haproxy.cfg.template) against one node direct, in one
# run, alternating rounds: 1 KiB hits and unique 4 KiB misses, liveweb mode.
#   direct   wrk -> node A
#   haproxy1 wrk -> HAProxy -> node A (the balancer's own cost)
#   haproxy3 wrk -> HAProxy -> nodes A, B, C (B and C with one worker each)
# On a 2-core machine this shows overhead, not scaling: every node and HAProxy share the
# same two CPUs (see docs/cluster.md, "Performance on 2 cores"). wrk -t1 -c50 pinned to
# CPU 1; loopback only; everything started here is stopped at exit.
# Usage: loadtest/cluster.sh [rounds=3] [seconds=5]. Needs: wrk, nginx, haproxy, curl.
# Results: loadtest/results/cluster-<time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
for tool in wrk nginx haproxy taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx haproxy" >&2; exit 1; }
done
. loadtest/lib.sh

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom > "$WORK/www/1k.bin"
head -c 4096 /dev/urandom > "$WORK/www/4k.bin"
start_origin "expires 1h; location /u/ { rewrite ^ /4k.bin break; }"
ORIGIN="127.0.0.1:$ORIGIN_PORT"

LW_NAME=a launch_liveweb --proxy-protocol-from 127.0.0.2/32
A=$LW_ADDR
LW_NAME=b LW_WORKERS=1 launch_liveweb --proxy-protocol-from 127.0.0.2/32
B=$LW_ADDR
LW_NAME=c LW_WORKERS=1 launch_liveweb --proxy-protocol-from 127.0.0.2/32
C=$LW_ADDR

# One HAProxy per target, from the cluster template.
start_haproxy() {
  local name=$1
  shift
  local port servers=""
  port=$(free_port)
  local k=1
  for addr in "$@"; do servers+="    server node$k $addr"$'\n'; k=$((k + 1)); done
  # HAProxy connects from 127.0.0.2, the nodes' --proxy-protocol-from, so wrk on 127.0.0.1
  # can still reach node A directly without a PROXY header.
  sed -e "s|@FRONT@|127.0.0.1:$port|" -e "s|@CHECK@|check inter 1s|" cluster/haproxy.cfg.template \
    | awk -v servers="$servers" '{ if ($0 == "@SERVERS@") printf "%s", servers; else print }
        /^backend liveweb/ { print "    source 127.0.0.2" }' > "$WORK/$name.cfg"
  haproxy -db -f "$WORK/$name.cfg" 2> "$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  HAP_ADDR="127.0.0.1:$port"
}
start_haproxy one "$A"
H1=$HAP_ADDR
start_haproxy three "$A" "$B" "$C"
H3=$HAP_ADDR

# Warm the 1 KiB object on every node (each target must answer it from the store).
for addr in "$A" "$B" "$C"; do
  curl -sf -x "http://$addr" "http://$ORIGIN/1k.bin" -o /dev/null
done

cat > "$WORK/req.lua" <<'LUA'
local url, origin, unique = os.getenv("CL_URL"), os.getenv("CL_ORIGIN"), os.getenv("CL_UNIQUE")
wrk.method = "GET"
wrk.path = url
-- HAProxy requires the Host of an absolute-form request to match its authority.
wrk.headers["Host"] = origin
local counter = 0
if unique ~= "" then
  request = function()
    counter = counter + 1
    return wrk.format("GET", url .. unique .. "-" .. counter)
  end
end
LUA

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=loadtest/results/cluster-$STAMP.txt.partial
mkdir -p loadtest/results
{
  echo "# loadtest/cluster.sh rounds=$ROUNDS secs=$SECS $(date -u); $(haproxy -v | head -1)"
  echo "# wrk -t1 -c50 on CPU 1; node A --workers 2, B and C --workers 1; liveweb mode"
} > "$OUT"
for round in $(seq "$ROUNDS"); do
  for case in hits misses; do
    for target in direct haproxy1 haproxy3; do
      case $target in direct) addr=$A ;; haproxy1) addr=$H1 ;; haproxy3) addr=$H3 ;; esac
      if [ "$case" = hits ]; then url="http://$ORIGIN/1k.bin"; unique=; else url="http://$ORIGIN/u/"; unique="$round-$target"; fi
      raw=$(CL_URL=$url CL_ORIGIN=$ORIGIN CL_UNIQUE=$unique taskset -c 1 wrk -t1 -c50 -d"${SECS}s" -s "$WORK/req.lua" "http://$addr")
      rps=$(awk '/Requests\/sec/ {print $2}' <<< "$raw")
      errors=$(awk '/Non-2xx|Socket errors/ {print}' <<< "$raw" | tr '\n' ' ')
      echo "round $round $case $target $rps ${errors:-no errors}" | tee -a "$OUT"
    done
  done
done
echo "# medians (req/s) and ratio to direct:" | tee -a "$OUT"
for case in hits misses; do
  direct=$(awk -v c="$case" '$3==c && $4=="direct" {print $5}' "$OUT" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  for target in direct haproxy1 haproxy3; do
    med=$(awk -v c="$case" -v t="$target" '$3==c && $4==t {print $5}' "$OUT" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$case $target $med $(python3 -c "print(f'{$med/$direct:.2f}x')")" | tee -a "$OUT"
  done
done
results_done "$OUT"
