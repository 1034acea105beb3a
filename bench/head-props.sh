#!/usr/bin/env bash
# A long run of the request-head property tests (crates/e2e/tests/head_props.rs): mutated heads
# sent raw to a rouse in front of the test backend, checked against httparse's reading and a
# plain hyper server's decisions. The test command runs 64 cases; this runs CASES (default
# 20000) per property, in release mode, on 127.0.0.1 only.
#
# Knobs (environment): CASES, CARGO_TARGET_DIR. A failure prints the smallest failing case.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${CASES:-20000}
echo "head_props: $CASES cases per property"
PROPTEST_CASES=$CASES exec cargo test --release -p rouse-e2e --test head_props
