#!/usr/bin/env bash
# Sets up and runs the whole system locally: a throwaway PostgreSQL cluster with the extension
# and schema on port 5433, and the sidecar on localhost:3000 in the foreground (Ctrl-C stops both).
# With no VAULT_ADDR the sidecar reads a dev key from a file this script makes.
# AGENTIDP_CITUS=1: a Citus cluster instead (tests/citus_up.sh: a coordinator on 5470 and two
# workers, the log distributed), the sidecar pointed at the coordinator.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
PORT_PG=${AGENTIDP_PG_PORT:-5433}
db=agentidp

bash "$REPO/tests/setup.sh"
log "building and installing the extension"
install_extension
if [ -n "${AGENTIDP_CITUS:-}" ]; then
  PORT_PG=${AGENTIDP_CITUS_PORT:-5470}
  stop_db() { bash "$REPO/tests/citus_up.sh" stop; }
  trap stop_db EXIT
  bash "$REPO/tests/citus_up.sh" start
else
  log "starting a throwaway cluster on port $PORT_PG"
  stop_db() { stop_cluster dev; }
  trap stop_db EXIT
  # Preloaded, as production must: the key settings are hidden only once the library is loaded.
  start_cluster dev "$PORT_PG" "shared_preload_libraries = 'pg_agentidp'"
  psql_at "$PORT_PG" -d postgres -c "CREATE DATABASE $db"
  psql_at "$PORT_PG" -d "$db" -c "CREATE EXTENSION pg_agentidp"
fi

log "building the sidecar"
(cd "$REPO" && cargo build --release -p agentidp-sidecar)

if [ -z "${VAULT_ADDR:-}" ]; then
  export ENCRYPTION_KEY_FILE=${ENCRYPTION_KEY_FILE:-$RUN_DIR/dev.key}
  [ -s "$ENCRYPTION_KEY_FILE" ] || (umask 077; openssl rand -hex 32 > "$ENCRYPTION_KEY_FILE")
fi
if [ -z "${JWT_HS256_SECRET:-}${JWT_RS256_PUBLIC_KEY:-}${JWT_RS256_PUBLIC_KEY_FILE:-}" ]; then
  secret_file=$RUN_DIR/dev-jwt.secret
  [ -s "$secret_file" ] || (umask 077; openssl rand -hex 32 > "$secret_file")
  export JWT_HS256_SECRET=$(cat "$secret_file")
  token=$(JWT_HS256_SECRET=$JWT_HS256_SECRET python3 "$REPO/tests/dev_token.py")
fi
# Checkpoints of the transparency log, signed with a development key file (production: Vault's
# transit engine, CHECKPOINT_SIGNER=transit), published to a directory, the tiles served.
if [ -z "${CHECKPOINT_SIGNER:-}" ]; then
  export CHECKPOINT_SIGNER=file CHECKPOINT_KEY_FILE=$RUN_DIR/dev-checkpoint.pem
  [ -s "$CHECKPOINT_KEY_FILE" ] || (umask 077; openssl genpkey -algorithm ed25519 -out "$CHECKPOINT_KEY_FILE")
  # The cluster is new, and so must its checkpoint directory be: one holding an earlier log's
  # later checkpoints is refused (the sealing job never signs behind a published checkpoint).
  if [ -z "${CHECKPOINT_DIRECTORY:-}" ]; then
    export CHECKPOINT_DIRECTORY=$RUN_DIR/dev-checkpoints
    rm -rf "$CHECKPOINT_DIRECTORY"
  fi
  export TLOG_TILES_ENABLED=${TLOG_TILES_ENABLED:-true}
fi
export DATABASE_URL="postgresql://postgres@127.0.0.1:$PORT_PG/$db?sslmode=disable"
export PORT=${PORT:-3000}

"$REPO/target/release/agentidp-sidecar" &
sidecar=$!
trap 'kill $sidecar 2>/dev/null; wait $sidecar 2>/dev/null; stop_db' EXIT
wait_for 60 curl -sf "localhost:$PORT/health" -o /dev/null || { echo "the sidecar did not start"; exit 1; }
# The signer reads its key right after start.
wait_for 10 curl -sf "localhost:$PORT/api/v1/transparency/verifier-key" -o /dev/null || true
verifier_key=$(curl -sf "localhost:$PORT/api/v1/transparency/verifier-key" || echo "(no signer configured)")

cat <<MSG

  PostgreSQL: psql -h 127.0.0.1 -p $PORT_PG -U postgres $db
  Sidecar:    curl -s localhost:$PORT/api/v1/compliance/controls
              curl -s localhost:$PORT/metrics
${token:+              curl -s -H 'Authorization: Bearer $token' localhost:$PORT/api/v1/audit/verify
              (a dev token with scope audit:read, valid for 24 hours)}
  Key:        ${VAULT_ADDR:+Vault at $VAULT_ADDR}${ENCRYPTION_KEY_FILE:+dev key file $ENCRYPTION_KEY_FILE (no VAULT_ADDR set)}
  Checkpoints: signed every ${CHECKPOINT_INTERVAL_SECONDS:-30} s, verifier key
              $verifier_key
              curl -s localhost:$PORT/api/v1/transparency/checkpoints/global
              curl -s localhost:$PORT/api/v1/transparency/checkpoints
${CHECKPOINT_DIRECTORY:+              published to $CHECKPOINT_DIRECTORY}

MSG
wait $sidecar
