#!/usr/bin/env bash
# Builds rouse's Debian package with cargo-deb (installed first when missing) and prints its
# path: target/debian/rouse_VERSION_ARCH.deb (under $CARGO_TARGET_DIR when set).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: the package's layout and maintainer scripts are what this version makes.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

out="${CARGO_TARGET_DIR:-target}/debian"
mkdir -p "$out"
# A release build of the rouse binary (the workspace's release profile keeps line tables for
# backtraces; the package's binary is stripped: 85 MB -> about 10 MB).
# The package has every feature users may configure: `cluster` ([cluster], through etcd).
# cargo-deb prints the package's path last on stdout; its progress goes to stderr.
deb=$(cargo deb -p rouse --locked --strip --features cluster --output "$out" "$@" | tail -n1)
[[ -f "$deb" ]] || { echo "package.sh: cargo deb made no package ($deb)" >&2; exit 1; }
echo "$deb"
