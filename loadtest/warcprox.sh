#!/usr/bin/env bash
# Side by side with warcprox (PyPI), the archiving proxy that crawlers record through: both
# capture the same local site in WARC through forward-proxy requests, each URL once (as a
# crawl fetches it), with payloads repeating across URLs (DISTINCT of them) so dedup has work
# to do. Per round and proxy, a fresh data directory: wrk -t1 -cCONNS for SECS seconds
# (pinned to CPU 1), then a clean stop (both seal/close their files), then what is on disk:
# response and revisit records, and bytes of WARC files.
# Usage: [DISTINCT=100] [SIZE=8k] [SECS=10] [CONNS=20] loadtest/warcprox.sh [rounds]
# Needs: wrk, nginx, curl, python3 (warcprox is installed into target/warcprox-venv).
# Results: loadtest/results/warcprox-<time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DISTINCT=${DISTINCT:-100}
SIZE=${SIZE:-8k}
SECS=${SECS:-10}
CONNS=${CONNS:-20}
for tool in wrk nginx taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx" >&2; exit 1; }
done
VENV=target/warcprox-venv
if [ ! -x "$VENV/bin/warcprox" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q warcprox
fi
[ -x target/release/liveweb ] || cargo build --release
. loadtest/lib.sh

case $SIZE in
  *k) BYTES=$(( ${SIZE%k} * 1024 )) ;;
  *) echo "SIZE is like 8k" >&2; exit 1 ;;
esac
# DISTINCT payloads, named by their number's last DIGITS digits: /p/<n> serves f<n's last
# digits>.html (nginx has no modulo, a suffix match does the same).
DIGITS=$(( ${#DISTINCT} - 1 ))
[ "$DISTINCT" = "1$(printf "%0${DIGITS}d" 0)" ] && [ "$DIGITS" -ge 1 ] \
  || { echo "DISTINCT is a power of ten (10, 100, 1000)" >&2; exit 1; }
mkdir -p "$WORK/www"
python3 - "$WORK/www" "$DISTINCT" "$DIGITS" "$BYTES" <<'PY'
import random, sys
root, n, digits, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
words = ["archive", "crawl", "record", "payload", "digest", "revisit", "proxy", "origin"]
for i in range(n):
    rnd = random.Random(i)
    body = f"<html><body><h1>page {i}</h1><p>"
    while len(body) < size - 20:
        body += rnd.choice(words) + " "
    name = str(i).zfill(digits)
    open(f"{root}/f{name}.html", "w").write(body[: size - 20] + "</p></body></html>\n")
PY
start_origin "location /p/ { rewrite \"^/p/[0-9]*([0-9]{$DIGITS})\$\" /f\$1.html break; }"
# warcprox refuses origins at 127.0.0.1 and ::1 exactly (no option lifts it): the site is
# also served on 127.0.0.2, the address both proxies are asked for.
sed -i "s|listen 127.0.0.1:$ORIGIN_PORT;|listen 127.0.0.1:$ORIGIN_PORT; listen 127.0.0.2:$ORIGIN_PORT;|" "$WORK/nginx/nginx.conf"
kill -HUP "$(cat "$WORK/nginx/nginx.pid")"
SITE=http://127.0.0.2:$ORIGIN_PORT
for _ in $(seq 50); do curl -sf -o /dev/null "$SITE/p/12345" && break; sleep 0.1; done
curl -sf -o /dev/null "$SITE/p/12345" || { echo "origin does not serve /p/" >&2; exit 1; }

cat > "$WORK/crawl.lua" <<'LUA'
local base, tag = os.getenv("SITE"), os.getenv("TAG")
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", base .. "/p/" .. tag .. counter)
end
LUA

# What a data directory holds: response and revisit records, and WARC bytes.
census() {
  python3 - "$1" <<'PY'
import gzip, os, sys
resp = rev = size = 0
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        if ".warc" not in f:
            continue
        p = os.path.join(root, f)
        size += os.path.getsize(p)
        with gzip.open(p, "rb") as g:
            for line in g:
                if line.startswith(b"WARC-Type: response"):
                    resp += 1
                elif line.startswith(b"WARC-Type: revisit"):
                    rev += 1
print(resp, rev, size)
PY
}

run_one() { # proxy round -> "rps responses revisits bytes"
  local proxy=$1 round=$2 dir="$WORK/$1-$2" pid addr port
  mkdir -p "$dir"
  case $proxy in
    liveweb)
      LW_NAME="$proxy-$round-lw" launch_liveweb --format warc --mode forward
      pid=$LW_PID; addr=$LW_ADDR; dir="$WORK/$proxy-$round-lw" ;;
    warcprox)
      port=$(free_port)
      (cd "$dir" && exec "$OLDPWD/$VENV/bin/warcprox" -b 127.0.0.1 -p "$port" -d "$dir/warcs" -z \
        --base32 --dedup-db-file "$dir/dedup.db" --stats-db-file "$dir/stats.db" \
        --certs-dir "$dir/certs" --cacert "$dir/ca.pem" -q) > "$dir/log" 2>&1 &
      pid=$!; PIDS+=("$pid"); addr=127.0.0.1:$port
      for _ in $(seq 100); do
        curl -s -o /dev/null -x "http://$addr" "$SITE/p/0" && break
        sleep 0.1
      done ;;
  esac
  local rps
  rps=$(SITE=$SITE TAG="$round$RANDOM" taskset -c 1 \
    wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$WORK/crawl.lua" "http://$addr" | awk '/Requests\/sec/ {print $2}')
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$rps $(census "$dir")"
}

OUT=loadtest/results/warcprox-$(date -u +%Y%m%dT%H%M%SZ).txt.partial
{
  echo "# loadtest/warcprox.sh rounds=$ROUNDS distinct=$DISTINCT size=$SIZE secs=$SECS conns=$CONNS  $(date -u)"
  echo "# liveweb $(target/release/liveweb --version) --format warc --mode forward (dedup on); $("$VENV/bin/warcprox" --version 2>&1) -z --dedup-db-file"
  echo "# each URL fetched once (/p/<unique>), payload = one of $DISTINCT; wrk -t1 on CPU 1"
  echo "# round proxy req/s responses revisits warc_bytes bytes_per_capture"
} > "$OUT"
for round in $(seq "$ROUNDS"); do
  for proxy in liveweb warcprox; do
    read -r rps resp rev bytes < <(run_one "$proxy" "$round")
    per=$(( bytes / (resp + rev > 0 ? resp + rev : 1) ))
    echo "$round $proxy $rps $resp $rev $bytes $per" | tee -a "$OUT"
  done
done
echo "# medians (req/s, bytes per capture):" | tee -a "$OUT"
for proxy in liveweb warcprox; do
  med() { awk -v p="$proxy" -v c="$1" '!/^#/ && $2==p {print $c}' "$OUT" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  echo "$proxy $(med 3) $(med 7)" | tee -a "$OUT"
done
results_done "$OUT"
