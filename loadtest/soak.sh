#!/usr/bin/env bash
# Soak: liveweb under mixed load for MINUTES (default 30), restarted every CYCLE seconds
# (default 150), alternately by kill -9 and by SIGTERM, with SIGHUP every 20 s. Load per
# cycle: wrk (loadtest/soak.lua: hits of 1 KiB / 64 KiB / 1 MiB, misses on never-repeated
# URLs, forward-mode hits and POST pass-through) plus loadtest/soak_clients.py (CONNECT
# tunnels, hostile clients, slowloris, clients that hang up mid-reply). Records RSS every
# 5 s; at the end checks that the last restart recovered, stops liveweb cleanly and reads
# every sealed ARC file with `warcio index`. Loopback only; bounded in time; everything
# started here is stopped at the end. Results: loadtest/results/soak-<time>/.
# Usage: [SOAK_FLAGS="--format warc --mode forward"] loadtest/soak.sh [minutes]
# (SOAK_FLAGS: more liveweb flags, e.g. WARC output in forward mode, where dedup writes
# revisits; not the ones set here or in lib.sh, which liveweb would refuse twice: workers
# through LW_WORKERS); needs wrk, nginx, python3 with warcio, a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
CYCLE=${CYCLE:-150}
for tool in wrk nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx" >&2; exit 1; }
done
python3 -c 'import warcio' 2>/dev/null || { echo "missing warcio: pip install warcio" >&2; exit 1; }
cargo build --release --quiet

. loadtest/lib.sh
OUT=loadtest/results/soak-$(date -u +%Y%m%dT%H%M%SZ).partial
mkdir -p "$OUT"

# Origin: nginx with static files, a unique reply per /u/ URL, and /post for pass-through.
mkdir -p "$WORK/www/static" "$WORK/nginx"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$WORK/www/static/1k.bin"
head -c 65536 /dev/urandom > "$WORK/www/static/64k.bin"
head -c 1048576 /dev/urandom > "$WORK/www/static/1m.bin"
start_origin 'location /u/ { default_type text/plain; return 200 "unique $request_uri\n"; }
  location /post { default_type text/plain; return 200 "posted\n"; }'

LW_NAME=soak
LW_START_WAIT=300
# shellcheck disable=SC2206 # SOAK_FLAGS is split into words on purpose
LW_FLAGS=(--connect-ports "$ORIGIN_PORT" --ttl 60s --arc-max-size 16MB --request-head-timeout 2s ${SOAK_FLAGS:-})
echo "minutes=$MINUTES cycle=${CYCLE}s flags=${LW_FLAGS[*]}" | tee "$OUT/summary.txt"
printf 't_s\tcycle\trss_kib\n' > "$OUT/rss.tsv"
START=$SECONDS
END=$((SECONDS + MINUTES * 60))
cycle=0
FAILED_START=""
while [ $SECONDS -lt $END ]; do
  if ! launch_liveweb "${LW_FLAGS[@]}" 2>> "$OUT/stops.txt"; then
    FAILED_START="cycle $cycle"
    echo "cycle $cycle: liveweb did not start" >> "$OUT/stops.txt"
    break
  fi
  grep -h 'recovered' "$WORK/soak.log" | sed "s/^/cycle $cycle: /" >> "$OUT/recoveries.txt" || true
  len=$(( END - SECONDS < CYCLE ? END - SECONDS : CYCLE ))
  [ "$len" -ge 15 ] || len=15
  # RSS sampler and SIGHUP, for this run of liveweb only.
  ( while kill -0 "$LW_PID" 2>/dev/null; do
      rss=$(awk '/VmRSS/{print $2}' "/proc/$LW_PID/status" 2>/dev/null || true)
      [ -n "$rss" ] && printf '%d\t%d\t%s\n' $((SECONDS - START)) "$cycle" "$rss" >> "$OUT/rss.tsv"
      sleep 5
    done ) &
  SAMPLER=$!
  ( while sleep 20; do kill -HUP "$LW_PID" 2>/dev/null || exit 0; done ) &
  HUPPER=$!
  python3 loadtest/soak_clients.py "$LW_ADDR" "$ORIGIN_PORT" $((len - 5)) > "$OUT/clients-$cycle.json" &
  CLIENTS=$!
  ORIGIN="http://127.0.0.1:$ORIGIN_PORT" PREFIX="c$cycle-$RANDOM" \
    wrk -t1 -c32 -d$((len - 5))s --timeout 15s -s loadtest/soak.lua "http://$LW_ADDR" > "$OUT/wrk-$cycle.txt" 2>&1 || true
  wait "$CLIENTS" || true
  kill "$HUPPER" 2>/dev/null || true
  if [ $((cycle % 2)) -eq 0 ]; then
    kill -KILL "$LW_PID"; wait "$LW_PID" 2>/dev/null || true
    echo "cycle $cycle: kill -9" >> "$OUT/stops.txt"
  else
    kill -TERM "$LW_PID"; rc=0; wait "$LW_PID" || rc=$?
    echo "cycle $cycle: SIGTERM, exit $rc" >> "$OUT/stops.txt"
  fi
  wait "$SAMPLER" 2>/dev/null || true
  unset 'PIDS[-1]'   # stopped and reaped: never signalled again
  grep -c -i 'panic' "$WORK/soak.log" | sed "s/^/cycle $cycle panics: /" >> "$OUT/stops.txt" || true
  cp "$WORK/soak.log" "$OUT/liveweb-$cycle.log"
  cycle=$((cycle + 1))
done

# One last start: recovery after the last stop, then a clean stop that seals everything.
if [ -z "$FAILED_START" ] && launch_liveweb "${LW_FLAGS[@]}" 2>> "$OUT/stops.txt"; then
  grep -h 'recovered' "$WORK/soak.log" | sed "s/^/final: /" >> "$OUT/recoveries.txt" || true
  kill -TERM "$LW_PID"; rc=0; wait "$LW_PID" || rc=$?
  unset 'PIDS[-1]'
  echo "final: SIGTERM, exit $rc" >> "$OUT/stops.txt"
else
  echo "final: liveweb did not start" >> "$OUT/stops.txt"
fi

files=0; records=0; bad_files=0
for arc in "$WORK"/soak/sealed/*.arc.gz "$WORK"/soak/sealed/*.warc.gz; do
  [ -e "$arc" ] || continue
  files=$((files + 1))
  if out=$(warcio index "$arc" 2>&1); then
    records=$((records + $(printf '%s\n' "$out" | grep -c '"offset"')))
    if printf '%s\n' "$out" | grep -qiv '"offset"'; then bad_files=$((bad_files + 1)); echo "warcio warns on $arc" >> "$OUT/warcio.txt"; fi
  else
    bad_files=$((bad_files + 1)); printf '%s\n%s\n' "$arc" "$out" >> "$OUT/warcio.txt"
  fi
done

{
  echo "sealed files: $files, records read by warcio: $records, files with warcio errors: $bad_files"
  echo "stops:"; cat "$OUT/stops.txt"
  echo "recoveries:"; cat "$OUT/recoveries.txt"
  echo "wrk per cycle (requests, errors, non-2xx):"
  for f in "$OUT"/wrk-*.txt; do
    printf '  %s: %s | %s | %s\n' "$(basename "$f" .txt)" \
      "$(grep -o '[0-9]* requests in' "$f" | head -1)" \
      "$(grep 'Socket errors' "$f" || echo 'no socket errors')" \
      "$(grep 'Non-2xx' "$f" || echo 'all 2xx')"
  done
  echo "clients per cycle:"; for f in "$OUT"/clients-*.json; do echo "  $(basename "$f" .json): $(cat "$f")"; done
  echo "RSS (KiB): first sample $(awk 'NR==2{print $3}' "$OUT/rss.tsv"), max $(awk 'NR>1 && $3>m{m=$3} END{print m}' "$OUT/rss.tsv"), per cycle max:"
  awk 'NR>1 { if ($3 > m[$2]) m[$2] = $3 } END { for (c in m) printf "  cycle %s: %s\n", c, m[c] }' "$OUT/rss.tsv" | sort -t' ' -k2 -n
} | tee -a "$OUT/summary.txt"
rm -f "$OUT"/liveweb-*.log.gz
gzip -q "$OUT"/liveweb-*.log || true
results_done "$OUT"
