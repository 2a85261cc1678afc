#!/usr/bin/env bash
# The compliance API of a real, running sidecar checked against the OpenAPI spec
# (../shared/spec/compliance-openapi.yaml) by schemathesis, then its transparency log against the
# project's own (sidecar/spec/transparency-openapi.yaml), and its /metrics scrape by promtool.
#
# Schemathesis generates requests for every operation of the spec (its examples, then boundary
# and invalid values, then random ones) and checks every response: documented status code and
# content type, body against the response schema, documented headers' types, invalid input
# rejected, valid input accepted, auth not ignored, other methods answered with 405 and Allow.
# It runs once per kind of caller the spec distinguishes: a valid token (200 and 400), none or
# an invalid one (401), one without the audit:read scope (403), and against a second sidecar
# whose rate limits are tiny (429); each run must also have seen the status it is meant to
# reach. Headers the spec documents but schemathesis cannot demand (it checks their types only
# when present) are checked with curl. The transparency spec gets the same runs once both
# sidecars sign (a key file signer, tiles served) and every chain is signed up to its head; curl
# then checks what a schema cannot say: the key is the key file's, the note verifies, tiles hold
# the leaf hashes, pages follow each other, an event not yet signed is a 409. Finally promtool
# lints a real scrape of each sidecar.
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
tlog_spec=$REPO/sidecar/spec/transparency-openapi.yaml
# Each spec, and the base URL path its paths are relative to.
declare -A spec_file=([shared]=$spec [transparency]=$tlog_spec) spec_base=([shared]=/api/v1 [transparency]=)
schemathesis=$RUN_DIR/schemathesis-venv/bin/schemathesis
events=48
# The transparency spec's example event id (the runbook's worked vector), given to the oldest
# event so that the example reaches an inclusion proof.
example_event=0b7e5c1a-2d3f-4e5a-8b9c-adbecfd0e1f2
# Events added for the transparency log, so that the global chain has a full tile and a partial
# one: 256 + 52 leaves.
more_events=260
log_name=agentidp.test
# The tiny limit of the second sidecar, per minute and key.
small_limit=3

work=$(mktemp -d)
pids=()
trap 'end_run sidecar.log limited.log' EXIT

for cmd in promtool jq curl openssl python3; do
  command -v "$cmd" >/dev/null || fatal "$cmd not found (run tests/setup.sh)"
done
[ -f "$spec" ] || fatal "no spec at $spec"
[ -f "$tlog_spec" ] || fatal "no spec at $tlog_spec"
[ -x "$schemathesis" ] || fatal "no schemathesis at $schemathesis (run tests/setup.sh)"

log "a cluster with the extension and $events audit events, one an hour"
start_cluster "$name" "$pg_port" "shared_preload_libraries = 'pg_agentidp'" \
  || fatal "cannot start a cluster on $pg_port"
psql_at "$pg_port" -d postgres -c "CREATE DATABASE $db" \
  && psql_at "$pg_port" -d "$db" -c "CREATE EXTENSION pg_agentidp" -c "
    INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome, agent_id, org_id)
    SELECT CASE i WHEN 1 THEN '$example_event'::uuid ELSE gen_random_uuid() END,
           date_trunc('hour', now()) - make_interval(hours => $events - i), 'agent.login',
           'success', 'agent-' || i % 5, 'org-' || i % 2
      FROM generate_series(1, $events) i" \
  || fatal "cannot create the extension and the events"

log "two sidecars: one with rate limits out of the way, one with tiny ones"
(cd "$REPO" && cargo build -q -p agentidp-sidecar --bin agentidp-sidecar) || fatal "cannot build the sidecar"
sidecar=$(cd "$REPO" && cargo metadata -q --format-version 1 --no-deps | jq -r .target_directory)/debug/agentidp-sidecar
(umask 077; openssl rand -hex 32 > "$work/dev.key")
(umask 077; openssl genpkey -algorithm ed25519 -out "$work/log.pem") || fatal "cannot make the log key"
jwt_secret=$(openssl rand -hex 32)

# start_sidecar PORT LIMIT LOG: a sidecar on loopback whose two rate limits are LIMIT per minute.
# As leader it runs the incremental verification once, at start (its schedule fires on 1 January
# only), and a full walk every 5 s, so that both show in its metrics, apart; and it seals and
# signs every second. Both load the signer, since each serves the verifier key.
start_sidecar() {
  env -u VAULT_ADDR -u VAULT_TOKEN -u NODE_ENV \
    DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/$db?sslmode=disable" \
    ENCRYPTION_KEY_FILE="$work/dev.key" JWT_HS256_SECRET="$jwt_secret" \
    PORT="$1" BIND_ADDRESS=127.0.0.1 AGENTIDP_PRODUCTION=false RUST_LOG=info \
    RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE="$2" RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE="$2" \
    CONTROLS_REFRESH_SECONDS=1 JOB_CHAIN_VERIFICATION_SCHEDULE='0 0 0 1 1 *' \
    JOB_CHAIN_FULL_WALK_SCHEDULE='*/5 * * * * *' \
    CHECKPOINT_SIGNER=file CHECKPOINT_KEY_FILE="$work/log.pem" CHECKPOINT_LOG_NAME="$log_name" \
    CHECKPOINT_INTERVAL_SECONDS=1 TLOG_TILES_ENABLED=true \
    "$sidecar" >"$work/$3" 2>&1 &
  pids+=($!)
}
scrape() { curl -sf "http://127.0.0.1:$1/metrics"; }
# The leader's first run of every job is over, and this replica serves the results.
jobs_ran() {
  local m job
  m=$(scrape "$http_port") || return 1
  for job in chain_verification chain_full_walk secrets_rotation encryption_at_rest tls_enforcement webhook_dead_letters key_refresh sealing; do
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

# The specs state two orderings in prose, not schema: `fromDate <= toDate` (shared) and
# `oldSize <= newSize` (transparency). Schemathesis generates inverted pairs as valid input and
# would call their documented 400 a rejected valid request, so the hook puts such a pair in
# order; the inverted pairs themselves are checked with curl below. It maps whole cases, not
# query strategies: the coverage phase builds its cases without strategies, and applies case
# hooks only.
#
# Schemathesis validates a body against its schema only when it can read the body's media type,
# which it can for JSON alone: the deserializers read the others as the transparency spec says,
# strictly, so that the note patterns, the event lines and the tile lengths are checked too.
cat >"$work/hooks.py" <<'PY'
import json
from datetime import datetime

import schemathesis


def instant(value):
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else None


def whole(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def in_order(query, first, second, read):
    a, b = read(query.get(first)), read(query.get(second))
    if a is not None and b is not None and a > b:
        query[first], query[second] = query[second], query[first]


@schemathesis.hook
def map_case(ctx, case):
    if case.query:
        in_order(case.query, "fromDate", "toDate", instant)
        in_order(case.query, "oldSize", "newSize", whole)
    return case


@schemathesis.deserializer("text/plain")
def text(ctx, response):
    return response.content.decode("utf-8")


def unique_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key is repeated: {keys}")
    return dict(pairs)


# The spec's schema describes the body read as the array of its lines: each line one JSON value,
# each ending in a newline (so no blank line, and nothing after the last newline).
@schemathesis.deserializer("application/x-ndjson")
def json_lines(ctx, response):
    body = response.content.decode("utf-8")
    if body and not body.endswith("\n"):
        raise ValueError("the last line does not end in a newline")
    return [json.loads(line, object_pairs_hook=unique_keys) for line in body.split("\n")[:-1]]


# One character per byte, so that the schema's minLength, maxLength and pattern count bytes.
@schemathesis.deserializer("application/octet-stream")
def octets(ctx, response):
    return response.content.decode("latin-1")
PY

# fuzz SPEC NAME PORT EXAMPLES [schemathesis args...]: one bounded, seeded run of every operation
# of SPEC (shared or transparency) with every check; passes when schemathesis finds nothing. Its
# report is left in $work/NAME.ndjson.
fuzz() {
  local file=${spec_file[$1]} base=${spec_base[$1]} run=$2 port=$3 examples=$4; shift 4
  (cd "$work" && SCHEMATHESIS_HOOKS="$work/hooks.py" "$schemathesis" run "$file" \
     --url "http://127.0.0.1:$port$base" --checks all --seed 20260331 --max-examples "$examples" \
     --generation-database none --request-timeout 10 --no-color \
     --report ndjson --report-ndjson-path "$work/$run.ndjson" "$@" >"$work/$run.log" 2>&1)
  local rc=$?
  [ "$rc" -eq 0 ] || sed -n '/FAILURES/,$p' "$work/$run.log" | head -n 60
  check "schemathesis $run: no failure" 0 "$rc"
  echo "     $(grep -E 'generated|No issues|failure' "$work/$run.log" | tr -s ' ' | paste -sd' ')"
}
# statuses NAME OPERATION: the distinct statuses schemathesis got for "GET /audit/verify" etc.:
# the method sent, and the path template of the operation the request was made for (relative to
# the spec's base), so that the requests for one template are counted together whatever the
# path parameters were.
statuses() {
  jq -r '.ScenarioFinished?.recorder // empty | .label as $op | .interactions // {} | .[]
         | "\(.request.method) \($op | sub("^[A-Z]+ "; "")) \(.response.status_code)"' \
    "$work/$1.ndjson" | awk -v op="$2" '$1 " " $2 == op { print $3 }' | sort -u | paste -sd' '
}

# request PORT PATH [curl args...]: status, headers and body of one request, in $work/head,
# $work/body. get PORT PATH: the same, PATH under /api/v1.
request() {
  local port=$1 path=$2; shift 2
  curl -s -o "$work/body" -D "$work/head" -w '%{http_code}' "$@" "http://127.0.0.1:$port$path"
}
get() { local port=$1 path=$2; shift 2; request "$port" "/api/v1$path" "$@"; }
header() { grep -i "^$1:" "$work/head" | cut -d' ' -f2- | tr -d '\r'; }
bearer=(-H "Authorization: Bearer $token")

# over_limits: both windows of the second sidecar used up, with at least 30 s of each left, so
# that a whole run is over the limit. A window starts at its key's first request after the last
# one ended; the audit one is kept in the database and counts every replica's requests.
over_limits() {
  local attempt reset_ip reset_client left
  for attempt in 1 2 3; do
    for _ in $(seq "$small_limit"); do
      get "$limited_port" /compliance/controls >/dev/null
      get "$limited_port" /audit/verify "${bearer[@]}" >/dev/null
    done
    get "$limited_port" /compliance/controls >/dev/null; reset_ip=$(header x-ratelimit-reset)
    get "$limited_port" /audit/verify "${bearer[@]}" >/dev/null; reset_client=$(header x-ratelimit-reset)
    left=$(( (reset_ip < reset_client ? reset_ip : reset_client) - $(date +%s) ))
    [ "$left" -ge 30 ] && return 0
    sleep "$(( (reset_ip > reset_client ? reset_ip : reset_client) - $(date +%s) + 1 ))" 2>/dev/null
  done
  return 1
}

# callers SPEC PREFIX: one run of SPEC per kind of caller, reports in $work/PREFIX<kind>.ndjson:
# a valid token, none, one signed with another secret, an expired one, one without audit:read,
# and a valid one against the second sidecar once it is over both its limits.
callers() {
  local which=$1 p=$2
  fuzz "$which" "${p}valid_token" "$http_port" 200 -H "Authorization: Bearer $token"
  fuzz "$which" "${p}no_token" "$http_port" 50
  fuzz "$which" "${p}foreign_token" "$http_port" 50 -H "Authorization: Bearer $foreign_token"
  fuzz "$which" "${p}expired_token" "$http_port" 50 -H "Authorization: Bearer $expired_token"
  fuzz "$which" "${p}unscoped_token" "$http_port" 50 -H "Authorization: Bearer $unscoped_token"
  over_limits || fatal "cannot get the second sidecar over its limits for a whole run"
  fuzz "$which" "${p}rate_limited" "$limited_port" 20 -H "Authorization: Bearer $token"
}

log "schemathesis, the shared spec: every operation, every check"
callers shared ""
# The 401s are schemathesis's own requests without the token (check ignored_auth).
check "valid token: verify answered 200, 400 for invalid dates, 401 without the token" "200 400 401" \
  "$(statuses valid_token "GET /audit/verify")"
check "valid token: controls answered 200" 200 "$(statuses valid_token "GET /compliance/controls")"
check "valid token: other methods answered 405" 405 "$(statuses valid_token "POST /audit/verify")"
check "no token: verify answered 401 only" 401 "$(statuses no_token "GET /audit/verify")"
check "no token: controls (public) answered 200" 200 "$(statuses no_token "GET /compliance/controls")"
check "token signed with another secret: 401 only" 401 "$(statuses foreign_token "GET /audit/verify")"
check "expired token: 401 only" 401 "$(statuses expired_token "GET /audit/verify")"
check "token without audit:read: 403, 401 without the token" "401 403" \
  "$(statuses unscoped_token "GET /audit/verify")"
check "over the limit: verify answered 429, 401 without the token" "401 429" \
  "$(statuses rate_limited "GET /audit/verify")"
check "over the limit: controls answered 429" 429 "$(statuses rate_limited "GET /compliance/controls")"

log "headers schemathesis cannot require, on the running sidecar"
# rate_headers LIMIT: the three X-RateLimit-* headers are integers, the limit is LIMIT and the
# window ends within a minute.
rate_headers() {
  local reset remaining
  reset=$(header x-ratelimit-reset) remaining=$(header x-ratelimit-remaining)
  [ "$(header x-ratelimit-limit)" = "$1" ] && [[ $remaining =~ ^[0-9]+$ ]] && [ "$remaining" -lt "$1" ] \
    && [[ $reset =~ ^[0-9]+$ ]] && [ "$reset" -ge "$(date +%s)" ] && [ "$reset" -le $(($(date +%s) + 61)) ]
}

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

log "the transparency log: $more_events more events, every chain signed up to its head"
sql() { psql_at "$pg_port" -d "$db" -At "$@"; }
# signed_to_heads: every chain's latest served checkpoint covers all its events.
signed_to_heads() {
  local heads served
  heads=$(sql -F' ' -c "SELECT chain_id, seq FROM agentidp.agentidp_chain_heads() ORDER BY chain_id")
  served=$(curl -sf "http://127.0.0.1:$http_port/api/v1/transparency/checkpoints" \
    | jq -r 'sort_by(.chainId)[] | "\(.chainId) \(.treeSize)"') || return 1
  [ -n "$heads" ] && [ "$heads" = "$served" ]
}
wait_for 30 signed_to_heads || fatal "the $events events are not signed within 30 s"
sql -c "INSERT INTO agentidp.audit_events (action, outcome, agent_id)
        SELECT 'agent.token.issued', 'success', 'agent-' || i % 7 FROM generate_series(1, $more_events) i" \
  >/dev/null || fatal "cannot add the events"
total=$((events + more_events))
wait_for 30 signed_to_heads || fatal "the $total events are not signed within 30 s"

log "schemathesis, the transparency spec: every operation, every check"
callers transparency transparency_
proof_op="GET /api/v1/audit/events/{eventId}/proof"
export_op="GET /api/v1/audit/export"
key_op="GET /api/v1/transparency/verifier-key"
list_op="GET /api/v1/transparency/checkpoints"
note_op="GET /api/v1/transparency/checkpoints/{chainId}"
consistency_op="GET /api/v1/transparency/consistency/{chainId}"
tlog_op="GET /tlog/{chainId}/checkpoint"
tile_op="GET /tlog/{chainId}/tile/8/{level}/{n0}"
partial_op="GET /tlog/{chainId}/tile/8/{level}/{n0}.p/{width}"
r=transparency_
# The 401s are schemathesis's own requests without the token (check ignored_auth).
check "valid token: proof answered 200, 400 for a malformed id, 404 for an unknown one, 401 without the token" \
  "200 400 401 404" "$(statuses ${r}valid_token "$proof_op")"
check "valid token: export answered 200, 400 for invalid parameters, 401 without the token" "200 400 401" \
  "$(statuses ${r}valid_token "$export_op")"
check "valid token: verifier key and checkpoints answered 200" "200/200" \
  "$(statuses ${r}valid_token "$key_op")/$(statuses ${r}valid_token "$list_op")"
check "valid token: a chain's checkpoint answered 200, 404 for an unknown chain" "200 404/200 404" \
  "$(statuses ${r}valid_token "$note_op")/$(statuses ${r}valid_token "$tlog_op")"
check "valid token: consistency answered 200, 400 for invalid sizes, 404 past the tree" "200 400 404" \
  "$(statuses ${r}valid_token "$consistency_op")"
check "valid token: full and partial tiles answered 200, 404 where the tree has none" "200 404/200 404" \
  "$(statuses ${r}valid_token "$tile_op")/$(statuses ${r}valid_token "$partial_op")"
check "valid token: other methods answered 405" 405/405 \
  "$(statuses ${r}valid_token "POST /api/v1/audit/events/{eventId}/proof")/$(statuses ${r}valid_token "POST /tlog/{chainId}/tile/8/{level}/{n0}")"
check "no token: proof and export answered 401 only" 401/401 \
  "$(statuses ${r}no_token "$proof_op")/$(statuses ${r}no_token "$export_op")"
check "no token: the public operations answered as with one, 200 (400, 404 where due)" "200/200/200 404/200 400 404/200 404" \
  "$(for op in "$key_op" "$list_op" "$note_op" "$consistency_op" "$partial_op"; do statuses ${r}no_token "$op"; done | paste -sd/)"
for kind in foreign_token expired_token; do
  check "$kind: proof and export answered 401 only" 401/401 \
    "$(statuses ${r}$kind "$proof_op")/$(statuses ${r}$kind "$export_op")"
done
check "token without audit:read: proof and export answered 403, 401 without the token" "401 403/401 403" \
  "$(statuses ${r}unscoped_token "$proof_op")/$(statuses ${r}unscoped_token "$export_op")"
check "over the limit: proof and export answered 429, 401 without the token" "401 429/401 429" \
  "$(statuses ${r}rate_limited "$proof_op")/$(statuses ${r}rate_limited "$export_op")"
check "over the limit: every public operation answered 429" "429 429 429 429 429 429 429" \
  "$(for op in "$key_op" "$list_op" "$note_op" "$consistency_op" "$tlog_op" "$tile_op" "$partial_op"; do
       statuses ${r}rate_limited "$op"; done | paste -sd' ')"

log "the transparency log on the running sidecar: what the schema cannot say"
# The verifier key computed here from the key file, independently of the sidecar:
# name+hex(SHA-256(name || 0x0a || 0x01 || key)[:4])+base64(0x01 || key).
openssl pkey -in "$work/log.pem" -pubout -out "$work/log.pub" || fatal "cannot read the log key"
log_vkey=$(openssl pkey -pubin -in "$work/log.pub" -outform DER | tail -c 32 | python3 -c '
import base64, hashlib, sys
name, key = sys.argv[1], sys.stdin.buffer.read()
key_id = hashlib.sha256(name.encode() + b"\n\x01" + key).digest()[:4].hex()
print(name + "+" + key_id + "+" + base64.b64encode(b"\x01" + key).decode())' "$log_name")
check "verifier key: 200, text" "200 text/plain; charset=utf-8" \
  "$(get "$http_port" /transparency/verifier-key) $(header content-type)"
check "verifier key: the key file's" "$log_vkey" "$(cat "$work/body")"
check "verifier key: X-RateLimit-* headers" 0 "$(rate_headers 1000000; echo $?)"

check "a chain's checkpoint: 200, text" "200 text/plain; charset=utf-8" \
  "$(get "$http_port" /transparency/checkpoints/global) $(header content-type)"
cp "$work/body" "$work/latest.note"
check "a chain's checkpoint: the global chain's tree of every event" "$log_name/global $total" \
  "$(sed -n 1,2p "$work/latest.note" | paste -sd' ')"
# The signed text is every line before the blank line; the signature line carries the key id
# (4 bytes) and the Ed25519 signature (64).
sed -n '/^$/q;p' "$work/latest.note" > "$work/note.body"
sed -n "s/^— $log_name //p" "$work/latest.note" | base64 -d | tail -c 64 > "$work/note.sig"
check "a chain's checkpoint: the signature verifies with the key file's public key" 0 \
  "$(openssl pkeyutl -verify -pubin -inkey "$work/log.pub" -rawin -in "$work/note.body" \
       -sigfile "$work/note.sig" >/dev/null 2>&1; echo $?)"
check "the checkpoint list: the same tree, no cosignature" "$total $(sed -n 3p "$work/latest.note") 0 true" \
  "$(get "$http_port" /transparency/checkpoints >/dev/null
     jq -r --rawfile note "$work/latest.note" '.[] | select(.chainId == "global")
       | "\(.treeSize) \(.root) \(.cosignatures) \(.note == $note)"' "$work/body")"
check "tlog-tiles checkpoint: the same note" "200 same" \
  "$(request "$http_port" /tlog/global/checkpoint) $(cmp -s "$work/body" "$work/latest.note" && echo same)"

# leaves FROM TO: the leaf hashes of events FROM to TO of the global chain, SHA-256(0x00 ||
# stored hash), as hex: what the level-0 tiles hold.
leaves() {
  sql -c "SELECT encode(string_agg(sha256('\\x00'::bytea || hash), '' ORDER BY seq), 'hex')
            FROM agentidp.audit_events WHERE chain_id = 'global' AND seq BETWEEN $1 AND $2"
}
hex_body() { od -An -v -tx1 "$work/body" | tr -d ' \n'; }
check "full tile: 200, bytes, cached for good" "200 application/octet-stream public, max-age=31536000, immutable" \
  "$(request "$http_port" /tlog/global/tile/8/0/000) $(header content-type) $(header cache-control)"
check "full tile: the first 256 leaf hashes" "$(leaves 1 256)" "$(hex_body)"
partial=$((total - 256))
check "partial tile: 200" 200 "$(request "$http_port" "/tlog/global/tile/8/0/001.p/$partial")"
check "partial tile: the remaining $partial leaf hashes" "$(leaves 257 "$total")" "$(hex_body)"
check "a narrower partial tile: their prefix" "200 $(leaves 257 257)" \
  "$(request "$http_port" /tlog/global/tile/8/0/001.p/1) $(hex_body)"
check "a partial tile wider than the tree's: 404 NOT_FOUND" "404 NOT_FOUND" \
  "$(request "$http_port" "/tlog/global/tile/8/0/001.p/$((partial + 1))") $(jq -r .code "$work/body")"
check "a tile path C2SP does not write (leading zero group): 404" 404 \
  "$(request "$http_port" /tlog/global/tile/8/0/x000/000)"

check "consistency from the first checkpoint: 200, sizes echoed" "200 $events $total" \
  "$(get "$http_port" "/transparency/consistency/global?oldSize=$events&newSize=$total") $(jq -r '"\(.old_size) \(.new_size)"' "$work/body")"
check "consistency of equal sizes: no hash" "200 0" \
  "$(get "$http_port" "/transparency/consistency/global?oldSize=$total&newSize=$total") $(jq '.proof | length' "$work/body")"
check "consistency of inverted sizes: 400 on oldSize" "400 VALIDATION_ERROR oldSize Must be at most newSize." \
  "$(get "$http_port" "/transparency/consistency/global?oldSize=$total&newSize=$events") $(jq -r '"\(.code) \(.details.field) \(.details.reason)"' "$work/body")"
check "consistency past the tree: 404" 404 \
  "$(get "$http_port" "/transparency/consistency/global?oldSize=1&newSize=$((total + 1))")"

check "export: 200, JSON Lines" "200 application/x-ndjson" \
  "$(get "$http_port" "/audit/export?chainId=global" "${bearer[@]}") $(header content-type)"
check "export: every event, in order" true "$(jq -s "[.[].seq] == [range(1; $total + 1)]" "$work/body")"
check "export: X-RateLimit-* headers" 0 "$(rate_headers 1000000; echo $?)"
check "export: a line holds the event as stored" \
  "$(sql -c "SELECT event_id || ' ' || encode(hash, 'hex') FROM agentidp.audit_events WHERE chain_id = 'global' AND seq = 1")" \
  "$(head -n 1 "$work/body" | jq -r '"\(.event_id) \(.hash)"')"
check "export: a page starts at fromSeq" "301 302 303 304 305" \
  "$(get "$http_port" "/audit/export?chainId=global&fromSeq=301&limit=5" "${bearer[@]}" >/dev/null; jq -r .seq "$work/body" | paste -sd' ')"
check "export: the last page is short" "$((total - 2)) $((total - 1)) $total" \
  "$(get "$http_port" "/audit/export?chainId=global&fromSeq=$((total - 2))&limit=5" "${bearer[@]}" >/dev/null; jq -r .seq "$work/body" | paste -sd' ')"
check "export of an unknown chain: empty" "200 0" \
  "$(get "$http_port" "/audit/export?chainId=org:nobody" "${bearer[@]}") $(wc -c < "$work/body")"
check "export past the page size: 400 on limit" "400 limit" \
  "$(get "$http_port" "/audit/export?chainId=global&limit=10001" "${bearer[@]}") $(jq -r .details.field "$work/body")"

check "proof: 200 for the example event, leaf 0 of the signed tree" "200 $example_event 0 $total" \
  "$(get "$http_port" "/audit/events/$example_event/proof" "${bearer[@]}") $(jq -r '"\(.event.event_id) \(.proof.leaf_index) \(.proof.tree_size)"' "$work/body")"
check "proof: the checkpoint is the latest signed" true \
  "$(jq --rawfile note "$work/latest.note" '.checkpoint == $note' "$work/body")"
check "proof: X-RateLimit-* headers" 0 "$(rate_headers 1000000; echo $?)"
check "proof of a malformed id: 400 on eventId" "400 eventId" \
  "$(get "$http_port" /audit/events/not-a-uuid/proof "${bearer[@]}") $(jq -r .details.field "$work/body")"
check "proof without a token: 401, WWW-Authenticate" "401 Bearer" \
  "$(get "$http_port" "/audit/events/$example_event/proof") $(header www-authenticate)"
check "proof without audit:read: 403 INSUFFICIENT_SCOPE" "403 INSUFFICIENT_SCOPE" \
  "$(get "$http_port" "/audit/events/$example_event/proof" -H "Authorization: Bearer $unscoped_token") $(jq -r .code "$work/body")"
# An event asked for right after its commit is not yet signed; the sealer runs every second, so a
# few tries make the race it may win irrelevant.
not_yet_signed() {
  local id
  id=$(sql -c "INSERT INTO agentidp.audit_events (action, outcome) VALUES ('agent.login', 'success') RETURNING event_id" | head -n 1)
  [ "$(get "$http_port" "/audit/events/$id/proof" "${bearer[@]}")" = 409 ]
}
for _ in 1 2 3 4 5; do not_yet_signed && break; done
check "proof of an event not yet signed: 409 NOT_YET_SIGNED, X-RateLimit-* headers" "NOT_YET_SIGNED 0" \
  "$(jq -r .code "$work/body") $(rate_headers 1000000; echo $?)"

# Requests the generators rarely or never make. PostgreSQL text cannot hold NUL, so a chain id
# with one names no chain; a path segment that is not UTF-8 once decoded is a malformed request.
# Either way the answer is the API's JSON error body, never a server error.
server_errors=$(for path in "/api/v1/audit/export?chainId=%00" "/api/v1/transparency/consistency/%00?oldSize=1&newSize=1" \
    /tlog/%00/checkpoint /tlog/%00/tile/8/0/000; do
  status=$(request "$http_port" "$path" "${bearer[@]}"); [ "$status" -lt 500 ] || echo "$path: $status"
done)
check "a chain id with a NUL: no server error" "" "$server_errors"
not_json=$(for path in /api/v1/transparency/checkpoints/%FF "/api/v1/transparency/consistency/%FF?oldSize=1&newSize=1" \
    /api/v1/audit/events/%FF/proof /tlog/%FF/checkpoint /tlog/global/tile/8/0/%FF \
    "/api/v1/audit/export?chainId=global&limit=1&limit=2" "/api/v1/transparency/consistency/global?oldSize=1&newSize=2&newSize=2"; do
  status=$(request "$http_port" "$path" "${bearer[@]}")
  [ "$(header content-type)" = application/json ] || echo "$path: $status $(header content-type)"
done)
check "a path segment that is not UTF-8, a repeated query parameter: the JSON error body" "" "$not_json"

over_limits || fatal "cannot get the second sidecar over its limits"
check "a tile over the limit: 429 RATE_LIMIT_EXCEEDED" "429 RATE_LIMIT_EXCEEDED" \
  "$(request "$limited_port" /tlog/global/tile/8/0/000) $(jq -r .code "$work/body")"
check "a tile over the limit: X-RateLimit-* headers" 0 "$(rate_headers "$small_limit"; echo $?)"

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
check "metrics: every job ran, and succeeded" 8 \
  "$(count '^agentidp_job_runs_total\{job_name="[a-z_]+",result="success"\} [1-9]')"
check "metrics: the incremental run and the full walks are counted apart" "1 more than 1" \
  "$(awk '/^agentidp_job_runs_total\{job_name="chain_verification",result="success"\}/ { i = $2 }
          /^agentidp_job_runs_total\{job_name="chain_full_walk",result="success"\}/ { f = $2 }
          END { print i, (f > 1 ? "more than 1" : f) }' "$work/metrics")"
check "metrics: a last-success time per job" 8 "$(count '^agentidp_job_last_success_timestamp_seconds\{job_name=')"
check "metrics: a duration histogram per job" 8 "$(count '^agentidp_job_duration_seconds_count\{job_name=')"
check "metrics: one status per control" 5 "$(count '^agentidp_control_status\{.*\} 1$')"
check "metrics: chain intact, key loaded, leader" 3 \
  "$(count '^(agentidp_audit_chain_integrity|agentidp_encryption_key_loaded|agentidp_is_leader) 1$')"
check "metrics: dead letters counted" 1 "$(count '^agentidp_webhook_dead_letters 0$')"
check "metrics: verify requests by status" 4 \
  "$(count '^agentidp_http_requests_total\{method="GET",route="/api/v1/audit/verify",status="(200|400|401|403)"\}')"
# Schemathesis probed paths outside the spec: they must not have become label values.
check "metrics: routes are templates, any other path is unmatched" \
  "$(printf '%s ' /api/v1/audit/events/{event_id}/proof /api/v1/audit/export /api/v1/audit/verify \
       /api/v1/compliance/controls /api/v1/transparency/checkpoints /api/v1/transparency/checkpoints/{chain_id} \
       /api/v1/transparency/consistency/{chain_id} /api/v1/transparency/verifier-key /metrics \
       /tlog/{chain_id}/checkpoint '/tlog/{chain_id}/tile/{*path}' unmatched | sed 's/ $//')" \
  "$(grep '^agentidp_http_requests_total{' "$work/metrics" | grep -o 'route="[^"]*"' | cut -d'"' -f2 | LC_ALL=C sort -u | paste -sd' ')"
check "metrics: the follower counted its 429s and is not leader" 2/1 \
  "$(grep -cE '^agentidp_http_requests_total\{method="GET",route="/api/v1/(audit/verify|compliance/controls)",status="429"\}' "$work/limited.metrics")/$(grep -c '^agentidp_is_leader 0$' "$work/limited.metrics")"

key=$(cat "$work/dev.key")
log_key=$(sed -n 2p "$work/log.pem")
check "no log line or report holds the encryption key, the JWT secret or the log's signing key" 0 \
  "$(cat "$work"/*.log "$work"/*.ndjson "$RUN_DIR/$name.log" | grep -c -e "$key" -e "$jwt_secret" -e "$log_key")"
summary sidecar_api
