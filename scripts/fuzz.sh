#!/usr/bin/env bash
# Coverage-guided fuzzing of every genocnn reader with AFL++ (cargo-afl, on
# stable Rust). The harnesses are crates/fuzz/src/lib.rs; the seeds are
# crates/fuzz/corpora/FAMILY/.
#
#   scripts/fuzz.sh [--seconds N] [--families plink,raw,...] [--out DIR] [--parallel K]
#
# Each family runs for N seconds (default 10: the short run in .ci/run). A
# family whose output folder already holds a run is resumed, so repeated
# runs add up; the table at the end gives each family's total executions and
# fuzzing time from AFL's own fuzzer_stats. The long run in the README is
#   scripts/fuzz.sh --seconds 3600 --out fuzz-out --parallel 2
# Any crash or hang fails the script and lists the inputs; copy each into
# crates/fuzz/crashes/FAMILY/ once fixed, where `cargo test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
families="plink,delimited,raw,tables,specs,saved,images,vcf"
out="target/fuzz-out"
parallel=1
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --families) families="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --parallel) parallel="$2"; shift 2 ;;
        *) echo "fuzz.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done

if ! cargo afl --version > /dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-afl 0.18.2 (builds the AFL++ runtime; about a minute)"
    cargo install cargo-afl --version 0.18.2 --locked --quiet
fi

# A target folder of its own: the instrumented build must not replace the
# ordinary one (FUZZ_TARGET_DIR chooses another, for a long run beside work).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-target/afl}"
cargo afl build --release -p fuzz --features afl --bins --quiet

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_AFFINITY=1 AFL_AUTORESUME=1 AFL_QUIET=1
mkdir -p "$out"

run_one() {
    local f="$1"
    local input="crates/fuzz/corpora/$f"
    # A 2-second limit per input: anything slower counts as a hang.
    cargo afl fuzz -i "$input" -o "$out/$f" -V "$seconds" -t 2000 \
        "$CARGO_TARGET_DIR/release/fuzz-$f" > "$out/$f.log" 2>&1 || {
        echo "fuzz.sh: afl-fuzz failed for $f; its log:" >&2
        tail -20 "$out/$f.log" >&2
        return 1
    }
}

IFS=, read -r -a list <<< "$families"
pids=()
status=0
for f in "${list[@]}"; do
    if [ ! -d "crates/fuzz/corpora/$f" ]; then
        echo "fuzz.sh: no family '$f' (see crates/fuzz/corpora/)" >&2
        exit 2
    fi
    run_one "$f" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$parallel" ]; then
        wait "${pids[0]}" || status=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done

# The harnesses' scratch folders of finished fuzzer processes.
for d in /dev/shm/genocnn-fuzz-* "${TMPDIR:-/tmp}"/genocnn-fuzz-*; do
    [ -d "$d" ] || continue
    pid="${d##*-}"
    kill -0 "$pid" 2> /dev/null || rm -rf "$d"
done

stat() { sed -n "s/^$2 *: *//p" "$out/$1/default/fuzzer_stats" 2>/dev/null || echo "?"; }
printf '%-10s %14s %10s %10s %8s %6s\n' family executions seconds "execs/s" crashes hangs
for f in "${list[@]}"; do
    execs=$(stat "$f" execs_done)
    secs=$(stat "$f" run_time)
    crashes=$(stat "$f" saved_crashes)
    hangs=$(stat "$f" saved_hangs)
    rate=$(awk -v e="$execs" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", e / s; else print "?" }')
    printf '%-10s %14s %10s %10s %8s %6s\n' "$f" "$execs" "$secs" "$rate" "$crashes" "$hangs"
    if [ "$crashes" != "0" ] || [ "$hangs" != "0" ]; then
        status=1
        for d in crashes hangs; do
            for c in "$out/$f/default/$d"/id:*; do
                [ -e "$c" ] && echo "  $d: $c"
            done
        done
    fi
done
exit $status
