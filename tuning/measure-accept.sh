#!/usr/bin/env bash
# Measures net.core.somaxconn's effect on an accept burst: PLAYERS
# HTTP-FLV players started at once (--ramp RAMP) against one shard, with
# somaxconn at each value given (default: 128, the pre-5.4 kernel default,
# against 4096), interleaved ROUNDS times. Reports connected / failed and
# the time to first frame, whose tail shows SYNs the kernel dropped and
# the client retransmitted (1 s, then 3 s). In its own network namespace
# (`unshare -n`, root), so nothing else on the machine sees the sysctl.
#
# Usage: tuning/measure-accept.sh [PLAYERS] [RAMP] [ROUNDS] [SOMAXCONN...]
#   defaults: 4000 1000000/s 2 128 4096
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

PLAYERS=${1:-4000}
RAMP=${2:-1000000/s}
ROUNDS=${3:-2}
shift $(($# < 3 ? $# : 3))
VALUES=("$@")
[ ${#VALUES[@]} -gt 0 ] || VALUES=(128 4096)
BIN=${CARGO_TARGET_DIR:-target}/release
PORT=18080
OUT=${MEASURE_OUT:-$(mktemp -d /tmp/shardcast-accept.XXXXXX)}
# shellcheck source=tuning/measure-lib.sh
. tuning/measure-lib.sh
measure_preflight measure-accept.sh
measure_enter_netns "$SELF" "$PLAYERS" "$RAMP" "$ROUNDS" "${VALUES[@]}"
# nstat's history (what its deltas are from) for this namespace only.
export NSTAT_HISTORY="$OUT/nstat.history"

for ((r = 1; r <= ROUNDS; r++)); do
    for v in "${VALUES[@]}"; do
        tag="somaxconn${v}_r$r"
        sysctl -qw net.core.somaxconn="$v"
        measure_start_server "$tag"
        pid=$SERVER_PID
        ss -tlnH "( sport = :$PORT )" >"$OUT/$tag.listen"
        nstat -n
        "$BIN/shardcast-bench" fanout --url "http://127.0.0.1:$PORT/live/bench.flv" \
            --players "$PLAYERS" --ramp "$RAMP" --bitrate 500k --duration 12 \
            --server-pid "$pid" --json >"$OUT/$tag.json" 2>"$OUT/$tag.bench.log" || true
        nstat -z TcpExtListenOverflows TcpExtListenDrops >"$OUT/$tag.nstat" 2>/dev/null || true
        measure_stop_server
        echo "$tag done" >&2
    done
done
echo "$OUT"
