#!/usr/bin/env bash
# What TLS costs the server per player (issue 11): one shardcast process
# with a certificate, one ffmpeg publisher, then N plain HTTP-FLV players
# and N HTTPS-FLV players, one run after the other against the same server
# and stream, each for the same duration. Prints, for each, the delivered
# Gbit, the server's CPU seconds (utime + stime from /proc/<pid>/stat over
# the bench's measurement window) and CPU-s per delivered Gbit, and the
# ratio TLS / plain.
#
#   benches/tls/run.sh
#   PLAYERS=500 DURATION=20 benches/tls/run.sh
#
# Parameters (environment):
#   PLAYERS=1000    players per run
#   DURATION=30     each run's length in s (the window opens after the ramp
#                   and a second of settling)
#   RAMP=500        players started per second
#   PORT=18443      the server's one port (plain and TLS)
#   SHARDS=2        server shards
#   BITRATE=2M      the published stream's video bitrate
#   BUILD=1         0 skips `cargo build --release`
#   OUT_DIR=        keep the bench JSON here (default: a temp dir, removed)
#   RTMP=0          1 adds a plain RTMP and an RTMPS run (rtmp:// and
#                   rtmps:// players of the same stream, same one port)
#
# The certificate (self-signed P-256, CN=localhost, SAN IP:127.0.0.1, marked
# CA:FALSE, which webpki wants of an end-entity certificate) is made in a
# temp dir; the players trust it with --cacert. The publisher loops a 10 s clip
# encoded once beforehand (-c copy), so no encoder competes with the
# server during the runs. Every process is stopped by its PID.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PLAYERS=${PLAYERS:-1000}
DURATION=${DURATION:-30}
RAMP=${RAMP:-500}
PORT=${PORT:-18443}
SHARDS=${SHARDS:-2}
BITRATE=${BITRATE:-2M}
BUILD=${BUILD:-1}
OUT_DIR=${OUT_DIR:-}
RTMP=${RTMP:-0}
# Seconds the server has to listen, the stream to appear, a process to
# exit after SIGTERM; beyond its duration a bench run gets this long.
START_DEADLINE=10
STOP_DEADLINE=5
BENCH_GRACE=60

BENCH=tls-bench
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
need openssl ffmpeg jq curl timeout
bench_setup

log "certificate in $TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$TMP/k.pem" -out "$TMP/c.pem" -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>"$TMP/openssl.log" ||
    die "openssl failed: $(cat "$TMP/openssl.log")"
encode_clip

start_node server 127.0.0.1 "$PORT" --tls-cert "$TMP/c.pem" --tls-key "$TMP/k.pem"
SERVER_PID=$NODE_PID
log "shardcast pid $SERVER_PID on 127.0.0.1:$PORT"
publish_clip "rtmp://127.0.0.1:$PORT/live/test" "http://127.0.0.1:$PORT/live/test.flv"
log "ffmpeg pid $FFMPEG_PID publishing rtmp://127.0.0.1:$PORT/live/test"

# One bench run: name, URL, extra flags.
bench() {
    local name=$1 url=$2
    shift 2
    log "$name: $PLAYERS players of $url for ${DURATION}s"
    timeout -k 5 $((DURATION + BENCH_GRACE)) "$BIN/shardcast-bench" --json play "$url" \
        --players "$PLAYERS" --ramp "$RAMP" --duration "$DURATION" \
        --server-pid "$SERVER_PID" "$@" >"$TMP/$name.json" 2>"$TMP/$name.log" ||
        die "$name: the bench failed: $(tail -5 "$TMP/$name.log")"
    kill -0 "$SERVER_PID" 2>/dev/null || die "shardcast died during $name"
}

bench plain "http://127.0.0.1:$PORT/live/test.flv"
bench tls "https://127.0.0.1:$PORT/live/test.flv" --cacert "$TMP/c.pem"
RUNS=(plain tls)
if [[ $RTMP == 1 ]]; then
    bench rtmp "rtmp://127.0.0.1:$PORT/live/test"
    bench rtmps "rtmps://127.0.0.1:$PORT/live/test" --cacert "$TMP/c.pem"
    RUNS+=(rtmp rtmps)
fi

printf '%-6s %7s %5s %9s %13s %12s %14s  %s\n' run players OK window_s delivered_Gbit server_CPU_s CPU_s_per_Gbit errors
for name in "${RUNS[@]}"; do
    IFS='|' read -r n p ok w g c cg err < <(figures "$name")
    printf '%-6s %7s %5s %9.2f %13.3f %12.2f %14.3f  %s\n' "$n" "$p" "$ok" "$w" "$g" "$c" "$cg" "$err"
done
plain=$(jq .server.cpu_s_per_gbit "$TMP/plain.json")
tls=$(jq .server.cpu_s_per_gbit "$TMP/tls.json")
echo "ratio TLS/plain (CPU-s per Gbit): $(jq -n "$tls / $plain * 1000 | round / 1000")"
if [[ $RTMP == 1 ]]; then
    rtmp=$(jq .server.cpu_s_per_gbit "$TMP/rtmp.json")
    rtmps=$(jq .server.cpu_s_per_gbit "$TMP/rtmps.json")
    echo "ratio RTMPS/RTMP (CPU-s per Gbit): $(jq -n "$rtmps / $rtmp * 1000 | round / 1000")"
fi
echo "$(machine); server --shards $SHARDS, bench on the same cores"
