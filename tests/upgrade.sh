#!/usr/bin/env bash
# The upgrade a DBA runs: every earlier release, created from its frozen install script and
# filled with what production holds (global and per-org chains, an archived range and its
# anchors, checkpoints, values in all four encrypted columns in both formats), then
# ALTER EXTENSION pg_agentidp UPDATE. After it the chain and the digests exported before verify,
# every value decrypts, new events chain on from the old heads, and the schema equals a fresh
# install's, compared as pg_dump --schema-only prints both. A schema change that comes without
# its upgrade script fails that comparison; a new version without one fails the update itself.
#
#   bash tests/upgrade.sh PORT    (starts and stops a cluster of its own on PORT)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: upgrade.sh PORT}
name=upgrade
work=$(mktemp -d)
pids=()
trap 'end_run upgrade.log' EXIT
# Preloaded, as production runs it.
start_cluster "$name" "$port" "shared_preload_libraries = 'pg_agentidp'" ||
  fatal "cannot start a cluster on $port"

current=$(cd "$REPO" && cargo metadata -q --format-version 1 --no-deps |
  jq -r '.packages[] | select(.name == "pg_agentidp") | .version')
key=$(openssl rand -hex 32)
q() { local db=$1; shift; PGOPTIONS="-c agentidp.encryption_key=$key" psql_at "$port" -d "$db" -At "$@"; }

# fill DB: what a database of an earlier release holds.
fill() {
  q "$1" >/dev/null <<'SQL'
-- The global chain, with old events to archive and recent ones to keep.
INSERT INTO agentidp.audit_events (occurred_at, action, outcome, agent_id, org_id, metadata)
SELECT timestamptz '2024-01-01Z' + i * interval '1 day', 'agent.token.issued', 'success',
       'agent-' || i, NULL, CASE WHEN i % 4 = 0 THEN jsonb_build_object('i', i, 'ip', '10.0.0.1') END
FROM generate_series(1, 40) i;
-- Per-org chains.
SET agentidp.chain_scope = 'org';
INSERT INTO agentidp.audit_events (occurred_at, action, outcome, agent_id, org_id, metadata)
SELECT timestamptz '2024-01-01Z' + i * interval '1 day', 'agent.key.rotated', 'success',
       'agent-' || i, 'org-' || (i % 3), CASE WHEN i % 2 = 0 THEN '{"n": [1, 2.50, "x"]}'::jsonb END
FROM generate_series(1, 60) i;
RESET agentidp.chain_scope;
-- An archived range, and its anchors.
SELECT count(*) FROM agentidp.agentidp_archive_events(timestamptz '2024-01-15Z');
-- Checkpoints.
SELECT count(*) FROM agentidp.agentidp_verify_incremental();
-- All four encrypted columns, in the seed format and in GCM.
INSERT INTO agentidp.credentials (org_id, secret_hash, vault_path)
SELECT 'org-' || i, 'secret-cbc-' || i, 'secret/data/cbc/' || i FROM generate_series(1, 5) i;
INSERT INTO agentidp.webhook_subscriptions (org_id, url, vault_secret_path)
SELECT 'org-' || i, 'https://hooks.example/' || i, 'secret/data/hook-cbc/' || i FROM generate_series(1, 5) i;
INSERT INTO agentidp.agent_did_keys (agent_id, did, vault_key_path)
SELECT 'agent-' || i, 'did:web:cbc' || i, 'secret/data/did-cbc/' || i FROM generate_series(1, 5) i;
SET agentidp.encryption_format = 'gcm';
INSERT INTO agentidp.credentials (org_id, secret_hash, vault_path)
SELECT 'org-' || i, 'secret-gcm-' || i, 'secret/data/gcm/' || i FROM generate_series(1, 5) i;
INSERT INTO agentidp.webhook_subscriptions (org_id, url, vault_secret_path)
SELECT 'org-' || i, 'https://hooks.example/g' || i, 'secret/data/hook-gcm/' || i FROM generate_series(1, 5) i;
INSERT INTO agentidp.agent_did_keys (agent_id, did, vault_key_path)
SELECT 'agent-' || i, 'did:web:gcm' || i, 'secret/data/did-gcm/' || i FROM generate_series(1, 5) i;
SQL
}

# decrypted DB: every encrypted value of the four columns, decrypted, one per line, sorted.
decrypted() {
  q "$1" <<'SQL'
SELECT v FROM (
  SELECT agentidp.agentidp_decrypt(secret_hash, 'agentidp.credentials.secret_hash')
  FROM agentidp.credentials
  UNION ALL SELECT agentidp.agentidp_decrypt(vault_path, 'agentidp.credentials.vault_path')
  FROM agentidp.credentials
  UNION ALL SELECT agentidp.agentidp_decrypt(vault_secret_path,
                     'agentidp.webhook_subscriptions.vault_secret_path')
  FROM agentidp.webhook_subscriptions
  UNION ALL SELECT agentidp.agentidp_decrypt(vault_key_path, 'agentidp.agent_did_keys.vault_key_path')
  FROM agentidp.agent_did_keys) t(v)
ORDER BY v;
SQL
}

# schema DB: pg_dump --schema-only of DB with the extension's members released from it, which
# pg_dump would otherwise print as one CREATE EXTENSION line.
schema() {
  q "$1" >/dev/null <<'SQL'
SET agentidp.allow_drop = on;
SELECT format('ALTER EXTENSION pg_agentidp DROP %s %s', i.type, i.identity)
FROM pg_depend d, pg_identify_object(d.classid, d.objid, d.objsubid) i
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_agentidp')
ORDER BY 1 \gexec
SQL
  # \restrict lines carry a key of their own in every dump.
  "$PG_BIN/pg_dump" -h 127.0.0.1 -p "$port" -U postgres --schema-only --no-owner "$1" |
    grep -Ev '^\\(un)?restrict '
}

psql_at "$port" -d postgres -c "CREATE DATABASE fresh" >/dev/null
q fresh -c "CREATE EXTENSION pg_agentidp" >/dev/null
check "a fresh install is release $current" "$current" \
  "$(q fresh -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_agentidp'")"
schema fresh > "$work/fresh.sql"

releases=$(cd "$REPO/sql" && ls pg_agentidp--*.sql | sed -n 's/^pg_agentidp--\([0-9.]*\)\.sql$/\1/p' |
  sort -V)
[ -n "$releases" ] || fatal "no frozen release scripts in sql/"
for old in $releases; do
  [ "$old" != "$current" ] || continue
  db=from_${old//./_}
  psql_at "$port" -d postgres -c "CREATE DATABASE $db" >/dev/null
  q "$db" -c "CREATE EXTENSION pg_agentidp VERSION '$old'" >/dev/null ||
    fatal "release $old cannot be created from sql/pg_agentidp--$old.sql with this build's library"
  fill "$db"
  check "$old: an archived range has anchors" "t" \
    "$(q "$db" -c "SELECT count(*) > 0 FROM agentidp.chain_anchors")"
  check "$old: checkpoints are kept" "t" \
    "$(q "$db" -c "SELECT count(*) >= 4 FROM agentidp.chain_checkpoints")"
  check "$old: values are stored encrypted, in both formats" "cbc gcm" \
    "$(q "$db" -c "SELECT string_agg(DISTINCT agentidp.agentidp_encrypted_format(secret_hash), ' ')
                   FROM agentidp.credentials")"
  q "$db" -c "SELECT chain_id, seq, encode(hash, 'hex') FROM agentidp.agentidp_chain_heads()
              ORDER BY chain_id" > "$work/heads-$old"
  decrypted "$db" > "$work/plain-$old"

  if q "$db" -c "ALTER EXTENSION pg_agentidp UPDATE" > "$work/upgrade.log" 2>&1; then
    check "$old: ALTER EXTENSION pg_agentidp UPDATE" ok ok
  else
    fatal "$old: ALTER EXTENSION pg_agentidp UPDATE failed (is sql/pg_agentidp--$old--$current.sql missing?)"
  fi
  check "$old: updated to $current" "$current" \
    "$(q "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_agentidp'")"
  check "$old: the chain verifies after the update" "t" \
    "$(q "$db" -c "SELECT bool_and(verified) FROM agentidp.agentidp_verify_chain()")"
  check "$old: incremental verification goes on from the old checkpoints" "t" \
    "$(q "$db" -c "SELECT bool_and(verified) FROM agentidp.agentidp_verify_incremental()")"
  verified=0
  while IFS='|' read -r chain seq hash; do
    [ "$(q "$db" -c "SELECT verified FROM agentidp.agentidp_verify_digest('$chain', $seq, '\\x$hash')")" = t ] &&
      verified=$((verified + 1))
  done < "$work/heads-$old"
  check "$old: every digest exported before the update verifies" "$(wc -l < "$work/heads-$old")" "$verified"
  check "$old: every value decrypts to what was written" "" \
    "$(decrypted "$db" | diff "$work/plain-$old" - || true)"
  check "$old: 40 values in the four columns" "40" "$(wc -l < "$work/plain-$old")"
  check "$old: the update is recorded in the chain" "1" \
    "$(q "$db" -c "SELECT count(*) FROM agentidp.audit_events WHERE action = 'agentidp.ddl'
                   AND metadata->>'command_tag' = 'ALTER EXTENSION'")"

  # New events chain on from the heads the old release left.
  org_head=$(grep '^org:org-1|' "$work/heads-$old")
  new_org=$(q "$db" -c "SET agentidp.chain_scope = 'org'" -c "INSERT INTO agentidp.audit_events
      (action, outcome, org_id) VALUES ('agent.created', 'success', 'org-1')
      RETURNING chain_id || '|' || seq - 1 || '|' || encode(prev_hash, 'hex')")
  check "$old: a new event chains on from its org chain's old head" "$org_head" "$new_org"
  check "$old: a new global event follows the global head" "t" \
    "$(q "$db" -c "WITH n AS (INSERT INTO agentidp.audit_events (action, outcome)
                     VALUES ('agent.created', 'success') RETURNING seq, prev_hash)
                   SELECT n.prev_hash = e.hash FROM n JOIN agentidp.audit_events e
                     ON e.chain_id = 'global' AND e.seq = n.seq - 1")"
  check "$old: the chain verifies with the new events" "t" \
    "$(q "$db" -c "SELECT bool_and(verified) FROM agentidp.agentidp_verify_chain()")"
  # The transparency log arrives with the update: the first seal covers every event written
  # before it, archived ones included, and its tiles give proofs.
  check "$old: the first seal after the update covers every chain's events" "t" \
    "$(q "$db" -c "SELECT bool_and(s.status = 'sealed' AND s.tree_size = h.n)
                     FROM agentidp.agentidp_seal() s
                     JOIN (SELECT chain_id, max(seq) AS n FROM (
                             SELECT chain_id, seq FROM agentidp.audit_events UNION ALL
                             SELECT chain_id, seq FROM agentidp.audit_events_archive) e
                            GROUP BY chain_id) h USING (chain_id)")"
  check "$old: an old event's tree gives a consistency proof from its first leaf" "t" \
    "$(q "$db" -c "SELECT cardinality(agentidp.agentidp_consistency_proof(chain_id, 1, tree_size)) > 0
                     FROM agentidp.merkle_trees WHERE chain_id = 'global'")"

  schema "$db" > "$work/upgraded-$old.sql"
  check "$old: the upgraded schema equals a fresh install of $current" "" \
    "$(diff -u "$work/fresh.sql" "$work/upgraded-$old.sql" | head -40 || true)"
done
summary "$name"
