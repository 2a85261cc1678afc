#!/usr/bin/env bash
# A wrong setup fails closed. On a stock cluster that does not preload the library, a key given in
# the connection options is an unprotected placeholder, which SHOW prints, until the session's
# first call into the extension; the extension then refuses it, with an error that says what to
# add to postgresql.conf, and never quotes it. An invalid key is reported as invalid, not as
# missing. A key SET after the library is loaded is hidden and works. Preloaded (shared or
# session_preload_libraries), the connection options' key works as before. Every statement is
# logged, and the log holds none of the keys given in the connection options.
#
#   bash tests/encryption_no_preload.sh PORT    (starts and stops a cluster of its own on PORT)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: encryption_no_preload.sh PORT}
name=enc_no_preload
db=agentidp_no_preload
start_cluster "$name" "$port" \
  "log_statement = 'all'" "log_min_error_statement = 'error'" "log_min_messages = 'debug1'" \
  "log_connections = on" "log_error_verbosity = 'verbose'"
trap 'stop_cluster $name' EXIT
log_file=$RUN_DIR/$name.log

key=$(openssl rand -hex 32)
old_key=$(openssl rand -hex 32)
# Valid but for its last character, so a leak of the rejected value would show.
bad_key="${key:0:63}x"
# Set with SET, in SQL: log_statement logs it (the runbook says so), so the leak checks skip it.
set_key=$(openssl rand -hex 32)

psql_at "$port" -d postgres -c "CREATE DATABASE $db" >/dev/null
psql_at "$port" -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION pg_agentidp;
CREATE ROLE sidecar LOGIN;
GRANT USAGE ON SCHEMA agentidp TO sidecar;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA agentidp TO sidecar;
SQL
check "the cluster does not preload the library" "" \
  "$(psql_at "$port" -d "$db" -At -c "SHOW shared_preload_libraries")"

# as ROLE OPTIONS SQL...: one session as ROLE with OPTIONS, one -c per SQL; errors are reported
# with their SQLSTATE (VERBOSITY verbose) but are not fatal.
as() {
  local role=$1 opts=$2 args=() sql
  shift 2
  for sql in "$@"; do args+=(-c "$sql"); done
  PGOPTIONS=$opts "$PG_BIN/psql" -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$port" \
    -U "$role" -d "$db" "${args[@]}" 2>&1 || true
}
# first LEVEL OUTPUT: the first line of that level, and the one after it (the hint).
first() { grep -A1 -m1 "^$1:" <<<"$2" | grep -v '^LOCATION:' || true; }
# keys TEXT: how many of the connection options' keys TEXT holds.
keys_in() { grep -ci -e "$key" -e "$old_key" -e "$bad_key" <<<"$1" || true; }

refused="agentidp.encryption_key refused: it was set before the pg_agentidp library was loaded, when SHOW could read it back"
hint="HINT:  Add pg_agentidp to shared_preload_libraries in postgresql.conf (shared_preload_libraries = 'pg_agentidp') and restart PostgreSQL: preloaded, the key settings are hidden before a session can read them. See docs/encryption-runbook.md."

# (a) A valid key in the connection options, no preload.
opts="-c agentidp.encryption_key=$key"
out=$(as sidecar "$opts" "SELECT agentidp.agentidp_encrypt('x')")
check "a key set before the library loaded is refused, with SQLSTATE 55000" \
  "ERROR:  55000: $refused"$'\n'"$hint" "$(first ERROR "$out")"
check "and PostgreSQL warned when the library loaded" \
  "WARNING:  55000: $refused"$'\n'"$hint" "$(first WARNING "$out")"
check "nothing was encrypted" "0" "$(grep -c '^[A-Za-z0-9+/]*=*:[A-Za-z0-9+/]*=*$' <<<"$out" || true)"
check "the error does not quote the key" "0" "$(keys_in "$out")"
# The leak this closes: before the first call, any role can read the placeholder back. The same
# session's next call is refused all the same, and SHOW no longer has the key.
out=$(as sidecar "$opts" "SHOW agentidp.encryption_key" "SELECT agentidp.agentidp_encrypt('x')")
check "before the library loads, SHOW prints the key (why it is refused)" "$key" "$(head -1 <<<"$out")"
check "a session that read it is refused" "ERROR:  55000: $refused" "$(first ERROR "$out" | head -1)"
out=$(as postgres "$opts" "SELECT agentidp.agentidp_encryption_key_ids()" "SHOW agentidp.encryption_key")
check "after the refusal, SHOW has no key" \
  "(not set: the value set before the library was loaded was refused)" "$(tail -1 <<<"$out")"
out=$(as sidecar "$opts" "SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==')")
check "decrypting is refused too" "ERROR:  55000: $refused" "$(first ERROR "$out" | head -1)"
out=$(as sidecar "$opts" "INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('org-1', 'plaintext')")
check "the column triggers refuse to write" "ERROR:  55000: $refused" "$(first ERROR "$out" | head -1)"
check "and nothing was stored" "0" \
  "$(psql_at "$port" -d "$db" -At -c "SELECT count(*) FROM agentidp.credentials")"
# The refused value is dropped, so a parallel worker, which gets the leader's settings, has no key.
out=$(as postgres "$opts" "SET force_parallel_mode = on" "SELECT agentidp.agentidp_encrypt('x')")
check "a parallel worker does not use it either" "ERROR:  55000: No encryption key configured: set agentidp.encryption_key" \
  "$(first ERROR "$out" | head -1)"
out=$(as sidecar "-c agentidp.encryption_old_keys=$old_key" "SELECT * FROM agentidp.agentidp_encryption_key_ids()")
check "old keys set before the library loaded are refused the same way" \
  "ERROR:  55000: agentidp.encryption_old_keys refused: it was set before the pg_agentidp library was loaded, when SHOW could read it back" \
  "$(first ERROR "$out" | head -1)"
check "the errors do not quote the keys" "0" "$(keys_in "$out")"

# (b) An invalid key: reported as invalid, not as missing, and not quoted.
out=$(as sidecar "-c agentidp.encryption_key=$bad_key" "SELECT agentidp.agentidp_encrypt('x')")
check "an invalid key is reported as invalid" \
  "ERROR:  22023: Invalid encryption key (character 64 is not a hex digit): expected a 64-character hex string" \
  "$(first ERROR "$out" | head -1)"
check "not as missing" "0" "$(grep -c 'No encryption key configured' <<<"$out" || true)"
check "the message does not quote it" "0" "$(keys_in "$out")"
out=$(as sidecar "-c agentidp.encryption_old_keys=$old_key,$bad_key" "SELECT * FROM agentidp.agentidp_encryption_key_ids()")
check "an invalid old key is reported with its position" \
  "ERROR:  22023: Invalid encryption key in agentidp.encryption_old_keys (entry 2: character 64 is not a hex digit): expected a 64-character hex string" \
  "$(first ERROR "$out" | head -1)"
check "and not quoted" "0" "$(keys_in "$out")"

# (c) A key SET once the library is loaded goes through the real setting: hidden, and used.
out=$(as sidecar "" "SELECT count(*) FROM agentidp.agentidp_encryption_key_ids()" \
  "SET agentidp.encryption_key = '$set_key'" \
  "SELECT agentidp.agentidp_decrypt(agentidp.agentidp_encrypt('hunter2'))" \
  "SHOW agentidp.encryption_key")
check "a key SET after the library loaded works" "hunter2" "$(sed -n 2p <<<"$out")"
check "and is hidden from SHOW" \
  'ERROR:  42501: must be superuser or have privileges of pg_read_all_settings to examine "agentidp.encryption_key"' \
  "$(first ERROR "$out" | head -1)"
out=$(as sidecar "$opts" "SELECT agentidp.agentidp_encrypt('x')" \
  "SET agentidp.encryption_key = '$set_key'" \
  "SELECT agentidp.agentidp_decrypt(agentidp.agentidp_encrypt('hunter2'))" \
  "BEGIN" "SET LOCAL agentidp.encryption_key = '$(openssl rand -hex 32)'" "ROLLBACK" \
  "SELECT agentidp.agentidp_decrypt(agentidp.agentidp_encrypt('hunter2'))" \
  "RESET agentidp.encryption_key" "SELECT agentidp.agentidp_encrypt('x')")
check "after a refusal too, a key SET replaces it, and survives a rolled-back SET LOCAL" \
  "hunter2"$'\n'"hunter2" "$(grep -v '^\(WARNING\|ERROR\|HINT\|LOCATION\|CONTEXT\):' <<<"$out")"
check "RESET returns to the refusal, not to the key" "ERROR:  55000: $refused" \
  "$(grep '^ERROR:' <<<"$out" | sed -n 2p)"
# A SET before the first call sets the placeholder, which SHOW prints: refused like the options.
out=$(as sidecar "" "SET agentidp.encryption_key = '$set_key'" "SELECT agentidp.agentidp_encrypt('x')")
check "a key SET before the library loaded is refused too" "ERROR:  55000: $refused" \
  "$(first ERROR "$out" | head -1)"

# (e) session_preload_libraries loads the library before the session's first statement: the
# connection options' key cannot have been read, and is used. (No restart needed.)
psql_at "$port" -d "$db" -c "ALTER ROLE sidecar SET session_preload_libraries = 'pg_agentidp'" >/dev/null
out=$(as sidecar "$opts" "SELECT agentidp.agentidp_decrypt(agentidp.agentidp_encrypt('hunter2'))" \
  "SHOW agentidp.encryption_key")
check "with session_preload_libraries, the connection options' key works" "hunter2" "$(head -1 <<<"$out")"
check "and SHOW is refused" \
  'ERROR:  42501: must be superuser or have privileges of pg_read_all_settings to examine "agentidp.encryption_key"' \
  "$(first ERROR "$out" | head -1)"
out=$(as sidecar "-c agentidp.encryption_key=$bad_key" "SELECT agentidp.agentidp_encrypt('x')")
check "an invalid key is still reported as invalid" \
  "ERROR:  22023: Invalid encryption key (character 64 is not a hex digit): expected a 64-character hex string" \
  "$(first ERROR "$out" | head -1)"
psql_at "$port" -d "$db" -c "ALTER ROLE sidecar RESET session_preload_libraries" >/dev/null

# (d) Preloaded, as the runbook says production runs: the connection options' key works.
echo "shared_preload_libraries = 'pg_agentidp'" >> "$RUN_DIR/$name/postgresql.conf"
as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/$name" -l "$log_file" -m fast -w restart >/dev/null
check "the cluster now preloads the library" "pg_agentidp" \
  "$(psql_at "$port" -d "$db" -At -c "SHOW shared_preload_libraries")"
opts="-c agentidp.encryption_key=$key -c agentidp.encryption_old_keys=$old_key"
out=$(as sidecar "$opts" "SELECT agentidp.agentidp_decrypt(agentidp.agentidp_encrypt('hunter2'))" \
  "SELECT count(*) FROM agentidp.agentidp_encryption_key_ids()" "SHOW agentidp.encryption_key")
check "preloaded, the connection options' keys work" "hunter2"$'\n'"2" "$(head -2 <<<"$out")"
check "and SHOW is refused from the start" \
  'ERROR:  42501: must be superuser or have privileges of pg_read_all_settings to examine "agentidp.encryption_key"' \
  "$(first ERROR "$out" | head -1)"
check "an invalid key fails the connection, as before" \
  "FATAL:  Invalid encryption key (character 64 is not a hex digit): expected a 64-character hex string" \
  "$(as sidecar "-c agentidp.encryption_key=$bad_key" "SELECT 1" | grep -o -m1 'FATAL:.*')"

stop_cluster "$name"
check "the log recorded the statements and the refusals" "yes" \
  "$(grep -q "statement: SELECT agentidp.agentidp_encrypt('x')" "$log_file" \
     && grep -q "$refused" "$log_file" && grep -q 'character 64 is not a hex digit' "$log_file" \
     && echo yes || echo no)"
check "the server log holds none of the connection options' keys" "0" "$(keys_in "$(cat "$log_file")")"
summary encryption_no_preload
