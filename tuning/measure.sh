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
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
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

# shellcheck source=tuning/measure-lib.sh
. tuning/measure-lib.sh
measure_preflight measure.sh
measure_enter_netns "$SELF" "$PLAYERS" "$BITRATE" "$RATE" "$DURATION_S" "$ROUNDS" "${LOWATS[@]}"
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
    measure_start_server "$tag"
    pid=$SERVER_PID
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
    measure_stop_server
    echo "$tag done" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
    run_one 4294967295 "$r"
    for l in "${LOWATS[@]}"; do run_one "$l" "$r"; done
done
echo "$OUT"
