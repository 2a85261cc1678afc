#!/usr/bin/env bash
# A pg_dump of the audit log restores as it was: every event keeps its chain position and hash,
# so the digests exported before the dump still verify after the restore (docs/audit-log-runbook.md,
# "Backup and restore"). Per-org chains and a retention anchor make re-chaining visible: without
# agentidp.restoring the restoring session's defaults would renumber and rehash them.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: restore.sh PORT}
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

q() { local db=$1; shift; psql_at "$port" -d "$db" -At "$@"; }
for db in restore_src restore_dst restore_rechained; do
  psql_at "$port" -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
done
psql_at "$port" -d postgres -c "DROP ROLE IF EXISTS restore_probe" >/dev/null 2>&1
psql_at "$port" -d postgres -c "CREATE DATABASE restore_src" >/dev/null
q restore_src -c "CREATE EXTENSION pg_agentidp" \
  -c "ALTER DATABASE restore_src SET agentidp.chain_scope = org" >/dev/null
q restore_src -c "
  INSERT INTO agentidp.audit_events (occurred_at, action, outcome, agent_id, org_id, metadata)
  SELECT now() - make_interval(days => 100 - i), 'agent.token.issued', 'success',
         'agent-' || i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'org-' || (i % 3) END,
         jsonb_build_object('i', i, 'ip', '10.0.0.' || i)
    FROM generate_series(1, 90) i" \
  -c "SELECT count(*) FROM agentidp.agentidp_archive_events(now() - interval '30 days')" >/dev/null
q restore_src -c "SELECT chain_id || '|' || seq || '|' || encode(hash, 'hex')
                    FROM agentidp.agentidp_chain_heads()" > "$work/digests"
check "the source has per-org chains and a retention anchor" "t|t" \
  "$(q restore_src -c "SELECT count(DISTINCT chain_id) > 2 FROM agentidp.audit_events" \
                   -c "SELECT count(*) > 0 FROM agentidp.chain_anchors" | paste -sd'|')"

fingerprint() {
  q "$1" -c "SELECT md5(string_agg(concat_ws(',', event_id, occurred_at, chain_id, seq,
                encode(prev_hash, 'hex'), encode(hash, 'hex')), ';' ORDER BY chain_id, seq))
               FROM agentidp.audit_events"
}
"$PG_BIN/pg_dump" -h 127.0.0.1 -p "$port" -U postgres -Fc -f "$work/src.dump" restore_src

# The runbook's restore: a new database, the dump loaded with agentidp.restoring on.
psql_at "$port" -d postgres -c "CREATE DATABASE restore_dst" >/dev/null
PGOPTIONS="-c agentidp.restoring=on" "$PG_BIN/pg_restore" -h 127.0.0.1 -p "$port" -U postgres \
  -d restore_dst "$work/src.dump" > "$work/restore.log" 2>&1
check "pg_restore reports no error" "0|" "$?|$(cat "$work/restore.log")"
check "every event keeps its chain, position and hash" "$(fingerprint restore_src)" \
  "$(fingerprint restore_dst)"
check "the anchors come back" "$(q restore_src -c "SELECT md5(string_agg(chain_id || seq || encode(hash, 'hex'), ',' ORDER BY chain_id)) FROM agentidp.chain_anchors")" \
  "$(q restore_dst -c "SELECT md5(string_agg(chain_id || seq || encode(hash, 'hex'), ',' ORDER BY chain_id)) FROM agentidp.chain_anchors")"
check "the restored log verifies" t "$(q restore_dst -c "SELECT verified FROM agentidp.agentidp_verify_chain()")"
digests_ok=t
while IFS='|' read -r chain seq hash; do
  v=$(q restore_dst -c "SELECT verified FROM agentidp.agentidp_verify_digest('$chain', $seq, decode('$hash', 'hex'))")
  [ "$v" = t ] || { digests_ok=f; echo "digest of $chain at $seq: $v"; }
done < "$work/digests"
check "every digest exported before the dump verifies after it" t "$digests_ok"
check "new events continue the restored chains" t "$(q restore_dst \
  -c "INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('after.restore', 'success', 'org-1')" \
  -c "SELECT verified FROM agentidp.agentidp_verify_chain()" | tail -1)"
check "control status is the sidecar's to refill, not dumped" 5 \
  "$(q restore_dst -c "SELECT count(*) FROM agentidp.control_status")"
# A role that is not a superuser may not turn the setting on. With the library preloaded SET is
# refused; without it, the name is a placeholder until the library loads, which then drops the
# value. Either way the row that follows, in the same session, is chained.
q restore_dst -c "CREATE ROLE restore_probe" -c "GRANT USAGE ON SCHEMA agentidp TO restore_probe" \
  -c "GRANT INSERT ON agentidp.audit_events TO restore_probe" >/dev/null
q restore_dst -v ON_ERROR_STOP=0 -c "SET ROLE restore_probe" -c "SET agentidp.restoring = on" \
  -c "INSERT INTO agentidp.audit_events (action, outcome, chain_id, seq, prev_hash, hash)
      VALUES ('forged', 'success', 'forged', 7, '\\x00', '\\x01')" > /dev/null 2>&1
check "a role that is not a superuser cannot keep chain columns" "1|0|t" \
  "$(q restore_dst -c "SELECT count(*) FILTER (WHERE action = 'forged') || '|' ||
                              count(*) FILTER (WHERE chain_id = 'forged') FROM agentidp.audit_events" \
       -c "SELECT verified FROM agentidp.agentidp_verify_chain()" | paste -sd'|')"

# Without the setting, the restoring session re-chains: one global chain, from genesis.
psql_at "$port" -d postgres -c "CREATE DATABASE restore_rechained" >/dev/null
"$PG_BIN/pg_restore" -h 127.0.0.1 -p "$port" -U postgres -d restore_rechained "$work/src.dump" \
  > /dev/null 2>&1
check "without it the dump is re-chained (what the setting prevents)" f \
  "$(q restore_rechained -c "SELECT '$(fingerprint restore_src)' = md5(string_agg(concat_ws(',', event_id, occurred_at, chain_id, seq, encode(prev_hash, 'hex'), encode(hash, 'hex')), ';' ORDER BY chain_id, seq)) FROM agentidp.audit_events")"

for db in restore_src restore_dst restore_rechained; do
  psql_at "$port" -d postgres -c "DROP DATABASE $db" >/dev/null
done
psql_at "$port" -d postgres -c "DROP ROLE restore_probe" >/dev/null
summary restore
