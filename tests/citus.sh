#!/usr/bin/env bash
# The audit log distributed by Citus (docs/scaling.md), on a coordinator and two workers: per-org
# chains stay whole through the coordinator under concurrency (clients on the workers too, MX),
# through a shard move, a split and a logical subscriber, each with digests taken before and
# checked after; a client cannot send its own chain columns; and verification from the
# coordinator gives a single node's verdicts over the same events, a tampered one included.
# Usage: citus.sh COORDINATOR_PORT "WORKER_PORT WORKER_PORT" SINGLE_NODE_PORT SUBSCRIBER_PORT HTTP_PORT
set -euo pipefail
. "$(dirname "$0")/lib.sh"
coord=${1:?usage: citus.sh COORDINATOR_PORT "WORKER_PORTS" SINGLE_NODE_PORT SUBSCRIBER_PORT HTTP_PORT}
read -r -a workers <<< "${2:?worker ports}"
single=${3:?single-node port}
subscriber=${4:?subscriber port}
http_port=${5:?sidecar HTTP port}
db=agentidp
work=$(mktemp -d)

sidecar=
stop_all() {
  if [ -n "$sidecar" ]; then kill "$sidecar" 2>/dev/null || true; fi
  AGENTIDP_CITUS_PORT=$coord AGENTIDP_CITUS_WORKER_PORTS="${workers[*]}" \
    bash "$REPO/tests/citus_up.sh" stop > /dev/null 2>&1 || true
  stop_cluster citus-single
  stop_cluster citus-subscriber
  rm -rf "$work"
}
trap stop_all EXIT

# Every statement logged on every node: the encryption key must show in none of the logs.
AGENTIDP_CITUS_PORT=$coord AGENTIDP_CITUS_WORKER_PORTS="${workers[*]}" AGENTIDP_CITUS_CONF="log_statement = all" \
  bash "$REPO/tests/citus_up.sh" start > "$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }

q() { psql_at "$1" -d "$db" -At -c "$2"; }
# err PORT SQL: the error a statement fails with (empty if it succeeds).
err() { psql_at "$1" -d "$db" -At -c "$2" 2>&1 >/dev/null | grep -m1 -E '^(psql:.*)?ERROR' | sed 's/^.*ERROR: *//' || true; }
# The node and shard holding a chain.
shard_of() { q "$coord" "SELECT get_shard_id_for_distribution_column('agentidp.audit_events', '$1')"; }
port_of_shard() {
  q "$coord" "SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) WHERE p.shardid = $1"
}
node_id() { q "$coord" "SELECT nodeid FROM pg_dist_node WHERE nodeport = $1"; }
# org_on PORT PREFIX: an org named PREFIX-<n> whose chain is on the worker at PORT.
org_on() {
  q "$coord" "SELECT o FROM (SELECT '$2-' || i AS o FROM generate_series(1, 64) i) s
               WHERE (SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
                       WHERE p.shardid = get_shard_id_for_distribution_column('agentidp.audit_events', 'org:' || o)) = $1
               LIMIT 1"
}

log "distributed by chain, co-located, the sidecar's tables on the coordinator"
check "the log and its seven per-chain tables are distributed by chain_id, co-located" "8|1|8" \
  "$(q "$coord" "SELECT count(*), count(DISTINCT colocationid),
                        count(*) FILTER (WHERE column_to_column_name(logicalrelid, partkey) = 'chain_id')
                   FROM pg_dist_partition WHERE partmethod = 'h' AND logicalrelid::text LIKE 'agentidp.%'")"
check "control status and the sidecar's tables stay local on the coordinator" 0 \
  "$(q "$coord" "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid IN
                   ('agentidp.control_status'::regclass, 'agentidp.api_rate_windows'::regclass,
                    'agentidp.webhook_dead_letters'::regclass, 'agentidp.reencryption_pass'::regclass)")"
check "a second distribution is refused" "agentidp.audit_events is distributed already" \
  "$(err "$coord" "SELECT agentidp.agentidp_distribute()")"
check "distributing under the global scope is refused, naming the node" \
  "cannot distribute the audit log: every node needs agentidp.chain_scope = 'org' and citus.enable_change_data_capture = on; these have other settings: coordinator:0 (global, on)" \
  "$(err "$coord" "SET agentidp.chain_scope = 'global'; SELECT agentidp.agentidp_distribute()")"

check "the tables with encrypted columns are reference tables" "agentidp.agent_did_keys|agentidp.credentials|agentidp.webhook_subscriptions" \
  "$(q "$coord" "SELECT string_agg(logicalrelid::text, '|' ORDER BY logicalrelid::text) FROM pg_dist_partition
                  WHERE partmethod = 'n' AND logicalrelid::text LIKE 'agentidp.%'")"

log "encryption on the workers: the key passed on in the startup options"
key=$(openssl rand -hex 32)
as_sidecar() { PGOPTIONS="-c agentidp.encryption_key=$key" psql_at "$coord" -d "$db" "$@"; }
as_sidecar -q <<'SQL'
INSERT INTO agentidp.credentials (org_id, secret_hash, vault_path) VALUES ('acme', 'plain-hash-1', 'plain-path-1');
INSERT INTO agentidp.webhook_subscriptions (org_id, url, vault_secret_path) VALUES ('acme', 'https://hooks.example', 'plain-hook-1');
INSERT INTO agentidp.agent_did_keys (agent_id, did, vault_key_path) VALUES ('agent-1', 'did:example:1', 'plain-did-1');
UPDATE agentidp.credentials SET secret_hash = 'plain-hash-2', vault_path = 'plain-path-2';
UPDATE agentidp.webhook_subscriptions SET vault_secret_path = 'plain-hook-2';
UPDATE agentidp.agent_did_keys SET vault_key_path = 'plain-did-2';
SQL
four="SELECT secret_hash, vault_path FROM agentidp.credentials
      UNION ALL SELECT vault_secret_path, NULL FROM agentidp.webhook_subscriptions
      UNION ALL SELECT vault_key_path, NULL FROM agentidp.agent_did_keys"
for node in "$coord" "${workers[@]}"; do
  # On each node the reference tables are read from its own placement: what it stores.
  check "node $node stores all four columns encrypted" "4|0" \
    "$(q "$node" "SELECT count(*) FILTER (WHERE agentidp.agentidp_is_encrypted(v)) || '|' || count(*) FILTER (WHERE v LIKE '%plain%')
                    FROM ($four) r(a, b), LATERAL (VALUES (a), (b)) v(v) WHERE v IS NOT NULL")"
done
check "the coordinator decrypts what was written last" "plain-hash-2|plain-path-2|plain-hook-2|plain-did-2" \
  "$(as_sidecar -At -c "SELECT agentidp.agentidp_decrypt(secret_hash, 'agentidp.credentials.secret_hash') || '|' ||
                               agentidp.agentidp_decrypt(vault_path, 'agentidp.credentials.vault_path') || '|' ||
                               (SELECT agentidp.agentidp_decrypt(vault_secret_path, 'agentidp.webhook_subscriptions.vault_secret_path') FROM agentidp.webhook_subscriptions) || '|' ||
                               (SELECT agentidp.agentidp_decrypt(vault_key_path, 'agentidp.agent_did_keys.vault_key_path') FROM agentidp.agent_did_keys)
                          FROM agentidp.credentials")"
check "without the key a plaintext is refused on the workers, and stored nowhere" \
  "No encryption key configured: set agentidp.encryption_key|1" \
  "$(err "$coord" "INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('acme', 'plain-unkeyed')")|$(q "$coord" "SELECT count(*) FROM agentidp.credentials")"
failed_on_worker=$(as_sidecar -At -c "INSERT INTO agentidp.credentials (org_id, secret_hash, status) VALUES ('acme', 'plain-bad', 'bogus')" 2>&1 || true)
check "an error raised on a worker in a keyed session" 1 "$(grep -c 'violates check constraint' <<< "$failed_on_worker")"
check "the key is in no error" 0 "$(grep -cF "$key" <<< "$failed_on_worker")"
for n in citus-coord citus-w1 citus-w2; do
  check "$n logged the statements (log_statement = all)" 1 "$(grep -q 'plain-hash-2' "$RUN_DIR/$n.log" && echo 1)"
  check "the key is in no line of $n's log" 0 "$(grep -cF "$key" "$RUN_DIR/$n.log")"
done

log "routing: plain inserts route themselves; a misrouted one is refused and stores nothing"
# chain_of ORG: the chain and seq of the last event of action 'routed' in ORG's chain, and whether
# it is the only one there with its seq (the chain's rows all in one shard).
psql_at "$coord" -d "$db" -q <<'SQL'
INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('routed', 'success', 'acme');
INSERT INTO agentidp.audit_events (action, outcome, org_id)
  VALUES ('routed', 'success', 'acme'), ('routed', 'success', 'globex'), ('routed', 'success', DEFAULT);
INSERT INTO agentidp.audit_events (action, outcome, org_id)
  SELECT 'routed', 'success', o FROM (VALUES ('acme'), ('initech')) v(o);
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('routed', 'success');
PREPARE routed(text) AS INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('routed', 'success', $1);
EXECUTE routed('acme');
EXECUTE routed('initech');
SQL
# Per chain: the routed events, and how many positions they span (the same: no other event
# between them). 'global' also holds the distribution's agentidp.ddl events, before them.
check "one row, many rows, INSERT ... SELECT, no org and a prepared insert: each in its chain" \
  "global 2 2|org:acme 4 4|org:globex 1 1|org:initech 2 2" \
  "$(q "$coord" "SELECT string_agg(chain_id || ' ' || n || ' ' || span, '|' ORDER BY chain_id) FROM (
                   SELECT chain_id, count(*) AS n, max(seq) - min(seq) + 1 AS span FROM agentidp.audit_events
                    WHERE action = 'routed' GROUP BY chain_id) c")"
check "the chains they joined verify, every event of them" \
  "true|$(q "$coord" "SELECT count(*) FROM agentidp.audit_events WHERE chain_id IN ('global', 'org:acme', 'org:globex', 'org:initech')")" \
  "$(q "$coord" "SELECT bool_and(verified) || '|' || sum(checked_count) FROM (
                   SELECT (agentidp.agentidp_verify_chain(chain => c)).* FROM unnest(ARRAY['global', 'org:acme', 'org:globex', 'org:initech']) c) v")"
check "a row that names a wrong chain is refused with the fix in the hint" \
  'audit event of chain "org:acme" was routed to the shard of chain_id ""' \
  "$(err "$coord" "INSERT INTO agentidp.audit_events (action, outcome, org_id, chain_id) VALUES ('lost', 'success', 'acme', '')")"
check "a row routed by another chain's id is refused" \
  'audit event of chain "org:acme" was routed to the shard of chain_id "org:globex"' \
  "$(err "$coord" "INSERT INTO agentidp.audit_events (action, outcome, org_id, chain_id) VALUES ('lost', 'success', 'acme', 'org:globex')")"
check "nothing of them was stored" 0 "$(q "$coord" "SELECT count(*) FROM agentidp.audit_events WHERE action = 'lost'")"
# refused_while PORT SETTING VALUE LABEL EXPECTED: with SETTING = VALUE on the worker at PORT, an
# event of a chain held there fails with EXPECTED; the setting is reset after.
refused_while() {
  psql_at "$1" -d "$db" -q -c "ALTER SYSTEM SET $2 = '$3'" -c "SELECT pg_reload_conf()" >/dev/null
  local org; org=$(org_on "$1" "${2##*.}")
  check "$4" "$5" \
    "$(err "$coord" "INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('lost', 'success', '$org')")"
  psql_at "$1" -d "$db" -q -c "ALTER SYSTEM RESET $2" -c "SELECT pg_reload_conf()" >/dev/null
}
# A worker set to the global scope refuses the events of the shards it holds.
refused_while "${workers[0]}" agentidp.chain_scope global "a worker under the global scope refuses, saying why" \
  "agentidp.chain_scope = 'global' cannot be used on a distributed audit log: its one chain would have to span the shards"

log "a client cannot send its own chain columns"
psql_at "$coord" -d "$db" -q <<'SQL'
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA agentidp TO app;
GRANT INSERT, SELECT ON agentidp.audit_events TO app;
SQL
psql_at "$coord" -d "$db" -q -c "SELECT run_command_on_workers('GRANT USAGE ON SCHEMA agentidp TO app')" >/dev/null
forged="INSERT INTO agentidp.audit_events (action, outcome, org_id, chain_id, seq, prev_hash, hash)
        VALUES ('forged', 'success', 'forger', 'org:forger', 77, '\\xdead', '\\xbeef')"
psql_at "$coord" -d "$db" -U app -q -c "$forged" -c "$forged"
check "an application's chain columns are replaced" "1 32 32|2 32 32" \
  "$(q "$coord" "SELECT string_agg(seq || ' ' || length(prev_hash) || ' ' || length(hash), '|' ORDER BY seq)
                   FROM agentidp.audit_events WHERE action = 'forged'")"
check "an application cannot set up a replication origin" \
  "permission denied for function pg_replication_origin_session_setup" \
  "$(err "$coord" "SET ROLE app; SELECT pg_replication_origin_session_setup('x')")"
psql_at "$coord" -d "$db" -q -c "$forged"
check "neither can a superuser outside a replay" "3 32" \
  "$(q "$coord" "SELECT seq || ' ' || length(hash) FROM agentidp.audit_events WHERE action = 'forged' ORDER BY seq DESC LIMIT 1")"

# Two events per transaction, one in five rolled back, in one of 64 orgs.
cat > "$work/insert.sql" <<'SQL'
\set org random(1, 64)
\set fate random(1, 5)
BEGIN;
INSERT INTO agentidp.audit_events (action, outcome, org_id, chain_id)
  VALUES ('concurrent', 'success', 'org-' || :org, agentidp.agentidp_chain_of('org-' || :org));
INSERT INTO agentidp.audit_events (action, outcome, org_id, chain_id)
  VALUES ('concurrent', 'failure', 'org-' || :org, agentidp.agentidp_chain_of('org-' || :org));
\if :fate = 1
ROLLBACK;
\else
COMMIT;
\endif
SQL
# The same, as an application writes it: no chain_id (insert_routing.rs names it).
sed 's/, chain_id)$/)/; s/, agentidp.agentidp_chain_of(.org-. || :org));$/);/' "$work/insert.sql" > "$work/plain.sql"
# pgbench_at PORT CLIENTS SECONDS LOG [SCRIPT]: inserts until the time is up.
pgbench_at() {
  "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -c "$2" -j 2 -T "$3" --max-tries=1 \
    -f "${5:-$work/insert.sql}" "$db" > "$4" 2>&1
}
failed_in() { grep -Eo 'number of failed transactions: [0-9]+' "$1" | grep -Eo '[0-9]+$' || echo 0; }

# chains_whole LABEL: no gap, no fork, every row in its chain's shard, and the log verifies.
chains_whole() {
  check "$1: no gap, every chain numbers its events 1..n" 0 \
    "$(q "$coord" "SELECT count(*) FROM (SELECT chain_id FROM agentidp.audit_events GROUP BY chain_id
                                           HAVING max(seq) <> count(*) OR min(seq) <> 1) g")"
  check "$1: no fork, no two events share a predecessor" 0 \
    "$(q "$coord" "SELECT count(*) FROM (SELECT chain_id, prev_hash FROM agentidp.audit_events
                                           GROUP BY 1, 2 HAVING count(*) > 1) f")"
  check "$1: every row is in the shard of its chain" 0 \
    "$(q "$coord" "SELECT sum(result::bigint) FROM run_command_on_shards('agentidp.audit_events',
         \$\$SELECT count(*) FROM %s t WHERE get_shard_id_for_distribution_column('agentidp.audit_events', chain_id)
              <> substring(t.tableoid::regclass::text FROM '_([0-9]+)\$')::bigint\$\$)")"
  check "$1: the coordinator verifies every event" "true|$(q "$coord" "SELECT count(*) FROM agentidp.audit_events")" \
    "$(q "$coord" "SELECT verified || '|' || checked_count FROM agentidp.agentidp_verify_chain()")"
}

log "8 clients on the coordinator and 2 on each worker (MX), 64 orgs at once"
check "the plain script names no chain" 0 "$(grep -c chain_id "$work/plain.sql")"
check "the workers have the metadata: clients may insert there" "true|true" \
  "$(q "$coord" "SELECT string_agg(hasmetadata::text, '|') FROM pg_dist_node WHERE noderole = 'primary' AND nodeport <> $coord")"
pgbench_at "$coord" 8 20 "$work/pgbench-coord.log" &
pids=($!)
# The workers' clients insert as applications do, without naming the chain.
for w in "${workers[@]}"; do pgbench_at "$w" 2 20 "$work/pgbench-$w.log" "$work/plain.sql" & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid" || { cat "$work"/pgbench-*.log; exit 1; }; done
for f in "$work"/pgbench-*.log; do
  check "$(basename "$f" .log): no transaction failed" 0 "$(failed_in "$f")"
done
check "64 org chains" 64 "$(q "$coord" "SELECT count(DISTINCT chain_id) FROM agentidp.audit_events WHERE org_id LIKE 'org-%'")"
check "rolled-back transactions left nothing" 0 \
  "$(q "$coord" "SELECT count(*) % 2 FROM agentidp.audit_events WHERE action = 'concurrent'")"
chains_whole "concurrency"

# failing_digests PORT FILE: the chains whose head recorded in FILE no longer verifies at PORT.
failing_digests() {
  local chain seq hash
  while IFS='|' read -r chain seq hash; do
    [ "$(q "$1" "SELECT verified FROM agentidp.agentidp_verify_digest('$chain', $seq, '\\x$hash')")" = t ] || echo "$chain"
  done < "$2"
}
# digests_hold LABEL FILE: every chain head recorded in FILE is still in its chain.
digests_hold() {
  check "$1: every digest exported before still verifies ($(wc -l < "$2") chains)" "" "$(failing_digests "$coord" "$2")"
}
# fingerprint FILE: every event existing when FILE was taken, with its chain columns.
fingerprint() {
  q "$coord" "SELECT md5(string_agg(e.event_id || e.chain_id || e.seq || encode(e.prev_hash, 'hex') || encode(e.hash, 'hex'), ',' ORDER BY e.chain_id, e.seq))
                FROM agentidp.audit_events e
                JOIN (SELECT split_part(l, '|', 1) AS chain_id, split_part(l, '|', 2)::bigint AS seq
                        FROM regexp_split_to_table(\$f\$$(cat "$1")\$f\$, E'\n') l WHERE l <> '') d
                  ON d.chain_id = e.chain_id AND e.seq <= d.seq"
}
export_digests() { q "$coord" "SELECT chain_id || '|' || seq || '|' || encode(hash, 'hex') FROM agentidp.agentidp_chain_heads()" > "$1"; }

# under_writes LABEL SQL: runs SQL on the coordinator while clients insert, then checks that the
# chains are whole and that the digests and the events taken before are unchanged.
under_writes() {
  export_digests "$work/digests"
  local before; before=$(fingerprint "$work/digests")
  pgbench_at "$coord" 4 15 "$work/pgbench-during.log" &
  local writer=$!
  sleep 2
  q "$coord" "$2" > /dev/null
  wait "$writer" || { cat "$work/pgbench-during.log"; exit 1; }
  check "$1: the clients' transactions all committed" 0 "$(failed_in "$work/pgbench-during.log")"
  check "$1: the events taken before keep their chain columns" "$before" "$(fingerprint "$work/digests")"
  digests_hold "$1" "$work/digests"
  chains_whole "$1"
}

log "a worker without change data capture takes no events"
# Citus would copy into its shards without a replication origin (distributing or resharding a
# table), and the copies would be chained anew: it refuses every event instead.
refused_while "${workers[1]}" citus.enable_change_data_capture off "it refuses, saying why" \
  "a shard of the audit log takes no events while citus.enable_change_data_capture is off"

log "a shard move under writes"
shard=$(shard_of org:org-1)
from=$(port_of_shard "$shard")
to=${workers[0]}; [ "$from" = "$to" ] && to=${workers[1]}
under_writes "move" "SELECT citus_move_shard_placement($shard, '127.0.0.1', $from, '127.0.0.1', $to)"
check "the shard moved" "$to" "$(port_of_shard "$shard")"

log "a shard split under writes"
shard=$(shard_of org:org-2)
node=$(node_id "$(port_of_shard "$shard")")
other=$(node_id "$( [ "$(port_of_shard "$shard")" = "${workers[0]}" ] && echo "${workers[1]}" || echo "${workers[0]}")")
mid=$(q "$coord" "SELECT ((shardminvalue::bigint + shardmaxvalue::bigint) / 2)::int FROM pg_dist_shard WHERE shardid = $shard")
shards_before=$(q "$coord" "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'agentidp.audit_events'::regclass")
under_writes "split" "SELECT citus_split_shard_by_split_points($shard, ARRAY['$mid'], ARRAY[$node, $other])"
check "the shard split in two" "$((shards_before + 1))" \
  "$(q "$coord" "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'agentidp.audit_events'::regclass")"

log "the rebalancer under writes"
# Three more shards onto the first worker leave the workers uneven; the rebalancer then moves
# shards by the same means as a move, under writes.
placements() {
  q "$coord" "SELECT string_agg(n::text, ' ' ORDER BY port) FROM (SELECT nodeport AS port, count(*) AS n
                FROM pg_dist_placement p JOIN pg_dist_node USING (groupid)
                JOIN pg_dist_shard s USING (shardid) WHERE s.logicalrelid = 'agentidp.audit_events'::regclass
               GROUP BY nodeport) c"
}
for shard in $(q "$coord" "SELECT shardid FROM pg_dist_placement JOIN pg_dist_node USING (groupid)
                           JOIN pg_dist_shard USING (shardid)
                          WHERE logicalrelid = 'agentidp.audit_events'::regclass AND nodeport = ${workers[1]}
                          ORDER BY shardid LIMIT 3"); do
  q "$coord" "SELECT citus_move_shard_placement($shard, '127.0.0.1', ${workers[1]}, '127.0.0.1', ${workers[0]},
                                                shard_transfer_mode => 'block_writes')" > /dev/null
done
before=$(placements)
under_writes "rebalance" "SELECT rebalance_table_shards('agentidp.audit_events')"
check "the rebalancer moved shards (placements per worker: $before, then $(placements))" 1 \
  "$([ "$(placements)" != "$before" ] && echo 1)"

log "the sidecar against the coordinator"
(cd "$REPO" && cargo build -q -p agentidp-sidecar --bin agentidp-sidecar) || { echo "cannot build the sidecar"; exit 1; }
sidecar_bin=$(cd "$REPO" && cargo metadata -q --format-version 1 --no-deps | jq -r .target_directory)/debug/agentidp-sidecar
(umask 077; openssl rand -hex 32 > "$work/dev.key"; openssl genpkey -algorithm ed25519 -out "$work/log.pem")
jwt_secret=$(openssl rand -hex 32)
token=$(JWT_HS256_SECRET=$jwt_secret python3 "$REPO/tests/dev_token.py")
# As tests/chain_break.sh runs it: after the first incremental run, a full walk every 2 s.
env -u VAULT_ADDR -u VAULT_TOKEN -u NODE_ENV \
  DATABASE_URL="postgresql://postgres@127.0.0.1:$coord/$db?sslmode=disable" \
  ENCRYPTION_KEY_FILE="$work/dev.key" JWT_HS256_SECRET="$jwt_secret" \
  PORT="$http_port" BIND_ADDRESS=127.0.0.1 AGENTIDP_PRODUCTION=false RUST_LOG=info \
  CONTROLS_REFRESH_SECONDS=1 JOB_CHAIN_VERIFICATION_SCHEDULE='0 0 0 1 1 *' \
  JOB_CHAIN_FULL_WALK_SCHEDULE='*/2 * * * * *' \
  CHECKPOINT_SIGNER=file CHECKPOINT_KEY_FILE="$work/log.pem" CHECKPOINT_INTERVAL_SECONDS=1 \
  CHECKPOINT_DIRECTORY="$work/published" \
  "$sidecar_bin" > "$work/sidecar.log" 2>&1 &
sidecar=$!
cc72() { q "$coord" "SELECT status || ' ' || coalesce(detail->>'fullWalk', '') || ' ' || coalesce(detail->>'brokenAtEventId', '')
                       FROM agentidp.control_status WHERE control_id = 'CC7.2'"; }
cc72_is() { [ "$(cc72)" = "$1" ]; }
api_verify() {
  curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$http_port/api/v1/audit/verify" \
    | jq -r '"\(.verified) \(.checkedCount) \(.brokenAtEventId)"'
}
check "the sidecar is ready" 0 "$(wait_for 60 curl -sf "http://127.0.0.1:$http_port/ready" -o /dev/null; echo $?)"
check "a full walk of the distributed log passes CC7.2" 0 "$(wait_for 60 cc72_is "passing true "; echo $?)"
check "/api/v1/audit/verify covers every shard" "true $(q "$coord" "SELECT count(*) FROM agentidp.audit_events") null" "$(api_verify)"
every_chain_signed() {
  [ "$(q "$coord" "SELECT count(DISTINCT chain_id) FROM agentidp.checkpoints")" = \
    "$(q "$coord" "SELECT count(*) FROM agentidp.agentidp_chain_heads()")" ]
}
check "the sealing job signs a checkpoint of every chain" 0 "$(wait_for 60 every_chain_signed; echo $?)"
check "no refusal, no failed job" "0|0" \
  "$(q "$coord" "SELECT count(*) FROM agentidp.checkpoint_refusals")|$(grep -c 'job failed' "$work/sidecar.log")"
# The gauges come from the sidecar's read of every chain's progress (transparency_sql::progress).
metrics_cover_every_chain() {
  [ "$(curl -sf "http://127.0.0.1:$http_port/metrics" | grep -c '^agentidp_events_unsigned{')" = \
    "$(q "$coord" "SELECT count(*) FROM agentidp.agentidp_chain_heads()")" ]
}
check "the metrics give every chain's unsigned events" 0 "$(wait_for 30 metrics_cover_every_chain; echo $?)"

log "tampering on a worker, seen from the coordinator"
victim=$(q "$coord" "SELECT event_id FROM agentidp.audit_events WHERE chain_id = 'org:org-7' AND seq = 5")
shard=$(shard_of org:org-7)
psql_at "$(port_of_shard "$shard")" -d "$db" -q <<SQL
BEGIN;
ALTER TABLE agentidp.audit_events_$shard DISABLE TRIGGER agentidp_append_only_$shard;
UPDATE agentidp.audit_events_$shard SET outcome = 'tampered' WHERE event_id = '$victim';
ALTER TABLE agentidp.audit_events_$shard ENABLE ALWAYS TRIGGER agentidp_append_only_$shard;
COMMIT;
SQL
check "the coordinator reports the event, its break kind and its chain" "false|$victim|content_edited|org:org-7" \
  "$(q "$coord" "SELECT verified || '|' || broken_at_event_id || '|' || break_kind || '|' || broken_chain_id
                   FROM agentidp.agentidp_verify_chain()")"
check "the sidecar's chain job fails CC7.2, naming the event" 0 "$(wait_for 60 cc72_is "failing true $victim"; echo $?)"
check "/api/v1/audit/verify reports it" "false" "$(api_verify | cut -d' ' -f1)"
kill "$sidecar"; wait "$sidecar" 2>/dev/null || true

log "the same events on a single node give the same verdicts"
# wal_level = logical: it is the publisher of the subscriber below.
start_cluster citus-single "$single" "shared_preload_libraries = 'pg_agentidp'" "agentidp.chain_scope = 'org'" \
  "wal_level = logical" > /dev/null
psql_at "$single" -d postgres -q -c "CREATE DATABASE $db"
psql_at "$single" -d "$db" -q -c "CREATE EXTENSION pg_agentidp"
cols="event_id, occurred_at, action, outcome, agent_id, org_id, metadata, chain_id, seq, prev_hash, hash"
psql_at "$coord" -d "$db" -q -c "\\copy (SELECT $cols FROM agentidp.audit_events ORDER BY chain_id, seq) TO '$work/events.copy'"
psql_at "$single" -d "$db" -q -c "SET agentidp.restoring = on" -c "\\copy agentidp.audit_events ($cols) FROM '$work/events.copy'"
check "the single node holds the same events" "$(q "$coord" "SELECT count(*) FROM agentidp.audit_events")" \
  "$(q "$single" "SELECT count(*) FROM agentidp.audit_events")"
range=$(q "$coord" "SELECT quote_literal(min(occurred_at) + (max(occurred_at) - min(occurred_at)) / 3) || ', ' ||
                           quote_literal(min(occurred_at) + (max(occurred_at) - min(occurred_at)) * 2 / 3)
                      FROM agentidp.audit_events")
head=$(q "$coord" "SELECT seq || ', ''\\x' || encode(hash, 'hex') || '''' FROM agentidp.agentidp_chain_heads() WHERE chain_id = 'org:org-3'")
# same_verdicts LABEL SQL...: each statement gives the coordinator the single node's rows.
same_verdicts() {
  local label=$1 verdict; shift
  for verdict in "$@"; do
    check "$label, coordinator = single node: ${verdict#SELECT }" "$(q "$single" "$verdict")" "$(q "$coord" "$verdict")"
  done
}
same_verdicts "same events" \
  "SELECT * FROM agentidp.agentidp_verify_chain()" \
  "SELECT * FROM agentidp.agentidp_verify_chain(chain => 'org:org-3')" \
  "SELECT * FROM agentidp.agentidp_verify_chain(chain => 'org:org-7')" \
  "SELECT * FROM agentidp.agentidp_verify_chain($range)" \
  "SELECT * FROM agentidp.agentidp_chain_heads()" \
  "SELECT * FROM agentidp.agentidp_verify_digest('org:org-3', $head)" \
  "SELECT * FROM agentidp.agentidp_verify_digest('org:org-3', 1, '\\x$(printf '%064d' 0)')" \
  "SELECT * FROM agentidp.agentidp_verify_incremental(full_walk => true)" \
  "SELECT * FROM agentidp.agentidp_verify_incremental()"

log "retention from the coordinator, against the single node"
# Retention, on both: the whole log refuses (org:org-7 breaks before the cut), one intact chain
# archives the same events, and both logs then give the same verdicts.
cut_at=$(q "$coord" "SELECT quote_literal(min(occurred_at) + (max(occurred_at) - min(occurred_at)) / 2) FROM agentidp.audit_events")
check "retention of the whole log is refused on both, naming the broken chain" \
  "$(err "$single" "SELECT * FROM agentidp.agentidp_archive_events($cut_at)")" \
  "$(err "$coord" "SELECT * FROM agentidp.agentidp_archive_events($cut_at)")"
check "the refusal is the break's" 1 \
  "$(err "$coord" "SELECT * FROM agentidp.agentidp_archive_events($cut_at)" | grep -c "refusing to archive audit chain \"org:org-7\": it breaks at event $victim (content_edited)")"
check "nothing was archived on the coordinator's refusal" 0 "$(q "$coord" "SELECT count(*) FROM agentidp.audit_events_archive")"
same_verdicts "after retention" \
  "SELECT * FROM agentidp.agentidp_archive_events($cut_at, chain => 'org:org-3')" \
  "SELECT chain_id, seq, hash FROM agentidp.chain_anchors ORDER BY 1" \
  "SELECT count(*), min(seq), max(seq) FROM agentidp.audit_events_archive" \
  "SELECT * FROM agentidp.agentidp_verify_chain(chain => 'org:org-3')" \
  "SELECT * FROM agentidp.agentidp_verify_chain()" \
  "SELECT * FROM agentidp.agentidp_chain_heads()"
check "retention moved events" 1 "$(q "$coord" "SELECT (count(*) > 0)::int FROM agentidp.audit_events_archive")"

log "a logical subscriber of the log, under writes"
# The subscriber keeps the default scope, global: chained anew there, every event would move to
# the chain 'global' and no digest would match.
start_cluster citus-subscriber "$subscriber" "shared_preload_libraries = 'pg_agentidp'" > /dev/null
psql_at "$subscriber" -d postgres -q -c "CREATE DATABASE $db"
psql_at "$subscriber" -d "$db" -q -c "CREATE EXTENSION pg_agentidp"
# The log with its archive and anchors (retention has run), inserts only: the log takes no
# UPDATE, and retention's DELETEs would need a replica identity here and be refused by the
# subscriber's append-only guard (docs/scaling.md).
psql_at "$single" -d "$db" -q -c "CREATE PUBLICATION audit_log FOR TABLE agentidp.audit_events,
  agentidp.audit_events_archive, agentidp.chain_anchors WITH (publish = 'insert')"
export_digests_at() { q "$1" "SELECT chain_id || '|' || seq || '|' || encode(hash, 'hex') FROM agentidp.agentidp_chain_heads()"; }
export_digests_at "$single" > "$work/published-digests"
pgbench_at "$single" 4 10 "$work/pgbench-publisher.log" &
writer=$!
psql_at "$subscriber" -d "$db" -q -c "CREATE SUBSCRIPTION audit_log
  CONNECTION 'host=127.0.0.1 port=$single dbname=$db user=postgres' PUBLICATION audit_log"
wait "$writer" || { cat "$work/pgbench-publisher.log"; exit 1; }
published=$(q "$single" "SELECT count(*) FROM agentidp.audit_events")
caught_up() { [ "$(q "$subscriber" "SELECT count(*) FROM agentidp.audit_events")" = "$published" ]; }
wait_for 60 caught_up || true
all_rows="SELECT md5(string_agg(event_id || chain_id || seq || encode(prev_hash, 'hex') || encode(hash, 'hex'), ',' ORDER BY chain_id, seq)) FROM agentidp.audit_events"
check "subscriber: every event arrived with the chain columns it was written with" \
  "$published|$(q "$single" "$all_rows")" \
  "$(q "$subscriber" "SELECT count(*) FROM agentidp.audit_events")|$(q "$subscriber" "$all_rows")"
# The publisher holds the tampered event: its chain fails there, and must fail here alike.
check "publisher: only the tampered chain fails its digest" "org:org-7" \
  "$(failing_digests "$single" "$work/published-digests")"
check "subscriber: every digest exported before gives the publisher's verdict ($(wc -l < "$work/published-digests") chains)" \
  "org:org-7" "$(failing_digests "$subscriber" "$work/published-digests")"
verdict="SELECT * FROM agentidp.agentidp_verify_chain()"
check "subscriber: the same verdict as the publisher" "$(q "$single" "$verdict")" "$(q "$subscriber" "$verdict")"
psql_at "$subscriber" -d "$db" -q -c "DROP SUBSCRIPTION audit_log"

summary "citus"
