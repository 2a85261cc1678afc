#!/usr/bin/env bash
# Installs everything the build and the tests need; idempotent, safe to run on every start.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# python3-cryptography: Ed25519 for the witness double (tests/witness/witness_double.py).
# libkrb5-dev .. libreadline-dev: the Citus build below (../shared/vendor/README.md).
debs=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang build-essential
      pkg-config sudo prometheus wrk openssl curl jq python3-cryptography
      libkrb5-dev liblz4-dev libzstd-dev libxml2-dev libxslt1-dev libselinux1-dev libpam0g-dev
      libreadline-dev)
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

# Citus (tests/citus_up.sh, docs/scaling.md) is in no registry reachable here: build it from the
# vendored release source, patched for Debian's 15.20 headers. Skipped when this release is
# installed already: citus.so, and citus.control at the release's extension version.
citus_release=13.2.2 citus_ext=13.2-1
citus_vendor=$REPO/../shared/vendor
citus_control=$("$PG_CONFIG" --sharedir)/extension/citus.control
if ! { [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] &&
       grep -qs "^default_version = '$citus_ext'" "$citus_control"; }; then
  log "building Citus $citus_release for PostgreSQL 15 (about 4 minutes)"
  citus_build=$RUN_DIR/citus-build citus_log=$RUN_DIR/citus-build.log
  rm -rf "$citus_build" && mkdir -p "$citus_build"
  if ! ( tar xzf "$citus_vendor/citus-$citus_release.tar.gz" -C "$citus_build" &&
         cd "$citus_build/citus-$citus_release" &&
         patch -p1 < "$citus_vendor/citus-$citus_release-pg15.20.patch" &&
         ./configure PG_CONFIG="$PG_CONFIG" --without-libcurl &&
         make -j2 && make install ) > "$citus_log" 2>&1 ||
     ! grep -qs "^default_version = '$citus_ext'" "$citus_control"; then
    tail -n 30 "$citus_log" >&2
    echo "setup.sh: building Citus $citus_release from $citus_vendor failed; full log: $citus_log" >&2
    exit 1
  fi
  rm -rf "$citus_build"
fi
