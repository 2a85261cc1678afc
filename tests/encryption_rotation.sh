#!/usr/bin/env bash
# A key rotation under load, killed half-way and resumed: agentidp_reencrypt_all() rewrites every
# sensitive value (and the legacy plaintext) under the new key in committed batches while other
# sessions keep updating the same rows; its backend is terminated mid-run; a second run finishes.
# Then every value decrypts with the new key alone, to exactly what was last written to it: no
# row lost, none encrypted twice, no concurrent update overwritten.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: encryption_rotation.sh PORT}
db=agentidp_encryption_rotation
rows=${AGENTIDP_ROTATION_ROWS:-10000}
PGOPTIONS="-c client_min_messages=warning" psql_at "$port" -d postgres \
  -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
psql_at "$port" -d "$db" -c "CREATE EXTENSION pg_agentidp" >/dev/null

key_a=$(openssl rand -hex 32)
key_b=$(openssl rand -hex 32)
old_opts="-c agentidp.encryption_key=$key_a"
rotating="-c agentidp.encryption_key=$key_b -c agentidp.encryption_old_keys=$key_a"
new_only="-c agentidp.encryption_key=$key_b"
q() { local opts=$1; shift; PGOPTIONS="$opts" psql_at "$port" -d "$db" -At "$@"; }
id_of="('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid"

# Under key A: credentials with both columns, and some legacy rows written before encryption.
q "$old_opts" >/dev/null <<SQL
INSERT INTO agentidp.credentials (credential_id, org_id, secret_hash, vault_path)
SELECT $id_of, 'org-' || i, 'secret-' || i, 'secret/data/cred/' || i FROM generate_series(1, $rows) i;
ALTER TABLE agentidp.credentials DISABLE TRIGGER zz_agentidp_encrypt;
INSERT INTO agentidp.credentials (credential_id, org_id, secret_hash)
SELECT $id_of, 'legacy-' || i, 'legacy-' || i FROM generate_series($rows + 1, $rows + $rows / 10) i;
ALTER TABLE agentidp.credentials ENABLE ALWAYS TRIGGER zz_agentidp_encrypt;
CREATE TABLE public.upd_log (id bigserial PRIMARY KEY, i int NOT NULL, v text NOT NULL);
SQL
total=$(q "$old_opts" -c "SELECT sum(total) FROM agentidp.agentidp_encryption_status()")

# Writers: update random rows under the new key, logging each value in the same transaction.
writer=$(mktemp)
cat > "$writer" <<SQL
\\set i random(1, $rows)
BEGIN;
UPDATE agentidp.credentials SET secret_hash = 'upd-' || :i || '-' || txid_current()
 WHERE credential_id = ('00000000-0000-0000-0000-' || lpad(:i::text, 12, '0'))::uuid;
INSERT INTO public.upd_log (i, v) VALUES (:i, 'upd-' || :i || '-' || txid_current());
COMMIT;
SQL
PGOPTIONS="$rotating" "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c 2 -j 2 -T 600 \
  -f "$writer" "$db" >/dev/null 2>&1 &
writers=$!
trap 'kill $writers 2>/dev/null || true' EXIT

# First run, killed once about half the values are rewritten.
progress=$(mktemp)
(PGOPTIONS="$rotating" psql_at "$port" -d "$db" -c "CALL agentidp.agentidp_reencrypt_all(500)" >"$progress" 2>&1 || true) &
run=$!
for _ in $(seq 600); do
  done_so_far=$(grep -o '[0-9]* values rewritten' "$progress" | tail -1 | grep -o '^[0-9]*' || echo 0)
  [ "$done_so_far" -ge $((total / 2)) ] && break
  sleep 0.1
done
q "" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE query LIKE 'CALL agentidp.agentidp_reencrypt_all%' AND pid <> pg_backend_pid()" >/dev/null
wait "$run"
check "the first run was terminated" "yes" \
  "$(grep -q 'terminating connection' "$progress" && echo yes || echo "no: $(tail -2 "$progress")")"
half=$(q "$rotating" -c "SELECT sum(current_key) > 0 AND sum(old_key) > 0 AND sum(undecryptable) = 0
                           FROM agentidp.agentidp_encryption_status()")
check "half-way: values under both keys, none undecryptable" "t" "$half"
check "half-way: every value reads with the new key and the old one" "0" \
  "$(q "$rotating" -c "SELECT count(*) FROM agentidp.credentials
                        WHERE agentidp.agentidp_decrypt(secret_hash) IS NULL")"

# Resume: the second run picks up where the first stopped, while the writers go on.
q "$rotating" -c "CALL agentidp.agentidp_reencrypt_all(500)" >/dev/null 2>&1
sleep 1
kill "$writers"; wait "$writers" 2>/dev/null || true
q "$rotating" -c "CALL agentidp.agentidp_reencrypt_all(500)" >/dev/null 2>&1
updates=$(q "" -c "SELECT count(*) FROM public.upd_log")
check "writers updated rows during the rotation" "yes" "$([ "$updates" -gt 0 ] && echo yes || echo no)"

# The new key alone now reads everything.
check "status: everything under the new key" "$total|$total|0|0|0" \
  "$(q "$new_only" -c "SELECT sum(total) || '|' || sum(current_key) || '|' || sum(old_key) || '|' || sum(plaintext)
                         || '|' || sum(undecryptable) FROM agentidp.agentidp_encryption_status()")"
check "a further run has nothing to do" "0|0|0" \
  "$(q "$new_only" -c "SELECT rewritten || '|' || remaining || '|' || undecryptable FROM agentidp.agentidp_reencrypt()")"
check "every value is what was last written to it, encrypted once" "0" \
  "$(q "$new_only" -c "
    WITH last AS (SELECT DISTINCT ON (i) i, v FROM public.upd_log ORDER BY i, id DESC),
    expected AS (
      SELECT $id_of AS credential_id,
             coalesce(l.v, CASE WHEN i <= $rows THEN 'secret-' || i ELSE 'legacy-' || i END) AS secret,
             CASE WHEN i <= $rows THEN 'secret/data/cred/' || i END AS path
        FROM generate_series(1, $rows + $rows / 10) i LEFT JOIN last l USING (i))
    SELECT count(*) FROM expected e FULL JOIN agentidp.credentials c USING (credential_id)
     WHERE c.credential_id IS NULL OR e.credential_id IS NULL
        OR agentidp.agentidp_decrypt(c.secret_hash) IS DISTINCT FROM e.secret
        OR agentidp.agentidp_decrypt(c.vault_path) IS DISTINCT FROM e.path
        OR NOT agentidp.agentidp_is_encrypted(c.secret_hash)")"

psql_at "$port" -d postgres -c "DROP DATABASE $db" >/dev/null
summary encryption_rotation
