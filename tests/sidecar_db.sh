#!/usr/bin/env bash
# The sidecar's database tests (sidecar/tests/db.rs) against a database of their own on PORT, and
# the runbook's key rotation end to end (sidecar/tests/rotation.rs), which recreates its own
# database beside it and runs the runbook's psql command.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: sidecar_db.sh PORT}
db=agentidp_sidecar
psql_at "$port" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql_at "$port" -d "$db" -c "CREATE EXTENSION pg_agentidp"
cd "$REPO"
AGENTIDP_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/$db?sslmode=disable" \
  PATH="$PG_BIN:$PATH" cargo test -p agentidp-sidecar --test db --test rotation
