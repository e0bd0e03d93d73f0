#!/usr/bin/env bash
# Measures net.ipv4.tcp_notsent_lowat's effect on a shardcast fan-out:
# server RSS per player, the kernel's send-side bytes per player (queued
# and not yet sent, from `ss -tmi` on the server's sockets) and the
# players' end-to-end latency, default (4294967295 = off) against each
# LOWAT given, interleaved, ROUNDS times.
#
# It runs in a network namespace of its own (`unshare -n`, root needed),
# so the sysctl and a shaper on that namespace's loopback touch nothing
# else on the machine. RATE "none" is plain loopback (players keep up);
# a rate such as 1600mbit puts a tbf bottleneck (50 ms of queue) on the
# loopback below the fan-out's total bitrate, so every player is a slow
# player and unsent bytes pile up as on a congested uplink (netem, for
# a plain delay, is not in this machine's kernel). Needs the release build of the workspace
# (cargo build --release --workspace), iproute2 (ip, tc, ss).
#
# Usage: tuning/measure.sh [PLAYERS] [BITRATE] [RATE] [DURATION_S] [ROUNDS] [LOWAT...]
#   defaults: 1000 2000k none 15 2 16384
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYERS=${1:-1000}
BITRATE=${2:-2000k}
RATE=${3:-none}
DURATION_S=${4:-15}
ROUNDS=${5:-2}
shift $(($# < 5 ? $# : 5))
LOWATS=("$@")
[ ${#LOWATS[@]} -gt 0 ] || LOWATS=(16384)
BIN=${CARGO_TARGET_DIR:-target}/release
PORT=18079
OUT=${MEASURE_OUT:-$(mktemp -d /tmp/shardcast-lowat.XXXXXX)}

mkdir -p "$OUT"
[ "$(id -u)" -eq 0 ] || { echo "measure.sh: needs root (unshare -n, sysctl, tc)" >&2; exit 1; }
for b in shardcast shardcast-bench; do
    [ -x "$BIN/$b" ] || { echo "measure.sh: no $BIN/$b: cargo build --release --workspace" >&2; exit 1; }
done

if [ -z "${MEASURE_INSIDE:-}" ]; then
    echo "measure.sh: results in $OUT" >&2
    exec env MEASURE_INSIDE=1 MEASURE_OUT="$OUT" unshare -n -- "$0" "$PLAYERS" "$BITRATE" "$RATE" "$DURATION_S" "$ROUNDS" "${LOWATS[@]}"
fi

ip link set lo up
if [ "$RATE" != none ]; then
    tc qdisc add dev lo root tbf rate "$RATE" burst 1mb latency 50ms
fi

# Sum over the server's established sockets (source port PORT) of
# skmem's wmem_queued (w) and tcp_info's notsent, one line: "N W NOTSENT".
sample_ss() {
    ss -tmiHn state established "( sport = :$PORT )" | awk '
        /skmem:/ { n++; if (match($0, /,w[0-9]+/)) w += substr($0, RSTART + 2, RLENGTH - 2) }
        /notsent:/ { if (match($0, /notsent:[0-9]+/)) ns += substr($0, RSTART + 8, RLENGTH - 8) }
        END { printf "%d %d %d\n", n, w, ns }'
}

run_one() {
    local lowat="$1" round="$2" tag pid ss_pid
    tag="lowat${lowat}_r${round}"
    sysctl -qw net.ipv4.tcp_notsent_lowat="$lowat"
    "$BIN/shardcast" --shards 1 --listen 127.0.0.1 --port "$PORT" --log "${MEASURE_LOG:-warn}" >"$OUT/$tag.server.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        ss -tlnH "( sport = :$PORT )" | grep -q . && break
        sleep 0.1
    done
    # Sample the kernel side every second from 5 s in until the end.
    (
        sleep 5
        for _ in $(seq $((DURATION_S - 6))); do
            sample_ss
            sleep 1
        done
    ) >"$OUT/$tag.ss" &
    ss_pid=$!
    "$BIN/shardcast-bench" fanout --url "http://127.0.0.1:$PORT/live/bench.flv" \
        --players "$PLAYERS" --bitrate "$BITRATE" --duration "$DURATION_S" \
        --server-pid "$pid" --json >"$OUT/$tag.json" 2>"$OUT/$tag.bench.log" || true
    wait "$ss_pid" || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$tag done" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
    run_one 4294967295 "$r"
    for l in "${LOWATS[@]}"; do run_one "$l" "$r"; done
done
echo "$OUT"
