# Shared by the load scripts (source it): a work directory removed at exit together with
# every process started here, free loopback ports, and starting liveweb.

WORK=$(mktemp -d)
chmod 755 "$WORK"   # peers (nginx workers, varnish, squid) drop privileges and must read it
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A run writes its results under `.partial` names and renames them with `results_done` when it
# completes, so an aborted run leaves only `.partial` files (git-ignored) behind.
results_done() {
  local f
  for f in "$@"; do
    if [ -e "$f" ]; then mv "$f" "${f%.partial}"; echo "saved ${f%.partial}"; fi
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts the release build on a free port with `--workers 2` (LW_WORKERS to change it), loopback upstreams allowed and
# its data under $WORK/$LW_NAME (default liveweb), plus any extra flags; sets LW_PID and
# LW_ADDR (host:port). The load generator is one client address opening thousands of
# connections, so the per-client connection cap is lifted (the peers have none either).
# LW_BIN picks another build (default target/release/liveweb), e.g. an older commit's for an
# A/B run; the per-client cap is only passed to builds that have it.
launch_liveweb() {
  local name=${LW_NAME:-liveweb}
  local bin=${LW_BIN:-target/release/liveweb}
  local caps=()
  if "$bin" --help | grep -q -- --max-connections-per-client; then
    caps=(--max-connections-per-client "${LIVEWEB_MAX_CONNECTIONS_PER_CLIENT:-1000000}")
  fi
  "$bin" --listen 127.0.0.1:0 --workers "${LW_WORKERS:-2}" --allow-upstream 127.0.0.0/8 "${caps[@]}" \
    --data-dir "$WORK/$name" "$@" 2> "$WORK/$name.log" &
  LW_PID=$!
  PIDS+=("$LW_PID")
  # Recovery of a big data directory comes first: LW_START_WAIT seconds at most (default 10).
  for _ in $(seq $(( ${LW_START_WAIT:-10} * 10 ))); do
    grep -q listening "$WORK/$name.log" 2>/dev/null && break
    kill -0 "$LW_PID" 2>/dev/null || break
    sleep 0.1
  done
  LW_ADDR=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$WORK/$name.log" | grep -o '127.0.0.1:[0-9]*' || true)
  if [ -z "$LW_ADDR" ]; then
    local status=running
    kill -0 "$LW_PID" 2>/dev/null || { wait "$LW_PID" && status=0 || status=$?; }
    echo "liveweb did not start (status: $status), its log:" >&2
    cat "$WORK/$name.log" >&2
    return 1
  fi
}

# Starts an nginx origin on a free loopback port (sets ORIGIN_PORT): serves $WORK/www with
# long keep-alive and no access log, plus the server-block directives given in $1 (locations,
# `expires`); returns once it answers.
start_origin() {
  mkdir -p "$WORK/www" "$WORK/nginx"
  chmod -R a+rX "$WORK/www"
  ORIGIN_PORT=$(free_port)
  cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; ${1:-} }
}
CONF
  nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
  PIDS+=($!)
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/" && return 0
    sleep 0.1
  done
  echo "origin nginx did not start:" >&2
  cat "$WORK/nginx/error.log" >&2
  return 1
}

# Writes a test CA (ca.pem, ca.key) and a leaf for 127.0.0.1 signed by it (leaf.pem, leaf.key)
# into $1, all ECDSA P-256, valid two days, readable by servers that drop privileges.
make_test_tls() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj /CN=loadtest-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/leaf.key" -out "$dir/leaf.csr" -subj /CN=127.0.0.1 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/leaf.ext"
  openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/leaf.ext" -out "$dir/leaf.pem" 2>/dev/null
  chmod -R a+rX "$dir"
}
