#!/usr/bin/env bash
# Fuzzes every parser dwlth has (fuzz/fuzz_targets/*.rs) with cargo-fuzz and libFuzzer.
#
#   tools/fuzz.sh [--seconds N] [--jobs J] [--commit] [TARGET ...]
#
# --seconds N   fuzzing time per target (default 300)
# --jobs J      targets fuzzed at once (default 2)
# --commit      minimise each target's corpus into fuzz/corpus/<target>/ (a set cover of the
#               edges reached, smallest inputs first, at most 128 KiB per target): the corpus
#               `cargo test` replays
# TARGET ...    only these targets (default: all)
#
# Needs a nightly toolchain (`cargo +nightly --version`); installs cargo-fuzz from crates.io if
# it is missing. Seeds come from the library's own writers and the test fixtures
# (`tests/fuzz_corpora.rs`, `write_fuzz_seeds`); run tools/setup-test-data.sh first for the
# image and MNIST seeds. The working corpora, logs and a summary (fuzz/target/summary.md: per
# target executions, seconds, corpus size, crashes) stay under fuzz/target/. A crash stops its
# target; its input is in fuzz/artifacts/<target>/ — once fixed, copy it to
# fuzz/regressions/<target>/ so `cargo test` replays it.
#
# Targets run without a sanitizer (`-s none`): the parsers are safe Rust, and a build of Burn
# under AddressSanitizer would take most of an hour here. Panics, aborts, integer overflow
# (debug assertions are on), hangs (-timeout) and runaway memory (-rss_limit_mb) are caught.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=300
jobs=2
commit=0
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --commit) commit=1; shift ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzzing needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
fi

echo "==> seeds"
export DWLTH_FUZZ_SEEDS="$PWD/fuzz/target/seeds"
rm -rf "$DWLTH_FUZZ_SEEDS"
cargo test --test fuzz_corpora -- --ignored --exact write_fuzz_seeds --quiet

echo "==> building the targets"
(cd fuzz && cargo +nightly fuzz build -s none)

# Scratch files of the harnesses: in memory when possible.
if [[ -d /dev/shm && -w /dev/shm ]]; then export TMPDIR=/dev/shm; fi
mkdir -p fuzz/target/corpus fuzz/target/logs

fuzz_one() {
    local t="$1"
    local work="fuzz/target/corpus/$t"
    mkdir -p "$work" "fuzz/corpus/$t" "fuzz/target/seeds/$t"
    local start=$SECONDS status=0
    (cd fuzz && cargo +nightly fuzz run -s none "$t" "../$work" "../fuzz/target/seeds/$t" \
        "corpus/$t" -- -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
        -print_final_stats=1) >"fuzz/target/logs/$t.log" 2>&1 || status=$?
    local execs
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "fuzz/target/logs/$t.log" |
        awk '{s += $2} END {print s + 0}')
    local crash="none"
    if [[ $status -ne 0 ]]; then
        crash=$(grep -o 'fuzz/artifacts/[^ ]*' "fuzz/target/logs/$t.log" | head -1)
        crash="${crash:-exit $status, see fuzz/target/logs/$t.log}"
    fi
    printf '| %s | %s | %s | %s | %s |\n' "$t" "$execs" "$((SECONDS - start))" \
        "$(ls "$work" | wc -l)" "$crash" >"fuzz/target/logs/$t.row"
    echo "  $t: $execs executions in $((SECONDS - start)) s, crash: $crash"
}
export -f fuzz_one
export seconds

echo "==> fuzzing ${#targets[@]} targets, $seconds s each, $jobs at a time"
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'fuzz_one {}'

{
    echo "| target | executions | seconds | corpus | crash |"
    echo "|---|---|---|---|---|"
    for t in "${targets[@]}"; do cat "fuzz/target/logs/$t.row"; done
} >fuzz/target/summary.md
awk -F'|' 'NR > 2 {s += $3} END {printf "==> %d executions in total\n", s}' fuzz/target/summary.md

if [[ $commit -eq 1 ]]; then
    # The committed corpus: a smallest set of inputs covering every edge the fuzzing reached
    # (libFuzzer's set-cover merge on edges, `-use_counters=0`), smallest first up to 128 KiB
    # per target, so that `cargo test` replays it in seconds.
    echo "==> minimising the corpora into fuzz/corpus/"
    bin=fuzz/target/x86_64-unknown-linux-gnu/release
    for t in "${targets[@]}"; do
        cover="fuzz/target/cover/$t"
        rm -rf "$cover" && mkdir -p "$cover"
        "$bin/$t" -set_cover_merge=1 -use_counters=0 -rss_limit_mb=4096 -timeout=20 "$cover" \
            "fuzz/target/corpus/$t" "fuzz/target/seeds/$t" "fuzz/corpus/$t" \
            >"fuzz/target/logs/$t.merge.log" 2>&1
        rm -rf "fuzz/corpus/$t" && mkdir -p "fuzz/corpus/$t"
        used=0
        while read -r size file; do
            ((used + size > 131072)) && break
            cp "$cover/$file" "fuzz/corpus/$t/"
            used=$((used + size))
        done < <(cd "$cover" && find . -type f -printf '%s %f\n' | sort -n)
        echo "  $t: $(ls "fuzz/corpus/$t" | wc -l) inputs, $((used / 1024)) KiB"
    done
fi
cat fuzz/target/summary.md
