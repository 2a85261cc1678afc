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
BEGIN;
ALTER TABLE agentidp.audit_events DISABLE TRIGGER agentidp_append_only;
DELETE FROM agentidp.audit_events WHERE chain_id = 'global' AND action = 'hint';
ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER agentidp_append_only;
COMMIT;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('after the cut', 'success')
  RETURNING seq = (SELECT max(seq) + 1 FROM agentidp.audit_events
                    WHERE chain_id = 'global' AND action <> 'after the cut');
SQL
)
check "after a cut tail, the next insert follows the real head" t "$cut"
check "and the chain verifies again" t "$(q "SELECT verified FROM agentidp.agentidp_verify_chain(NULL, NULL, 'global')")"

psql_at "$port" -d postgres -c "DROP DATABASE $db"
summary concurrency
