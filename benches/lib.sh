# What the bench scripts share (benches/tls/run.sh, benches/cluster/run.sh):
# source it after setting BENCH (the log prefix), then call bench_setup.
#
# It provides log and die, a temp dir TMP that is removed at exit (its JSON
# and logs copied to OUT_DIR first when that is set), PIDS (every process
# started with start_node or publish_clip, stopped by PID at exit, newest
# first: SIGTERM, then SIGKILL after STOP_DEADLINE), the binaries in BIN
# (built when BUILD=1), the clip, a node's start and the publisher's.
#
# Variables it reads: ROOT, BUILD, BITRATE, OUT_DIR, SHARDS,
# START_DEADLINE, STOP_DEADLINE.

log() { echo "$BENCH: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# Fails unless every tool named is on PATH.
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "needs $tool"
    done
}

# Stops one process: SIGTERM, then SIGKILL after STOP_DEADLINE s.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
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
    fi
    wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    PIDS=()
    if [[ -n $OUT_DIR ]]; then
        mkdir -p "$OUT_DIR"
        cp "$TMP"/*.json "$TMP"/*.log "$OUT_DIR"/ 2>/dev/null || true
    fi
    rm -rf "$TMP"
}

# The temp dir, the exit trap, the binaries, the file limit.
bench_setup() {
    TMP=$(mktemp -d)
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
    if [[ $BUILD == 1 ]]; then
        (cd "$ROOT" && cargo build --release -p shardcast -p shardcast-bench) >&2
    fi
    [[ -x $BIN/shardcast && -x $BIN/shardcast-bench ]] || die "no binaries in $BIN (BUILD=1)"
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
}

# A 10 s 720p30 H.264/AAC clip at BITRATE in $TMP/clip.flv, encoded once so
# that no encoder competes with the servers during the runs.
encode_clip() {
    log "clip in $TMP"
    timeout 120 ffmpeg -nostdin -loglevel error -y \
        -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
        -t 10 -c:v libx264 -preset ultrafast -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BITRATE" \
        -g 60 -c:a aac -b:a 128k -f flv "$TMP/clip.flv" || die "encoding the clip failed"
}

# Starts a shardcast node: name (its log is $TMP/name.log), address, port,
# more flags; waits until it listens. Sets NODE_PID.
start_node() {
    local name=$1 ip=$2 port=$3 i
    shift 3
    "$BIN/shardcast" --listen "$ip" --port "$port" --shards "$SHARDS" "$@" >"$TMP/$name.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    for ((i = 0; ; i++)); do
        kill -0 "$NODE_PID" 2>/dev/null || die "$name exited: $(tail -5 "$TMP/$name.log")"
        (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null && break
        ((i < START_DEADLINE * 10)) || die "$name did not listen on $ip:$port within ${START_DEADLINE}s"
        sleep 0.1
    done
}

# Loops the clip to an RTMP URL (-c copy) until the stream plays at an
# HTTP-FLV URL. Sets FFMPEG_PID.
publish_clip() {
    local rtmp=$1 flv=$2 i got
    ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$TMP/clip.flv" -c copy \
        -f flv "$rtmp" >"$TMP/ffmpeg.log" 2>&1 &
    FFMPEG_PID=$!
    PIDS+=("$FFMPEG_PID")
    for ((i = 0; ; i++)); do
        kill -0 "$FFMPEG_PID" 2>/dev/null || die "ffmpeg exited: $(tail -5 "$TMP/ffmpeg.log")"
        got=$(curl -s -m 1 -o /dev/null -w '%{size_download}' "$flv" || true)
        [[ ${got:-0} -gt 1000 ]] && break
        ((i < START_DEADLINE)) || die "the stream did not play within ${START_DEADLINE}s"
    done
}

# One bench's figures, |-separated: name players ok window_s gbit cpu_s
# cpu_per_gbit errors.
figures() {
    jq -r --arg n "$1" '[$n, .players.requested, .players.ok, .window_s,
        (.delivered_gbps * .window_s), .server.cpu_s_window, .server.cpu_s_per_gbit,
        ((.errors // {}) | to_entries | map("\(.value)x \(.key)") | join("; "))]
        | map(. // "nan" | tostring) | join("|")' "$TMP/$1.json"
}

machine() {
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
}
