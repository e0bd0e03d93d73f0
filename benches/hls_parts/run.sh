#!/usr/bin/env bash
# fMP4 against MPEG-TS for LL-HLS (issue 13), on one server and one
# stream: how soon after its last frame a part is ready, and how many bytes
# a segment takes in each container.
#
#   benches/hls_parts/run.sh
#   DURATION=120 benches/hls_parts/run.sh
#
# One shardcast process (SHARDS shards, LL-HLS on, parts of 500 ms) logs
# `hls part ready ... rendition=main.<container> ... since_last_frame_us=N`
# at debug level for every part as each shard applies it: N is the time
# from the stream's last ingested frame to that moment, i.e. what cutting
# and muxing the part cost on the owner plus the hop to a replica. The
# publisher loops a 10 s 720p30 H.264/AAC clip encoded once beforehand
# (-c copy). The fMP4 rendition starts at the first ?container=fmp4 request,
# made right after the publish; the figures cover the DURATION s after it.
# At the end both playlists are read and every segment listed in both
# (same media sequence number, so the same frames) is downloaded, with its
# EXTINF duration.
#
# Parameters (environment):
#   DURATION=60     seconds of parts measured
#   PORT=18079      the server's port
#   SHARDS=2        server shards
#   BITRATE=2M      the clip's video bitrate
#   BUILD=1         0 skips `cargo build --release`
#   OUT_DIR=        keep the server log here (default: a temp dir, removed)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-60}
PORT=${PORT:-18079}
SHARDS=${SHARDS:-2}
BITRATE=${BITRATE:-2M}
BUILD=${BUILD:-1}
OUT_DIR=${OUT_DIR:-}
START_DEADLINE=10
STOP_DEADLINE=5

BENCH=hls-parts-bench
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
need ffmpeg curl python3 timeout
bench_setup
encode_clip

start_node server 127.0.0.1 "$PORT" --log "info,shardcast::stream=debug"
BASE=http://127.0.0.1:$PORT
publish_clip "rtmp://127.0.0.1:$PORT/live/bench" "$BASE/live/bench.flv"
for container in ts fmp4; do
    curl -sf -m 20 -o /dev/null "$BASE/live/bench.m3u8?container=$container" ||
        die "no $container playlist"
done
log "measuring ${DURATION}s of parts"
sleep "$DURATION"
for container in ts fmp4; do
    curl -sf -m 10 -o "$TMP/$container.m3u8" "$BASE/live/bench.m3u8?container=$container" ||
        die "no $container playlist at the end"
done
machine
# While the stream is live: its segments stay listed and fetchable.
timeout 60 python3 "$HERE/report.py" "$TMP/server.log" "$TMP/ts.m3u8" "$TMP/fmp4.m3u8" \
    "$BASE/live/bench.m3u8" "$DURATION"
