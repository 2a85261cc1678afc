#!/usr/bin/env bash
# The chain-break procedure, end to end. A real sidecar and a real Prometheus (scraping it, with
# the repository's alerts.yml as its rule file) watch a healthy chain; a superuser edits an event
# behind the verification checkpoint with the append-only guard disabled; the sidecar's full walk
# finds it, AgentidpAuditChainIntegrityFailed's expression turns true and the alert goes pending
# or firing. Then the forensic steps of docs/incident-response.md ("Audit chain integrity failed")
# and docs/audit-log-runbook.md, run from the docs' own code blocks so docs and test cannot drift,
# must lead to the edited event and its break kind, and the REST API and the digest must agree.
#
#   bash tests/chain_break.sh [PG_PORT HTTP_PORT PROMETHEUS_PORT]   (default 5484 3930 9091)
#
# Starts and stops its own cluster, sidecar and Prometheus. Needs prometheus, jq, curl, python3.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
pg_port=${1:-5484}
http_port=${2:-3930}
prom_port=${3:-9091}
name=chain_break
db=agentidp_chain_break
incident=$REPO/docs/incident-response.md
runbook=$REPO/docs/audit-log-runbook.md
alert=AgentidpAuditChainIntegrityFailed

work=$(mktemp -d)
pids=()
trap 'end_run sidecar.log prometheus.log' EXIT

# doc_section FILE HEADING: the lines of FILE's section whose heading line is HEADING, up to the
# next heading of the same or a higher level. Fence-aware: `#` comments in code are no headings.
# (Arguments reach awk through the environment: -v would interpret their backslashes.)
doc_section() {
  HEADING=$2 awk '
    function level(line) { match(line, /^#+/); return RLENGTH }
    /^ *```/ { fence = !fence }
    !fence && /^#+ / {
      if (inside && level($0) <= depth) exit
      if ($0 == ENVIRON["HEADING"]) { inside = 1; depth = level($0) }
    }
    inside' "$1"
}

# fenced PATTERN: the first fenced code block on stdin that contains PATTERN, without its fences
# and without the indentation of the list item it sits in: what a reader copies.
fenced() {
  PATTERN=$1 awk '
    /^ *```/ {
      if (fence && index(block, ENVIRON["PATTERN"])) { printf "%s", block; exit }
      if (!fence) { indent = match($0, /[^ ]/) - 1; block = "" }
      fence = !fence; next
    }
    fence { block = block substr($0, indent + 1) "\n" }'
}

# Runs SQL as the docs' `psql` would: a DBA session on the database.
sql() { psql_at "$pg_port" -d "$db" "$@"; }

prom() { curl -sf "http://127.0.0.1:$prom_port/api/v1/$1" "${@:2}"; }
prom_query() { prom query -G --data-urlencode "query=$1" | jq -c '.data.result'; }
alert_state() {
  prom alerts | jq -r --arg a "$alert" '[.data.alerts[] | select(.labels.alertname == $a) | .state] | first // "none"'
}

log "a cluster with the extension and 300 events in three per-org chains"
start_cluster "$name" "$pg_port" "shared_preload_libraries = 'pg_agentidp'" "log_statement = 'ddl'" \
  || fatal "cannot start a cluster on $pg_port"
psql_at "$pg_port" -d postgres -c "CREATE DATABASE $db" -c "ALTER DATABASE $db SET agentidp.chain_scope = org" \
  && sql -c "CREATE EXTENSION pg_agentidp" -c "
    INSERT INTO agentidp.audit_events (action, outcome, agent_id, org_id, metadata)
    SELECT (ARRAY['agent.token.issued', 'agent.credential.rotated', 'agent.login'])[1 + i % 3],
           CASE WHEN i % 7 = 0 THEN 'failure' ELSE 'success' END,
           'agent-' || i % 11, 'org-' || i % 3, jsonb_build_object('ip', '10.0.0.' || i % 250)
      FROM generate_series(1, 300) i" \
  || fatal "cannot create the extension and the events"

# The runbook's digest export, as an operator would send it to the external store.
export_sql=$(doc_section "$runbook" "## Digests against truncation and rewrites" | fenced agentidp_chain_heads \
  | grep -m1 'agentidp_chain_heads()')
check "the runbook gives the digest export" 1 "$([ -n "$export_sql" ] && echo 1)"
digests=$(sql -At -F'|' -c "$export_sql")
check "the export has one head per chain" "org:org-0|100 org:org-1|100 org:org-2|100" \
  "$(cut -d'|' -f1,2 <<<"$digests" | sort | tr '\n' ' ' | sed 's/ $//')"

log "the sidecar and Prometheus"
(cd "$REPO" && cargo build -q -p agentidp-sidecar --bin agentidp-sidecar) || fatal "cannot build the sidecar"
sidecar=$(cd "$REPO" && cargo metadata -q --format-version 1 --no-deps | jq -r .target_directory)/debug/agentidp-sidecar
(umask 077; openssl rand -hex 32 > "$work/dev.key")
jwt_secret=$(openssl rand -hex 32)
# The incremental run happens once, when the sidecar takes the lead, and moves the checkpoint to
# each chain's head; afterwards only full walks run, every 2 s, which is what finds an edit behind
# the checkpoint. The incremental schedule fires once a year (1 January), so every later run is a
# full walk.
env -u VAULT_ADDR -u VAULT_TOKEN -u NODE_ENV \
  DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/$db?sslmode=disable" \
  ENCRYPTION_KEY_FILE="$work/dev.key" JWT_HS256_SECRET="$jwt_secret" \
  PORT="$http_port" BIND_ADDRESS=127.0.0.1 AGENTIDP_PRODUCTION=false RUST_LOG=info \
  CONTROLS_REFRESH_SECONDS=1 JOB_CHAIN_VERIFICATION_SCHEDULE='0 0 0 1 1 *' \
  JOB_CHAIN_FULL_WALK_SCHEDULE='*/2 * * * * *' \
  "$sidecar" >"$work/sidecar.log" 2>&1 &
pids+=($!)

start_prometheus "$prom_port" "$http_port"

wait_for 30 curl -sf "http://127.0.0.1:$http_port/health" -o /dev/null || fatal "the sidecar does not answer /health"
wait_for 30 curl -sf "http://127.0.0.1:$prom_port/-/ready" -o /dev/null || fatal "Prometheus is not ready"

# The expression as Prometheus loaded it from alerts.yml: the test follows the file.
expr=$(prom rules | jq -r --arg a "$alert" '.data.groups[].rules[] | select(.name == $a) | .query')
check "Prometheus loaded $alert from alerts.yml" 1 "$([ -n "$expr" ] && echo 1)"
echo "     expression: $expr"

healthy_full_walk() {
  [ "$(sql -At -c "SELECT status || ' ' || (detail->>'fullWalk') FROM agentidp.control_status
                   WHERE control_id = 'CC7.2'")" = "passing true" ]
}
scraped_intact() { [ "$(prom_query agentidp_audit_chain_integrity | jq -r '.[0].value[1]')" = 1 ]; }
rule_evaluated() {
  [ "$(prom rules | jq -r --arg a "$alert" '.data.groups[].rules[] | select(.name == $a) | .health')" = ok ]
}
wait_for 60 healthy_full_walk || fatal "no passing full walk recorded in control_status"
check "healthy: Prometheus scraped the integrity gauge at 1" 0 "$(wait_for 30 scraped_intact; echo $?)"
check "healthy: the rule was evaluated" 0 "$(wait_for 30 rule_evaluated; echo $?)"
check "healthy: the alert expression is empty" "[]" "$(prom_query "$expr")"
check "healthy: the alert is neither pending nor firing" none "$(alert_state)"
# The other CC7.2 alert, against the same real scrape: a run has just succeeded, so it is quiet.
stale_expr=$(prom rules | jq -r '.data.groups[].rules[] | select(.name == "AgentidpChainVerificationNotRunning") | .query')
check "healthy: AgentidpChainVerificationNotRunning's expression is empty" "[]" "$(prom_query "$stale_expr")"

log "a superuser edits an event behind the checkpoint, with the append-only guard disabled"
# A hidden failure: the attacker turns a failed action into a success. The append-only trigger is
# ENABLE ALWAYS, so session_replication_role cannot bypass it; disabling it can, and the attacker
# re-enables it so the catalog looks untouched.
read -r target_id target_chain target_seq < <(sql -At -F' ' -c "
  SELECT event_id, chain_id, seq FROM agentidp.audit_events
   WHERE chain_id = 'org:org-1' AND outcome = 'failure' AND seq >= 50 ORDER BY seq LIMIT 1")
check "the checkpoint is at the head, past the event" t "$(sql -At -c "
  SELECT seq > $target_seq FROM agentidp.chain_checkpoints WHERE chain_id = '$target_chain'")"
# The server log is appended to across runs: only what follows this line is this run's tampering.
log_lines=$(wc -l < "$RUN_DIR/$name.log")
sql -c "BEGIN" \
  -c "ALTER TABLE agentidp.audit_events DISABLE TRIGGER agentidp_append_only" \
  -c "UPDATE agentidp.audit_events SET outcome = 'success' WHERE event_id = '$target_id'" \
  -c "ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER agentidp_append_only" \
  -c "COMMIT" || fatal "cannot tamper with the event"

check "the chain holds who turned the guard off, and on again" \
  "DISABLE TRIGGER agentidp_append_only postgres|ENABLE ALWAYS TRIGGER agentidp_append_only postgres" \
  "$(sql -At -c "SELECT string_agg((metadata->'subcommands'->>0) || ' ' || (metadata->>'role'), '|' ORDER BY seq)
                 FROM agentidp.audit_events WHERE action = 'agentidp.ddl'")"

cc72_failing() {
  [ "$(sql -At -c "SELECT status FROM agentidp.control_status WHERE control_id = 'CC7.2'")" = failing ]
}
expr_true() { [ "$(prom_query "$expr" | jq length)" -gt 0 ]; }
alert_raised() { [[ "$(alert_state)" =~ ^(pending|firing)$ ]]; }
check "the sidecar's job records CC7.2 failing within 60 s" 0 "$(wait_for 60 cc72_failing; echo $?)"
check "the alert expression becomes true within 30 s" 0 "$(wait_for 30 expr_true; echo $?)"
check "the alert is pending or firing within 30 s" 0 "$(wait_for 30 alert_raised; echo $?)"
echo "     alert state: $(alert_state)"
check "the leader logged the break with the event's id" yes \
  "$(grep 'audit chain integrity check FAILED' "$work/sidecar.log" | grep -q "$target_id" && echo yes || echo no)"

log "incident response: the steps of \"Audit chain integrity failed\""
section=$(doc_section "$incident" "## Audit chain integrity failed")

# Step 2: the verdict and the sidecar's view.
step2=$(fenced agentidp_verify_chain <<<"$section")
check "step 2 gives the verdict SQL" 1 "$([ -n "$step2" ] && echo 1)"
out=$(sql -At -F'|' <<<"$step2")
verdict=$(sed -n 1p <<<"$out" | cut -d'|' -f2,4-6)
detail=$(sed -n 2p <<<"$out")
check "step 2: agentidp_verify_chain() names the edited event" "f|$target_id|content_edited|$target_chain" "$verdict"
check "step 2: CC7.2 detail names it too, from a full walk" "$target_id content_edited $target_chain true" \
  "$(jq -r '"\(.brokenAtEventId) \(.breakKind) \(.brokenChainId) \(.fullWalk)"' <<<"$detail")"
check "step 2: CC7.2 detail has exactly the fields the step lists" \
  "breakKind brokenAtEventId brokenChainId checkedCount fullWalk" "$(jq -r 'keys | join(" ")' <<<"$detail")"

# Step 3: the evidence copies, with `psql` as the docs run it (connection from the environment).
step3=$(fenced '\copy' <<<"$section")
check "step 3 gives the evidence copies" 1 "$([ -n "$step3" ] && echo 1)"
mkdir "$work/evidence"
(cd "$work/evidence" && PATH=$PG_BIN:$PATH PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres PGDATABASE=$db \
  bash -euo pipefail -c "$step3" >/dev/null)
# 300 events and the two the trail added: the guard turned off, and on again.
check "step 3: the events copy holds every event and a header" \
  "$(sql -At -c "SELECT count(*) + 1 FROM agentidp.audit_events")" "$(cat "$work"/evidence/audit_events-*.csv | wc -l)"
check "step 3: the checkpoints copy has its header" 1 \
  "$(head -1 "$work"/evidence/chain_checkpoints-*.csv | grep -c '^chain_id,')"

log "the audit-log runbook: \"What a break means, and what to do\""
what=$(doc_section "$runbook" "## What a break means, and what to do")
check "its table explains the break kind found" 1 "$(grep -c '^| `content_edited` |' <<<"$what")"

# Step 3 there: the broken event and its neighbours.
neighbours_sql=$(fenced is_broken <<<"$what")
check "the runbook gives the neighbours query" 1 "$([ -n "$neighbours_sql" ] && echo 1)"
neighbours=$(sql -A -F'|' -P footer=off <<<"$neighbours_sql" \
  | awk -F'|' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
               { print $col["seq"] "|" $col["event_id"] "|" $col["outcome"] "|" $col["is_broken"] }')
check "neighbours: the event and the one before and after it" "$((target_seq - 1)) $target_seq $((target_seq + 1))" \
  "$(cut -d'|' -f1 <<<"$neighbours" | paste -sd' ')"
check "neighbours: the one marked broken is the edited event, as edited" "$target_seq|$target_id|success|t" \
  "$(grep '|t$' <<<"$neighbours")"

# Step 4: recompute the hashes with "the SQL above", the runbook's plain-SQL recomputation.
recompute_sql=$(doc_section "$runbook" "## The encoding (version 1)" | fenced hash_matches)
check "the runbook gives the recomputation" 1 "$([ -n "$recompute_sql" ] && echo 1)"
mismatches=$(sql -At -F'|' <<<"$recompute_sql" | grep '|f$')
check "recomputation: only the edited event's hash no longer matches" "$target_chain|$target_seq|f" "$mismatches"

# Step 5: the server log around the event's time shows who disabled the guard.
check "who: the server log has the trigger being disabled" 1 \
  "$(tail -n +$((log_lines + 1)) "$RUN_DIR/$name.log" \
     | grep -c 'statement: ALTER TABLE agentidp.audit_events DISABLE TRIGGER agentidp_append_only')"

# The incident response's step 5 (the runbook's step 6): the exported digest of the broken chain.
IFS='|' read -r _ digest_seq digest_hash _ < <(grep "^$target_chain|" <<<"$digests")
fill() {
  local text=${1//<chain_id>/$target_chain}
  text=${text//<seq>/$digest_seq}
  printf '%s\n' "${text//<hex>/$digest_hash}"
}
verify_digest_sql=$(grep -o '`SELECT \* FROM agentidp.agentidp_verify_digest([^`]*`' <<<"$section" | tr -d '`')
check "step 5 gives the digest verification" 1 "$([ -n "$verify_digest_sql" ] && echo 1)"
check "step 5: agentidp_verify_digest repeats the break, as the step says" "f|$target_id|content_edited|$target_chain" \
  "$(sql -At -F'|' -c "$(fill "$verify_digest_sql")" | cut -d'|' -f1,3-5)"
head_sql=$(fenced matches_digest <<<"$section")
check "step 5 gives the direct comparison" 1 "$([ -n "$head_sql" ] && echo 1)"
check "step 5: the chain still holds the exported head (the edit left the hashes)" t \
  "$(sql -At <<<"$(fill "$head_sql")")"

# Step 6: the auditors' view, through the REST API with a token of scope audit:read.
step6=$(fenced /api/v1/audit/verify <<<"$section")
check "step 6 gives the API call" 1 "$([ -n "$step6" ] && echo 1)"
api=$(S=http://127.0.0.1:$http_port TOKEN=$(JWT_HS256_SECRET=$jwt_secret python3 "$REPO/tests/dev_token.py") \
  bash -c "$step6")
check "step 6: /api/v1/audit/verify says verified=false at the same event" "false $target_id" \
  "$(jq -r '"\(.verified) \(.brokenAtEventId)"' <<<"$api")"

key=$(cat "$work/dev.key")
check "no log line holds the encryption key or the JWT secret" 0 \
  "$(cat "$work/sidecar.log" "$work/prometheus.log" "$RUN_DIR/$name.log" | grep -c -e "$key" -e "$jwt_secret")"
summary chain_break
