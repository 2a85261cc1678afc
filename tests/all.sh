#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: formatting, lints, unit tests, the extension's
# pg_tests, and the SQL, concurrency and hot-standby suites against real clusters.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"

TEST_PORT=5498
STANDBY_PORT=5497
# The key-secrecy test starts a cluster of its own: it needs the library preloaded and every
# statement logged.
SECRECY_PORT=5495
API_PORT=5480
CHAIN_BREAK_PORT=5484
UPGRADE_PORT=5488
NO_PRELOAD_PORT=5486
suites_passed=0
suites_failed=()

# suite NAME COMMAND...: runs one suite, records its outcome, goes on to the next.
suite() {
  local name=$1; shift
  log "$name"
  if "$@"; then
    suites_passed=$((suites_passed + 1))
  else
    suites_failed+=("$name")
    echo "!! suite $name failed"
  fi
}

cleanup() { stop_cluster test; stop_cluster standby; }
trap cleanup EXIT

bash tests/setup.sh || { echo "setup failed"; exit 1; }

suite fmt cargo fmt --all --check
suite clippy cargo clippy --workspace --all-targets -- -D warnings
# The sidecar's database tests run below, once a cluster with the extension is up.
suite unit bash -c "cargo test --workspace --exclude pg_agentidp --exclude agentidp-sidecar &&
  cargo test -p agentidp-sidecar --lib --test api --test vault --test signer"
suite alerts bash tests/alerts.sh
suite docs bash tests/docs.sh
suite witness bash tests/witness/test_witness_double.sh 3941
suite pg_test bash -c "cd pg_agentidp && cargo pgrx test pg15 --runas postgres --pgdata '$RUN_DIR/pgrx-test'"

log "installing the extension and starting a test cluster on $TEST_PORT"
# Prepared transactions: the concurrency suite commits one between a session's appends. Preloaded,
# as production must be: without it a key passed in the connection options is refused.
if install_extension && start_cluster test "$TEST_PORT" "max_prepared_transactions = 4" \
    "shared_preload_libraries = 'pg_agentidp'"; then
  suite regress bash tests/regress.sh "$TEST_PORT"
  suite upgrade bash tests/upgrade.sh "$UPGRADE_PORT"
  suite concurrency bash tests/concurrency.sh "$TEST_PORT"
  suite restore bash tests/restore.sh "$TEST_PORT"
  suite standby bash tests/standby.sh "$TEST_PORT" "$STANDBY_PORT"
  suite sidecar_db bash tests/sidecar_db.sh "$TEST_PORT"
  suite encryption_openssl bash tests/encryption_openssl.sh "$TEST_PORT"
  suite encryption_rotation bash tests/encryption_rotation.sh "$TEST_PORT"
  suite encryption_secrecy bash tests/encryption_secrecy.sh "$SECRECY_PORT"
  suite encryption_no_preload bash tests/encryption_no_preload.sh "$NO_PRELOAD_PORT"
  # These start clusters and sidecars of their own, with the installed extension.
  suite sidecar_api bash tests/sidecar_api.sh "$API_PORT"
  suite chain_break bash tests/chain_break.sh "$CHAIN_BREAK_PORT" 3930 9091
  suite transparency bash tests/transparency.sh 5476 5475 3932 3942 9093
  suite packages bash tests/packages.sh 5482
  # A coordinator and two workers, a single node and a subscriber, and a sidecar: all its own.
  suite citus bash tests/citus.sh 5470 "5471 5472" 5473 5474 3933
else
  suites_failed+=("install")
fi

echo
[ ${#suites_failed[@]} -eq 0 ] || echo "failed suites: ${suites_failed[*]}"
echo "suites: $suites_passed passed, ${#suites_failed[@]} failed"
[ ${#suites_failed[@]} -eq 0 ]
