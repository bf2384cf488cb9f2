#!/usr/bin/env bash
# Peak memory for big bodies: nginx serves 48 MB files of random bytes; liveweb (release
# build, one worker, --mem-cache 0) fetches them. For each case, a fresh liveweb, one warm-up
# miss of a small file, then the case; the growth of its peak resident set (VmHWM from
# /proc/PID/status) over the warm-up's is printed with the case's wall time. Cases: one
# forward-mode miss, one liveweb-mode miss, N concurrent forward misses, 2N concurrent
# liveweb-mode misses, 2N concurrent liveweb-mode cold hits (after a restart), and a forward
# miss whose client reads slowly while another client asks for the same URL (how long the
# second one waits). Loopback only; everything started here is stopped at exit.
# Usage: [LW_BIN=...] loadtest/bigbodies.sh [N=10]
# Needs: nginx, curl. Results: loadtest/results/bigbodies-<time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
for tool in nginx curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install nginx curl" >&2; exit 1; }
done
. loadtest/lib.sh

mkdir -p "$WORK/www" loadtest/results
for i in $(seq 0 $((2 * N))); do
  head -c $((48 * 1024 * 1024)) /dev/urandom > "$WORK/www/big$i.bin"
done
echo small > "$WORK/www/small.txt"
start_origin
ORIGIN="http://127.0.0.1:$ORIGIN_PORT"
OUT=loadtest/results/bigbodies-$(date -u +%Y%m%dT%H%M%SZ).txt.partial
BIN=${LW_BIN:-target/release/liveweb}
echo "# loadtest/bigbodies.sh $N; $($BIN --version); 48 MB bodies of random bytes" | tee "$OUT"

peak() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# Starts liveweb on data dir $1 (kept between cases that want it), warms it up, sets BASE.
fresh() {
  LW_NAME=$1 LW_WORKERS=1 launch_liveweb --mem-cache 0 --max-body 100MB
  curl -s -o /dev/null -x "http://$LW_ADDR" "$ORIGIN/small.txt"
  BASE=$(peak "$LW_PID")
}

stop() {
  kill -TERM "$LW_PID"
  wait "$LW_PID" 2>/dev/null || true
}

report() {
  local now
  now=$(peak "$LW_PID")
  awk -v what="$1" -v now="$now" -v base="$BASE" -v secs="$2" 'BEGIN {
    printf "%-44s peak RSS +%6.1f MB (%5.1f MB in all)  %6.2f s\n", what, (now - base) / 1024, now / 1024, secs
  }' | tee -a "$OUT"
}

since() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { print t1 - t0 }'; }

get() { # mode url
  curl -s -o /dev/null -w '%{http_code} %{size_download}\n' -x "http://$LW_ADDR" -H "X-Liveweb-Mode: $1" "$2"
}

# `mode n`: big1..bign at once in that mode (waits for those clients only: a bare `wait`
# would wait for the origin too).
many() {
  local pids=()
  for i in $(seq 1 "$2"); do get "$1" "$ORIGIN/big$i.bin" > /dev/null & pids+=($!); done
  wait "${pids[@]}"
}

fresh a
t0=$(date +%s.%N); get forward "$ORIGIN/big0.bin" > /dev/null
report "1 forward-mode miss" "$(since "$t0")"
stop

fresh b
t0=$(date +%s.%N); get liveweb "$ORIGIN/big0.bin" > /dev/null
report "1 liveweb-mode miss" "$(since "$t0")"
stop

fresh c
t0=$(date +%s.%N)
many forward "$N"
report "$N concurrent forward misses" "$(since "$t0")"
stop

fresh d
t0=$(date +%s.%N)
many liveweb $((2 * N))
report "$((2 * N)) concurrent liveweb-mode misses" "$(since "$t0")"
stop

# The records of case d are on disk: after a restart each is a cold hit.
fresh d
t0=$(date +%s.%N)
many liveweb $((2 * N))
report "$((2 * N)) concurrent liveweb-mode cold hits" "$(since "$t0")"
stop

# A slow reader (100 KB/s) starts a forward miss; a second client asks for the same URL.
fresh e
curl -s -o /dev/null --limit-rate 100k -x "http://$LW_ADDR" -H "X-Liveweb-Mode: forward" "$ORIGIN/big0.bin" &
SLOW=$!
sleep 1
t0=$(date +%s.%N); timeout 30 curl -s -o /dev/null -x "http://$LW_ADDR" -H "X-Liveweb-Mode: forward" "$ORIGIN/big0.bin" || true
report "second client behind a slow first one" "$(since "$t0")"
kill "$SLOW" 2>/dev/null || true
stop

results_done "$OUT"
