#!/usr/bin/env bash
# Runs one fuzz target reproducibly: a fresh corpus copied from the committed seeds
# (fuzz/seeds/TARGET), libFuzzer seed 1, a fixed number of executions, one process, nice 19.
#
#   fuzz/run.sh TARGET [RUNS]     RUNS defaults to 10000000
#   fuzz/run.sh --list            the targets (the [[bin]] entries of fuzz/Cargo.toml)
#
# Environment: CARGO_TARGET_DIR (build and scratch corpus; default fuzz/target),
# FUZZ_SANITIZER (default none, as the recorded runs; `address` works on stable too, 2.5-5.4x
# slower here; see README.md).
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable toolchain the -Z flags
# cargo-fuzz passes to rustc are unlocked with RUSTC_BOOTSTRAP=1; on nightly it is harmless.
# Prints libFuzzer's final stats and its "Done N runs in S second(s)" line; exits non-zero if
# the target crashed (the input is then in fuzz/artifacts/TARGET/).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

targets() {
    awk '/^\[\[bin\]\]/ { bin = 1; next }
         /^\[/          { bin = 0 }
         bin && /^name[ \t]*=/ { gsub(/^name[ \t]*=[ \t]*"|".*$/, ""); print }' "$here/Cargo.toml"
}

if [ "${1:-}" = "--list" ]; then
    targets
    exit 0
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 TARGET [RUNS] | $0 --list" >&2
    exit 2
fi
target="$1"
runs="${2:-10000000}"
if ! targets | grep -qx -- "$target"; then
    echo "unknown target '$target'; targets: $(targets | tr '\n' ' ')" >&2
    exit 2
fi
if [ ! -d "$here/seeds/$target" ]; then
    echo "no seeds for '$target' in $here/seeds/$target" >&2
    exit 2
fi

export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-$here/target}"
sanitizer="${FUZZ_SANITIZER:-none}"
build=(--release --debug-assertions --sanitizer "$sanitizer" --target-dir "$target_dir")

corpus="$target_dir/corpus-run/$target"
log="$target_dir/corpus-run/$target.log"
rm -rf "$corpus"
mkdir -p "$corpus"
cp "$here/seeds/$target"/* "$corpus/"

cd "$here"
echo "== $target: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- .. 2>/dev/null || echo '+dirty'), sanitizer $sanitizer, $runs runs, $(ls "$corpus" | wc -l) seeds"
nice -n 19 cargo fuzz build "${build[@]}" "$target"
status=0
nice -n 19 cargo fuzz run "${build[@]}" "$target" "$corpus" -- \
    -seed=1 -runs="$runs" -print_final_stats=1 >"$log" 2>&1 || status=$?
grep -E '^stat::|^Done [0-9]+ runs' "$log" || true
echo "corpus at end: $(ls "$corpus" | wc -l) files, $(cat "$corpus"/* | wc -c) bytes; log: $log"
if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "== $target FAILED (exit $status)" >&2
fi
exit "$status"
