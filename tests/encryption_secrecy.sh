#!/usr/bin/env bash
# The key stays secret: on a cluster that logs everything it can (every statement, connections,
# errors with their statement and parameters, debug messages) and tracks every statement in
# pg_stat_statements, a non-superuser session uses keys given the sidecar's way (connection
# options), runs statements that fail, and tries every way to read the setting back; then neither
# the server log nor pg_stat_statements nor any catalog contains a key.
#
#   bash tests/encryption_secrecy.sh PORT    (starts and stops a cluster of its own on PORT)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: encryption_secrecy.sh PORT}
name=enc_secrecy
db=agentidp_secrecy
start_cluster "$name" "$port" \
  "shared_preload_libraries = 'pg_agentidp, pg_stat_statements'" \
  "log_statement = 'all'" "log_min_error_statement = 'error'" "log_min_messages = 'debug1'" \
  "log_connections = on" "log_disconnections = on" "log_error_verbosity = 'verbose'" \
  "log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" \
  "pg_stat_statements.track = 'all'" "pg_stat_statements.track_utility = on"
trap 'stop_cluster $name' EXIT
log_file=$RUN_DIR/$name.log

key=$(openssl rand -hex 32)
old_key=$(openssl rand -hex 32)
# Valid but for its last character, so a leak of the rejected value would show.
bad_key="${key:0:63}x"

psql_at "$port" -d postgres -c "CREATE DATABASE $db" >/dev/null
psql_at "$port" -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION pg_agentidp;
CREATE EXTENSION pg_stat_statements;
CREATE ROLE sidecar LOGIN;
GRANT USAGE ON SCHEMA agentidp TO sidecar;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA agentidp TO sidecar;
-- pg_monitor includes pg_read_all_settings: it may look at the setting, and sees a key id.
CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
GRANT USAGE ON SCHEMA agentidp TO monitor;
SQL

# as ROLE OPTIONS SQL: one session as ROLE with OPTIONS, errors reported but not fatal.
as() {
  PGOPTIONS=$2 "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U "$1" -d "$db" -c "$3" 2>&1 || true
}
opts="-c agentidp.encryption_key=$key -c agentidp.encryption_old_keys=$old_key"

sealed=$(as sidecar "$opts" "SELECT agentidp.agentidp_encrypt('hunter2')")
check "the sidecar role encrypts and decrypts with its key" "hunter2" \
  "$(as sidecar "$opts" "SELECT agentidp.agentidp_decrypt('$sealed')")"
check "SHOW is refused" 'ERROR:  must be superuser or have privileges of pg_read_all_settings to examine "agentidp.encryption_key"' \
  "$(as sidecar "$opts" "SHOW agentidp.encryption_key")"
check "SHOW of the old keys is refused" 'ERROR:  must be superuser or have privileges of pg_read_all_settings to examine "agentidp.encryption_old_keys"' \
  "$(as sidecar "$opts" "SHOW agentidp.encryption_old_keys")"
check "current_setting() is refused" 'ERROR:  must be superuser or have privileges of pg_read_all_settings to examine "agentidp.encryption_key"' \
  "$(as sidecar "$opts" "SELECT current_setting('agentidp.encryption_key', true)")"
check "pg_settings has no key row" "0" \
  "$(as sidecar "$opts" "SELECT count(*) FROM pg_settings WHERE name LIKE 'agentidp.encryption%key%'")"
show_all=$(as sidecar "$opts" "SHOW ALL")
check "SHOW ALL lists settings" "yes" "$(grep -q '^agentidp.chain_scope|' <<<"$show_all" && echo yes || echo no)"
check "SHOW ALL has no key row" "0" "$(grep -c 'encryption_key\|encryption_old_keys' <<<"$show_all" || true)"
check "pg_read_all_settings sees a key id, not the key" "(set: key id $(as sidecar "$opts" "SELECT key_id FROM agentidp.agentidp_encryption_key_ids() WHERE key_role = 'current'"))" \
  "$(as monitor "$opts" "SHOW agentidp.encryption_key")"
check "and no key in SHOW ALL or pg_settings either" "0" \
  "$(as monitor "$opts" "SHOW ALL" | grep -c 'encryption_key\|encryption_old_keys' || true)"

# Statements that fail, with the key in force: errors, their statements and parameters get logged.
as sidecar "$opts" "SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==')" >/dev/null
as sidecar "$opts" "SELECT 1/0" >/dev/null
as sidecar "$opts" "SELEC agentidp.agentidp_encrypt('x')" >/dev/null
as sidecar "$opts" "INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES (NULL, 'plaintext')" >/dev/null
as sidecar "$opts" "DO \$\$ BEGIN RAISE EXCEPTION 'key: %', current_setting('agentidp.encryption_key'); END \$\$" >/dev/null
as sidecar "$opts -c agentidp.encryption_strict=on" "SELECT 1" >/dev/null
check "an invalid key fails the connection without quoting it" \
  "FATAL:  Invalid encryption key (character 64 is not a hex digit): expected a 64-character hex string" \
  "$(as sidecar "-c agentidp.encryption_key=$bad_key" "SELECT 1" | grep -o 'FATAL:.*')"
check "an invalid old key too" \
  "FATAL:  Invalid encryption key in agentidp.encryption_old_keys (entry 1: character 64 is not a hex digit): expected a 64-character hex string" \
  "$(as sidecar "-c agentidp.encryption_key=$key -c agentidp.encryption_old_keys=$bad_key" "SELECT 1" | grep -o 'FATAL:.*')"
# A superuser session with the key, whose statements are tracked too.
PGOPTIONS="$opts" psql_at "$port" -d "$db" -At -c "SELECT agentidp.agentidp_decrypt('$sealed')" \
  -c "SELECT count(*) FROM agentidp.agentidp_encryption_status()" >/dev/null

check "pg_stat_statements tracked the session's statements" "yes" \
  "$(psql_at "$port" -d "$db" -At -c "SELECT count(*) > 0 FROM pg_stat_statements WHERE query LIKE '%agentidp_decrypt%'" | sed 's/t/yes/')"
# Searched here, not in SQL: a query quoting the key would put it in the log itself.
leaks() { grep -ci -e "$key" -e "$old_key" -e "$bad_key" || true; }
check "pg_stat_statements holds no key" "0" \
  "$(psql_at "$port" -d "$db" -At -c "SELECT query FROM pg_stat_statements" | leaks)"
check "nor do stored settings or function definitions" "0" \
  "$(psql_at "$port" -d "$db" -At -c "SELECT setconfig::text FROM pg_db_role_setting" \
       -c "SELECT proconfig::text FROM pg_proc WHERE proconfig IS NOT NULL" | leaks)"

stop_cluster "$name"
check "the log recorded the statements and the failures" "yes" \
  "$(grep -q 'statement: SELECT 1/0' "$log_file" && grep -q 'possible key mismatch' "$log_file" \
     && grep -q 'connection authorized: user=sidecar' "$log_file" && echo yes || echo no)"
check "the server log holds no key" "0" "$(leaks < "$log_file")"
summary encryption_secrecy
