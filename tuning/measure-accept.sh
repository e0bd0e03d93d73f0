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
mkdir -p "$OUT"

[ "$(id -u)" -eq 0 ] || { echo "measure-accept.sh: needs root (unshare -n, sysctl)" >&2; exit 1; }
for b in shardcast shardcast-bench; do
    [ -x "$BIN/$b" ] || { echo "measure-accept.sh: no $BIN/$b: cargo build --release --workspace" >&2; exit 1; }
done
if [ -z "${MEASURE_INSIDE:-}" ]; then
    echo "measure-accept.sh: results in $OUT" >&2
    exec env MEASURE_INSIDE=1 MEASURE_OUT="$OUT" unshare -n -- "$0" "$PLAYERS" "$RAMP" "$ROUNDS" "${VALUES[@]}"
fi
ip link set lo up
# nstat's history (what its deltas are from) for this namespace only.
export NSTAT_HISTORY="$OUT/nstat.history"

for ((r = 1; r <= ROUNDS; r++)); do
    for v in "${VALUES[@]}"; do
        tag="somaxconn${v}_r$r"
        sysctl -qw net.core.somaxconn="$v"
        "$BIN/shardcast" --shards 1 --listen 127.0.0.1 --port "$PORT" --log warn >"$OUT/$tag.server.log" 2>&1 &
        pid=$!
        for _ in $(seq 50); do
            ss -tlnH "( sport = :$PORT )" | grep -q . && break
            sleep 0.1
        done
        ss -tlnH "( sport = :$PORT )" >"$OUT/$tag.listen"
        nstat -n
        "$BIN/shardcast-bench" fanout --url "http://127.0.0.1:$PORT/live/bench.flv" \
            --players "$PLAYERS" --ramp "$RAMP" --bitrate 500k --duration 12 \
            --server-pid "$pid" --json >"$OUT/$tag.json" 2>"$OUT/$tag.bench.log" || true
        nstat -z TcpExtListenOverflows TcpExtListenDrops >"$OUT/$tag.nstat" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "$tag done" >&2
    done
done
echo "$OUT"
