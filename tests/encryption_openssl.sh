#!/usr/bin/env bash
# The seed format against `openssl enc -aes-256-cbc`, both ways, at the SQL level: values made in
# SQL (by agentidp_encrypt and by the column trigger) decrypt with openssl, and values openssl made
# decrypt in SQL. openssl is the independent implementation here; the Node.js service the format
# comes from uses the same OpenSSL cipher.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: encryption_openssl.sh PORT}
db=agentidp_encryption_openssl
PGOPTIONS="-c client_min_messages=warning" psql_at "$port" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
psql_at "$port" -d "$db" -c "CREATE EXTENSION pg_agentidp" >/dev/null

key=$(openssl rand -hex 32)
other_key=$(openssl rand -hex 32)
# q SQL [psql args...]: one value, with the key in the connection options as the sidecar sets it.
q() {
  local sql=$1; shift
  printf '%s\n' "$sql" | PGOPTIONS="-c agentidp.encryption_key=$key" psql_at "$port" -d "$db" -At "$@"
}
hex_of_b64() { printf '%s' "$1" | base64 -d | xxd -p -c 256; }
# openssl_decrypt VALUE KEY: the seed value's plaintext, as openssl reads it.
openssl_decrypt() {
  local iv ct
  iv=$(hex_of_b64 "${1%%:*}")
  ct=${1#*:}
  printf '%s' "$ct" | base64 -d | openssl enc -d -aes-256-cbc -K "$2" -iv "$iv"
}
# openssl_encrypt PLAINTEXT KEY: a seed value made by openssl, with an IV from openssl's RNG.
openssl_encrypt() {
  local iv
  iv=$(openssl rand -hex 16)
  printf '%s:%s' "$(printf '%s' "$iv" | xxd -r -p | base64 -w0)" \
    "$(printf '%s' "$1" | openssl enc -aes-256-cbc -K "$2" -iv "$iv" | base64 -w0)"
}

plaintexts=("" "a" "exactly 16 bytes" "secret/data/agents/42" "ünïcødé ✓ 🔑" "quote ' and \"double\" and \\ back"
            "$(head -c 3000 /dev/urandom | base64 -w0)")
i=0
for p in "${plaintexts[@]}"; do
  i=$((i + 1))
  sealed=$(q "SELECT agentidp.agentidp_encrypt(:'p')" -v p="$p")
  # "|ok" only when the command succeeded: an empty plaintext must not match a failure's output.
  check "SQL -> openssl, plaintext $i (${#p} chars)" "$p|ok" "$(openssl_decrypt "$sealed" "$key" && printf '|ok')"
  made=$(openssl_encrypt "$p" "$key")
  check "openssl -> SQL, plaintext $i" "$p|ok" "$(q "SELECT agentidp.agentidp_decrypt(:'v') || '|ok'" -v v="$made")"
  check "openssl's value is recognised, plaintext $i" "t" "$(q "SELECT agentidp.agentidp_is_encrypted(:'v')" -v v="$made")"
done

# What the trigger stores is what the Node.js service (and openssl) reads.
stored=$(q "INSERT INTO agentidp.credentials (org_id, secret_hash, vault_path)
            VALUES ('org-interop', 'hunter2', 'secret/data/cred/interop') RETURNING secret_hash")
check "a stored column value decrypts with openssl" "hunter2" "$(openssl_decrypt "$stored" "$key")"
# ... and a value the Node.js service stored (made here by openssl) is kept as it is by the trigger.
legacy=$(openssl_encrypt "written by node" "$key")
check "an openssl value is stored unchanged" "$legacy" \
  "$(q "INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('org-interop', :'v') RETURNING secret_hash" -v v="$legacy")"
check "and reads back in SQL" "written by node" \
  "$(q "SELECT agentidp.agentidp_decrypt(secret_hash) FROM agentidp.credentials WHERE secret_hash = :'v'" -v v="$legacy")"

# A wrong key fails rather than yielding garbage. openssl checks only the padding, which random
# bytes pass about once in 256 values, so it must refuse nearly all of 16; SQL also requires UTF-8,
# which 16 and more random bytes practically never are.
refused=0
for _ in $(seq 16); do
  sealed=$(q "SELECT agentidp.agentidp_encrypt('exactly 16 bytes')")
  openssl_decrypt "$sealed" "$other_key" >/dev/null 2>&1 || refused=$((refused + 1))
done
check "openssl refuses SQL values under another key (at least 14 of 16)" "yes" \
  "$([ "$refused" -ge 14 ] && echo yes || echo "no: $refused")"
made=$(openssl_encrypt "exactly 16 bytes" "$other_key")
check "SQL refuses the openssl value under another key" "22000" \
  "$(q "DO \$\$ BEGIN PERFORM agentidp.agentidp_decrypt('$made'); RAISE NOTICE 'accepted';
        EXCEPTION WHEN OTHERS THEN RAISE NOTICE '%', SQLSTATE; END \$\$" 2>&1 | sed 's/^NOTICE: *//')"

psql_at "$port" -d postgres -c "DROP DATABASE $db" >/dev/null
summary encryption_openssl
