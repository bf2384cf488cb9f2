#!/usr/bin/env bash
# Hits on a record the hot shard has dropped: 1 KiB hits (liveweb mode) while the record is
# in the shard, then after misses on unique 4 KiB URLs have pushed it out (a small
# --mem-cache makes sure they do), then once more. Each build in turn (default the release
# build; BINS="old new" to compare), in one run. wrk -t1 -c50 pinned to CPU 1, 5 s per hit
# case, 12 s of misses; loopback only; everything started here is stopped at exit.
#   loadtest/evicted.sh
#   BINS="/tmp/liveweb-old target/release/liveweb" loadtest/evicted.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
BINS=${BINS:-target/release/liveweb}
mkdir -p "$WORK/www" loadtest/results
head -c 1024 /dev/urandom > "$WORK/www/1k.bin"
head -c 4096 /dev/urandom > "$WORK/www/4k.bin"
start_origin "location /u/ { rewrite ^ /4k.bin break; }"
URL=http://127.0.0.1:$ORIGIN_PORT/1k.bin
OUT=loadtest/results/evicted-$(date -u +%Y%m%dT%H%M%SZ).txt.partial
echo "# loadtest/evicted.sh $(date -u), $(nproc) CPUs; liveweb --workers 2 --mem-cache 64MB; wrk -t1 -c50 on CPU 1" > "$OUT"
n=0
for bin in $BINS; do
  n=$((n + 1))
  LW_NAME=lw$n LW_BIN=$bin launch_liveweb --mem-cache 64MB
  curl -s -o /dev/null -x "http://$LW_ADDR" "$URL"
  cpu() { awk '{print $14 + $15}' "/proc/$LW_PID/stat"; }
  hits() {
    local c0 c1 rps
    c0=$(cpu)
    rps=$(TARGET=$URL taskset -c 1 wrk -t1 -c50 -d5s -s loadtest/peers.lua "http://$LW_ADDR" | awk '/Requests\/sec/ {print $2}')
    c1=$(cpu)
    printf '%-40s %-14s %10s req/s  cpu %s\n' "$bin" "$1" "$rps" \
      "$(awk -v a="$c0" -v b="$c1" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / t / 5}')" | tee -a "$OUT"
  }
  hits "in the shard"
  PREFIX=ev$n$RANDOM TARGET=http://127.0.0.1:$ORIGIN_PORT/u/ taskset -c 1 wrk -t1 -c50 -d12s \
    -s loadtest/peers.lua "http://$LW_ADDR" | awk -v b="$bin" '/Requests\/sec/ {printf "%-40s %-14s %10s req/s\n", b, "misses", $2}' | tee -a "$OUT"
  hits "dropped"
  hits "again"
  kill "$LW_PID"
done
results_done "$OUT"
