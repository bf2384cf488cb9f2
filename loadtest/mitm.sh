#!/usr/bin/env bash
# Hits through an intercepted CONNECT (--mitm-ca) against plain forward-mode hits, on ONE
# liveweb in one run: 1 KiB objects (nginx origin over http and https, `expires 1h`), both
# stored before the rounds. oha -c50 pinned to CPU 1 drives both rows, through the proxy
# (`-x`): for the https URL it opens one CONNECT per connection, then TLS to liveweb
# (resumed, keep-alive) and requests inside. liveweb --workers 2, default flags otherwise.
# Loopback only, every run bounded by -z; everything started here is stopped at the end.
#
#   loadtest/mitm.sh [rounds] [seconds]     (default 3 rounds of 10 s per row)
#
# LIVEWEB_* settings in the environment reach liveweb (e.g. LIVEWEB_CPU_AFFINITY=0 keeps both
# workers off the load generator's CPU).
# Needs: oha (cargo install --locked oha), nginx, openssl, curl, a release build.
# Output: loadtest/results/mitm-<time>.txt (every round; medians; oha's raw JSON beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
CONNS=${CONNS:-50}
for tool in oha nginx openssl curl taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (oha: cargo install --locked oha; others: apt-get install nginx openssl curl)" >&2; exit 1; }
done
cargo build --release --quiet  # never measure a stale binary

. loadtest/lib.sh

make_test_tls "$WORK/tls"
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 1024 /dev/urandom > "$WORK/www/1k.bin"
chmod -R a+rX "$WORK/www"
PLAIN=$(free_port)
TLS=$(free_port)
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
daemon off;
events { worker_connections 4096; }
http {
  keepalive_requests 1000000; keepalive_timeout 60s;
  access_log $WORK/nginx/origin.log;
  server { listen 127.0.0.1:$PLAIN; root $WORK/www; expires 1h; }
  server {
    listen 127.0.0.1:$TLS ssl;
    ssl_certificate $WORK/tls/leaf.pem; ssl_certificate_key $WORK/tls/leaf.key;
    root $WORK/www; expires 1h;
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PLAIN/1k.bin" -o /dev/null && break; sleep 0.1; done

target/release/liveweb ca init "$WORK/mitm" > /dev/null
# Squid bumping CONNECT with the test CA, when squid-openssl is installed.
SQUID_ADDR=
if command -v squid >/dev/null && squid -v | grep -q enable-ssl-crtd; then
  port=$(free_port)
  mkdir -p "$WORK/squid"
  /usr/lib/squid/security_file_certgen -c -s "$WORK/squid/ssl_db" -M 16MB > /dev/null
  chown -R proxy: "$WORK/squid" 2>/dev/null || true
  sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$port|g" loadtest/peers/squid-bump.conf > "$WORK/squid.conf"
  squid -N -f "$WORK/squid.conf" > "$WORK/squid.log" 2>&1 &
  SQUID_PID=$!; PIDS+=("$SQUID_PID"); SQUID_ADDR=127.0.0.1:$port
else
  echo "no squid-openssl (apt-get install squid-openssl): squid rows skipped" >&2
fi

launch_liveweb --mode forward --upstream-ca "$WORK/tls/ca.pem" \
  --mitm-ca "$WORK/mitm/liveweb-ca.pem" --mitm-key "$WORK/mitm/liveweb-ca-key.pem" \
  --connect-ports "$TLS"

PLAIN_URL="http://127.0.0.1:$PLAIN/1k.bin"
TLS_URL="https://127.0.0.1:$TLS/1k.bin"
# Targets: proxy address, the CA its intercepted CONNECTs present, its process.
declare -A ADDR CA PID
TARGETS=(liveweb)
ADDR[liveweb]=$LW_ADDR; CA[liveweb]=$WORK/mitm/liveweb-ca.pem; PID[liveweb]=$LW_PID
if [ -n "$SQUID_ADDR" ]; then
  TARGETS+=(squid)
  ADDR[squid]=$SQUID_ADDR; CA[squid]=$WORK/tls/ca.pem; PID[squid]=$SQUID_PID
fi
# Store both objects in each, and check a repeat is a hit (https: through an intercepted
# CONNECT). A target that does not hit is left out, with its answer.
READY=()
for t in "${TARGETS[@]}"; do
  ok=1
  for url in "$PLAIN_URL" "$TLS_URL"; do
    for _ in 1 2; do
      curl -s --max-time 5 --cacert "${CA[$t]}" -x "http://${ADDR[$t]}" "$url" -o /dev/null || true
    done
    if ! curl -s --max-time 5 --cacert "${CA[$t]}" -D - -x "http://${ADDR[$t]}" "$url" -o /dev/null | grep -q 'X-Cache: HIT'; then
      echo "$t: no hit for $url; left out" >&2; ok=
    fi
  done
  [ -n "$ok" ] && READY+=("$t")
done
origin_requests() { wc -l < "$WORK/nginx/origin.log"; }
primed=$(origin_requests)

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=loadtest/results/mitm-$STAMP.txt.partial
RAW=loadtest/results/mitm-$STAMP.raw.json.partial
mkdir -p loadtest/results
: > "$RAW"
: > "$OUT.rows"
# CPU seconds (user + system, in clock ticks) used so far by a process and its children.
cpu_ticks() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" 2>/dev/null); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$(awk -v t="$total" '{print t + $14 + $15}' "/proc/$pid/stat")
  done
  echo "$total"
}
TICKS=$(getconf CLK_TCK)
run() { # target row url round
  local t=$1 json t0 t1
  t0=$(cpu_ticks "${PID[$t]}")
  json=$(taskset -c 1 oha -z "${SECS}s" -c "$CONNS" --no-tui --output-format json \
    --cacert "${CA[$t]}" -x "http://${ADDR[$t]}" "$3")
  t1=$(cpu_ticks "${PID[$t]}")
  echo "$json" >> "$RAW"
  echo "$json" | python3 -c '
import json, sys
name, rnd, cpu = sys.argv[1], sys.argv[2], float(sys.argv[3])
d = json.load(sys.stdin)
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
# Requests cut by the end of the run (one per connection) are not errors.
cut = "aborted due to deadline"
errors = sum(v for k, v in codes.items() if not k.startswith("2"))
errors += sum(v for k, v in d.get("errorDistribution", {}).items() if k != cut)
us = cpu * 1e6 / ok if ok else 0
rps, p50, p99 = s["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000
print("%-20s %10.0f %8.2fms %8.2fms %9d %7d %8.1f %5s" % (name, rps, p50, p99, ok, errors, us, rnd))
' "$t-$2" "$4" "$(awk -v a="$t0" -v b="$t1" -v t="$TICKS" 'BEGIN {print (b - a) / t}')" | tee -a "$OUT.rows"
}
HEADER=$(printf '%-20s %10s %10s %10s %9s %7s %8s %5s' row req/s p50 p99 2xx errors cpu-us round)
echo "$HEADER"
for r in $(seq "$ROUNDS"); do
  for t in "${READY[@]}"; do
    run "$t" plain-hit "$PLAIN_URL" "$r"
    run "$t" mitm-hit "$TLS_URL" "$r"
  done
done
during=$(( $(origin_requests) - primed ))
median() { # row column
  grep "^$1 " "$OUT.rows" | awk -v c="$2" '{print $c}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
{
  echo "# loadtest/mitm.sh rounds=$ROUNDS secs=$SECS conns=$CONNS  $(date -u)"
  echo "# $(nproc) CPUs; $(uname -r); $(oha --version) -c$CONNS pinned to CPU 1, through the proxy (-x);"
  echo "#   liveweb --workers 2 --mode forward $(env | grep '^LIVEWEB_' | tr '\n' ' '); squid = squid-openssl bumping"
  echo "#   CONNECT (1 worker, memory cache); 1 KiB objects stored before the rounds"
  echo "# plain-hit = http://origin/1k.bin; mitm-hit = https://origin/1k.bin through an intercepted CONNECT"
  echo "# cpu-us = the proxy's CPU time (user + system, all its threads and helpers) per 2xx reply:"
  echo "#   what a request costs it, whichever side (oha or the proxy) limits req/s here"
  echo "$HEADER"
  cat "$OUT.rows"
  echo
  echo "origin requests during the rounds: $during"
  echo "medians (req/s, cpu-us):"
  for t in "${READY[@]}"; do
    for row in plain-hit mitm-hit; do
      echo "  $t-$row: $(median "$t-$row" 2) req/s, $(median "$t-$row" 7) us CPU per request"
    done
    awk -v a="$(median "$t-mitm-hit" 2)" -v b="$(median "$t-plain-hit" 2)" -v n="$t" \
      'BEGIN {printf "  %s mitm / plain: %.2fx req/s\n", n, a / b}'
  done
} > "$OUT"
rm -f "$OUT.rows"
cat "$OUT"
results_done "$OUT" "$RAW"
