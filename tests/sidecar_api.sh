#!/usr/bin/env bash
# The compliance API of a real, running sidecar checked against the OpenAPI spec
# (../shared/spec/compliance-openapi.yaml) by schemathesis, and its /metrics scrape by promtool.
#
# Schemathesis generates requests for every operation of the spec (its examples, then boundary
# and invalid values, then random ones) and checks every response: documented status code and
# content type, body against the response schema, documented headers' types, invalid input
# rejected, valid input accepted, auth not ignored, other methods answered with 405 and Allow.
# It runs once per kind of caller the spec distinguishes: a valid token (200 and 400), none or
# an invalid one (401), one without the audit:read scope (403), and against a second sidecar
# whose rate limits are tiny (429); each run must also have seen the status it is meant to
# reach. Headers the spec documents but schemathesis cannot demand (it checks their types only
# when present) are checked with curl. Finally promtool lints a real scrape of each sidecar.
#
#   bash tests/sidecar_api.sh PG_PORT [HTTP_PORT]   (HTTP_PORT default 3910; HTTP_PORT+1 too)
#
# Starts and stops its own cluster and sidecars. Needs schemathesis in $RUN_DIR/schemathesis-venv
# (tests/setup.sh), promtool, jq, curl, openssl, python3.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
pg_port=${1:?usage: sidecar_api.sh PG_PORT [HTTP_PORT]}
http_port=${2:-3910}
limited_port=$((http_port + 1))
name=sidecar_api
db=agentidp_api
spec=$REPO/../shared/spec/compliance-openapi.yaml
schemathesis=$RUN_DIR/schemathesis-venv/bin/schemathesis
events=48
# The tiny limit of the second sidecar, per minute and key.
small_limit=3

work=$(mktemp -d)
pids=()
trap 'end_run sidecar.log limited.log' EXIT

for cmd in promtool jq curl openssl python3; do
  command -v "$cmd" >/dev/null || fatal "$cmd not found (run tests/setup.sh)"
done
[ -f "$spec" ] || fatal "no spec at $spec"
[ -x "$schemathesis" ] || fatal "no schemathesis at $schemathesis (run tests/setup.sh)"

log "a cluster with the extension and $events audit events, one an hour"
start_cluster "$name" "$pg_port" "shared_preload_libraries = 'pg_agentidp'" \
  || fatal "cannot start a cluster on $pg_port"
psql_at "$pg_port" -d postgres -c "CREATE DATABASE $db" \
  && psql_at "$pg_port" -d "$db" -c "CREATE EXTENSION pg_agentidp" -c "
    INSERT INTO agentidp.audit_events (occurred_at, action, outcome, agent_id, org_id)
    SELECT date_trunc('hour', now()) - make_interval(hours => $events - i), 'agent.login',
           'success', 'agent-' || i % 5, 'org-' || i % 2
      FROM generate_series(1, $events) i" \
  || fatal "cannot create the extension and the events"

log "two sidecars: one with rate limits out of the way, one with tiny ones"
(cd "$REPO" && cargo build -q -p agentidp-sidecar --bin agentidp-sidecar) || fatal "cannot build the sidecar"
sidecar=$(cd "$REPO" && cargo metadata -q --format-version 1 --no-deps | jq -r .target_directory)/debug/agentidp-sidecar
(umask 077; openssl rand -hex 32 > "$work/dev.key")
jwt_secret=$(openssl rand -hex 32)

# start_sidecar PORT LIMIT LOG: a sidecar on loopback whose two rate limits are LIMIT per minute.
# As leader it runs the incremental verification once, at start (its schedule fires on 1 January
# only), and a full walk every 5 s, so that both show in its metrics, apart.
start_sidecar() {
  env -u VAULT_ADDR -u VAULT_TOKEN -u NODE_ENV \
    DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/$db?sslmode=disable" \
    ENCRYPTION_KEY_FILE="$work/dev.key" JWT_HS256_SECRET="$jwt_secret" \
    PORT="$1" BIND_ADDRESS=127.0.0.1 AGENTIDP_PRODUCTION=false RUST_LOG=info \
    RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE="$2" RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE="$2" \
    CONTROLS_REFRESH_SECONDS=1 JOB_CHAIN_VERIFICATION_SCHEDULE='0 0 0 1 1 *' \
    JOB_CHAIN_FULL_WALK_SCHEDULE='*/5 * * * * *' \
    "$sidecar" >"$work/$3" 2>&1 &
  pids+=($!)
}
scrape() { curl -sf "http://127.0.0.1:$1/metrics"; }
# The leader's first run of every job is over, and this replica serves the results.
jobs_ran() {
  local m job
  m=$(scrape "$http_port") || return 1
  for job in chain_verification chain_full_walk secrets_rotation encryption_at_rest tls_enforcement webhook_dead_letters key_refresh; do
    grep -q "^agentidp_job_runs_total{job_name=\"$job\",result=\"success\"}" <<<"$m" || return 1
  done
  grep -q '^agentidp_audit_chain_integrity 1$' <<<"$m"
}

start_sidecar "$http_port" 1000000 sidecar.log
wait_for 60 jobs_ran || fatal "the sidecar did not run its jobs within 60 s"
# Started only now, so that the first one is the leader whose job metrics are checked below.
start_sidecar "$limited_port" "$small_limit" limited.log
wait_for 30 curl -sf "http://127.0.0.1:$limited_port/ready" -o /dev/null || fatal "the second sidecar is not ready"

# mint CLAIMS_JSON: an HS256 token with exactly these claims, signed with the sidecar's secret.
mint() {
  JWT_HS256_SECRET=$jwt_secret CLAIMS=$1 python3 -c '
import base64, hashlib, hmac, os
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
signing_input = b64(b"{\"alg\":\"HS256\",\"typ\":\"JWT\"}") + "." + b64(os.environ["CLAIMS"].encode())
key = os.environ["JWT_HS256_SECRET"].encode()
print(signing_input + "." + b64(hmac.new(key, signing_input.encode(), "sha256").digest()))'
}
now=$(date +%s)
token=$(JWT_HS256_SECRET=$jwt_secret python3 "$REPO/tests/dev_token.py")
foreign_token=$(JWT_HS256_SECRET=$(openssl rand -hex 32) python3 "$REPO/tests/dev_token.py")
expired_token=$(mint "{\"sub\":\"dev\",\"scope\":\"audit:read\",\"exp\":$((now - 3600))}")
unscoped_token=$(mint "{\"sub\":\"dev\",\"scope\":\"agents:read\",\"exp\":$((now + 3600))}")

# The spec's `fromDate <= toDate` is prose, not schema, so schemathesis generates inverted ranges
# as valid input and would call their documented 400 a rejected valid request. The hook puts such
# a pair in order; the inverted range itself is checked with curl below.
cat >"$work/hooks.py" <<'PY'
from datetime import datetime

import schemathesis


def instant(value):
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else None


@schemathesis.hook
def map_query(ctx, query):
    if query:
        start, end = instant(query.get("fromDate")), instant(query.get("toDate"))
        if start and end and start > end:
            query["fromDate"], query["toDate"] = query["toDate"], query["fromDate"]
    return query
PY

# fuzz NAME PORT EXAMPLES [schemathesis args...]: one bounded, seeded run of every operation with
# every check; passes when schemathesis finds nothing. Its report is left in $work/NAME.ndjson.
fuzz() {
  local run=$1 port=$2 examples=$3; shift 3
  (cd "$work" && SCHEMATHESIS_HOOKS="$work/hooks.py" "$schemathesis" run "$spec" \
     --url "http://127.0.0.1:$port/api/v1" --checks all --seed 20260331 --max-examples "$examples" \
     --generation-database none --request-timeout 10 --no-color \
     --report ndjson --report-ndjson-path "$work/$run.ndjson" "$@" >"$work/$run.log" 2>&1)
  local rc=$?
  [ "$rc" -eq 0 ] || sed -n '/FAILURES/,$p' "$work/$run.log" | head -n 60
  check "schemathesis $run: no failure" 0 "$rc"
  echo "     $(grep -E 'generated|No issues|failure' "$work/$run.log" | tr -s ' ' | paste -sd' ')"
}
# statuses NAME OPERATION: the distinct statuses schemathesis got for "GET /audit/verify" etc.
statuses() {
  jq -r '.ScenarioFinished?.recorder.interactions // {} | .[]
         | "\(.request.method) \(.request.uri | sub("\\?.*"; "") | sub("^.*/api/v1"; "")) \(.response.status_code)"' \
    "$work/$1.ndjson" | awk -v op="$2" '$1 " " $2 == op { print $3 }' | sort -u | paste -sd' '
}

log "schemathesis: every operation, every check"
fuzz valid_token "$http_port" 200 -H "Authorization: Bearer $token"
# The 401s are schemathesis's own requests without the token (check ignored_auth).
check "valid token: verify answered 200, 400 for invalid dates, 401 without the token" "200 400 401" \
  "$(statuses valid_token "GET /audit/verify")"
check "valid token: controls answered 200" 200 "$(statuses valid_token "GET /compliance/controls")"
check "valid token: other methods answered 405" 405 "$(statuses valid_token "POST /audit/verify")"
fuzz no_token "$http_port" 50
check "no token: verify answered 401 only" 401 "$(statuses no_token "GET /audit/verify")"
check "no token: controls (public) answered 200" 200 "$(statuses no_token "GET /compliance/controls")"
fuzz foreign_token "$http_port" 50 -H "Authorization: Bearer $foreign_token"
check "token signed with another secret: 401 only" 401 "$(statuses foreign_token "GET /audit/verify")"
fuzz expired_token "$http_port" 50 -H "Authorization: Bearer $expired_token"
check "expired token: 401 only" 401 "$(statuses expired_token "GET /audit/verify")"
fuzz unscoped_token "$http_port" 50 -H "Authorization: Bearer $unscoped_token"
check "token without audit:read: 403, 401 without the token" "401 403" \
  "$(statuses unscoped_token "GET /audit/verify")"
# Both windows of the second sidecar are used up first, so that the whole run is over the limit.
for _ in $(seq "$small_limit"); do
  curl -s -o /dev/null "http://127.0.0.1:$limited_port/api/v1/compliance/controls"
  curl -s -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$limited_port/api/v1/audit/verify"
done
fuzz rate_limited "$limited_port" 20 -H "Authorization: Bearer $token"
check "over the limit: verify answered 429, 401 without the token" "401 429" \
  "$(statuses rate_limited "GET /audit/verify")"
check "over the limit: controls answered 429" 429 "$(statuses rate_limited "GET /compliance/controls")"

log "headers schemathesis cannot require, on the running sidecar"
# get PORT PATH [curl args...]: status, headers and body of one request, in $work/head, $work/body.
get() {
  local port=$1 path=$2; shift 2
  curl -s -o "$work/body" -D "$work/head" -w '%{http_code}' "$@" "http://127.0.0.1:$port/api/v1$path"
}
header() { grep -i "^$1:" "$work/head" | cut -d' ' -f2- | tr -d '\r'; }
# rate_headers LIMIT: the three X-RateLimit-* headers are integers, the limit is LIMIT and the
# window ends within a minute.
rate_headers() {
  local reset remaining
  reset=$(header x-ratelimit-reset) remaining=$(header x-ratelimit-remaining)
  [ "$(header x-ratelimit-limit)" = "$1" ] && [[ $remaining =~ ^[0-9]+$ ]] && [ "$remaining" -lt "$1" ] \
    && [[ $reset =~ ^[0-9]+$ ]] && [ "$reset" -ge "$(date +%s)" ] && [ "$reset" -le $(($(date +%s) + 61)) ]
}
bearer=(-H "Authorization: Bearer $token")

check "controls: 200" 200 "$(get "$http_port" /compliance/controls)"
check "controls: Cache-Control" "public, max-age=60" "$(header cache-control)"
check "controls: JSON" application/json "$(header content-type)"
check "controls: X-RateLimit-* headers" 0 "$(rate_headers 1000000; echo $?)"
check "controls: five controls, none unknown after the jobs ran" "CC6.1 CC6.7 CC7.2 CC9.2 CC7.1 unknown:0" \
  "$(jq -r '"\([.controls[].id] | join(" ")) unknown:\([.controls[] | select(.status == "unknown")] | length)"' "$work/body")"

check "verify: 200" 200 "$(get "$http_port" /audit/verify "${bearer[@]}")"
check "verify: X-RateLimit-* headers" 0 "$(rate_headers 1000000; echo $?)"
check "verify: the whole chain, intact" "true $events null" \
  "$(jq -r '"\(.verified) \(.checkedCount) \(.brokenAtEventId)"' "$work/body")"
# The 11th to the 6th newest events: six, at whole hours, so the bounds are inclusive.
bound() {
  psql_at "$pg_port" -d "$db" -At -c "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
    FROM agentidp.audit_events ORDER BY occurred_at DESC OFFSET $1 LIMIT 1"
}
from=$(bound 10) to=$(bound 5)
check "verify a range: 200" 200 "$(get "$http_port" "/audit/verify?fromDate=$from&toDate=$to" "${bearer[@]}")"
check "verify a range: both bounds inclusive, echoed" "true 6 ${from%Z}.000Z ${to%Z}.000Z" \
  "$(jq -r '"\(.verified) \(.checkedCount) \(.fromDate) \(.toDate)"' "$work/body")"
check "verify an inverted range: 400" 400 "$(get "$http_port" "/audit/verify?fromDate=$to&toDate=$from" "${bearer[@]}")"
check "verify an inverted range: VALIDATION_ERROR with the reason" \
  "VALIDATION_ERROR fromDate must be before or equal to toDate." "$(jq -r '"\(.code) \(.details.reason)"' "$work/body")"

# Edges the generators rarely or never reach: the echo must still be a valid date-time.
check "verify a bound whose UTC form is in year 10000: 200" 200 \
  "$(get "$http_port" "/audit/verify?fromDate=9999-12-31T23:59:59-23:59" "${bearer[@]}")"
check "verify a bound whose UTC form is in year 10000: echoed with its own offset" \
  "9999-12-31T23:59:59.000-23:59" "$(jq -r .fromDate "$work/body")"
check "verify a leap second at the end of a UTC day: echoed" "200 2016-12-31T23:59:60.000Z" \
  "$(get "$http_port" "/audit/verify?toDate=2016-12-31T15:59:60-08:00" "${bearer[@]}") $(jq -r .toDate "$work/body")"
check "verify a leap second elsewhere: 400" 400 \
  "$(get "$http_port" "/audit/verify?toDate=2026-01-01T00:00:60Z" "${bearer[@]}")"

check "no token: 401" 401 "$(get "$http_port" /audit/verify)"
check "no token: WWW-Authenticate names the scheme" Bearer "$(header www-authenticate)"
check "no token: UNAUTHORIZED" UNAUTHORIZED "$(jq -r .code "$work/body")"
check "no audit:read: 403 INSUFFICIENT_SCOPE" "403 INSUFFICIENT_SCOPE" \
  "$(get "$http_port" /audit/verify -H "Authorization: Bearer $unscoped_token") $(jq -r .code "$work/body")"

check "controls over the limit: 429" 429 "$(get "$limited_port" /compliance/controls)"
check "controls over the limit: X-RateLimit-Remaining 0" 0 "$(header x-ratelimit-remaining)"
check "controls over the limit: X-RateLimit-* headers" 0 "$(rate_headers "$small_limit"; echo $?)"
# A client id the second sidecar has not seen yet counts down to the refusal.
fresh_token=$(mint "{\"sub\":\"fresh\",\"scope\":\"audit:read\",\"exp\":$((now + 3600))}")
for _ in $(seq "$small_limit"); do get "$limited_port" /audit/verify -H "Authorization: Bearer $fresh_token" >/dev/null; done
check "verify over the limit: 429" 429 "$(get "$limited_port" /audit/verify -H "Authorization: Bearer $fresh_token")"
check "verify over the limit: RATE_LIMIT_EXCEEDED" RATE_LIMIT_EXCEEDED "$(jq -r .code "$work/body")"
check "verify over the limit: X-RateLimit-Remaining 0" 0 "$(header x-ratelimit-remaining)"
check "verify over the limit: X-RateLimit-* headers" 0 "$(rate_headers "$small_limit"; echo $?)"

log "metrics: promtool on real scrapes"
scrape "$http_port" >"$work/metrics" || fatal "cannot scrape the leader's /metrics"
scrape "$limited_port" >"$work/limited.metrics" || fatal "cannot scrape the follower's /metrics"
for m in metrics limited.metrics; do
  problems=$(promtool check metrics <"$work/$m" 2>&1)
  check "promtool check metrics on the $m scrape: exit 0" 0 "$?"
  check "promtool check metrics on the $m scrape: no problems" "" "$problems"
done
# count REGEX: lines of the leader's scrape matching REGEX.
count() { grep -cE "$1" "$work/metrics"; }
check "metrics: every job ran, and succeeded" 7 \
  "$(count '^agentidp_job_runs_total\{job_name="[a-z_]+",result="success"\} [1-9]')"
check "metrics: the incremental run and the full walks are counted apart" "1 more than 1" \
  "$(awk '/^agentidp_job_runs_total\{job_name="chain_verification",result="success"\}/ { i = $2 }
          /^agentidp_job_runs_total\{job_name="chain_full_walk",result="success"\}/ { f = $2 }
          END { print i, (f > 1 ? "more than 1" : f) }' "$work/metrics")"
check "metrics: a last-success time per job" 7 "$(count '^agentidp_job_last_success_timestamp_seconds\{job_name=')"
check "metrics: a duration histogram per job" 7 "$(count '^agentidp_job_duration_seconds_count\{job_name=')"
check "metrics: one status per control" 5 "$(count '^agentidp_control_status\{.*\} 1$')"
check "metrics: chain intact, key loaded, leader" 3 \
  "$(count '^(agentidp_audit_chain_integrity|agentidp_encryption_key_loaded|agentidp_is_leader) 1$')"
check "metrics: dead letters counted" 1 "$(count '^agentidp_webhook_dead_letters 0$')"
check "metrics: verify requests by status" 4 \
  "$(count '^agentidp_http_requests_total\{method="GET",route="/api/v1/audit/verify",status="(200|400|401|403)"\}')"
# Schemathesis probed paths outside the spec: they must not have become label values.
check "metrics: routes are templates, any other path is unmatched" "/api/v1/audit/verify /api/v1/compliance/controls /metrics unmatched" \
  "$(grep -o '^agentidp_http_requests_total{[^}]*' "$work/metrics" | grep -o 'route="[^"]*"' | cut -d'"' -f2 | sort -u | paste -sd' ')"
check "metrics: the follower counted its 429s and is not leader" 2/1 \
  "$(grep -cE '^agentidp_http_requests_total\{method="GET",route="/api/v1/(audit/verify|compliance/controls)",status="429"\}' "$work/limited.metrics")/$(grep -c '^agentidp_is_leader 0$' "$work/limited.metrics")"

key=$(cat "$work/dev.key")
check "no log line or report holds the encryption key or the JWT secret" 0 \
  "$(cat "$work"/*.log "$work"/*.ndjson "$RUN_DIR/$name.log" | grep -c -e "$key" -e "$jwt_secret")"
summary sidecar_api
