#!/usr/bin/env bash
# The index's memory per URL through the real server: never-repeated small misses (wrk -t1
# -c50 on CPU 1, nginx origin, loopback) for SECONDS (default 130: 2M+ URLs here), after a
# 5 s warm-up; prints the RSS growth per stored URL (VmRSS from /proc, `liveweb_index_entries`
# from /metrics) and the latencies. Then the same for BUDGET_SECONDS (default 40) with
# `--index-memory 32MB`: RSS must stay within the warm-up's plus the budget plus a few MB,
# with `liveweb_index_evictions_total` counting what left. `--mem-cache 8MB` in both, so
# the hot shard does not count. Results: loadtest/results/index-live-<time>.txt.
# Usage: [VARY=1] loadtest/index_live.sh [seconds] [budget_seconds] ; needs wrk, nginx, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-130}
BUDGET_SECS=${2:-40}
for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx" >&2; exit 1; }
done
cargo build --release --quiet
. loadtest/lib.sh

# VARY=1: every response says `Vary: Accept-Encoding`, as most of the web's text does.
if [ -n "${VARY:-}" ]; then
  start_origin 'location /u/ { default_type text/plain; add_header Vary Accept-Encoding; return 200 "unique $request_uri\n"; }'
else
  start_origin 'location /u/ { default_type text/plain; return 200 "unique $request_uri\n"; }'
fi

OUT=loadtest/results/index-live-$(date -u +%Y%m%dT%H%M%SZ).txt.partial
echo "# loadtest/index_live.sh secs=$SECS budget_secs=$BUDGET_SECS VARY=${VARY:-} $(date -u); wrk -t1 -c50 on CPU 1; unique small misses; --mem-cache 8MB" > "$OUT"

rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$LW_PID/status"; }
metric() { curl -s "http://$LW_ADDR/_liveweb/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
misses() { # seconds, prefix
  TARGET="http://127.0.0.1:$ORIGIN_PORT/u/" PREFIX="$2" \
    taskset -c 1 wrk -t1 -c50 -d"$1s" --latency -s loadtest/peers.lua "http://$LW_ADDR"
}

run() { # name, seconds, extra flags...
  local name=$1 secs=$2
  shift 2
  LW_NAME=$name launch_liveweb --mem-cache 8MB "$@"
  misses 5 "$name-warm" > /dev/null
  local rss0 n0 rss1 n1 r
  rss0=$(rss); n0=$(metric liveweb_index_entries)
  r=$(misses "$secs" "$name")
  rss1=$(rss); n1=$(metric liveweb_index_entries)
  local bytes evicted rps p99 max
  bytes=$(metric liveweb_index_bytes); evicted=$(metric liveweb_index_evictions_total)
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$r")
  p99=$(awk '$1=="99%" {print $2}' <<< "$r")
  max=$(awk '/Latency/ {print $4; exit}' <<< "$r")
  echo "$name ($*): $rps req/s, p99 $p99, max $max; index $n0 -> $n1 URLs, tables $bytes bytes, $evicted evicted; RSS $((rss0 >> 20)) -> $((rss1 >> 20)) MiB: $(( (rss1 - rss0) / (n1 - n0 > 0 ? n1 - n0 : 1) )) bytes per stored URL" | tee -a "$OUT"
  kill -TERM "$LW_PID"; wait "$LW_PID" || true
  unset 'PIDS[-1]'
}

run unbounded "$SECS"
run budget "$BUDGET_SECS" --index-memory 32MB
results_done "$OUT"
