#!/usr/bin/env bash
# Runs every test of rouse on a fresh machine: installs what the tests need, then lints and tests.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# supervisord is what rouse drives in the supervisord tests; python3 runs example backends.
command -v supervisord >/dev/null || need_apt+=(supervisor)
command -v python3 >/dev/null || need_apt+=(python3)
# The dashboard test drives Debian's headless chromium through chromedriver.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# The ACME tests get certificates from pebble, a real ACME CA, with pebble-challtestsrv as its DNS.
command -v pebble >/dev/null || need_apt+=(pebble)
# The cluster tests run a real etcd; etcd-client's build (rouse's `cluster` feature) needs protoc.
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
# ... and the well-known types (google/protobuf/descriptor.proto, ...) its protos import.
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || need_apt+=(libprotobuf-dev)
# examples/full.toml names Debian's CA bundle as a tls_ca_file, which must exist to validate.
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || need_apt+=(ca-certificates)
if ((${#need_apt[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# One full build: incremental caches would add gigabytes (5.6 GB measured) and speed up nothing.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== tests"
cargo test --workspace --all-features --locked
echo "== package"
# The Debian package (its profile-guided build, scripts/pgo-build.sh, trained by
# rouse-pgo-train; cargo-deb installed once), installed and run as the systemd unit would, then
# purged: scripts/package-test.sh. Bounded: every wait inside it is.
timeout 3000 ./scripts/package-test.sh
