#!/usr/bin/env bash
# The race: liveweb against caching forward proxies (nginx proxy_cache, Varnish, Squid,
# Apache Traffic Server) and the origin itself, in ONE run, on loopback.
#
#   loadtest/peers.sh [seconds-per-case]          (default 10)
#   PEERS="liveweb nginx" loadtest/peers.sh 5     (a subset)
#   CASES="hit-4m miss-4k" PEERS=liveweb loadtest/peers.sh 5   (some cases; origin only
#                                                    when it is in PEERS or PEERS is unset)
#   ROUNDS=3 loadtest/peers.sh 10      (every case ROUNDS times, targets interleaved per
#                                       round; the table gives each row's median round)
#
# Origin: nginx serving 1 KiB, 256 KiB and 4 MiB objects and a 4 KiB /u/<anything> space.
# Cases per target: hits on each size at -c50, 1 KiB hits at -c256, misses on never-repeated
# /u/ URLs at -c50, and the same misses from an https origin (liveweb and ATS only: the
# other peers here cannot fetch absolute https URLs as forward proxies); the origin gets the
# hit cases directly (the ceiling). wrk -t1 pinned to
# CPU 1 with a Lua script sending absolute-form requests; every run bounded by -d; loopback
# only; everything started here is stopped at the end. Output: one table (req/s, MB/s, p50,
# p99, errors, origin requests, proxy CPU) in loadtest/results/peers-<time>.txt, with the raw
# wrk output beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${ROUNDS:-1}
PEERS=${PEERS:-"liveweb liveweb-forward liveweb-cpu0 liveweb-cpu0-forward liveweb-pinned liveweb-pinned-forward nginx varnish squid ats origin"}
CASES=${CASES:-"hit-1k hit-256k hit-4m hit-1k-c256 miss-4k miss-4k-tls"}

# Only what this run uses: the load generator, the origin (nginx) and the peers in PEERS.
need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want wrk wrk; want nginx nginx; want curl curl; want openssl openssl
for p in $PEERS; do
  case $p in
    varnish) want varnishd varnish ;;
    squid) want squid squid ;;
    ats) want traffic_server trafficserver ;;
  esac
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet  # never measure a stale binary

. loadtest/lib.sh

wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 never answered" >&2; return 1; }
render() { sed -e "s|@WORK@|$WORK|g" -e "s|@ORIGIN@|$ORIGIN|g" -e "s|@PORT@|$2|g" "loadtest/peers/$1"; }

# ---- origin: DIRECT (unlogged, the ceiling) and ORIGIN (logged, behind the proxies) ----
mkdir -p "$WORK/www" "$WORK/origin"
head -c 1024 /dev/urandom > "$WORK/www/1k.bin"
head -c 262144 /dev/urandom > "$WORK/www/256k.bin"
head -c 4194304 /dev/urandom > "$WORK/www/4m.bin"
head -c 4096 /dev/urandom > "$WORK/www/4k.bin"
chmod -R a+rX "$WORK/www"
DIRECT=$(free_port)
ORIGIN=$(free_port)
TLS=$(free_port)
# A test CA and a leaf for 127.0.0.1, trusted by liveweb (--upstream-ca) and ATS.
make_test_tls "$WORK/tls"
sed -e "s|@WORK@|$WORK|g" -e "s|@DIRECT@|$DIRECT|g" -e "s|@ORIGIN@|$ORIGIN|g" -e "s|@TLS@|$TLS|g" \
  loadtest/peers/origin-nginx.conf > "$WORK/origin/nginx.conf"
nginx -c "$WORK/origin/nginx.conf" -e "$WORK/origin/error.log" &
PIDS+=($!)
wait_port "$DIRECT"
origin_requests() { wc -l < "$WORK/origin/access.log" 2>/dev/null || echo 0; }

# ---- peers ----
declare -A ADDR PID
# liveweb variants, all `--workers 2`: default flags (unpinned, like every peer here), both
# workers on CPU 0 (kept off the load generator's CPU, as an operator keeps a proxy off cores
# given to other work), and pinned one per CPU (`--cpu-affinity each`, so one worker shares
# CPU 1 with wrk).
liveweb_flags() {
  case $1 in
    liveweb) echo "" ;;
    liveweb-cpu0) echo "--cpu-affinity 0" ;;
    liveweb-pinned) echo "--cpu-affinity each" ;;
    liveweb-unpinned) echo "--cpu-affinity off" ;;
    *) echo "unknown liveweb variant $1" >&2; return 1 ;;
  esac
}
start_liveweb() { # variant; its -forward twin is the same process (X-Liveweb-Mode: forward)
  local flags; flags=$(liveweb_flags "$1")
  # shellcheck disable=SC2086 # flags are words
  LW_NAME=$1 launch_liveweb --upstream-ca "$WORK/tls/ca.pem" $flags
  PID[$1]=$LW_PID; ADDR[$1]=$LW_ADDR
  PID[$1-forward]=$LW_PID; ADDR[$1-forward]=$LW_ADDR
}
start_nginx() {
  local port; port=$(free_port)
  mkdir -p "$WORK/nginx-cache"
  render nginx-cache.conf "$port" > "$WORK/nginx-cache.conf"
  nginx -c "$WORK/nginx-cache.conf" -e "$WORK/nginx-cache.err" &
  PID[nginx]=$!; PIDS+=($!); ADDR[nginx]=127.0.0.1:$port
}
start_varnish() {
  local port; port=$(free_port)
  mkdir -p "$WORK/varnish"
  render varnish.vcl "$port" > "$WORK/varnish.vcl"
  varnishd -F -j none -n "$WORK/varnish" -a "127.0.0.1:$port" -f "$WORK/varnish.vcl" \
    -s malloc,1G -p thread_pool_min=50 > "$WORK/varnish.log" 2>&1 &
  PID[varnish]=$!; PIDS+=($!); ADDR[varnish]=127.0.0.1:$port
}
start_squid() {
  local port; port=$(free_port)
  mkdir -p "$WORK/squid"
  chown proxy: "$WORK/squid" 2>/dev/null || true
  render squid.conf "$port" > "$WORK/squid.conf"
  squid -N -f "$WORK/squid.conf" > "$WORK/squid.log" 2>&1 &
  PID[squid]=$!; PIDS+=($!); ADDR[squid]=127.0.0.1:$port
}
start_ats() {
  local port; port=$(free_port)
  local root="$WORK/ats"
  mkdir -p "$root/etc" "$root/run" "$root/log" "$root/cache" "$root/var"
  cp -r /etc/trafficserver/. "$root/etc/"
  render ats-records.config "$port" > "$root/etc/records.config"
  # ATS 9.2 refuses an absolute https URL on a plain-HTTP port (the scheme must match the
  # client connection), so it is asked for http://127.0.0.1:TLS/ and maps that to the https
  # origin: the same fetch over TLS.
  { echo "map http://127.0.0.1:$ORIGIN/ http://127.0.0.1:$ORIGIN/"
    echo "map http://127.0.0.1:$TLS/ https://127.0.0.1:$TLS/"; } > "$root/etc/remap.config"
  echo "$root/cache 1G" > "$root/etc/storage.config"
  render ats-runroot.yaml "$port" > "$root/runroot.yaml"
  chown -R trafficserver: "$root" 2>/dev/null || true
  traffic_server --run-root="$root/runroot.yaml" > "$root/log/stdout.log" 2>&1 &
  PID[ats]=$!; PIDS+=($!); ADDR[ats]=127.0.0.1:$port
}

declare -a READY=()
for p in $PEERS; do
  case $p in
    liveweb*) base=${p%-forward}; [ -n "${ADDR[$base]:-}" ] || start_liveweb "$base" ;;
    nginx) start_nginx ;;
    varnish) start_varnish ;;
    squid) start_squid ;;
    ats) start_ats ;;
    origin) ;;
    *) echo "unknown peer $p" >&2; exit 2 ;;
  esac
done

# A peer counts only if a repeated request is served without the origin.
mode_header() { [[ $1 == liveweb*-forward ]] && echo "X-Liveweb-Mode: forward" || echo "X-Liveweb-Mode-Unused: 1"; }
for p in $PEERS; do
  [ "$p" = origin ] && continue
  ok=
  for _ in $(seq 100); do
    if curl -s -o /dev/null --max-time 2 -H "$(mode_header "$p")" -x "http://${ADDR[$p]}" "http://127.0.0.1:$ORIGIN/1k.bin"; then ok=1; break; fi
    sleep 0.2
  done
  if [ -z "$ok" ]; then echo "$p did not start; skipped" >&2; continue; fi
  for obj in 1k.bin 256k.bin 4m.bin; do
    curl -s -o /dev/null -H "$(mode_header "$p")" -x "http://${ADDR[$p]}" "http://127.0.0.1:$ORIGIN/$obj"
    curl -s -o /dev/null -H "$(mode_header "$p")" -x "http://${ADDR[$p]}" "http://127.0.0.1:$ORIGIN/$obj"
  done
  sleep 0.3
  before=$(origin_requests)
  for obj in 1k.bin 256k.bin 4m.bin; do
    curl -s -o /dev/null -H "$(mode_header "$p")" -x "http://${ADDR[$p]}" "http://127.0.0.1:$ORIGIN/$obj"
  done
  sleep 0.3
  if [ "$(origin_requests)" != "$before" ]; then echo "$p does not serve hits; skipped" >&2; continue; fi
  READY+=("$p")
done

# Which targets fetch https origins: liveweb asked in absolute form, ATS through its remap.
declare -A TLS_OK
tls_url() { [ "$1" = ats ] && echo "http://127.0.0.1:$TLS/$2" || echo "https://127.0.0.1:$TLS/$2"; }
for p in "${READY[@]}"; do
  case $p in liveweb*|ats) ;; *) continue ;; esac
  reply=$(curl -s -i --max-time 5 -H "$(mode_header "$p")" --request-target "$(tls_url "$p" 4k.bin)" "http://${ADDR[$p]}/" | head -c 600 | tr -d '\0' || true)
  if [[ $reply == "HTTP/1.1 200"* ]]; then
    TLS_OK[$p]=1
  else
    echo "$p does not fetch https origins; miss-4k-tls skipped for it. It answered:" >&2
    echo "$reply" | head -12 >&2
  fi
done

# ---- running ----
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=loadtest/results/peers-$STAMP.txt.partial
RAW=loadtest/results/peers-$STAMP.raw.txt.partial
mkdir -p loadtest/results
: > "$RAW"

# CPU seconds used so far by a process and all its descendants.
cpu_of() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" 2>/dev/null) $(for c in $(pgrep -P "$1" 2>/dev/null); do pgrep -P "$c"; done); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$(awk -v t="$total" '{print t + $14 + $15}' "/proc/$pid/stat")
  done
  echo "$total"
}
to_mb() { # wrk's Transfer/sec (e.g. 3.44GB) in MB/s
  echo "$1" | awk '{v=$1; u=v; gsub(/[0-9.]/,"",u); gsub(/[A-Za-z]/,"",v);
    m=(u=="KB")?1/1024:(u=="MB")?1:(u=="GB")?1024:1/1048576; printf "%.0f", v*m}'
}
ticks=$(getconf CLK_TCK)
HEADER=$(printf '%-24s %-10s %10s %8s %9s %9s %7s %9s %6s %5s' target case req/s MB/s p50 p99 errors origin cpu round)
echo "$HEADER" | tee "$OUT.rows"
ROUND=1
run_case() { # target case conns url addr [pid]
  local target=$1 name=$2 conns=$3 url=$4 addr=$5 pid=${6:-}
  local before cpu0 raw
  [[ " $CASES " == *" $name "* ]] || return 0
  before=$(origin_requests)
  cpu0=$([ -n "$pid" ] && cpu_of "$pid" || echo 0)
  raw=$(TARGET="$url" MODE="$( [[ $target == liveweb*-forward ]] && echo forward || echo "")" PREFIX="$STAMP-$target-$ROUND" \
    taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" --timeout 5s --latency -s loadtest/peers.lua "http://$addr" 2>&1)
  sleep 0.2
  local cpu1 rps mbs p50 p99 errs reqs
  cpu1=$([ -n "$pid" ] && cpu_of "$pid" || echo 0)
  rps=$(echo "$raw" | awk '/Requests\/sec/ {print $2}')
  mbs=$(to_mb "$(echo "$raw" | awk '/Transfer\/sec/ {print $2}')")
  p50=$(echo "$raw" | awk '$1=="50%" {print $2}')
  p99=$(echo "$raw" | awk '$1=="99%" {print $2}')
  errs=$(echo "$raw" | awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}')
  reqs=$(( $(origin_requests) - before ))
  local cpu
  cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$ticks" -v s="$SECS" 'BEGIN {printf "%.2f", (b-a)/t/s}')
  [ -n "$pid" ] || cpu=-
  { echo "== $target $name round $ROUND"; echo "$raw"; } >> "$RAW"
  printf '%-24s %-10s %10s %8s %9s %9s %7s %9s %6s %5s\n' "$target" "$name" "$rps" "$mbs" "$p50" "$p99" "$errs" "$reqs" "$cpu" "$ROUND" | tee -a "$OUT.rows"
}
for round in $(seq "$ROUNDS"); do
  ROUND=$round
  for p in "${READY[@]}"; do
    for obj in 1k 256k 4m; do
      run_case "$p" "hit-$obj" 50 "http://127.0.0.1:$ORIGIN/$obj.bin" "${ADDR[$p]}" "${PID[$p]}"
    done
    run_case "$p" "hit-1k-c256" 256 "http://127.0.0.1:$ORIGIN/1k.bin" "${ADDR[$p]}" "${PID[$p]}"
    run_case "$p" "miss-4k" 50 "http://127.0.0.1:$ORIGIN/u/" "${ADDR[$p]}" "${PID[$p]}"
    if [ -n "${TLS_OK[$p]:-}" ]; then
      run_case "$p" "miss-4k-tls" 50 "$(tls_url "$p" u/)" "${ADDR[$p]}" "${PID[$p]}"
    fi
  done
  if [[ " $PEERS " == *" origin "* ]]; then
    for obj in 1k 256k 4m; do
      run_case origin "hit-$obj" 50 "http://127.0.0.1:$DIRECT/$obj.bin" "127.0.0.1:$DIRECT"
    done
    run_case origin "hit-1k-c256" 256 "http://127.0.0.1:$DIRECT/1k.bin" "127.0.0.1:$DIRECT"
  fi
done

{
  echo "# loadtest/peers.sh $SECS s per case, $(date -u), $(nproc) CPUs, $(uname -r)"
  echo "# wrk -t1 on CPU 1; liveweb --workers 2, default flags (unpinned), -cpu0 = --cpu-affinity 0,"
  echo "#   -pinned = --cpu-affinity each (worker N on CPU N); X-forward = the same process asked with X-Liveweb-Mode: forward"
  echo "# origin = nginx serving the files directly (the ceiling); 'origin' column = requests that reached it"
  echo "# cpu = proxy CPU seconds per second (all its processes); MB/s = wrk's Transfer/sec"
  if [ "$ROUNDS" -gt 1 ]; then
    echo "# $ROUNDS rounds; each row is the round with the median req/s (every round below)"
    python3 loadtest/median_rows.py < "$OUT.rows"
    echo
    echo "# every round"
  fi
  cat "$OUT.rows"
} > "$OUT"
rm -f "$OUT.rows"
results_done "$OUT" "$RAW"
