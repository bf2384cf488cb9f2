#!/usr/bin/env bash
# Connection scaling: 1 KiB hits at 50, 1,000 and 10,000 concurrent connections against
# liveweb (--workers 2) and, as the ceiling, nginx serving the file directly. wrk -t1 pinned
# to CPU 1, loopback only, bounded by -d; file limits raised first.
#   loadtest/scaling.sh [seconds-per-case]     (default 10)
#   LIVEWEB_CPU_AFFINITY=0 loadtest/scaling.sh  (any LIVEWEB_* setting reaches liveweb; the
#                                                header of the results file lists them)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx" >&2; exit 1; }
done
cargo build --release --quiet  # never measure a stale binary

. loadtest/lib.sh

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom > "$WORK/www/1k.bin"
chmod -R a+rX "$WORK/www"
ORIGIN=$(free_port)
cat > "$WORK/nginx.conf" <<CONF
worker_processes 2;
worker_rlimit_nofile 1048576;
pid $WORK/nginx.pid;
daemon off;
events { worker_connections 65536; }
http {
  access_log off; sendfile on; tcp_nopush on;
  keepalive_requests 1000000; keepalive_timeout 120s;
  server { listen 127.0.0.1:$ORIGIN backlog=65535; root $WORK/www; }
}
CONF
nginx -c "$WORK/nginx.conf" -e "$WORK/nginx.err" &
PIDS+=($!)
launch_liveweb --client-idle-timeout 120s
LW=$LW_ADDR
URL="http://127.0.0.1:$ORIGIN/1k.bin"
for _ in $(seq 50); do curl -sf "$URL" -o /dev/null && break; sleep 0.1; done
curl -sf -x "http://$LW" "$URL" -o /dev/null

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=loadtest/results/scaling-$STAMP.txt.partial
RAW=loadtest/results/scaling-$STAMP.txt.raw.partial
mkdir -p loadtest/results
{
  echo "# loadtest/scaling.sh $SECS s per case, $(date -u), $(nproc) CPUs"
  echo "# liveweb --workers 2 $(env | grep '^LIVEWEB_' | tr '\n' ' ')"
  printf '%-8s %7s %10s %9s %9s %8s\n' target conns req/s p50 p99 errors
} | tee "$OUT"
for conns in 50 1000 10000; do
  for target in liveweb nginx; do
    if [ "$target" = liveweb ]; then addr="http://$LW"; else addr="http://127.0.0.1:$ORIGIN"; fi
    raw=$(TARGET="$URL" taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" --timeout 10s --latency -s loadtest/peers.lua "$addr" 2>&1)
    echo "== $target c$conns" >> "$RAW"
    echo "$raw" >> "$RAW"
    rps=$(echo "$raw" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$raw" | awk '$1=="50%" {print $2}')
    p99=$(echo "$raw" | awk '$1=="99%" {print $2}')
    errs=$(echo "$raw" | awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}')
    printf '%-8s %7s %10s %9s %9s %8s\n' "$target" "$conns" "$rps" "$p50" "$p99" "$errs" | tee -a "$OUT"
  done
done
results_done "$OUT" "$RAW"
