#!/usr/bin/env bash
# The transparency log, end to end: a primary with a streaming standby, the real sidecar sealing
# and signing every second (key file signer), publishing to a directory and to the witness
# double, and a real Prometheus with the repository's alerts.yml.
#
#  1. Honest history: checkpoints are signed, published, cosigned; the REST API serves them; an
#     export, an inclusion proof and a consistency proof pass agentidp-verify offline.
#  2. The standby rule: while the standby's replay is paused, nothing new is signed.
#  3. Failover: the primary dies, the standby is promoted, a sidecar on it carries on; every
#     checkpoint ever signed stays consistent with the promoted log.
#  4. The rewrite: a superuser edits an event in the middle and rehashes every later one, so that
#     agentidp_verify_chain() alone passes. The next seal refuses, CC7.2 fails, the integrity
#     gauge reads 0, AgentidpCheckpointRefused's expression is true, the witness refuses the
#     forged tree even when signed with the log's own key, and agentidp-verify on an export taken
#     after the rewrite names the first rewritten event.
#
#   bash tests/transparency.sh [PG_PORT STANDBY_PORT HTTP_PORT WITNESS_PORT PROMETHEUS_PORT]
#   (default 5476 5475 3932 3942 9093)
#
# Starts and stops its own clusters, sidecars, witness and Prometheus. Needs prometheus, jq,
# curl, python3 with cryptography, openssl.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
pg_port=${1:-5476}
standby_port=${2:-5475}
http_port=${3:-3932}
witness_port=${4:-3942}
prom_port=${5:-9093}
name=transparency
standby=transparency_standby
db=agentidp_transparency
log_name=agentidp.test

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  end_run sidecar.log sidecar2.log witness.log prometheus.log
  stop_cluster "$standby"
}
trap cleanup EXIT

sql() { psql_at "$pg_port" -d "$db" -At "$@"; }

log "a primary and its standby, with events in the global chain and one org chain"
start_cluster "$name" "$pg_port" "shared_preload_libraries = 'pg_agentidp'" "wal_level = replica" \
  || fatal "cannot start a cluster on $pg_port"
psql_at "$pg_port" -d postgres -c "CREATE DATABASE $db" || fatal "cannot create the database"
sql -c "CREATE EXTENSION pg_agentidp" || fatal "cannot create the extension"
add_events() {
  sql -c "INSERT INTO agentidp.audit_events (action, outcome, agent_id)
          SELECT 'agent.token.issued', 'success', 'agent-' || i % 7 FROM generate_series(1, $1) i" >/dev/null
}
add_events 300
PGOPTIONS="-c agentidp.chain_scope=org" sql -c "INSERT INTO agentidp.audit_events (action, outcome, org_id)
  SELECT 'agent.login', 'success', 'org-7' FROM generate_series(1, 20) i" >/dev/null
stop_cluster "$standby"
rm -rf "$RUN_DIR/$standby"
as_postgres "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$pg_port" -U postgres -D "$RUN_DIR/$standby" \
  -R -X stream --checkpoint=fast || fatal "cannot make the standby"
echo "port = $standby_port" >> "$RUN_DIR/$standby/postgresql.conf"
as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/$standby" -l "$RUN_DIR/$standby.log" -w start >/dev/null \
  || fatal "cannot start the standby"
streaming() { [ "$(sql -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 1 ]; }
check "the standby streams" 0 "$(wait_for 30 streaming; echo $?)"

log "keys: the log's (a key file; the database never sees it) and the witness's"
(umask 077; openssl genpkey -algorithm ed25519 -out "$work/log.pem") || fatal "cannot make the log key"
(umask 077; openssl rand -hex 32 > "$work/witness.key")
# The log's verifier key computed here from the public key, independently of the sidecar:
# name+hex(SHA-256(name || 0x0a || 0x01 || key)[:4])+base64(0x01 || key).
log_vkey=$(python3 - "$work/log.pem" "$log_name" <<'PY'
import base64, hashlib, sys
from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
name = sys.argv[2]
key_id = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4]
encoded = base64.b64encode(b"\x01" + pub).decode()
print(f"{name}+{key_id.hex()}+{encoded}")
PY
)
witness_name=witness.test
witness=(python3 "$REPO/tests/witness/witness_double.py" --port "$witness_port" --state-dir "$work/witness"
  --log-vkey "$log_vkey" --witness-name "$witness_name" --witness-key-file "$work/witness.key")
witness_vkey=$("${witness[@]}" --print-vkey) || fatal "the witness double prints no key"
mkdir -p "$work/witness"
start_witness() {
  "${witness[@]}" >>"$work/witness.log" 2>&1 &
  witness_pid=$!
  pids+=($witness_pid)
  wait_for 20 curl -sf "http://127.0.0.1:$witness_port/healthz" -o /dev/null
}
start_witness || fatal "the witness double does not answer"

log "the sidecar, agentidp-verify and Prometheus"
(cd "$REPO" && cargo build -q -p agentidp-sidecar --bin agentidp-sidecar -p agentidp-verify) \
  || fatal "cannot build the sidecar and agentidp-verify"
bin=$(cd "$REPO" && cargo metadata -q --format-version 1 --no-deps | jq -r .target_directory)/debug
verify=$bin/agentidp-verify
(umask 077; openssl rand -hex 32 > "$work/dev.key")
jwt_secret=$(openssl rand -hex 32)
token=$(JWT_HS256_SECRET=$jwt_secret python3 "$REPO/tests/dev_token.py")
published=$work/published
mkdir -p "$published"
start_sidecar() {
  env -u VAULT_ADDR -u VAULT_TOKEN -u NODE_ENV \
    DATABASE_URL="postgresql://postgres@127.0.0.1:$1/$db?sslmode=disable" \
    ENCRYPTION_KEY_FILE="$work/dev.key" JWT_HS256_SECRET="$jwt_secret" \
    PORT="$http_port" BIND_ADDRESS=127.0.0.1 AGENTIDP_PRODUCTION=false RUST_LOG=info \
    CONTROLS_REFRESH_SECONDS=1 LEADER_RETRY_SECONDS=1 \
    CHECKPOINT_SIGNER=file CHECKPOINT_KEY_FILE="$work/log.pem" CHECKPOINT_LOG_NAME="$log_name" \
    CHECKPOINT_INTERVAL_SECONDS=1 CHECKPOINT_DIRECTORY="$published" \
    CHECKPOINT_WITNESSES="http://127.0.0.1:$witness_port/ $witness_vkey" TLOG_TILES_ENABLED=true \
    "$bin/agentidp-sidecar" >"$work/$2" 2>&1 &
  sidecar_pid=$!
  pids+=($sidecar_pid)
  wait_for 30 curl -sf "http://127.0.0.1:$http_port/health" -o /dev/null
}
start_sidecar "$pg_port" sidecar.log || fatal "the sidecar does not answer /health"

start_prometheus "$prom_port" "$http_port"
wait_for 30 curl -sf "http://127.0.0.1:$prom_port/-/ready" -o /dev/null || fatal "Prometheus is not ready"
prom() { curl -sf "http://127.0.0.1:$prom_port/api/v1/$1" "${@:2}"; }
prom_query() { prom query -G --data-urlencode "query=$1" | jq -c '.data.result'; }

api() { curl -sf "http://127.0.0.1:$http_port$1" "${@:2}"; }
auth() { api "$1" -H "Authorization: Bearer $token" "${@:2}"; }
signed_size() { api "/api/v1/transparency/checkpoints/$1" | sed -n 2p; }
head_seq() { sql -c "SELECT max(seq) FROM agentidp.audit_events WHERE chain_id = '$1'"; }
signed_to_head() { [ "$(signed_size "$1")" = "$(head_seq "$1")" ]; }
cosigned_size() {
  sql -c "SELECT coalesce(max(tree_size), 0) FROM agentidp.checkpoints
          WHERE chain_id = '$1' AND cardinality(cosignatures) > 0"
}
cosigned_to() { [ "$(cosigned_size "$1")" = "$2" ]; }

log "1. honest history: signed, published, cosigned, served, verified offline"
check "the verifier key the sidecar serves is the one computed from the key file" "$log_vkey" \
  "$(api /api/v1/transparency/verifier-key)"
check "the global chain is signed up to its head" 0 "$(wait_for 30 signed_to_head global; echo $?)"
check "the org chain is signed up to its head" 0 "$(wait_for 30 signed_to_head org:org-7; echo $?)"
first=$(signed_size global)
check "the witness cosigned the global checkpoint" 0 "$(wait_for 30 cosigned_to global "$first"; echo $?)"
api /api/v1/transparency/checkpoints/global > "$work/first.note"
check "the served note carries the log's signature and the witness's cosignature" 2 \
  "$(grep -c -e "^— $log_name " -e "^— $witness_name " "$work/first.note")"
check "the directory holds the signed checkpoint" 0 \
  "$(grep -q "^$first\$" "$published/global/checkpoints/$first" && echo 0)"
check "the tiles endpoint serves the first level-0 tile" 8192 \
  "$(api "/tlog/global/tile/8/0/000" | wc -c)"
check "the tiles endpoint serves the checkpoint" "$(cat "$work/first.note")" "$(api /tlog/global/checkpoint)"

auth "/api/v1/audit/export?chainId=global" > "$work/honest.jsonl"
check "the export has every event" "$(head_seq global)" "$(wc -l < "$work/honest.jsonl")"
"$verify" bundle --events "$work/honest.jsonl" --checkpoint "$work/first.note" --key "$log_vkey" \
  --witness-key "$witness_vkey" --quorum 1 --tiles "$published/global" >"$work/verify.out" 2>&1
check "agentidp-verify: the honest bundle holds, signatures, cosignature and tiles" "0" "$?"

event=$(sql -c "SELECT event_id FROM agentidp.audit_events WHERE chain_id = 'global' AND seq = 77")
auth "/api/v1/audit/events/$event/proof" > "$work/proof.json"
jq -c .event "$work/proof.json" > "$work/event.json"
jq -c .proof "$work/proof.json" > "$work/inclusion.json"
jq -j .checkpoint "$work/proof.json" > "$work/proof.note"
"$verify" proof --event "$work/event.json" --proof "$work/inclusion.json" --checkpoint "$work/proof.note" \
  --key "$log_vkey" >"$work/verify.out" 2>&1
check "agentidp-verify proof: the event's REST inclusion proof holds" 0 "$?"
check "an inclusion proof needs audit:read" 401 \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/api/v1/audit/events/$event/proof")"

add_events 40
check "new events are signed" 0 "$(wait_for 30 signed_to_head global; echo $?)"
second=$(signed_size global)
api /api/v1/transparency/checkpoints/global > "$work/second.note"
api "/api/v1/transparency/consistency/global?oldSize=$first&newSize=$second" > "$work/consistency.json"
"$verify" consistency --old "$work/first.note" --new "$work/second.note" --proof "$work/consistency.json" \
  --key "$log_vkey" >"$work/verify.out" 2>&1
check "agentidp-verify consistency: the log only grew between the two checkpoints" 0 "$?"
check "the witness cosigned the grown tree" 0 "$(wait_for 30 cosigned_to global "$second"; echo $?)"

log "1b. a witness that is down delays nothing but its cosignature"
kill "$witness_pid"; wait "$witness_pid" 2>/dev/null
add_events 5
check "with the witness down, new events are still signed" 0 "$(wait_for 30 signed_to_head global; echo $?)"
witness_failed() {
  api /metrics | grep -q "^agentidp_witness_failures_total{witness=\"$witness_name\"} [1-9]"
}
check "and the failure shows in agentidp_witness_failures_total" 0 "$(wait_for 30 witness_failed; echo $?)"
start_witness || fatal "the witness double does not restart"
add_events 5
check "back up, the witness cosigns the next checkpoint" 0 \
  "$(wait_for 30 signed_to_head global && wait_for 30 cosigned_to global "$(head_seq global)"; echo $?)"
second=$(signed_size global)

log "2. a checkpoint waits for the standby"
psql_at "$standby_port" -d "$db" -c "SELECT pg_wal_replay_pause()" >/dev/null
add_events 10
sleep 4
check "while the standby's replay is paused, nothing new is signed" "$second" "$(signed_size global)"
check "yet the new events are sealed" "$(head_seq global)" \
  "$(sql -c "SELECT tree_size FROM agentidp.merkle_trees WHERE chain_id = 'global'")"
psql_at "$standby_port" -d "$db" -c "SELECT pg_wal_replay_resume()" >/dev/null
check "once it replays again, they are signed" 0 "$(wait_for 30 signed_to_head global; echo $?)"
third=$(signed_size global)
check "and cosigned" 0 "$(wait_for 30 cosigned_to global "$third"; echo $?)"

log "3. failover: the primary dies, the standby is promoted, its sidecar carries on"
kill "$sidecar_pid"; wait "$sidecar_pid" 2>/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/$name" -m immediate -w stop >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/$standby" -w promote >/dev/null || fatal "cannot promote the standby"
pg_port=$standby_port
check "every signed event survived the failover" 1 \
  "$([ "$(head_seq global)" -ge "$third" ] && echo 1)"
start_sidecar "$pg_port" sidecar2.log || fatal "the promoted node's sidecar does not answer"
add_events 25
check "the promoted node's sidecar signs on" 0 "$(wait_for 30 signed_to_head global; echo $?)"
fourth=$(signed_size global)
check "and the witness cosigns it: consistent with what it saw before" 0 \
  "$(wait_for 30 cosigned_to global "$fourth"; echo $?)"
sql -c "SELECT agentidp.agentidp_export('global')" > "$work/promoted.jsonl"
every=()
for f in "$published"/global/checkpoints/*; do every+=(--checkpoint "$f"); done
"$verify" bundle --events "$work/promoted.jsonl" "${every[@]}" --key "$log_vkey" \
  --tiles "$published/global" >"$work/verify.out" 2>&1
check "no checkpoint signed before or after the failover is contradicted (${#every[@]} of them)" 0 "$?"

log "4. the rewrite: event 150 edited and every later one rehashed, by a superuser"
rewritten=$(sql -c "SELECT event_id FROM agentidp.audit_events WHERE chain_id = 'global' AND seq = 150")
cp "$published/global/checkpoints/$fourth" "$work/before.note"
sql -c "ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL" >/dev/null
sql >/dev/null <<'SQL'
CREATE FUNCTION pg_temp.frame(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN b IS NULL THEN '\xffffffff'::bytea ELSE int4send(length(b)) || b END $$;
CREATE FUNCTION pg_temp.rehash(e agentidp.audit_events) RETURNS bytea LANGUAGE sql AS $$
    SELECT sha256(pg_temp.frame('agentidp.audit_event.v1'::bytea)
        || pg_temp.frame(convert_to(e.chain_id, 'UTF8')) || pg_temp.frame(int8send(e.seq))
        || pg_temp.frame(e.prev_hash) || pg_temp.frame(uuid_send(e.event_id))
        || pg_temp.frame(int8send((extract(epoch FROM e.occurred_at) * 1000000)::bigint))
        || pg_temp.frame(convert_to(e.action, 'UTF8')) || pg_temp.frame(convert_to(e.outcome, 'UTF8'))
        || pg_temp.frame(convert_to(e.agent_id, 'UTF8')) || pg_temp.frame(convert_to(e.org_id, 'UTF8'))
        || pg_temp.frame(convert_to(e.metadata::text, 'UTF8'))) $$;
UPDATE agentidp.audit_events SET outcome = 'failure' WHERE chain_id = 'global' AND seq = 150;
DO $$
DECLARE s bigint;
BEGIN
    FOR s IN 150 .. (SELECT max(seq) FROM agentidp.audit_events WHERE chain_id = 'global') LOOP
        UPDATE agentidp.audit_events e SET prev_hash = p.hash
          FROM agentidp.audit_events p
         WHERE e.chain_id = 'global' AND e.seq = s AND p.chain_id = 'global' AND p.seq = s - 1;
        UPDATE agentidp.audit_events e SET hash = pg_temp.rehash(e) WHERE chain_id = 'global' AND seq = s;
    END LOOP;
END $$;
SQL
sql -c "ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER zz_agentidp_chain,
          ENABLE ALWAYS TRIGGER agentidp_append_only, ENABLE ALWAYS TRIGGER agentidp_append_only_truncate" >/dev/null
check "agentidp_verify_chain() alone passes the rewritten chain" t \
  "$(sql -c "SELECT bool_and(verified) FROM agentidp.agentidp_verify_chain()")"

refused() {
  [ "$(sql -c "SELECT count(*) FROM agentidp.checkpoint_refusals WHERE chain_id = 'global'")" -ge 1 ]
}
check "the next seal refuses, and files the evidence" 0 "$(wait_for 30 refused; echo $?)"
check "the evidence names the first rewritten event" "150|$rewritten" \
  "$(sql -c "SELECT first_rewritten_seq || '|' || first_rewritten_event_id FROM agentidp.checkpoint_refusals
             WHERE chain_id = 'global' AND reason = 'rewritten'")"
add_events 5
sleep 3
check "nothing is signed over the rewritten history" "$fourth" "$(signed_size global)"
cc72_failing() {
  [ "$(api /api/v1/compliance/controls | jq -r '.controls[] | select(.id == "CC7.2") | .status')" = failing ]
}
check "CC7.2 turns failing" 0 "$(wait_for 30 cc72_failing; echo $?)"
integrity_zero() { [ "$(prom_query agentidp_audit_chain_integrity | jq -r '.[0].value[1]')" = 0 ]; }
check "the integrity gauge reads 0" 0 "$(wait_for 30 integrity_zero; echo $?)"
expr=$(prom rules | jq -r '.data.groups[].rules[] | select(.name == "AgentidpCheckpointRefused") | .query')
check "Prometheus loaded AgentidpCheckpointRefused from alerts.yml" 1 "$([ -n "$expr" ] && echo 1)"
alert_true() { [ "$(prom_query "$expr" | jq -r '.[0].metric.chain_id')" = global ]; }
check "AgentidpCheckpointRefused's expression is true for the global chain" 0 "$(wait_for 30 alert_true; echo $?)"

# An attacker who also holds the log's key signs the forged tree; the witness, which cosigned the
# tree of $fourth events, refuses it (C2SP: same size, another root).
forged=$(sql -c "SELECT observed_size || ' ' || encode(observed_root, 'base64')
                 FROM agentidp.checkpoint_refusals WHERE chain_id = 'global'")
python3 - "$work/log.pem" "$log_name" $forged > "$work/forged.note" <<'PY'
import base64, hashlib, sys
from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
name, size, root = sys.argv[2], sys.argv[3], sys.argv[4]
body = f"{name}/global\n{size}\n{root}\n"
key_id = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4]
sig = base64.b64encode(key_id + key.sign(body.encode())).decode()
sys.stdout.write(f"{body}\n\u2014 {name} {sig}\n")
PY
check "the forged tree has the size the witness cosigned" "$fourth" "$(sed -n 2p "$work/forged.note")"
status=$( { printf 'old %s\n\n' "$fourth"; cat "$work/forged.note"; } |
  curl -s -o "$work/witness.answer" -w '%{http_code}' --data-binary @- "http://127.0.0.1:$witness_port/add-checkpoint")
check "the witness refuses the forged state, signed with the log's own key (422)" 422 "$status"

sql -c "SELECT agentidp.agentidp_export('global')" > "$work/after.jsonl"
"$verify" bundle --events "$work/after.jsonl" --checkpoint "$work/before.note" --key "$log_vkey" \
  --tiles "$published/global" >"$work/verify.out" 2>"$work/verify.err"
check "agentidp-verify fails the export taken after the rewrite" 1 "$?"
check "and names the first rewritten event" "FAIL: event $rewritten seq 150 rewritten" \
  "$(grep -m1 '^FAIL: ' "$work/verify.err" | cut -d: -f1-2)"

summary "$name"
