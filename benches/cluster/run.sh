#!/usr/bin/env bash
# A tree of one origin and four edges on this machine (issue 12): one
# ffmpeg publisher on the origin (127.0.0.2), edges on 127.0.0.3-6 pulling
# from it, and PLAYERS/4 HTTP-FLV players on each edge (four shardcast-bench
# processes at once). Before it, in the same run, the single-node figure:
# PLAYERS players on the origin itself. Prints for each: players OK,
# delivered Gbit, server CPU-s (utime + stime from /proc) and CPU-s per
# delivered Gbit, the tree's total (origin + edges) beside the single
# node's, and the number of players the origin serves during the tree run
# (its pulls: four expected).
#
#   benches/cluster/run.sh
#   PLAYERS=400 DURATION=20 BUILD=0 benches/cluster/run.sh
#
# Parameters (environment):
#   PLAYERS=1000   players in all (each edge gets a quarter)
#   DURATION=30    each run's length in s
#   RAMP=500       players started per second, per bench process
#   PORT=18600     every node's port (each on its own address)
#   SHARDS=2       shards per node
#   BITRATE=2M     the stream's video bitrate
#   BUILD=1        0 skips `cargo build --release`
#   OUT_DIR=       keep the JSON and logs here (default: a temp dir, removed)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PLAYERS=${PLAYERS:-1000}
DURATION=${DURATION:-30}
RAMP=${RAMP:-500}
PORT=${PORT:-18600}
SHARDS=${SHARDS:-2}
BITRATE=${BITRATE:-2M}
BUILD=${BUILD:-1}
OUT_DIR=${OUT_DIR:-}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
EDGES=(127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6)
ORIGIN=127.0.0.2
# Seconds a node has to listen and the stream to appear, a process to exit
# after SIGTERM; beyond its duration a bench run gets BENCH_GRACE.
START_DEADLINE=10
STOP_DEADLINE=5
BENCH_GRACE=60
TICKS=$(getconf CLK_TCK)

log() { echo "cluster-bench: $*" >&2; }
die() {
    log "$*"
    exit 1
}
for tool in ffmpeg jq curl timeout getconf; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

TMP=$(mktemp -d)
PIDS=()

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_DEADLINE * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; then
        log "pid $pid still running ${STOP_DEADLINE}s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    if [[ -n $OUT_DIR ]]; then
        mkdir -p "$OUT_DIR"
        cp "$TMP"/*.json "$TMP"/*.log "$OUT_DIR"/ 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release -p shardcast -p shardcast-bench) >&2
fi
[[ -x $BIN/shardcast && -x $BIN/shardcast-bench ]] || die "no binaries in $BIN (BUILD=1)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# CPU seconds a process has used (utime + stime).
cpu_s() { awk -v t="$TICKS" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }

# Starts a node: name, address, more flags. Sets NODE_PID.
node() {
    local name=$1 ip=$2 i
    shift 2
    "$BIN/shardcast" --listen "$ip" --port "$PORT" --shards "$SHARDS" "$@" >"$TMP/$name.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    for ((i = 0; ; i++)); do
        kill -0 "$NODE_PID" 2>/dev/null || die "$name exited: $(tail -5 "$TMP/$name.log")"
        (exec 3<>"/dev/tcp/$ip/$PORT") 2>/dev/null && break
        ((i < START_DEADLINE * 10)) || die "$name did not listen on $ip:$PORT within ${START_DEADLINE}s"
        sleep 0.1
    done
}

log "clip in $TMP"
timeout 120 ffmpeg -nostdin -loglevel error -y \
    -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 10 -c:v libx264 -preset ultrafast -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BITRATE" \
    -g 60 -c:a aac -b:a 128k -f flv "$TMP/clip.flv" || die "encoding the clip failed"

node origin "$ORIGIN"
ORIGIN_PID=$NODE_PID
EDGE_PIDS=()
for i in "${!EDGES[@]}"; do
    node "edge$i" "${EDGES[i]}" --edge --origin "$ORIGIN:$PORT"
    EDGE_PIDS+=("$NODE_PID")
done
ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$TMP/clip.flv" -c copy \
    -f flv "rtmp://$ORIGIN:$PORT/live/test" >"$TMP/ffmpeg.log" 2>&1 &
PIDS+=($!)
for ((i = 0; ; i++)); do
    got=$(curl -s -m 1 -o /dev/null -w '%{size_download}' "http://$ORIGIN:$PORT/live/test.flv" || true)
    [[ ${got:-0} -gt 1000 ]] && break
    ((i < START_DEADLINE)) || die "the stream did not play within ${START_DEADLINE}s"
done
log "origin $ORIGIN_PID, edges ${EDGE_PIDS[*]}, publishing"

# One bench: name, players, URL, server pid (in the background with &).
bench() {
    timeout -k 5 $((DURATION + BENCH_GRACE)) "$BIN/shardcast-bench" --json play "$3" \
        --players "$2" --ramp "$RAMP" --duration "$DURATION" --server-pid "$4" \
        >"$TMP/$1.json" 2>"$TMP/$1.log" || die "$1: the bench failed: $(tail -5 "$TMP/$1.log")"
}

log "single node: $PLAYERS players on the origin"
bench single "$PLAYERS" "http://$ORIGIN:$PORT/live/test.flv" "$ORIGIN_PID"

log "tree: $((PLAYERS / 4)) players on each of ${#EDGES[@]} edges"
BENCHES=()
for i in "${!EDGES[@]}"; do
    bench "edge$i" $((PLAYERS / 4)) "http://${EDGES[i]}:$PORT/live/test.flv" "${EDGE_PIDS[i]}" &
    BENCHES+=($!)
done
# The origin's CPU over the middle of the run (the benches' windows open
# after their ramp and a second of settling, and close before the end).
sleep 3
o0=$(cpu_s "$ORIGIN_PID")
t0=$(date +%s.%N)
sleep $((DURATION - 5))
o1=$(cpu_s "$ORIGIN_PID")
t1=$(date +%s.%N)
pulls=$(curl -s -m 2 "http://$ORIGIN:$PORT/api/v1/streams/__defaultVhost__/live/test" | jq '.players.total')
for b in "${BENCHES[@]}"; do wait "$b" || die "an edge bench failed"; done
for pid in "$ORIGIN_PID" "${EDGE_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "node $pid died"; done

row() {
    jq -r --arg n "$1" '[$n, .players.requested, .players.ok, .window_s,
        (.delivered_gbps * .window_s), .server.cpu_s_window, .server.cpu_s_per_gbit]
        | map(. // "nan" | tostring) | join(" ")' "$TMP/$1.json"
}
printf '%-7s %7s %5s %8s %13s %12s %14s\n' run players OK window_s delivered_Gbit server_CPU_s CPU_s_per_Gbit
for n in single edge0 edge1 edge2 edge3; do
    read -r a b c d e f g < <(row "$n")
    printf '%-7s %7s %5s %8.2f %13.3f %12.2f %14.3f\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
done
jq -s --argjson o "$(jq -n "($o1 - $o0) / ($t1 - $t0)")" --argjson pulls "${pulls:-null}" '
    (.[0]) as $single | (.[1:]) as $edges |
    ($edges | map(.delivered_gbps * .window_s) | add) as $gbit |
    ($edges | map(.server.cpu_s_window) | add) as $ecpu |
    ($edges | map(.window_s) | add / length) as $w |
    {origin_cpu_s_per_s: ($o * 1000 | round / 1000),
     origin_players_during_tree: $pulls,
     tree_players_ok: ($edges | map(.players.ok) | add),
     tree_gbit: ($gbit * 1000 | round / 1000),
     tree_cpu_s_per_gbit: ((($ecpu + $o * $w) / $gbit) * 1000 | round / 1000),
     edges_cpu_s_per_gbit: (($ecpu / $gbit) * 1000 | round / 1000),
     single_cpu_s_per_gbit: $single.server.cpu_s_per_gbit}' \
    "$TMP/single.json" "$TMP"/edge{0,1,2,3}.json
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $SHARDS shards per node, 5 nodes and the benches on the same cores"
