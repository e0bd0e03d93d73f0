# shellcheck shell=bash
# Shared by tuning/measure.sh and tuning/measure-accept.sh (sourced, not
# run): checks, the private network namespace, and starting the server.
# The caller sets BIN, PORT and OUT first.

# Dies unless root and the release binaries exist; makes OUT.
measure_preflight() {
    local name="$1" b
    mkdir -p "$OUT"
    [ "$(id -u)" -eq 0 ] || { echo "$name: needs root (unshare -n, sysctl)" >&2; exit 1; }
    for b in shardcast shardcast-bench; do
        [ -x "$BIN/$b" ] || { echo "$name: no $BIN/$b: cargo build --release --workspace" >&2; exit 1; }
    done
}

# Outside the namespace: runs the script (the arguments) again inside a
# new one and does not return. Inside: brings its loopback up.
measure_enter_netns() {
    if [ -z "${MEASURE_INSIDE:-}" ]; then
        echo "$(basename "$1"): results in $OUT" >&2
        exec env MEASURE_INSIDE=1 MEASURE_OUT="$OUT" unshare -n -- "$@"
    fi
    ip link set lo up
}

# Starts one shard on 127.0.0.1:PORT, logging to OUT/TAG.server.log; sets
# SERVER_PID and waits (at most 5 s) until it listens.
measure_start_server() {
    local tag="$1"
    "$BIN/shardcast" --shards 1 --listen 127.0.0.1 --port "$PORT" --log "${MEASURE_LOG:-warn}" \
        >"$OUT/$tag.server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 50); do
        ss -tlnH "( sport = :$PORT )" | grep -q . && return 0
        sleep 0.1
    done
    echo "measure: shardcast did not listen on $PORT within 5 s (see $OUT/$tag.server.log)" >&2
}

measure_stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
