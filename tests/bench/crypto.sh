#!/usr/bin/env bash
# Column encryption's benchmark (not a test): rows per second of agentidp_encrypt and
# agentidp_decrypt against what a user writes without us, pgcrypto's encrypt_iv / decrypt_iv with
# 'aes-cbc/pad:pkcs' plus the base64 framing of the same seed format, measured in the same run on
# a cluster of its own, with the extension's release build installed first.
#
#   bash tests/bench/crypto.sh [rows, default 200000] [port, default 5482]
#                              [rotation values, default 1000000] [rounds, default 3]
#
# Each figure of the first table is the best of 3 runs of one statement over all rows, timed inside the server
# (clock_timestamp around EXECUTE), on one core (no parallel workers), with the key set in the
# connection options as the sidecar sets it.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
rows=${1:-200000}
port=${2:-5482}
rot_rows=${3:-1000000}
rounds=${4:-3}
db=agentidp_crypto_bench
name=enc_bench

# A release build: `cargo pgrx test` leaves its debug build installed, several times slower.
install_extension >/dev/null
start_cluster "$name" "$port" "shared_preload_libraries = 'pg_agentidp'" "shared_buffers = '512MB'" \
  "max_parallel_workers_per_gather = 0"
trap 'stop_cluster $name' EXIT
key=$(openssl rand -hex 32)
q() { PGOPTIONS="-c agentidp.encryption_key=$key -c client_min_messages=warning $*" psql_at "$port" -d "$db" -At; }
psql_at "$port" -d postgres -c "CREATE DATABASE $db" >/dev/null

q >/dev/null <<SQL
CREATE EXTENSION pg_agentidp;
CREATE EXTENSION pgcrypto;
-- Values shaped like the sensitive columns' (Vault paths, secrets): 40 to 60 bytes.
CREATE TABLE vals AS
SELECT i, 'secret/data/agents/' || i || '/' || md5(i::text) AS v FROM generate_series(1, $rows) i;
CREATE TABLE sealed AS SELECT i, agentidp.agentidp_encrypt(v) AS c FROM vals;
SET agentidp.encryption_format = gcm;
CREATE TABLE sealed_gcm AS SELECT i, agentidp.agentidp_encrypt(v, 'bench') AS c FROM vals;
VACUUM ANALYZE;
CREATE FUNCTION secs(q text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz;
BEGIN
  t0 := clock_timestamp();
  EXECUTE q;
  RETURN extract(epoch FROM clock_timestamp() - t0);
END \$\$;
SQL

k="decode('$key', 'hex')"
# The pgcrypto equivalents, producing and reading the very same format (encode() breaks base64
# into 76-character lines, which the format does not have).
pg_encrypt="SELECT count(encode(iv, 'base64') || ':' || replace(encode(encrypt_iv(convert_to(v, 'UTF8'), $k, iv, 'aes-cbc/pad:pkcs'), 'base64'), E'\\n', ''))
              FROM (SELECT v, gen_random_bytes(16) AS iv FROM vals) s"
pg_decrypt="SELECT count(convert_from(decrypt_iv(decode(split_part(c, ':', 2), 'base64'), $k,
                                                 decode(split_part(c, ':', 1), 'base64'), 'aes-cbc/pad:pkcs'), 'UTF8'))
              FROM sealed"
ours_encrypt="SELECT count(agentidp.agentidp_encrypt(v)) FROM vals"
ours_decrypt="SELECT count(agentidp.agentidp_decrypt(c)) FROM sealed"
gcm_encrypt="SELECT count(agentidp.agentidp_encrypt(v, 'bench')) FROM vals"
gcm_decrypt="SELECT count(agentidp.agentidp_decrypt(c, 'bench')) FROM sealed_gcm"
bare_scan="SELECT count(v) FROM vals"

# Both sides read each other's values: the comparison is of the same work.
agree=$(q <<SQL
SELECT bool_and(convert_from(decrypt_iv(decode(split_part(c, ':', 2), 'base64'), $k,
                decode(split_part(c, ':', 1), 'base64'), 'aes-cbc/pad:pkcs'), 'UTF8') = v)
  FROM sealed JOIN vals USING (i) WHERE i <= 1000;
SELECT bool_and(agentidp.agentidp_decrypt(c) = v)
  FROM (SELECT i, v, encode(iv, 'base64') || ':' || replace(encode(encrypt_iv(convert_to(v, 'UTF8'), $k, iv, 'aes-cbc/pad:pkcs'), 'base64'), E'\\n', '') AS c
          FROM (SELECT i, v, gen_random_bytes(16) AS iv FROM vals WHERE i <= 1000) s) p;
SQL
)
[ "$(echo $agree)" = "t t" ] || { echo "pgcrypto and pg_agentidp disagree on the format: $agree"; exit 1; }

# best SQL [PGOPTIONS...]: the fastest of 3 runs, in seconds.
best() { printf '%s\n' "SELECT min(secs(\$q\$$1\$q\$)) FROM generate_series(1, 3);" | q "${2:-}"; }
rate() { awk -v n="$rows" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r + 0 >= t + 0) ? "met" : "MISSED" }'; }
row() { printf '| %-52s | %12s | %7s | %-12s |\n' "$@"; }

scan_s=$(best "$bare_scan")
pe_s=$(best "$pg_encrypt")
oe_s=$(best "$ours_encrypt")
pd_s=$(best "$pg_decrypt")
od_s=$(best "$ours_decrypt")
ge_s=$(best "$gcm_encrypt" "-c agentidp.encryption_format=gcm")
gd_s=$(best "$gcm_decrypt")

echo
echo "## Column encryption: rows per second, $rows values of 40-60 bytes, one core"
row "run" "rows/s" "ratio" "target"
row "---" "---" "---" "---"
row "bare scan of the same rows (the floor)" "$(rate "$scan_s")" "" ""
row "encrypt: pgcrypto encrypt_iv + base64 framing" "$(rate "$pe_s")" "1.00" ""
r=$(ratio "$pe_s" "$oe_s"); row "encrypt: agentidp_encrypt (cbc) / pgcrypto" "$(rate "$oe_s")" "$r" ">=2.00 $(verdict "$r" 2)"
row "decrypt: pgcrypto decrypt_iv + base64 parsing" "$(rate "$pd_s")" "1.00" ""
r=$(ratio "$pd_s" "$od_s"); row "decrypt: agentidp_decrypt (cbc) / pgcrypto" "$(rate "$od_s")" "$r" ">=2.00 $(verdict "$r" 2)"
row "encrypt: agentidp_encrypt (gcm) / pgcrypto cbc" "$(rate "$ge_s")" "$(ratio "$pe_s" "$ge_s")" ""
row "decrypt: agentidp_decrypt (gcm) / pgcrypto cbc" "$(rate "$gd_s")" "$(ratio "$pd_s" "$gd_s")" ""

# Key rotation: CALL agentidp_reencrypt_all(1000) over rot_rows values of agentidp.credentials,
# from one key to another, against the floor of the same work done in one statement, an UPDATE of
# every value to agentidp_encrypt(agentidp_decrypt(value)) (one decryption and one encryption a
# value, the same row versions written, the same triggers). Rounds alternate their order and the
# direction (A to B, then B to A); the ratio is taken within each round, and the median and range
# of the rounds are shown. Both are timed from the client: the procedure commits, so it cannot run
# inside secs(). Each run starts after a VACUUM and a CHECKPOINT.
key_b=$(openssl rand -hex 32)
kq() { PGOPTIONS="-c agentidp.encryption_key=$1 -c agentidp.encryption_old_keys=$2 -c client_min_messages=warning" \
         psql_at "$port" -d "${3:-$db}" -At; }
now() { date +%s.%N; }
# timed KEY OLD_KEY DB SQL: seconds the statement takes, after a VACUUM and a CHECKPOINT.
timed() {
  local t0 t1
  printf '%s\n' "VACUUM agentidp.credentials;" "CHECKPOINT;" | kq "$1" "$2" "$3" >/dev/null
  t0=$(now)
  printf '%s\n' "$4" | kq "$1" "$2" "$3" >/dev/null
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
rotate="CALL agentidp.agentidp_reencrypt_all(1000)"
floor_update="UPDATE agentidp.credentials SET secret_hash = agentidp.agentidp_encrypt(agentidp.agentidp_decrypt(secret_hash))"
# fill DB N: N credentials under $key, with the secret's shape of the first section.
fill() {
  kq "$key" "" "$1" >/dev/null <<SQL
INSERT INTO agentidp.credentials (org_id, secret_hash)
SELECT 'org-' || (i % 100), 'secret/data/agents/' || i || '/' || md5(i::text) FROM generate_series(1, $2) i;
VACUUM ANALYZE agentidp.credentials;
SQL
}
fill "$db" "$rot_rows"
from=$key to=$key_b
rot_s=() floor_s=() rot_ratio=()
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    r=$(timed "$to" "$from" "$db" "$rotate"); f=$(timed "$from" "$to" "$db" "$floor_update")
  else
    f=$(timed "$to" "$from" "$db" "$floor_update"); r=$(timed "$from" "$to" "$db" "$rotate")
  fi
  # Both runs of a round moved every value to the other key and back: the next round starts
  # from the same key. Check that everything was rewritten, and reads.
  left=$(kq "$from" "" "$db" <<<"SELECT count(*) FILTER (WHERE agentidp.agentidp_key_state(secret_hash) <> 'current') FROM agentidp.credentials")
  [ "$left" = 0 ] || { echo "round $round: $left values not under the key they should be"; exit 1; }
  rot_s+=("$r") floor_s+=("$f") rot_ratio+=("$(ratio "$r" "$f")")
  echo "rotation round $round: reencrypt_all ${r}s, one-statement floor ${f}s, ratio ${rot_ratio[-1]}" >&2
done
rm_ratio=$(printf '%s\n' "${rot_ratio[@]}" | median)

# The release before (0.1.0's agentidp_reencrypt, from its frozen install script) against this
# one at small sizes: its batches rescan and recount from the start, so its time grows with the
# square of the values.
old_sql=$(sed -n '/^CREATE FUNCTION agentidp_reencrypt(/,/^\$fn\$;/p; /^CREATE PROCEDURE agentidp_reencrypt_all(/,/^\$fn\$;/p' \
            "$REPO/sql/pg_agentidp--0.1.0.sql" |
          sed 's/^CREATE FUNCTION agentidp_reencrypt(/CREATE FUNCTION public.old_reencrypt(/;
               s/^CREATE PROCEDURE agentidp_reencrypt_all(/CREATE PROCEDURE public.old_reencrypt_all(/;
               s/agentidp\.agentidp_reencrypt(batch_size)/public.old_reencrypt(batch_size)/')
declare -A small_old small_new
for n in 20000 40000 80000; do
  sdb=agentidp_rotation_$n
  psql_at "$port" -d postgres -c "CREATE DATABASE $sdb" >/dev/null
  kq "$key" "" "$sdb" >/dev/null <<<"CREATE EXTENSION pg_agentidp;
$old_sql"
  fill "$sdb" "$n"
  olds=() news=()
  for round in $(seq "$rounds"); do
    olds+=("$(timed "$key_b" "$key" "$sdb" "CALL public.old_reencrypt_all(1000)")")
    news+=("$(timed "$key" "$key_b" "$sdb" "$rotate")")
  done
  small_old[$n]=$(printf '%s\n' "${olds[@]}" | median)
  small_new[$n]=$(printf '%s\n' "${news[@]}" | median)
  psql_at "$port" -d postgres -c "DROP DATABASE $sdb" >/dev/null
done

srow() { printf '| %-58s | %8s | %-16s | %-12s |\n' "$@"; }
echo
echo "## Key rotation: $rot_rows values, batches of 1000, one core; medians of $rounds rounds"
srow "run" "seconds" "ratio" "target"
srow "---" "---" "---" "---"
srow "one UPDATE: agentidp_encrypt(agentidp_decrypt(v)) (the floor)" "$(printf '%s\n' "${floor_s[@]}" | median)" "1.00" ""
srow "CALL agentidp_reencrypt_all(1000) / floor" "$(printf '%s\n' "${rot_s[@]}" | median)" \
     "$rm_ratio ($(printf '%s\n' "${rot_ratio[@]}" | spread))" "<=2.00 $(awk -v r="$rm_ratio" 'BEGIN { print (r <= 2) ? "met" : "MISSED" }')"
for n in 20000 40000 80000; do
  srow "0.1.0 agentidp_reencrypt_all(1000), $n values / 20000" "${small_old[$n]}" "$(ratio "${small_old[$n]}" "${small_old[20000]}")" ""
done
for n in 20000 40000 80000; do
  srow "this agentidp_reencrypt_all(1000), $n values / 20000" "${small_new[$n]}" "$(ratio "${small_new[$n]}" "${small_new[20000]}")" ""
done
