#!/usr/bin/env bash
# The chain's benchmark (not a test): every figure is a ratio against a baseline measured in the
# same run, on a cluster of its own with default durability settings.
#
#   bash tests/bench/chain.sh [seconds per pgbench run, default 10] [rows, default 1000000] \
#     [sections, default "inserts bulk verify"]
#   BENCH_ROUNDS=N: rounds of the insert runs, whose medians are reported (default 5)
#
# Baselines: a plain table with the same columns and indexes and no trigger (the floor); the
# PL/pgSQL + pgcrypto chain of ../shared/bench/plpgsql_chain.sql (what a user writes without us);
# and one global chain's physical bound, a plain insert in a transaction that first takes one
# advisory transaction lock (any design holding a chain lock until commit serializes commits).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
secs=${1:-10}
rows=${2:-1000000}
sections=${3:-inserts bulk verify}
rounds=${BENCH_ROUNDS:-5}
port=5496
db=agentidp_bench
ref_sql=${AGENTIDP_REF_SQL:-$REPO/../shared/bench/plpgsql_chain.sql}
[ -f "$ref_sql" ] || { echo "missing $ref_sql (the shared reference baseline)"; exit 1; }

# A release build: `cargo pgrx test` leaves its debug build installed, several times slower.
install_extension >/dev/null
start_cluster bench "$port" "shared_buffers = '2GB'" "max_wal_size = '8GB'" "max_connections = 50"
trap 'stop_cluster bench' EXIT
q() { PGOPTIONS="-c client_min_messages=warning" psql_at "$port" -d "$db" -At "$@"; }
psql_at "$port" -d postgres -c "CREATE DATABASE $db"
q -c "CREATE EXTENSION pg_agentidp" >/dev/null

fresh() {
  q -c "SET agentidp.allow_drop = on" -c "DROP EXTENSION IF EXISTS pg_agentidp CASCADE" \
    -c "RESET agentidp.allow_drop" -c "CREATE EXTENSION pg_agentidp" \
    -c "DROP TABLE IF EXISTS floor" -c "DROP SEQUENCE IF EXISTS floor_seq" \
    -c "CREATE TABLE floor (LIKE agentidp.audit_events INCLUDING ALL)" \
    -c "CREATE SEQUENCE floor_seq" \
    -c "ALTER TABLE floor ALTER seq SET DEFAULT nextval('floor_seq')" >/dev/null
  # The reference file drops its tables, not its sequence.
  q -c "DROP SEQUENCE IF EXISTS plain_seq CASCADE" -f "$ref_sql" >/dev/null
  q -c "CHECKPOINT" >/dev/null
}

scripts=$(mktemp -d)
values="('agent.token.issued', 'success', 'agent-' || :n, 'org-' || :org)"
cat > "$scripts/floor.sql" <<SQL
\set n random(1, 100000)
\set org random(1, 64)
INSERT INTO floor (action, outcome, agent_id, org_id) VALUES $values;
SQL
cat > "$scripts/lock_bound.sql" <<SQL
\set n random(1, 100000)
\set org random(1, 64)
BEGIN;
SELECT pg_advisory_xact_lock(1);
INSERT INTO floor (action, outcome, agent_id, org_id) VALUES $values;
COMMIT;
SQL
cat > "$scripts/chain.sql" <<SQL
\set n random(1, 100000)
\set org random(1, 64)
INSERT INTO agentidp.audit_events (action, outcome, agent_id, org_id) VALUES $values;
SQL
cat > "$scripts/plpgsql.sql" <<SQL
\set n random(1, 100000)
\set org random(1, 64)
INSERT INTO ref_audit (action, outcome, agent_id, org_id) VALUES $values;
SQL

# tps SCRIPT CLIENTS [PGOPTIONS]: committed transactions per second over $secs seconds.
tps() {
  fresh
  PGOPTIONS=${3:-} "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c "$2" -j "$2" -T "$secs" \
    -f "$scripts/$1.sql" "$db" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# median_fmt FORMAT VALUES...: their median, printed with the awk FORMAT.
median_fmt() { local fmt=$1; shift; printf '%s\n' "$@" | sort -g | awk -v fmt="$fmt" '{ v[NR] = $1 }
  END { printf fmt, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median() { median_fmt %.0f "$@"; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r + 0 >= t + 0) ? "met" : "MISSED" }'; }
row() { printf '| %-44s | %12s | %7s | %-8s |\n' "$@"; }

# latencies SECS PGOPTIONS SCRIPT...: one client running the scripts at random, each transaction
# picking one; prints each script's mean latency in microseconds, in the order given.
latencies() {
  local secs=$1 opts=$2 args=() s; shift 2
  for s in "$@"; do args+=(-f "$scripts/$s.sql@1"); done
  PGOPTIONS=$opts "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c 1 -j 1 -T "$secs" \
    "${args[@]}" "$db" 2>/dev/null |
    awk '/^SQL script/ { n++ } n && /^ - latency average/ { printf "%.0f ", $5 * 1000 }'
}
as_tps() { awk -v us="$1" 'BEGIN { printf "%.0f", 1e6 / us }'; }

if [[ " $sections " == *" inserts "* ]]; then
echo
echo "## Inserts: transactions per second, one event each"
row "run" "tps" "ratio" "target"
row "---" "---" "---" "---"
# One client: a commit is one fsync, whose latency drifts by 10% and more within minutes on a
# shared disk, more than the trigger costs. So each comparison runs inside one pgbench run, each
# transaction picking a configuration at random: drift then falls on all of them alike,
# transaction by transaction, and each one's tps is the inverse of its mean latency.
fresh
declare -A us=()
for _ in $(seq "$rounds"); do
  read -r a b <<<"$(latencies "$secs" "" floor chain)"
  us[floor]+="$a " us[chain]+="$b "
  # The baselines in a run of their own: a backend that also runs the PL/pgSQL trigger and
  # pgcrypto between our inserts has the trigger's code and data evicted from the CPU caches,
  # which a backend serving an application does not (measured: 5-8 us more a transaction).
  read -r a b c <<<"$(latencies "$secs" "" floor plpgsql lock_bound)"
  us[floor_ref]+="$a " us[plpgsql]+="$b " us[bound]+="$c "
  read -r a b <<<"$(latencies "$secs" "-c agentidp.chain_scope=org" floor chain)"
  us[floor_org]+="$a " us[perorg]+="$b "
  # Without the wait for fsync, what is left is CPU: the trigger's own cost.
  read -r a b <<<"$(latencies "$secs" "-c synchronous_commit=off" floor chain)"
  us[floor_cpu]+="$a " us[chain_cpu]+="$b "
done
for k in "${!us[@]}"; do us[$k]=$(median ${us[$k]}); done
floor=$(as_tps "${us[floor]}")
row "1 client: plain table (floor)" "$floor" "1.00" ""
row "1 client: lock-through-commit bound" "$(as_tps "${us[bound]}")" "$(ratio "${us[floor_ref]}" "${us[bound]}")" ""
row "1 client: PL/pgSQL + pgcrypto chain" "$(as_tps "${us[plpgsql]}")" "$(ratio "${us[floor_ref]}" "${us[plpgsql]}")" ""
r=$(ratio "${us[floor]}" "${us[chain]}")
row "1 client: pg_agentidp, global chain / floor" "$(as_tps "${us[chain]}")" "$r" ">=0.95 $(verdict "$r" 0.95)"
r=$(ratio "${us[floor_org]}" "${us[perorg]}")
row "1 client: pg_agentidp, per-org chains / floor" "$(as_tps "${us[perorg]}")" "$r" ""
# Each against the floor of its own run.
row "1 client: pg_agentidp global / PL/pgSQL" "" \
  "$(awk -v p="${us[plpgsql]}" -v pf="${us[floor_ref]}" -v c="${us[chain]}" -v cf="${us[floor]}" \
    'BEGIN { printf "%.2f", (p / pf) / (c / cf) }')" ""
row "1 client, synchronous_commit=off: floor" "$(as_tps "${us[floor_cpu]}")" "1.00" ""
r=$(ratio "${us[floor_cpu]}" "${us[chain_cpu]}")
row "1 client, synchronous_commit=off: global chain" "$(as_tps "${us[chain_cpu]}")" "$r" ""
row "  the trigger's CPU per transaction (us)" "$((us[chain_cpu] - us[floor_cpu]))" "" ""
echo "(1 client: medians of $rounds runs of ${secs}s; each comparison inside one run.)"
unset us

# Eight clients contend, each configuration in its own way: they run apart, in interleaved
# rounds, and each figure is the median of the rounds.
declare -A runs=()
for _ in $(seq "$rounds"); do
  runs[floor]+="$(tps floor 8) "
  runs[chain]+="$(tps chain 8) "
  runs[perorg]+="$(tps chain 8 "-c agentidp.chain_scope=org") "
  runs[plpgsql]+="$(tps plpgsql 8) "
  runs[bound]+="$(tps lock_bound 8) "
done
floor=$(median ${runs[floor]}) chain=$(median ${runs[chain]}) perorg=$(median ${runs[perorg]})
plpgsql=$(median ${runs[plpgsql]}) bound=$(median ${runs[bound]})
row "8 clients: plain table (floor)" "$floor" "1.00" ""
row "8 clients: lock-through-commit bound" "$bound" "$(ratio "$bound" "$floor")" ""
row "8 clients: PL/pgSQL + pgcrypto chain" "$plpgsql" "$(ratio "$plpgsql" "$floor")" ""
r=$(ratio "$chain" "$bound"); row "8 clients: pg_agentidp, global chain / bound" "$chain" "$r" ">=0.95 $(verdict "$r" 0.95)"
r=$(ratio "$perorg" "$floor"); row "8 clients: pg_agentidp, per-org / floor" "$perorg" "$r" ">=0.80 $(verdict "$r" 0.80)"
row "8 clients: pg_agentidp global / PL/pgSQL" "" "$(ratio "$chain" "$plpgsql")" ""
echo "(8 clients: medians of $rounds interleaved rounds of ${secs}s each.)"
unset runs
fi

# seconds ARGS...: the server's time for the last statement, without the client's connection.
seconds() {
  q -c '\timing on' "$@" | awk '/^Time: / { t = $2 } END { printf "%.3f", t / 1000 }'
}
gen="SELECT 'agent.token.issued', 'success', 'agent-' || (i % 1000), 'org-' || (i % 64) FROM generate_series(1, $rows) i"
# Bulk loads carry metadata as real events do: a quarter of them a small jsonb object.
bulk_gen="SELECT 'agent.token.issued', 'success', 'agent-' || (i % 1000), 'org-' || (i % 64),
  CASE WHEN i % 4 = 0 THEN jsonb_build_object('ip', '10.0.' || (i % 256) || '.' || (i % 251),
    'scopes', jsonb_build_array('audit:read', 'agents:write'), 'requestId', i) END
  FROM generate_series(1, $rows) i"

if [[ " $sections " == *" bulk "* ]]; then
echo
echo "## Bulk load: $rows events in one transaction, a quarter with metadata"
row "run" "seconds" "ratio" "target"
row "---" "---" "---" "---"
copy_file=$(mktemp); chmod 644 "$copy_file"
fresh
q -c "COPY ($bulk_gen) TO STDOUT" > "$copy_file"
bulk_cols="action, outcome, agent_id, org_id, metadata"
insert_floor="INSERT INTO floor ($bulk_cols) $bulk_gen"
insert_chain="INSERT INTO agentidp.audit_events ($bulk_cols) $bulk_gen"
copy_floor="\\copy floor ($bulk_cols) FROM '$copy_file'"
copy_chain="\\copy agentidp.audit_events ($bulk_cols) FROM '$copy_file'"
# A single run of each drifts by 20% and more on a shared VM: rounds, and the order within a
# round alternating, so that neither side always loads into the other's dirty buffers.
declare -A runs=()
# timed_pair ROUND KEY SQL KEY SQL: times both statements, the first one first in odd rounds.
timed_pair() {
  if (($1 % 2)); then set -- "$2" "$3" "$4" "$5"; else set -- "$4" "$5" "$2" "$3"; fi
  runs[$1]+="$(seconds -c "$2") "
  runs[$3]+="$(seconds -c "$4") "
}
for round in $(seq "$rounds"); do
  fresh
  timed_pair "$round" floor "$insert_floor" chain "$insert_chain"
  runs[half]+="$(seconds -c "TRUNCATE floor" -c "$insert_floor LIMIT $((rows / 2))") "
  fresh
  timed_pair "$round" copy_floor "$copy_floor" copy_chain "$copy_chain"
done
rm -f "$copy_file"
# The spread: each round's own ratio, lowest to highest.
spread() {
  paste -d' ' <(tr ' ' '\n' <<<"${runs[$1]}") <(tr ' ' '\n' <<<"${runs[$2]}") |
    awk 'NF == 2 { r = $1 / $2; lo = (NR == 1 || r < lo) ? r : lo; hi = (NR == 1 || r > hi) ? r : hi }
         END { printf "%.2f-%.2f", lo, hi }'
}
insert_spread=$(spread chain floor)
copy_spread=$(spread copy_chain copy_floor)
for k in "${!runs[@]}"; do runs[$k]=$(median_fmt %.3f ${runs[$k]}); done
row "INSERT ... SELECT: plain table" "${runs[floor]}" "1.00" ""
r=$(ratio "${runs[chain]}" "${runs[floor]}")
row "INSERT ... SELECT: pg_agentidp" "${runs[chain]}" "$r ($insert_spread)" "<=1.20 $(verdict 1.2 "$r")"
row "INSERT ... SELECT: plain, half the rows" "${runs[half]}" "$(ratio "${runs[half]}" "${runs[floor]}")" ""
row "COPY: plain table" "${runs[copy_floor]}" "1.00" ""
row "COPY: pg_agentidp" "${runs[copy_chain]}" "$(ratio "${runs[copy_chain]}" "${runs[copy_floor]}") ($copy_spread)" ""
echo "(medians of $rounds rounds)"
unset runs
fi

if [[ " $sections " == *" verify "* ]]; then
fresh
echo
echo "## Verification of $rows events"
row "run" "rows/s" "ratio" "target"
row "---" "---" "---" "---"
q -c "INSERT INTO agentidp.audit_events (action, outcome, agent_id, org_id) $gen" >/dev/null
# The reference trigger updates one head row per insert, which is quadratic inside a transaction;
# its chain is built here by the same formula in one pass, with that trigger off.
q -c "ALTER TABLE ref_audit DISABLE TRIGGER ref_chain" -c "
DO \$\$
DECLARE prev text := repeat('0', 64); r record; h text; n bigint := 0;
BEGIN
  FOR r IN SELECT 'agent.token.issued' AS action, 'success' AS outcome, 'agent-' || (i % 1000) AS agent_id,
                  'org-' || (i % 64) AS org_id, gen_random_uuid() AS event_id, clock_timestamp() AS ts
             FROM generate_series(1, $rows) i LOOP
    n := n + 1;
    h := encode(digest(r.event_id::text
      || to_char(r.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
      || r.action || r.outcome || coalesce(r.agent_id, '') || coalesce(r.org_id, '') || prev, 'sha256'), 'hex');
    INSERT INTO ref_audit (seq, event_id, ts, action, outcome, agent_id, org_id, prev_hash, hash)
    VALUES (n, r.event_id, r.ts, r.action, r.outcome, r.agent_id, r.org_id, prev, h);
    prev := h;
  END LOOP;
END \$\$" -c "VACUUM ANALYZE" >/dev/null
[ "$(q -c "SELECT verified FROM ref_verify()")" = t ] || { echo "the reference chain does not verify"; exit 1; }
cols="event_id, occurred_at, action, outcome, agent_id, org_id, metadata, chain_id, seq, prev_hash, hash"
bare="SELECT count(*) FROM agentidp.audit_events WHERE num_nonnulls($cols) >= 0"
q -c "$bare" >/dev/null  # warm the cache
# Reads are CPU-bound and short: the best of three runs is each one's cost without the noise of
# a shared machine. The verifier is one process, so its baseline is a serial scan; PostgreSQL
# would run the bare count with parallel workers, shown for context.
best_of_3() { local a b c; a=$(seconds "$@"); b=$(seconds "$@"); c=$(seconds "$@")
  printf '%s\n%s\n%s\n' "$a" "$b" "$c" | sort -g | head -1; }
serial="SET max_parallel_workers_per_gather = 0"
scan_s=$(best_of_3 -c "$serial" -c "$bare")
parallel_s=$(best_of_3 -c "$bare")
ordered_s=$(best_of_3 -c "$serial" -c "SET enable_seqscan = off" -c "SELECT count(*) FROM (SELECT $cols FROM agentidp.audit_events ORDER BY chain_id, seq) s WHERE num_nonnulls($cols) >= 0")
ours_s=$(best_of_3 -c "SELECT verified, checked_count FROM agentidp.agentidp_verify_chain()")
ref_s=$(seconds -c "SELECT * FROM ref_verify()")
rate() { awk -v n="$rows" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
row "bare scan reading the same columns (serial)" "$(rate "$scan_s")" "1.00" ""
row "bare scan, parallel (2 workers)" "$(rate "$parallel_s")" "$(ratio "$scan_s" "$parallel_s")" ""
row "bare scan in chain order (index)" "$(rate "$ordered_s")" "$(ratio "$scan_s" "$ordered_s")" ""
row "ref_verify() (PL/pgSQL + pgcrypto)" "$(rate "$ref_s")" "$(ratio "$scan_s" "$ref_s")" ""
r=$(ratio "$ref_s" "$ours_s"); row "agentidp_verify_chain() / ref_verify()" "$(rate "$ours_s")" "$r" ">=2.00 $(verdict "$r" 2)"
r=$(ratio "$scan_s" "$ours_s"); row "agentidp_verify_chain() / serial bare scan" "" "$r" ">=0.50 $(verdict "$r" 0.5)"
row "agentidp_verify_chain() / parallel bare scan" "" "$(ratio "$parallel_s" "$ours_s")" ""
fi
