#!/usr/bin/env bash
# Installs everything the build and the tests need; idempotent, safe to run on every start.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# python3-cryptography: Ed25519 for the witness double (tests/witness/witness_double.py).
debs=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang build-essential
      pkg-config sudo prometheus wrk openssl curl jq python3-cryptography)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The -dev package can upgrade the server under a running cluster, which then fails to load
  # plpgsql (undefined symbol): restart whatever runs.
  for pid in "$RUN_DIR"/*/postmaster.pid; do
    [ -f "$pid" ] || continue
    as_postgres "$PG_BIN/pg_ctl" -D "$(dirname "$pid")" -m fast -w restart >/dev/null || true
  done
fi
# Debian's package starts a cluster of its own on 5432; ours use other ports, so leave it be.

# The postgres user must own the clusters' parent directory, `cargo pgrx test --pgdata` included,
# which creates its cluster there before any of ours has started.
mkdir -p "$RUN_DIR" && chown postgres "$RUN_DIR"

if ! cargo pgrx --version 2>/dev/null | grep -q "0.18.0"; then
  log "installing cargo-pgrx 0.18.0 (a few minutes)"
  cargo install cargo-pgrx --version 0.18.0 --locked
fi
if ! grep -qs "pg15" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  cargo pgrx init --pg15 "$PG_CONFIG"
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

# The API conformance suite (tests/sidecar_api.sh) runs schemathesis from PyPI, pinned, in a venv
# of its own so that nothing else's Python packages move under it.
st_venv=$RUN_DIR/schemathesis-venv
if ! "$st_venv/bin/schemathesis" --version 2>/dev/null | grep -q 4.32.5; then
  log "installing schemathesis 4.32.5"
  python3 -m venv --clear "$st_venv" && "$st_venv/bin/pip" install -q schemathesis==4.32.5
fi
