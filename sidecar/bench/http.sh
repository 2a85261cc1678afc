#!/usr/bin/env bash
# The sidecar's benchmark (not a test), every figure against a baseline measured in the same run:
#   - GET /api/v1/compliance/controls and GET /metrics under wrk, each against a bare hyper server
#     answering the same bytes (examples/bare_hyper.rs). Target: at least half its requests per
#     second, p99 under 5 ms.
#   - GET /api/v1/audit/verify over a chain of ROWS events, against the SQL call it makes.
#
# Loopback only. Installs the extension (release build) and starts a PostgreSQL cluster of its own
# on port 5496.
#
# Usage: sidecar/bench/http.sh [seconds per wrk run, default 10] [rows, default 1000000]
set -euo pipefail
. "$(dirname "$0")/../../tests/lib.sh"
cd "$REPO"
SECS=${1:-10}
ROWS=${2:-1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
PG_PORT=5496
SIDECAR_PORT=3901
BARE_PORT=3902
DB=agentidp_http_bench
WORK=$(mktemp -d)
chmod 755 "$WORK"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_cluster bench
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build -q --release -p agentidp-sidecar --bin agentidp-sidecar --example bare_hyper

# A release build: `cargo pgrx test` leaves its debug build installed, several times slower.
install_extension >/dev/null
start_cluster bench "$PG_PORT" "shared_buffers = '2GB'" "max_wal_size = '8GB'"
psql_at "$PG_PORT" -d postgres -c "CREATE DATABASE $DB" >/dev/null
q() { PGOPTIONS="-c client_min_messages=warning" psql_at "$PG_PORT" -d "$DB" -At "$@"; }
q -c "CREATE EXTENSION pg_agentidp" \
  -c "INSERT INTO agentidp.audit_events (action, outcome, agent_id, org_id)
      SELECT 'agent.token.issued', 'success', 'agent-' || (i % 1000), 'org-' || (i % 64)
        FROM generate_series(1, $ROWS) i" \
  -c "VACUUM ANALYZE agentidp.audit_events" >/dev/null

openssl rand -hex 32 > "$WORK/dev.key"
export JWT_HS256_SECRET=$(openssl rand -hex 32)
# Rate limits the benchmark cannot reach keep the limiter in the path.
DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/$DB?sslmode=disable" \
ENCRYPTION_KEY_FILE="$WORK/dev.key" PORT=$SIDECAR_PORT BIND_ADDRESS=127.0.0.1 RUST_LOG=error \
RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE=2000000000 RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE=1000 \
  "$CARGO_TARGET_DIR/release/agentidp-sidecar" >"$WORK/sidecar.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$SIDECAR_PORT/ready" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$SIDECAR_PORT/ready" >/dev/null \
  || { cat "$WORK/sidecar.log"; echo "sidecar did not become ready" >&2; exit 1; }

wrk_run() { wrk -t1 -c32 -d"${SECS}s" --latency "http://127.0.0.1:$1$2"; }
# Latency lines read like "99%    1.23ms": convert to milliseconds.
p99_ms() { awk '$1 == "99%" { v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
  printf "%.2f", (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }'; }
rps() { awk '/^Requests\/sec/ { printf "%.0f", $2 }'; }
row() { printf '| %-54s | %10s | %8s | %7s | %-20s |\n' "$@"; }
failures=0

echo "## HTTP: wrk, 1 thread, 32 connections, ${SECS}s per run"
row "endpoint" "req/s" "p99 ms" "ratio" "target"
row "---" "---" "---" "---" "---"
# bench PATH CONTENT_TYPE: the endpoint against a bare server answering its bytes.
bench() {
  local path=$1 type=$2 bare_pid
  curl -sf "http://127.0.0.1:$SIDECAR_PORT$path" -o "$WORK/body"
  "$CARGO_TARGET_DIR/release/examples/bare_hyper" $BARE_PORT "$WORK/body" "$type" &
  bare_pid=$!
  sleep 0.5
  wrk_run $BARE_PORT "$path" >"$WORK/bare.txt"
  kill "$bare_pid"; wait "$bare_pid" 2>/dev/null || true
  wrk_run $SIDECAR_PORT "$path" >"$WORK/sidecar.txt"
  local bare_rps side_rps side_p99 non2xx ratio verdict
  bare_rps=$(rps <"$WORK/bare.txt"); side_rps=$(rps <"$WORK/sidecar.txt")
  side_p99=$(p99_ms <"$WORK/sidecar.txt")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$WORK/sidecar.txt")
  ratio=$(awk -v s="$side_rps" -v b="$bare_rps" 'BEGIN { printf "%.2f", s / b }')
  verdict=$(awk -v r="$ratio" -v p="$side_p99" -v n="${non2xx:-0}" \
    'BEGIN { print (r >= 0.5 && p < 5 && n == 0) ? "met" : "MISSED" }')
  [ "$verdict" = met ] || failures=$((failures + 1))
  row "bare hyper, same bytes as $path" "$bare_rps" "$(p99_ms <"$WORK/bare.txt")" "1.00" ""
  row "sidecar $path${non2xx:+ ($non2xx non-2xx)}" "$side_rps" "$side_p99" "$ratio" ">=0.50, <5 ms $verdict"
}
bench /api/v1/compliance/controls application/json
bench /metrics "text/plain; version=0.0.4"

echo
echo "## GET /api/v1/audit/verify over $ROWS events (best of 3)"
row "call" "seconds" "" "ratio" ""
row "---" "---" "---" "---" "---"
token=$(python3 tests/dev_token.py)
best_of_3() { for _ in 1 2 3; do "$@"; done | sort -g | head -1; }
sql_once() {
  q -c '\timing on' -c "SELECT verified FROM agentidp.agentidp_verify_chain()" |
    awk '/^Time: / { printf "%.3f\n", $2 / 1000 }'
}
http_once() {
  curl -sf -o "$WORK/verify.json" -w '%{time_total}\n' -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$SIDECAR_PORT/api/v1/audit/verify"
}
sql_s=$(best_of_3 sql_once)
http_s=$(best_of_3 http_once)
grep -q '"verified":true' "$WORK/verify.json" || { cat "$WORK/verify.json"; exit 1; }
row "SELECT agentidp_verify_chain() in psql" "$sql_s" "" "1.00" ""
row "GET /api/v1/audit/verify" "$http_s" "" \
  "$(awk -v h="$http_s" -v s="$sql_s" 'BEGIN { printf "%.2f", h / s }')" ""
[ "$failures" -eq 0 ]
