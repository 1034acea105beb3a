#!/usr/bin/env bash
# Long runs of the workspace's property tests (the fuzzing of issue 9, on stable Rust).
#
#   bench/fuzz.sh [BUDGET]          BUDGET: 600 (seconds), 30m, 2h; default 10m
#   bench/fuzz.sh --list            what it would run, and nothing else
#
# The test command (scripts/test.sh) runs every property test with a few dozen cases; this runs
# them again and again with many (PROPTEST_CASES=$CASES, a fresh random seed each round) until
# BUDGET is spent. Which tests: found by name, so that new ones join without editing this file:
#   - every test of a test file named `*_props.rs` (crates/*/tests/NAME_props.rs), and
#   - every test, in any test binary (unit tests included), whose name ends in `_props`.
#
# The build is `cargo test --no-run` in the release profile with overflow checks and debug
# assertions forced on (what a debug build would panic on must still panic here), in its own
# target dir ($CARGO_TARGET_DIR/fuzz, or target/fuzz), so it does not disturb other builds.
#
# A failing test prints proptest's minimal failing input; proptest also saves its seed next to
# the test file (`*.proptest-regressions`): commit that file, so every later run replays it.
#
# Knobs (environment):
#   CASES (10000)        PROPTEST_CASES per test per round
#   PACKAGES (all)       space-separated cargo packages to build and search (e.g. "rouse-supervisor")
#   PROFILE (release)    `release` (checks forced on, as above) or `dev`
#   CARGO_TARGET_DIR     base of the target dir (fuzz builds go to its `fuzz` subdir)
# Report: stdout and bench/out/fuzz-YYYYmmdd-HHMMSS.md (with every failing test's output).
# Exit: 0 no failure, 3 a test failed (see the report), 1 setup failed (build, no tests found).
set -euo pipefail

CASES=${CASES:-10000}
PACKAGES=${PACKAGES:-}
PROFILE=${PROFILE:-release}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"

log() { printf '[fuzz.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

LIST_ONLY=0
BUDGET_ARG=10m
for a in "$@"; do
    case $a in
        --list) LIST_ONLY=1 ;;
        -h | --help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) BUDGET_ARG=$a ;;
    esac
done
[[ $BUDGET_ARG =~ ^([0-9]+)([smh]?)$ ]] || die "BUDGET must look like 600, 30m or 2h (got '$BUDGET_ARG')"
case ${BASH_REMATCH[2]} in
    h) BUDGET=$((BASH_REMATCH[1] * 3600)) ;;
    m) BUDGET=$((BASH_REMATCH[1] * 60)) ;;
    *) BUDGET=${BASH_REMATCH[1]} ;;
esac
((BUDGET >= 1)) || die "BUDGET must be at least 1 s"
{ [[ $CASES =~ ^[0-9]+$ ]] && ((CASES >= 1)); } || die "CASES must be a positive integer (got '$CASES')"
[[ $PROFILE == release || $PROFILE == dev ]] || die "PROFILE is release or dev (got '$PROFILE')"
command -v python3 >/dev/null 2>&1 || die "python3 is needed (reads cargo's JSON)"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/fuzz"
PKG_ARGS=(--workspace)
if [[ -n $PACKAGES ]]; then
    PKG_ARGS=()
    for p in $PACKAGES; do PKG_ARGS+=(-p "$p"); done
fi
PROFILE_ARGS=()
[[ $PROFILE == release ]] && PROFILE_ARGS=(--release)

TMP=$(mktemp -d /tmp/rouse-fuzz.XXXXXX)
CHILD=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 1. Build every test binary; cargo's JSON names each one and its executable.
# ---------------------------------------------------------------------------------------------
log "building: cargo test ${PKG_ARGS[*]} ${PROFILE_ARGS[*]} --no-run (target dir $TARGET)"
(
    cd "$ROOT"
    CARGO_TARGET_DIR="$TARGET" \
        CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true \
        CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
        cargo test "${PKG_ARGS[@]}" "${PROFILE_ARGS[@]}" --no-run --message-format=json
) >"$TMP/build.json" 2>"$TMP/build.err" || { tail -30 "$TMP/build.err" >&2; die "build failed"; }

# One line per test binary: "PACKAGE TARGET PACKAGE_DIR EXECUTABLE" (paths without spaces: cargo's
# own target dir and the workspace)
python3 - "$TMP/build.json" >"$TMP/binaries.txt" <<'EOF'
import json, sys
seen = set()
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    pkg = m["package_id"].split("#")[-1].split("@")[0].split("/")[-1]
    name = m["target"]["name"]
    if m["executable"] in seen:
        continue
    seen.add(m["executable"])
    print(pkg, name, m["manifest_path"].rsplit("/", 1)[0], m["executable"])
EOF

# ---------------------------------------------------------------------------------------------
# 2. The selection: "EXECUTABLE<TAB>PACKAGE/TARGET<TAB>TEST..." per binary that has any.
# ---------------------------------------------------------------------------------------------
: >"$TMP/selection.txt"
while read -r pkg name dir exe; do
    tests=$("$exe" --list --format=terse 2>/dev/null | sed -n 's/: test$//p' || true)
    [[ -n $tests ]] || continue
    if [[ $name == *_props ]]; then
        chosen=$tests
    else
        chosen=$(grep -E '(^|::)[A-Za-z0-9_]*_props$' <<<"$tests" || true)
    fi
    [[ -n $chosen ]] || continue
    printf '%s\t%s\t%s/%s\t%s\n' "$exe" "$dir" "$pkg" "$name" "$(tr '\n' ' ' <<<"$chosen")" >>"$TMP/selection.txt"
done <"$TMP/binaries.txt"
[[ -s $TMP/selection.txt ]] || die "no property tests found (files *_props.rs, or tests named *_props)"

N_TESTS=0
while IFS=$'\t' read -r _ _ where tests; do
    n=$(wc -w <<<"$tests")
    N_TESTS=$((N_TESTS + n))
    log "$where: $n test(s): $tests"
done <"$TMP/selection.txt"
((LIST_ONLY == 0)) || exit 0

# ---------------------------------------------------------------------------------------------
# 3. Rounds until the budget is spent: each selected binary runs its tests with
#    PROPTEST_CASES=$CASES (proptest draws a new seed each run). The round under way when the
#    budget ends is cut (timeout) and not counted.
# ---------------------------------------------------------------------------------------------
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT_DIR"
OUT_FILE="$OUT_DIR/fuzz-$STAMP.md"
FAILS="$TMP/failures.md"
: >"$FAILS"
declare -A ROUNDS_OK=()
# A binary that failed once is not run again: proptest replays the saved seed first, so every
# later round would fail the same way and spend the budget on it.
declare -A FAILED=()
N_FAIL=0
T0=$(date +%s)
round=0
while :; do
    round=$((round + 1))
    ran=0
    while IFS=$'\t' read -r exe dir where tests; do
        [[ -z ${FAILED[$where]:-} ]] || continue
        ran=1
        left=$((T0 + BUDGET - $(date +%s)))
        ((left > 0)) || break 2
        # As cargo runs it: from its package's folder (fixtures, and where proptest saves seeds).
        # shellcheck disable=SC2086  # one argument per test name
        (cd "$dir" && CARGO_MANIFEST_DIR=$dir PROPTEST_CASES=$CASES RUST_BACKTRACE=1 \
            exec timeout --signal=TERM --kill-after=10 "$left" \
            "$exe" --exact --test-threads=1 $tests) >"$TMP/run.txt" 2>&1 &
        CHILD=$!
        rc=0
        wait "$CHILD" || rc=$?
        CHILD=""
        if ((rc == 124 || rc == 137)); then
            log "round $round, $where: cut by the budget (not counted)"
            break 2
        elif ((rc != 0)); then
            N_FAIL=$((N_FAIL + 1))
            FAILED[$where]=$round
            log "round $round, $where: FAILED (exit $rc); output in the report; not run again"
            {
                echo "### $where, round $round (exit $rc)"
                echo
                echo '```'
                grep -vE '^test .* \.\.\. ok$' "$TMP/run.txt" | head -300
                echo '```'
                echo
            } >>"$FAILS"
        else
            ROUNDS_OK[$where]=$((${ROUNDS_OK[$where]:-0} + 1))
            log "round $round, $where: ok ($(grep -c ' \.\.\. ok$' "$TMP/run.txt") tests, $CASES cases each)"
        fi
    done <"$TMP/selection.txt"
    ((ran)) || break   # every binary failed
done
ELAPSED=$(($(date +%s) - T0))

{
    echo "# rouse property tests, long run ($STAMP)"
    echo
    echo "Command: \`CASES=$CASES PROFILE=$PROFILE${PACKAGES:+ PACKAGES=\"$PACKAGES\"} bench/fuzz.sh $BUDGET_ARG\`"
    echo
    echo "- commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n $(cd "$ROOT" && git status --porcelain -- crates 2>/dev/null) ]] && echo " (crates/ has uncommitted changes)"); $(rustc --version 2>/dev/null || echo rustc unknown); profile $PROFILE$([[ $PROFILE == release ]] && echo " with overflow checks and debug assertions on")"
    echo "- budget ${BUDGET}s, ran ${ELAPSED}s; $N_TESTS test(s) in $(wc -l <"$TMP/selection.txt") binaries; PROPTEST_CASES=$CASES per test per round"
    echo
    echo "| binary | tests | complete rounds without failure | cases per property test | failed in round |"
    echo "|---|---|---|---|---|"
    while IFS=$'\t' read -r _ _ where tests; do
        r=${ROUNDS_OK[$where]:-0}
        echo "| $where | $(wc -w <<<"$tests") | $r | $((r * CASES)) | ${FAILED[$where]:-–} |"
    done <"$TMP/selection.txt"
    echo
    echo "## Failures"
    echo
    if [[ -s $FAILS ]]; then
        cat "$FAILS"
        echo "Seeds saved by proptest (commit them with the fix, so that every run replays them):"
        echo
        echo '```'
        (cd "$ROOT" && git status --porcelain -- '*.proptest-regressions' && git diff -U0 -- '*.proptest-regressions' | grep '^+cc' | cut -c1-300) || true
        echo '```'
    else
        echo "none"
    fi
} >"$OUT_FILE"
cat "$OUT_FILE"
log "report written to $OUT_FILE"
if ((N_FAIL > 0)); then
    log "$N_FAIL failing run(s); proptest saved their seeds in *.proptest-regressions next to the tests"
    exit 3
fi
