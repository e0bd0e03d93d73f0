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
EDGES=(127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6)
ORIGIN=127.0.0.2
# Seconds a node has to listen and the stream to appear, a process to exit
# after SIGTERM; beyond its duration a bench run gets BENCH_GRACE.
START_DEADLINE=10
STOP_DEADLINE=5
BENCH_GRACE=60
TICKS=$(getconf CLK_TCK)

BENCH=cluster-bench
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
need ffmpeg jq curl timeout getconf
bench_setup

# CPU seconds a process has used (utime + stime).
cpu_s() { awk -v t="$TICKS" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }

encode_clip
start_node origin "$ORIGIN" "$PORT"
ORIGIN_PID=$NODE_PID
EDGE_PIDS=()
for i in "${!EDGES[@]}"; do
    start_node "edge$i" "${EDGES[i]}" "$PORT" --edge --origin "$ORIGIN:$PORT"
    EDGE_PIDS+=("$NODE_PID")
done
publish_clip "rtmp://$ORIGIN:$PORT/live/test" "http://$ORIGIN:$PORT/live/test.flv"
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

printf '%-7s %7s %5s %8s %13s %12s %14s\n' run players OK window_s delivered_Gbit server_CPU_s CPU_s_per_Gbit
for n in single edge0 edge1 edge2 edge3; do
    IFS='|' read -r a b c d e f g _ < <(figures "$n")
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
echo "$(machine); $SHARDS shards per node, 5 nodes and the benches on the same cores"
