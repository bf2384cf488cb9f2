#!/usr/bin/env bash
# Miss latency while the index grows: unique-URL misses for SECONDS (default 30) against
# liveweb sized for 1,000 URLs (the table doubles again and again under load) and against
# liveweb sized for 2M (`--expected-urls`, no growth), alternately, ROUNDS times (default 2).
# wrk -t1 -c50 --latency pinned to CPU 1; origin nginx; loopback only; everything started
# here is stopped at the end. Results: loadtest/results/growth-<time>.txt.
# Usage: loadtest/growth.sh [seconds] [rounds] ; needs wrk, nginx, a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
ROUNDS=${2:-2}
for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx" >&2; exit 1; }
done
cargo build --release --quiet
. loadtest/lib.sh

start_origin 'location /u/ { default_type text/plain; return 200 "unique $request_uri\n"; }'

OUT=loadtest/results/growth-$(date -u +%Y%m%dT%H%M%SZ).txt.partial
echo "# loadtest/growth.sh secs=$SECS rounds=$ROUNDS $(date -u); wrk -t1 -c50 on CPU 1; unique small misses" > "$OUT"
for round in $(seq "$ROUNDS"); do
  for expected in 1000 2000000; do
    LW_NAME=g$round-$expected launch_liveweb --expected-urls "$expected"
    r=$(TARGET="http://127.0.0.1:$ORIGIN_PORT/u/" PREFIX="r$round-$expected" \
      taskset -c 1 wrk -t1 -c50 -d"${SECS}s" --latency -s loadtest/peers.lua "http://$LW_ADDR")
    rps=$(awk '/Requests\/sec/ {print $2}' <<< "$r")
    p99=$(awk '$1=="99%" {print $2}' <<< "$r")
    max=$(awk '/Latency/ {print $4; exit}' <<< "$r")
    echo "round $round expected-urls $expected: $rps req/s, p99 $p99, max $max" | tee -a "$OUT"
    kill -TERM "$LW_PID"; wait "$LW_PID" || true
    unset 'PIDS[-1]'
  done
done
results_done "$OUT"
