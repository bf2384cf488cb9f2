#!/usr/bin/env bash
# A/B of two liveweb builds on hits of one object (1 KiB unless SIZE says otherwise, e.g.
# SIZE=256k or SIZE=4m), both reply shapes (liveweb: the ARC record; forward: the origin's
# response), in one run, alternating rounds so drift hits both alike. MISS=1 measures misses
# instead: every request a never-seen URL of that size (fetched, archived, answered); with
# UNIQUE=1 each such URL also has a payload of its own (text ending in its URI).
# wrk -t1 -c50 pinned to CPU 1; loopback only; everything started here is stopped at exit.
# Usage: [SIZE=1k] [MISS=1] loadtest/ab.sh BIN_A BIN_B [rounds] [seconds]
#   e.g. git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
#        loadtest/ab.sh /tmp/old/target/release/liveweb target/release/liveweb 5 5
# Needs: wrk, nginx, curl. Results: loadtest/results/ab-<time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1
B=$2
ROUNDS=${3:-5}
SECS=${4:-5}
for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx" >&2; exit 1; }
done
. loadtest/lib.sh

mkdir -p "$WORK/www" "$WORK/nginx"
SIZE=${SIZE:-1k}
case $SIZE in
  *k) BYTES=$(( ${SIZE%k} * 1024 )) ;;
  *m) BYTES=$(( ${SIZE%m} * 1024 * 1024 )) ;;
  *) echo "SIZE is like 1k or 4m" >&2; exit 1 ;;
esac
head -c "$BYTES" /dev/urandom > "$WORK/www/$SIZE.bin"
MISS=${MISS:-}
if [ -n "${UNIQUE:-}" ]; then
  # Every /u/ URL a payload of its own (SIZE bytes of text, then the URI): distinct digests.
  FILL=$(head -c "$BYTES" /dev/zero | tr '\0' 'x')
  start_origin "expires 1h; location /u/ { default_type text/plain; return 200 \"$FILL\$request_uri\"; }"
else
  start_origin "expires 1h; location /u/ { rewrite ^ /$SIZE.bin break; }"
fi

LW_NAME=a LW_BIN=$A launch_liveweb
ADDR_A=$LW_ADDR
LW_NAME=b LW_BIN=$B launch_liveweb
ADDR_B=$LW_ADDR
URL="http://127.0.0.1:$ORIGIN_PORT/$SIZE.bin"
for addr in "$ADDR_A" "$ADDR_B"; do
  for mode in liveweb forward; do
    [ -z "$MISS" ] || break
    curl -sf -x "http://$addr" -H "X-Liveweb-Mode: $mode" "$URL" -o /dev/null
    curl -sf -D - -x "http://$addr" -H "X-Liveweb-Mode: $mode" "$URL" -o /dev/null | grep -q 'X-Cache: HIT'
  done
done

OUT=loadtest/results/ab-$(date -u +%Y%m%dT%H%M%SZ).txt.partial
{
  echo "# loadtest/ab.sh rounds=$ROUNDS secs=$SECS  $(date -u)"
  echo "# A=$A ($("$A" --version)) B=$B ($("$B" --version)); wrk -t1 -c50 on CPU 1; $SIZE $([ -n "$MISS" ] && echo misses || echo hits)"
  echo "# environment: $(env | grep "^LIVEWEB_" | tr "\n" " ")"
} > "$OUT"
cat > "$WORK/req.lua" <<'LUA'
local url, mode, unique = os.getenv("AB_URL"), os.getenv("AB_MODE"), os.getenv("AB_UNIQUE")
wrk.method = "GET"
wrk.path = url
wrk.headers["X-Liveweb-Mode"] = mode
local counter = 0
if unique ~= "" then
  request = function()
    counter = counter + 1
    return wrk.format("GET", url .. unique .. "-" .. counter)
  end
end
LUA
for round in $(seq "$ROUNDS"); do
  for mode in liveweb forward; do
    for side in A B; do
      addr=$ADDR_A; [ "$side" = B ] && addr=$ADDR_B
      unique=; [ -z "$MISS" ] || unique="$round-$mode-$side"
      url=$URL; [ -z "$MISS" ] || url="http://127.0.0.1:$ORIGIN_PORT/u/"
      rps=$(AB_URL=$url AB_MODE=$mode AB_UNIQUE=$unique taskset -c 1 wrk -t1 -c50 -d"${SECS}s" -s "$WORK/req.lua" "http://$addr" \
        | awk '/Requests\/sec/ {print $2}')
      echo "round $round $mode $side $rps" | tee -a "$OUT"
    done
  done
done
echo "# medians (req/s):" | tee -a "$OUT"
for mode in liveweb forward; do
  for side in A B; do
    med=$(awk -v m="$mode" -v s="$side" '$3==m && $4==s {print $5}' "$OUT" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$mode $side $med" | tee -a "$OUT"
  done
done
results_done "$OUT"
