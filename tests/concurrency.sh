#!/usr/bin/env bash
# Many sessions insert at once, under every isolation level, on one global chain and on per-org
# chains, with transactions that roll back: the chains must come out whole, with no fork (two
# events with one predecessor) and no gap.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: concurrency.sh PORT}
db=agentidp_concurrency
psql_at "$port" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_at "$port" -d "$db" -c "CREATE EXTENSION pg_agentidp"

script=$(mktemp)
cat > "$script" <<'SQL'
\set org random(1, 4)
\set fate random(1, 5)
BEGIN;
INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('concurrent', 'success', 'org-' || :org);
INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('concurrent', 'failure', 'org-' || :org);
\if :fate = 1
ROLLBACK;
\else
COMMIT;
\endif
SQL

for scope in global org; do
  for iso in "read committed" "repeatable read" serializable; do
    # PGOPTIONS separates options by spaces: escape the ones inside the level's name.
    PGOPTIONS="-c agentidp.chain_scope=$scope -c default_transaction_isolation=${iso// /\\ }" \
      "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c 16 -j 2 -t 150 \
      --max-tries=1 -f "$script" "$db" > /tmp/agentidp-pgbench.log 2>&1 \
      || { cat /tmp/agentidp-pgbench.log; exit 1; }
    failed=$(grep -Eo 'number of failed transactions: [0-9]+' /tmp/agentidp-pgbench.log | grep -Eo '[0-9]+$' || echo 0)
    # max-tries=1: the chain never makes a transaction fail, not even with a serialization error.
    check "$scope/$iso: no transaction failed" 0 "$failed"
  done
done

q() { psql_at "$port" -d "$db" -At -c "$1"; }
check "no gap: every chain numbers its events 1..n" 0 \
  "$(q "SELECT count(*) FROM (SELECT chain_id FROM agentidp.audit_events GROUP BY chain_id HAVING max(seq) <> count(*) OR min(seq) <> 1) g")"
check "no fork: no two events share a predecessor" 0 \
  "$(q "SELECT count(*) FROM (SELECT chain_id, prev_hash FROM agentidp.audit_events GROUP BY 1, 2 HAVING count(*) > 1) f")"
check "both scopes made chains: global and four orgs" 5 "$(q "SELECT count(DISTINCT chain_id) FROM agentidp.audit_events")"
check "rolled-back transactions left nothing" 0 \
  "$(q "SELECT count(*) % 2 FROM agentidp.audit_events")"
check "every chain verifies" "true|$(q "SELECT count(*) FROM agentidp.audit_events")" \
  "$(q "SELECT verified || '|' || checked_count FROM agentidp.agentidp_verify_chain()")"

# A backend remembers each chain's last head as a lower bound for its next head read. When a
# superuser cuts the tail below it, the bound finds nothing and the head is read in full: in one
# session, the insert after the cut continues from the real head instead of failing or forking.
cut=$(psql_at "$port" -d "$db" -At <<'SQL'
SET agentidp.chain_scope = global;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('hint', 'success');
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('hint', 'success');
ALTER TABLE agentidp.audit_events DISABLE TRIGGER agentidp_append_only;
BEGIN;
-- The tail cut: the hints, and the record of the DISABLE above, appended after them.
DELETE FROM agentidp.audit_events WHERE chain_id = 'global'
   AND seq >= (SELECT min(seq) FROM agentidp.audit_events WHERE chain_id = 'global' AND action = 'hint');
-- Recorded before it runs: that record too follows the real head.
ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER agentidp_append_only;
COMMIT;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('after the cut', 'success')
  RETURNING seq = (SELECT max(seq) + 1 FROM agentidp.audit_events
                    WHERE chain_id = 'global' AND action <> 'after the cut');
SQL
)
check "after a cut tail, the next insert follows the real head" t "$cut"
check "and the chain verifies again" t "$(q "SELECT verified FROM agentidp.agentidp_verify_chain(NULL, NULL, 'global')")"

# Between transactions a backend reuses the head it committed, without reading it, as long as
# its tickets from agentidp.chain_appends follow each other. Every way another append can come in
# between must make it read the head again.
pkey_scans="SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = 'agentidp.audit_events_pkey'::regclass"
lone=$(psql_at "$port" -d "$db" -At <<SQL
SET agentidp.chain_scope = global;
-- Autovacuum's ANALYZE would change the table's definition in the relcache, which stales heads.
ALTER TABLE agentidp.audit_events SET (autovacuum_enabled = false);
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('lone writer', 'success');
SELECT pg_stat_force_next_flush();
CREATE TEMP TABLE before AS $pkey_scans;
$(for _ in $(seq 20); do echo "INSERT INTO agentidp.audit_events (action, outcome) VALUES ('lone writer', 'success');"; done)
SELECT pg_stat_force_next_flush();
SELECT 'head reads: ' || (($pkey_scans) - idx_scan) FROM before;
ALTER TABLE agentidp.audit_events RESET (autovacuum_enabled);
SQL
)
check "a lone writer's 20 appends read no head" "head reads: 0" "$(grep '^head reads' <<<"$lone")"

# predecessor ACTION: the action of the event that the event ACTION links to, by sequence and
# by hash; "none" when its previous hash is no event's.
predecessor() {
  q "SELECT coalesce(max(p.action), 'none') FROM agentidp.audit_events e
       LEFT JOIN agentidp.audit_events p
         ON p.chain_id = e.chain_id AND p.seq = e.seq - 1 AND p.hash = e.prev_hash
      WHERE e.action = '$1'"
}
other_session="$PG_BIN/psql -X -q -h 127.0.0.1 -p $port -U postgres -d $db -c"
psql_at "$port" -d "$db" -At >/dev/null <<SQL
SET agentidp.chain_scope = global;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('before the other', 'success');
\\! $other_session "INSERT INTO agentidp.audit_events (action, outcome) VALUES ('the other', 'success')"
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('after the other', 'success');
SQL
check "an append by another session in between is read, not forked from" "the other" "$(predecessor 'after the other')"
check "  and it followed the first session's" "before the other" "$(predecessor 'the other')"

# A prepared transaction is committed by whoever runs COMMIT PREPARED, which draws no ticket.
psql_at "$port" -d "$db" -At >/dev/null <<'SQL'
SET agentidp.chain_scope = global;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('before prepared', 'success');
BEGIN;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('prepared', 'success');
PREPARE TRANSACTION 'agentidp_prepared';
COMMIT PREPARED 'agentidp_prepared';
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('after prepared', 'success');
SQL
check "an append after a prepared transaction follows it" prepared "$(predecessor 'after prepared')"

# A restore adds events without the chain; the restoring session draws a ticket for them.
psql_at "$port" -d "$db" -At >/dev/null <<SQL
SET agentidp.chain_scope = global;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('before restored', 'success');
\\! PGOPTIONS='-c agentidp.restoring=on' $other_session "INSERT INTO agentidp.audit_events (action, outcome, chain_id, seq, prev_hash, hash) SELECT 'restored', 'success', 'global', seq + 1, hash, sha256(hash) FROM agentidp.audit_events WHERE chain_id = 'global' ORDER BY seq DESC LIMIT 1"
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('after restored', 'success');
SQL
check "an append after restored events follows them" restored "$(predecessor 'after restored')"

psql_at "$port" -d postgres -c "DROP DATABASE $db"
summary concurrency
