#!/usr/bin/env bash
# Column encryption's benchmark (not a test): rows per second of agentidp_encrypt and
# agentidp_decrypt against what a user writes without us, pgcrypto's encrypt_iv / decrypt_iv with
# 'aes-cbc/pad:pkcs' plus the base64 framing of the same seed format, measured in the same run on
# a cluster of its own, with the extension's release build installed first.
#
#   bash tests/bench/crypto.sh [rows, default 200000] [port, default 5482]
#
# Each figure is the best of 3 runs of one statement over all rows, timed inside the server
# (clock_timestamp around EXECUTE), on one core (no parallel workers), with the key set in the
# connection options as the sidecar sets it.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
rows=${1:-200000}
port=${2:-5482}
db=agentidp_crypto_bench
name=enc_bench

# A release build: `cargo pgrx test` leaves its debug build installed, several times slower.
install_extension >/dev/null
start_cluster "$name" "$port" "shared_buffers = '512MB'" "max_parallel_workers_per_gather = 0"
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
