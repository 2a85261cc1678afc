#!/usr/bin/env bash
# Citus's benchmark (not a test): issue 15's two figures, each against a single node measured in
# the same run, on this one machine. With a coordinator and two workers sharing its two cores,
# this measures what Citus costs, not what it scales to (docs/scaling.md).
#
#   bash tests/bench/citus.sh [seconds per pgbench run, default 20] [events verified, default 200000]
#   BENCH_ROUNDS=N: insert rounds on each side, alternating single, Citus, single, ... (default 3)
#
#  inserts  per-org insert tps at 8 clients, one event per transaction in one of 64 orgs, through
#           the coordinator against a single node with the same settings; the ratio over each
#           adjacent pair of rounds.
#  verify   agentidp_verify_chain() over the same number of events in 64 org chains, rows a
#           second, from the coordinator against the single node; and the WAL and the disk an
#           event takes on the single node (for docs/scaling.md's sizing).
#
# Ports: the cluster on 5465 (workers 5466, 5467), the single node on 5468.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
secs=${1:-20}
events=${2:-200000}
rounds=${BENCH_ROUNDS:-3}
coord=5465
workers="5466 5467"
single=5468
db=agentidp
settings=("shared_buffers = '1GB'" "max_wal_size = '4GB'")

# Release build first, so that nothing compiles while anything is measured.
install_extension >/dev/null
work=$(mktemp -d)
cleanup() {
  AGENTIDP_CITUS_PORT=$coord AGENTIDP_CITUS_WORKER_PORTS=$workers bash "$REPO/tests/citus_up.sh" stop >/dev/null 2>&1 || true
  stop_cluster citus_bench_single
  rm -rf "$work"
}
trap cleanup EXIT
AGENTIDP_CITUS_PORT=$coord AGENTIDP_CITUS_WORKER_PORTS=$workers \
  AGENTIDP_CITUS_CONF=$(printf '%s\n' "${settings[@]}") \
  bash "$REPO/tests/citus_up.sh" start > "$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }
start_cluster citus_bench_single "$single" "shared_preload_libraries = 'pg_agentidp'" \
  "agentidp.chain_scope = 'org'" "${settings[@]}" > /dev/null
psql_at "$single" -d postgres -q -c "CREATE DATABASE $db"
psql_at "$single" -d "$db" -q -c "CREATE EXTENSION pg_agentidp"
q() { PGOPTIONS="-c client_min_messages=warning" psql_at "$1" -d "$db" -At -c "$2"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
  END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

cat > "$work/insert.sql" <<'SQL'
\set org random(1, 64)
INSERT INTO agentidp.audit_events (action, outcome, org_id, chain_id)
  VALUES ('bench', 'success', 'org-' || :org, agentidp.agentidp_chain_of('org-' || :org));
SQL
tps() {
  "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -c 8 -j 2 -T "$secs" -f "$work/insert.sql" "$db" \
    | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

echo "## inserts: per-org, 8 clients, 64 orgs, $secs s a round"
single_tps=() citus_tps=() ratios=()
for r in $(seq "$rounds"); do
  s=$(tps "$single"); c=$(tps "$coord")
  single_tps+=("$s"); citus_tps+=("$c"); ratios+=("$(ratio "$c" "$s")")
  echo "round $r: single node $s tps, coordinator + 2 workers $c tps, ratio ${ratios[-1]}"
done
echo "single node: median $(median "${single_tps[@]}") tps ($(range "${single_tps[@]}"))"
echo "Citus:       median $(median "${citus_tps[@]}") tps ($(range "${citus_tps[@]}"))"
echo "ratio Citus / single: median $(median "${ratios[@]}") ($(range "${ratios[@]}"))"

echo
echo "## verify: agentidp_verify_chain() over $events events in 64 org chains"
load="INSERT INTO agentidp.audit_events (action, outcome, org_id, chain_id, metadata)
      SELECT 'verify', 'success', 'v-' || i % 64, agentidp.agentidp_chain_of('v-' || i % 64),
             jsonb_build_object('i', i)
        FROM generate_series(1, $events) i"
lsn=$(q "$single" "SELECT pg_current_wal_lsn()")
q "$single" "$load" > /dev/null
echo "single node: $(q "$single" "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn') / $events)") bytes of WAL an event, $(q "$single" "SELECT round(pg_total_relation_size('agentidp.audit_events')::numeric / count(*)) FROM agentidp.audit_events") bytes on disk an event (table and indexes)"
q "$coord" "$load" > /dev/null
verify_rate() {
  local start checked
  start=$(now)
  checked=$(q "$1" "SELECT checked_count FROM agentidp.agentidp_verify_chain()")
  awk -v n="$checked" -v s="$(elapsed "$start")" 'BEGIN { printf "%.0f", n / s }'
}
single_rate=() citus_rate=() ratios=()
for r in $(seq "$rounds"); do
  s=$(verify_rate "$single"); c=$(verify_rate "$coord")
  single_rate+=("$s"); citus_rate+=("$c"); ratios+=("$(ratio "$c" "$s")")
  echo "round $r: single node $s rows/s, coordinator $c rows/s, ratio ${ratios[-1]}"
done
echo "rows verified: single node $(q "$single" "SELECT count(*) FROM agentidp.audit_events"), Citus $(q "$coord" "SELECT count(*) FROM agentidp.audit_events")"
echo "single node: median $(median "${single_rate[@]}") rows/s ($(range "${single_rate[@]}"))"
echo "Citus:       median $(median "${citus_rate[@]}") rows/s ($(range "${citus_rate[@]}"))"
echo "ratio Citus / single: median $(median "${ratios[@]}") ($(range "${ratios[@]}"))"
