#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time, one at a time
# (one libFuzzer process each: no -jobs, no -fork; the cores are shared).
#   scripts/fuzz.sh [seconds per target] [target...]
# Defaults: 10 seconds, every target. On stable Rust (--sanitizer none).
# Installs cargo-fuzz when `cargo fuzz` is missing. Each target starts from
# its committed seeds (fuzz/seeds/<target>/) and grows its own working
# corpus in fuzz/corpus/<target>/ (not committed). A crash stops the script
# with libFuzzer's report; the input is in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-10}
shift || true
# Memory a target may use (MiB) and the longest one input may take (s):
# beyond either, libFuzzer reports the input as a failure.
RSS_LIMIT_MB=${RSS_LIMIT_MB:-2048}
INPUT_TIMEOUT_S=${INPUT_TIMEOUT_S:-10}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build --sanitizer none
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    echo "fuzz.sh: $t for ${seconds}s" >&2
    log=$(mktemp)
    # The whole run has a wall-clock bound too, in case libFuzzer hangs.
    if ! timeout --signal=KILL "$((seconds + 120))" \
        cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb="$RSS_LIMIT_MB" \
        -timeout="$INPUT_TIMEOUT_S" -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz.sh: $t FAILED (inputs in fuzz/artifacts/$t/)" >&2
        rm -f "$log"
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -E '^#[0-9]+\s+DONE' "$log" | grep -o 'cov: [0-9]*' || echo 'cov: ?')
    echo "fuzz.sh: $t ok: $runs runs in ${seconds}s, $cov" >&2
    rm -f "$log"
done
