#!/usr/bin/env bash
# A streaming replica made by pg_basebackup -R answers agentidp_verify_chain as the primary does,
# intact and after tampering: verification writes nothing, so it runs on a hot standby.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
primary=${1:?usage: standby.sh PRIMARY_PORT STANDBY_PORT}
standby=${2:?usage: standby.sh PRIMARY_PORT STANDBY_PORT}
db=agentidp_standby
psql_at "$primary" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_at "$primary" -d "$db" -c "CREATE EXTENSION pg_agentidp" \
  -c "INSERT INTO agentidp.audit_events (action, outcome, org_id)
      SELECT 'event.' || i, 'success', 'org-' || (i % 3) FROM generate_series(1, 5000) i"

stop_cluster standby
rm -rf "$RUN_DIR/standby"
as_postgres "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$RUN_DIR/standby" -R -X stream --checkpoint=fast
echo "port = $standby" >> "$RUN_DIR/standby/postgresql.conf"
as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/standby" -l "$RUN_DIR/standby.log" -w start >/dev/null

caught_up() {
  local lsn
  lsn=$(psql_at "$primary" -d "$db" -At -c "SELECT pg_current_wal_lsn()")
  for _ in $(seq 100); do
    [ "$(psql_at "$standby" -d "$db" -At -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && return 0
    sleep 0.1
  done
  echo "standby did not catch up with $lsn" >&2; return 1
}
verdict="SELECT verified::text || '|' || checked_count || '|' || coalesce(broken_at_event_id::text, '-') || '|' || coalesce(break_kind, '-') FROM agentidp.agentidp_verify_chain()"

caught_up
check "the standby is in recovery" t "$(psql_at "$standby" -d "$db" -At -c "SELECT pg_is_in_recovery()")"
check "intact: the standby's verdict is the primary's" \
  "$(psql_at "$primary" -d "$db" -At -c "$verdict")" "$(psql_at "$standby" -d "$db" -At -c "$verdict")"

psql_at "$primary" -d "$db" -c "ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL" \
  -c "UPDATE agentidp.audit_events SET outcome = 'failure' WHERE chain_id = 'global' AND seq = 1234" \
  -c "ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER zz_agentidp_chain,
        ENABLE ALWAYS TRIGGER agentidp_append_only, ENABLE ALWAYS TRIGGER agentidp_append_only_truncate"
caught_up
tampered=$(psql_at "$primary" -d "$db" -At -c "$verdict")
check "tampered: the primary names the edited event" \
  "$(psql_at "$primary" -d "$db" -At -c "SELECT event_id FROM agentidp.audit_events WHERE chain_id = 'global' AND seq = 1234")" \
  "$(echo "$tampered" | cut -d'|' -f3)"
check "tampered: the standby's verdict is the primary's" "$tampered" "$(psql_at "$standby" -d "$db" -At -c "$verdict")"

stop_cluster standby
psql_at "$primary" -d postgres -c "DROP DATABASE $db"
summary standby
