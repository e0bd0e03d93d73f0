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
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
# Seconds the server has to listen, the stream to appear, a process to
# exit after SIGTERM; beyond its duration a bench run gets this long.
START_DEADLINE=10
STOP_DEADLINE=5
BENCH_GRACE=60

log() { echo "tls-bench: $*" >&2; }
die() {
    log "$*"
    exit 1
}

for tool in openssl ffmpeg jq curl timeout; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

TMP=$(mktemp -d)
SERVER_PID=
FFMPEG_PID=

stop_pid() {
    local pid=$1 what=$2 i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_DEADLINE * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; then
            log "$what (pid $pid) still running ${STOP_DEADLINE}s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$FFMPEG_PID" ffmpeg
    FFMPEG_PID=
    stop_pid "$SERVER_PID" shardcast
    SERVER_PID=
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

log "certificate and clip in $TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$TMP/k.pem" -out "$TMP/c.pem" -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>"$TMP/openssl.log" ||
    die "openssl failed: $(cat "$TMP/openssl.log")"
timeout 120 ffmpeg -nostdin -loglevel error -y \
    -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 10 -c:v libx264 -preset ultrafast -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BITRATE" \
    -g 60 -c:a aac -b:a 128k -f flv "$TMP/clip.flv" ||
    die "encoding the clip failed"

"$BIN/shardcast" --listen 127.0.0.1 --port "$PORT" --shards "$SHARDS" \
    --tls-cert "$TMP/c.pem" --tls-key "$TMP/k.pem" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for ((i = 0; ; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "shardcast exited: $(tail -5 "$TMP/server.log")"
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    ((i < START_DEADLINE * 10)) || die "shardcast did not listen on $PORT within ${START_DEADLINE}s"
    sleep 0.1
done
log "shardcast pid $SERVER_PID on 127.0.0.1:$PORT"

ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$TMP/clip.flv" -c copy \
    -f flv "rtmp://127.0.0.1:$PORT/live/test" >"$TMP/ffmpeg.log" 2>&1 &
FFMPEG_PID=$!
for ((i = 0; ; i++)); do
    kill -0 "$FFMPEG_PID" 2>/dev/null || die "ffmpeg exited: $(tail -5 "$TMP/ffmpeg.log")"
    got=$(curl -s -m 1 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$PORT/live/test.flv" || true)
    [[ ${got:-0} -gt 1000 ]] && break
    ((i < START_DEADLINE)) || die "the stream did not play within ${START_DEADLINE}s"
done
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

# Figures: name players ok window_s gbit cpu_s cpu_per_gbit
figures() {
    jq -r --arg n "$1" '[$n, .players.requested, .players.ok, .window_s,
        (.delivered_gbps * .window_s), .server.cpu_s_window, .server.cpu_s_per_gbit,
        ((.errors // {}) | to_entries | map("\(.value)x \(.key)") | join("; "))]
        | map(. // "nan" | tostring) | join("|")' "$TMP/$1.json"
}
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
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); server --shards $SHARDS, bench on the same cores"
