#!/usr/bin/env bash
# Builds rouse with profile-guided optimisation and prints the binary's path (the last line
# on stdout; the rest goes to stderr):
#
#   1. an instrumented build (`-Cprofile-generate`) of the `dist` profile (release with fat LTO
#      and one codegen unit: the instrumented and the final build must make the same code);
#   2. `rouse-pgo-train` (crates/e2e) runs it in front of the test backend on a mix of loads
#      (small and large h1 requests, uploads, HTTP/1.0 keep-alive, a connection per request,
#      h2c, HTTPS h1 and h2) and stops it, which writes its profile;
#   3. llvm-profdata (rustup's llvm-tools, added when missing) merges the profile;
#   4. the final build of the `dist` profile uses it (`-Cprofile-use`).
#
# The profile is made anew every time: one made from other code would no longer match it.
# docs/benchmarks.md ("Session 18") measures what it changes: a quarter fewer instructions per
# proxied request. The Debian package is built this way (scripts/package.sh).
#
#   scripts/pgo-build.sh [cargo build options, e.g. --features cluster]
#
# PGO_DIR (default ${CARGO_TARGET_DIR:-target}/pgo) holds both builds and the profile;
# PGO_SECONDS (default 1.5) is how long each load of the training runs.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
dir="${PGO_DIR:-$target/pgo}"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
say() { echo "pgo-build: $*" >&2; }

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x $profdata ]]; then
    say "adding rustup's llvm-tools (llvm-profdata)"
    rustup component add llvm-tools >&2
fi
[[ -x $profdata ]] || { say "no llvm-profdata at $profdata"; exit 1; }

say "the trainer (rouse-pgo-train, a debug build)"
cargo build --locked -p rouse-e2e --bin rouse-pgo-train >&2
trainer="$target/debug/rouse-pgo-train"

raw="$dir/raw"
rm -rf "$raw"
say "the instrumented build"
CARGO_TARGET_DIR="$dir/generate" RUSTFLAGS="-Cprofile-generate=$raw" \
    cargo build --locked --profile dist -p rouse "$@" >&2

say "training"
timeout 600 "$trainer" --rouse "$dir/generate/dist/rouse" --seconds "${PGO_SECONDS:-1.5}" >&2
compgen -G "$raw/*.profraw" >/dev/null || { say "the training left no profile in $raw"; exit 1; }
"$profdata" merge -o "$dir/rouse.profdata" "$raw" >&2

say "the optimised build"
CARGO_TARGET_DIR="$dir/use" RUSTFLAGS="-Cprofile-use=$dir/rouse.profdata" \
    cargo build --locked --profile dist -p rouse "$@" >&2
echo "$dir/use/dist/rouse"
