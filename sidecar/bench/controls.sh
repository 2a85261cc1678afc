#!/usr/bin/env bash
# Performance check of GET /api/v1/compliance/controls against its target: at least half the
# requests per second of a bare hyper server returning the same bytes, and p99 under 5 ms.
#
# Loopback only, bounded in time. Needs wrk. DATABASE_URL is optional: without a database the
# sidecar still serves (an all-unknown snapshot), which is the same hot path.
#
# Usage: sidecar/bench/controls.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
SIDECAR_PORT=3901
BARE_PORT=3902
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build -q --release -p agentidp-sidecar --bin agentidp-sidecar --example bare_hyper

# The limiter stays in the path, with a limit the benchmark cannot reach.
DATABASE_URL=${DATABASE_URL:-postgresql://bench@127.0.0.1:1/bench} \
JWT_HS256_SECRET=bench-secret-bench-secret-bench-secret-0000 \
PORT=$SIDECAR_PORT BIND_ADDRESS=127.0.0.1 RUST_LOG=error \
RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE=2000000000 \
  "$CARGO_TARGET_DIR/release/agentidp-sidecar" >"$WORK/sidecar.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$SIDECAR_PORT/api/v1/compliance/controls" -o "$WORK/body.json" && break
  sleep 0.1
done
[ -s "$WORK/body.json" ] || { cat "$WORK/sidecar.log"; echo "sidecar did not start" >&2; exit 1; }

"$CARGO_TARGET_DIR/release/examples/bare_hyper" $BARE_PORT "$WORK/body.json" &
pids+=($!)
sleep 0.5

run() { wrk -t1 -c32 -d"${SECS}s" --latency "http://127.0.0.1:$1/api/v1/compliance/controls"; }
# Latency lines read like "99%    1.23ms": convert to milliseconds.
p99_ms() { awk '$1 == "99%" { v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
  m = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v; print m }'; }
rps() { awk '/^Requests\/sec/ { print $2 }'; }

run $BARE_PORT >"$WORK/bare.txt"
run $SIDECAR_PORT >"$WORK/sidecar.txt"
bare_rps=$(rps <"$WORK/bare.txt"); side_rps=$(rps <"$WORK/sidecar.txt")
side_p99=$(p99_ms <"$WORK/sidecar.txt")
non2xx=$(awk '/Non-2xx/ { print $NF }' "$WORK/sidecar.txt")
echo "bare hyper: ${bare_rps} req/s, p99 $(p99_ms <"$WORK/bare.txt") ms"
echo "sidecar:    ${side_rps} req/s, p99 ${side_p99} ms${non2xx:+, non-2xx: $non2xx}"
awk -v s="$side_rps" -v b="$bare_rps" -v p="$side_p99" -v n="${non2xx:-0}" 'BEGIN {
  ratio = s / b; printf "ratio %.2f (target >= 0.50), p99 %.2f ms (target < 5)\n", ratio, p;
  exit !(ratio >= 0.5 && p < 5 && n == 0) }'
