#!/usr/bin/env bash
# Builds the two Debian packages and prints the directory they are in (the only line on stdout;
# the builds' output goes to stderr):
#
#   postgresql-15-pg-agentidp  the extension, as `cargo pgrx package` lays it out
#   agentidp-sidecar           the sidecar in /usr/bin, its systemd unit and settings file
#
#   bash packaging/build-debs.sh [--sidecar-profile PROFILE] [--out-dir DIR]
#
# DIR defaults to target/debian. PG_CONFIG (default PostgreSQL 15's) picks the server.
#
# Build cost. The extension is built exactly as `cargo pgrx install --release` builds it
# (tests/lib.sh install_extension): `cargo pgrx package` runs the same `cargo build --lib
# --release` with the same features, so after an install it compiles nothing, and only reads the
# schema out of the library. The sidecar is built with PROFILE, default `release` (fat LTO, one
# codegen unit: minutes) for real packages. The tests pass `--sidecar-profile dev`, the debug
# binary tests/sidecar_api.sh has already built, so CI never pays for a second, release build of
# the sidecar just to package it. Either way debug info is stripped from the packaged copy.
#
# Needs dpkg-deb, dpkg-shlibdeps (dpkg-dev, which build-essential brings), objcopy (binutils, the
# same), jq, gzip.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
sidecar_profile=release
out=

usage() { echo "usage: $0 [--sidecar-profile PROFILE] [--out-dir DIR]" >&2; exit 64; }
while [ $# -gt 0 ]; do
  case $1 in
    --sidecar-profile) [ $# -ge 2 ] || usage; sidecar_profile=$2; shift 2 ;;
    --out-dir) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    *) usage ;;
  esac
done

say() { printf '== %s\n' "$*" >&2; }

cd "$repo"
metadata=$(cargo metadata -q --format-version 1 --no-deps)
target_dir=$(jq -r .target_directory <<<"$metadata")
# version_of CRATE: its version (the workspace's), in Debian's spelling: a pre-release such as
# 0.2.0-rc.1 becomes 0.2.0~rc.1, which sorts before 0.2.0.
version_of() {
  local v
  v=$(jq -r --arg n "$1" '.packages[] | select(.name == $n) | .version' <<<"$metadata")
  [ -n "$v" ] || { echo "no crate $1 in the workspace" >&2; exit 1; }
  echo "${v/-/\~}"
}
arch=$(dpkg --print-architecture)
pg_major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
out=${out:-$target_dir/debian}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# control TEMPLATE ROOT VERSION [@NAME@=VALUE...]: DEBIAN/control from the template, its
# placeholders filled, and DEBIAN/md5sums of everything outside /etc (conffiles' sums are dpkg's).
control() {
  local template=$1 root=$2 version=$3 size sub kv; shift 3
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  mkdir -p "$root/DEBIAN"
  sub=(-e "s|@VERSION@|$version|g" -e "s|@ARCH@|$arch|g" -e "s|@INSTALLED_SIZE@|$size|g"
       -e "s|@PG_MAJOR@|$pg_major|g")
  for kv in "$@"; do sub+=(-e "s|${kv%%=*}|${kv#*=}|g"); done
  sed "${sub[@]}" "$template" > "$root/DEBIAN/control"
  if grep -n '@[A-Z_]*@' "$root/DEBIAN/control" >&2; then
    echo "unfilled placeholders in $template" >&2; exit 1
  fi
  (cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' \
    | sort -z | xargs -0r md5sum) > "$root/DEBIAN/md5sums"
}

# shlibs FILE: the shared libraries FILE links, as Depends (dpkg-shlibdeps wants a debian/control).
shlibs() {
  local dir=$stage/shlibs deps
  mkdir -p "$dir/debian"
  printf 'Source: x\n\nPackage: x\nArchitecture: any\n' >"$dir/debian/control"
  deps=$(cd "$dir" && dpkg-shlibdeps -O "$1" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  [ -n "$deps" ] || { echo "dpkg-shlibdeps found no dependencies of $1" >&2; exit 1; }
  echo "$deps"
}

# docs ROOT NAME VERSION: copyright and a changelog dated by the last commit, as policy wants.
docs() {
  local doc=$1/usr/share/doc/$2 date
  date=$(git log -1 --format=%cD 2>/dev/null) || date=$(date -R)
  install -D -m 0644 "$here/copyright" "$doc/copyright"
  sed -e "s|@PACKAGE@|$2|g" -e "s|@VERSION@|$3|g" -e "s|@DATE@|$date|g" \
    "$here/changelog" | gzip -9n >"$doc/changelog.gz"
  chmod 0644 "$doc/changelog.gz"
}

# deb ROOT NAME VERSION: the package file, in $out, owned by root inside.
deb() {
  local file=$out/${2}_${3}_${arch}.deb
  chmod 0755 "$1"
  dpkg-deb --root-owner-group --build "$1" "$file" >&2
  echo "$file" >&2
}

ext_name=postgresql-$pg_major-pg-agentidp
ext_version=$(version_of pg_agentidp)
say "$ext_name $ext_version: cargo pgrx package"
ext=$stage/$ext_name
# Into a fresh tree, so that nothing left from an older version's package is shipped.
(cd pg_agentidp && cargo pgrx package --pg-config "$pg_config" --out-dir "$ext") >&2
find "$ext" -type d -exec chmod 0755 {} + && find "$ext" -type f -exec chmod 0644 {} +
# The library is shipped as cargo pgrx installs it (not stripped), so that a package and an install
# leave the same files.
docs "$ext" "$ext_name" "$ext_version"
ext_shlibs=$(shlibs "$ext/usr/lib/postgresql/$pg_major/lib/pg_agentidp.so")
control "$here/postgresql-pg-agentidp/control" "$ext" "$ext_version" "@SHLIBS_DEPENDS@=$ext_shlibs"
deb "$ext" "$ext_name" "$ext_version"

sc_version=$(version_of agentidp-sidecar)
say "agentidp-sidecar $sc_version: cargo build --profile $sidecar_profile"
cargo build -p agentidp-sidecar --bin agentidp-sidecar --profile "$sidecar_profile" >&2
case $sidecar_profile in
  dev | test) profile_dir=debug ;;
  bench) profile_dir=release ;;
  *) profile_dir=$sidecar_profile ;;
esac
sc=$stage/agentidp-sidecar
install -D -m 0755 "$target_dir/$profile_dir/agentidp-sidecar" "$sc/usr/bin/agentidp-sidecar"
# Debug info off (a debug build's is most of its 190 MB); the symbols stay, for backtraces.
objcopy --strip-debug "$sc/usr/bin/agentidp-sidecar"
install -D -m 0644 "$here/agentidp-sidecar/agentidp-sidecar.service" \
  "$sc/lib/systemd/system/agentidp-sidecar.service"
# Secrets go in it: not world-readable even before postinst gives the group agentidp.
install -D -m 0640 "$here/agentidp-sidecar/sidecar.env" "$sc/etc/agentidp/sidecar.env"
docs "$sc" agentidp-sidecar "$sc_version"
install -D -m 0644 sidecar/README.md "$sc/usr/share/doc/agentidp-sidecar/README.md"
install -D -m 0644 "$here/agentidp-sidecar/lintian-overrides" \
  "$sc/usr/share/lintian/overrides/agentidp-sidecar"
install -D -m 0644 "$here/agentidp-sidecar/conffiles" "$sc/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$here/agentidp-sidecar/$script" "$sc/DEBIAN/$script"
done
sc_shlibs=$(shlibs "$sc/usr/bin/agentidp-sidecar")
control "$here/agentidp-sidecar/control" "$sc" "$sc_version" "@SHLIBS_DEPENDS@=$sc_shlibs"
deb "$sc" agentidp-sidecar "$sc_version"

echo "$out"
