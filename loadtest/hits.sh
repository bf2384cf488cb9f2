#!/usr/bin/env bash
# 1 KiB hits: liveweb (--workers 2) against nginx serving the same file directly, in one run,
# alternating rounds. wrk -t1 -c50 -d10s pinned to CPU 1; loopback only; everything started
# here is stopped at the end. Usage: loadtest/hits.sh [rounds] [seconds]
# Needs: wrk, nginx (apt-get install wrk nginx), a release build (cargo build --release).
# LIVEWEB_* settings in the environment reach liveweb (e.g. LIVEWEB_CPU_AFFINITY=0).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
CONNS=${CONNS:-50}
for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx" >&2; exit 1; }
done
cargo build --release --quiet  # never measure a stale binary

. loadtest/lib.sh

# Origin: nginx, static files, sendfile, long keep-alive so wrk never reconnects.
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 1024 /dev/urandom > "$WORK/www/1k.bin"
chmod -R a+rX "$WORK/www"
# Two ports on one nginx: DIRECT (no log) for the ceiling rounds, ORIGIN (every request
# logged) behind liveweb, so the log counts exactly the requests liveweb sent.
DIRECT_PORT=$(free_port)
ORIGIN_PORT=$(free_port)
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
  sendfile on; tcp_nopush on;
  keepalive_requests 1000000; keepalive_timeout 60s;
  server { listen 127.0.0.1:$DIRECT_PORT; root $WORK/www; access_log off; }
  server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; access_log $WORK/nginx/origin.log; }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)

launch_liveweb
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$DIRECT_PORT/1k.bin" -o /dev/null && break; sleep 0.1; done

URL="http://127.0.0.1:$ORIGIN_PORT/1k.bin"
# Prime the store, and check a hit really is a hit.
curl -sf -x "http://$LW_ADDR" "$URL" -o /dev/null
curl -sf -D - -x "http://$LW_ADDR" "$URL" -o /dev/null | grep -q 'X-Cache: HIT'
origin_requests() { grep -c '1k.bin' "$WORK/nginx/origin.log" 2>/dev/null || echo 0; }
primed=$(origin_requests)

OUT=loadtest/results/hits-$(date -u +%Y%m%dT%H%M%SZ).txt.partial
{
  echo "# loadtest/hits.sh rounds=$ROUNDS secs=$SECS conns=$CONNS  $(date -u)"
  echo "# $(nproc) CPUs; $(uname -r); wrk -t1 -c$CONNS -d${SECS}s on CPU 1; liveweb --workers 2 $(env | grep '^LIVEWEB_' | tr '\n' ' '); nginx worker_processes 2"
} > "$OUT"
run() { # name, wrk args...
  local name=$1; shift
  local raw
  raw=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@")
  echo "== $name" >> "$OUT"; echo "$raw" >> "$OUT"
  local rps p50 p99
  rps=$(echo "$raw" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$raw" | awk '$1=="50%" {print $2}')
  p99=$(echo "$raw" | awk '$1=="99%" {print $2}')
  printf '%-22s %12s req/s  p50 %-9s p99 %-9s\n' "$name" "$rps" "$p50" "$p99" | tee -a "$OUT.summary"
}
for r in $(seq "$ROUNDS"); do
  TARGET="$URL" run "liveweb-hit-1k#$r" -s loadtest/peers.lua "http://$LW_ADDR"
  run "nginx-static-1k#$r" "http://127.0.0.1:$DIRECT_PORT/1k.bin"
done
lw_origin=$(( $(origin_requests) - primed ))
{
  echo
  echo "# summary"
  cat "$OUT.summary"
  echo "origin requests: $primed to prime the store, $lw_origin during the liveweb rounds"
  echo "medians:"
  for name in liveweb-hit-1k nginx-static-1k; do
    grep "^$name#" "$OUT.summary" | awk '{print $2}' | sort -n | awk -v n="$name" '{a[NR]=$1} END {print "  " n ": " a[int((NR+1)/2)] " req/s"}'
  done
} | tee -a "$OUT"
rm -f "$OUT.summary"
results_done "$OUT"
