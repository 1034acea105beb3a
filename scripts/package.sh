#!/usr/bin/env bash
# Builds rouse's Debian package with cargo-deb (installed first when missing) and prints its
# path: target/debian/rouse_VERSION_ARCH.deb (under $CARGO_TARGET_DIR when set).
#   scripts/package.sh [cargo deb options]      PGO=0: a release build instead of PGO
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: the package's layout and maintainer scripts are what this version makes.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

out="${CARGO_TARGET_DIR:-target}/debian"
mkdir -p "$out"
# The package has every feature users may configure: `cluster` ([cluster], through etcd).
# Its binary is the profile-guided build of scripts/pgo-build.sh (the `dist` profile: a
# quarter fewer instructions per proxied request than a release build), or with PGO=0 a plain
# release build. Either keeps line tables for backtraces; the package's binary is stripped
# (85 MB -> about 10 MB). cargo-deb prints the package's path last on stdout; its progress
# goes to stderr.
if [[ ${PGO:-1} == 1 ]]; then
    bin=$(scripts/pgo-build.sh --features cluster | tail -n1)
    # cargo-deb finds the binary as target/<profile>/rouse under the target dir it is given.
    deb=$(CARGO_TARGET_DIR="${bin%/dist/rouse}" cargo deb -p rouse --locked --strip --no-build \
        --profile dist --output "$out" "$@" | tail -n1)
else
    deb=$(cargo deb -p rouse --locked --strip --features cluster --output "$out" "$@" | tail -n1)
fi
[[ -f "$deb" ]] || { echo "package.sh: cargo deb made no package ($deb)" >&2; exit 1; }
echo "$deb"
