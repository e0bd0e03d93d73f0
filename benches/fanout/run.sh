#!/usr/bin/env bash
# Fan-out comparison: shardcast, nginx-rtmp (Debian's libnginx-mod-rtmp) and
# node-media-server, each on one core, measured by the same shardcast-bench
# load on the other core. Writes benches/RESULTS.md.
#
#   benches/fanout/run.sh                      # the full matrix (about 20 min)
#   QUICK=1 benches/fanout/run.sh              # N=100, one repeat, short runs
#   NS=1000 REPEATS=1 benches/fanout/run.sh    # one point
#
# Parameters (environment):
#   NS="100 500 1000 2000 4000"  players per point
#   REPEATS=3                    each point this many times, servers interleaved
#   RAMP=1000                    players started per second
#   WINDOW=10                    measurement window, s; a run lasts
#                                ceil(N/RAMP) + 1 s settle + WINDOW
#   DURATION=                    a fixed run length in s instead (>= that)
#   BITRATE=1200k AUDIO_BITRATE=64k GOP=1s   the published stream
#   BENCH_CPUS=                  CPUs for shardcast-bench (taskset list); default
#                                every online CPU but the server's, one bench
#                                thread per CPU (on 2 cores: CPU 1, --threads 1)
#   SERVERS="shardcast shardcast_mw nginx nms"  PROTOCOLS="rtmp flv"
#                                (shardcast_mw: stream.write_coalesce_ms = 33;
#                                shardcast_base: the binary BASE_BIN, e.g. a
#                                build of an earlier commit, with shardcast's
#                                config: before/after figures from one run)
#   BASE_BIN=                    the baseline shardcast binary (shardcast_base)
#   RESULTS_DIR=target/fanout/<UTC time>   raw JSON per run, logs (not committed)
#   OUT=benches/RESULTS.md       the report
#   LABEL=                       a line put at the top of the report
#   INSTALL=1 BUILD=1            0 skips the apt/npm step or cargo build
#   QUICK=1                      defaults NS=100 REPEATS=1 WINDOW=5
#
# Layout: every server runs on the first online CPU alone (shardcast
# --shards 1 --pin-cores; nginx one worker with worker_cpu_affinity; node
# under taskset), shardcast-bench under taskset on the others (on 2 cores:
# --threads 1 on the second, plus its publisher thread). A fresh server
# process per run; every process is stopped by its PID.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

PARAMS=(QUICK NS REPEATS RAMP WINDOW DURATION BITRATE AUDIO_BITRATE GOP SERVERS PROTOCOLS BENCH_CPUS)
# The parameters given, for the report's "how to reproduce".
GIVEN=""
for v in "${PARAMS[@]}"; do
    if [[ -n ${!v:-} ]]; then GIVEN+="$v=\"${!v}\" "; fi
done

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    NS=${NS:-100}
    REPEATS=${REPEATS:-1}
    WINDOW=${WINDOW:-5}
fi
NS=${NS:-100 500 1000 2000 4000}
REPEATS=${REPEATS:-3}
RAMP=${RAMP:-1000}
WINDOW=${WINDOW:-10}
DURATION=${DURATION:-}
# Inter frames of 1200k at 30 fps with a keyframe a second are 4.5 KB, over
# the 4 KiB at which the bench sets SO_RCVLOWAT 2048: a player then wakes
# once per video frame, not per audio frame, whichever server sends.
BITRATE=${BITRATE:-1200k}
AUDIO_BITRATE=${AUDIO_BITRATE:-64k}
# A keyframe every second: nginx-rtmp's players (no GOP cache) start their
# video at the next keyframe, so with at most 1 s to wait they all play
# before the window opens (1 s after the ramp).
GOP=${GOP:-1s}
SERVERS=${SERVERS:-shardcast shardcast_mw nginx nms}
PROTOCOLS=${PROTOCOLS:-rtmp flv}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/target/fanout/$(date -u +%Y%m%dT%H%M%SZ)}
OUT=${OUT:-$ROOT/benches/RESULTS.md}
LABEL=${LABEL:-}
INSTALL=${INSTALL:-1}
BUILD=${BUILD:-1}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
NGINX_MODULE=${NGINX_MODULE:-/usr/lib/nginx/modules/ngx_rtmp_module.so}

# Seconds a server has to listen, and to exit after SIGTERM.
START_DEADLINE=15
STOP_DEADLINE=20
# Beyond its own duration, a bench run gets this long before it is killed.
BENCH_SLACK=60
# Pause between runs (sockets in the kernel wind down).
PAUSE=1

log() { printf '[fanout %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for v in REPEATS RAMP WINDOW; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v} is not a positive integer"
done
for n in $NS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "NS has '$n', not a positive integer"
done
[[ -z $DURATION || $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION=$DURATION is not whole seconds"
for s in $SERVERS; do
    case $s in shardcast | shardcast_mw | shardcast_base | nginx | nms) ;; *) die "unknown server '$s' (shardcast shardcast_mw shardcast_base nginx nms)" ;; esac
    if [[ $s == shardcast_base && ! -x ${BASE_BIN:-} ]]; then
        die "SERVERS has shardcast_base but BASE_BIN='${BASE_BIN:-}' is not an executable"
    fi
done
for p in $PROTOCOLS; do
    case $p in rtmp | flv) ;; *) die "unknown protocol '$p' (rtmp flv)" ;; esac
done

# ---------------------------------------------------------------- processes

# PIDs this script started and has not yet stopped.
declare -A LIVE=()
BENCH_PID=

# Stops one process by PID: SIGTERM, up to STOP_DEADLINE s, then SIGKILL.
# Returns 0 if it exited on SIGTERM.
stop_pid() {
    local pid=$1 what=$2 i
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_DEADLINE * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        # A child of ours that exited stays a zombie until waited for.
        if [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]]; then break; fi
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; then
        log "$what (pid $pid) still running ${STOP_DEADLINE}s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 1
    fi
    wait "$pid" 2>/dev/null || true
    return 0
}

cleanup() {
    local pid
    if [[ -n $BENCH_PID ]]; then stop_pid "$BENCH_PID" bench || true; fi
    for pid in "${!LIVE[@]}"; do
        stop_pid "$pid" "${LIVE[$pid]}" || true
        unset "LIVE[$pid]"
    done
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# A free TCP port on the loopback (the kernel's choice; released at once).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something listens on 127.0.0.1:PORT while PID is alive.
wait_listening() {
    local pid=$1 port=$2 i
    for ((i = 0; i < START_DEADLINE * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then return 0; fi
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------ servers
#
# start_SERVER DIR sets SERVER_PID (what we started and stop), SAMPLE_PID
# (whose CPU and RSS the bench samples), RTMP_PORT and HTTP_PORT, or
# returns 1 with START_ERROR set.

start_shardcast() {
    start_shardcast_with "$1" "$HERE/shardcast.toml"
}

# shardcast with merged writes (stream.write_coalesce_ms = 33): about
# nginx-rtmp's latency, for CPU compared at like latency.
start_shardcast_mw() {
    start_shardcast_with "$1" "$HERE/shardcast-mw.toml"
}

# The baseline binary BASE_BIN with shardcast's config.
start_shardcast_base() {
    start_shardcast_with "$1" "$HERE/shardcast.toml" "$BASE_BIN"
}

start_shardcast_with() {
    local dir=$1 config=$2 exe=${3:-$BIN/shardcast} t
    RTMP_PORT=$(free_port)
    HTTP_PORT=$RTMP_PORT
    taskset -c "$SERVER_CPU" "$exe" --config "$config" \
        --port "$RTMP_PORT" --shards 1 --pin-cores >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    LIVE[$SERVER_PID]=shardcast
    SAMPLE_PID=$SERVER_PID
    wait_listening "$SERVER_PID" "$RTMP_PORT" || {
        START_ERROR="shardcast did not listen on port $RTMP_PORT within ${START_DEADLINE}s"
        return 1
    }
    # The like-for-like layout needs shard 0 on SERVER_CPU.
    for t in /proc/"$SERVER_PID"/task/*; do
        if [[ $(<"$t/comm") == shard-0* ]]; then
            local cpus
            cpus=$(awk '/^Cpus_allowed_list/ {print $2}' "$t/status")
            if [[ $cpus != "$SERVER_CPU" ]]; then
                START_ERROR="shardcast shard 0 runs on CPUs $cpus, not $SERVER_CPU"
                return 1
            fi
        fi
    done
}

start_nginx() {
    local dir=$1 i mask
    RTMP_PORT=$(free_port)
    HTTP_PORT=
    # worker_cpu_affinity is a bit mask written in binary, CPU 0 rightmost.
    mask=1
    for ((i = 0; i < SERVER_CPU; i++)); do mask+=0; done
    sed -e "s|@MODULE@|$NGINX_MODULE|" -e "s|@RUNDIR@|$dir|g" -e "s|@PORT@|$RTMP_PORT|" \
        -e "s|@AFFINITY@|$mask|" -e "s|@NOFILE@|$NOFILE|" -e "s|@CONNECTIONS@|$((NOFILE - 16))|" \
        "$HERE/nginx.conf.in" >"$dir/nginx.conf"
    taskset -c "$SERVER_CPU" nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    LIVE[$SERVER_PID]=nginx
    SAMPLE_PID=
    wait_listening "$SERVER_PID" "$RTMP_PORT" || {
        START_ERROR="nginx did not listen on port $RTMP_PORT within ${START_DEADLINE}s"
        return 1
    }
    # The master only manages; the one worker (its child) serves.
    for ((i = 0; i < START_DEADLINE * 10; i++)); do
        SAMPLE_PID=$(pgrep -P "$SERVER_PID" | head -n 1 || true)
        [[ -n $SAMPLE_PID ]] && break
        sleep 0.1
    done
    [[ -n $SAMPLE_PID ]] || {
        START_ERROR="nginx master $SERVER_PID started no worker"
        return 1
    }
    NGINX_WORKER=$SAMPLE_PID
}

start_nms() {
    local dir=$1
    RTMP_PORT=$(free_port)
    HTTP_PORT=$(free_port)
    while [[ $HTTP_PORT == "$RTMP_PORT" ]]; do HTTP_PORT=$(free_port); done
    mkdir -p "$dir/data"
    taskset -c "$SERVER_CPU" node "$HERE/nms.js" "$RTMP_PORT" "$HTTP_PORT" "$dir/data" \
        >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    LIVE[$SERVER_PID]=nms
    SAMPLE_PID=$SERVER_PID
    if ! wait_listening "$SERVER_PID" "$RTMP_PORT" || ! wait_listening "$SERVER_PID" "$HTTP_PORT"; then
        START_ERROR="node-media-server did not listen on ports $RTMP_PORT/$HTTP_PORT within ${START_DEADLINE}s"
        return 1
    fi
}

stop_server() {
    local server=$1 ok=0
    stop_pid "$SERVER_PID" "$server" || ok=1
    unset "LIVE[$SERVER_PID]"
    # nginx: the worker is the master's child; if the master had to be
    # killed, the worker may outlive it.
    if [[ $server == nginx && -n ${NGINX_WORKER:-} ]]; then
        if kill -0 "$NGINX_WORKER" 2>/dev/null; then
            stop_pid "$NGINX_WORKER" "nginx worker" || true
        fi
        NGINX_WORKER=
    fi
    return $ok
}

# ---------------------------------------------------------------- one run

# run_point PROTO SERVER N REPEAT ORDER: one server process, one bench run.
# Appends a line to runs.tsv; a failure is recorded, never fatal.
run_point() {
    local proto=$1 server=$2 n=$3 rep=$4 order=$5
    local name="$proto-$server-n$n-r$rep"
    local dir="$RESULTS_DIR/runs/$name"
    local json="$RESULTS_DIR/$name.json"
    local status=ok rc=0 url dur
    mkdir -p "$dir"
    START_ERROR=
    SERVER_PID=
    NGINX_WORKER=
    if ! "start_$server" "$dir"; then
        log "$name: $START_ERROR (skipped)"
        [[ -n $SERVER_PID ]] && { stop_server "$server" || true; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proto" "$server" "$n" "$rep" "$order" \
            "skipped" "-" "$START_ERROR" >>"$RESULTS_DIR/runs.tsv"
        return 0
    fi
    url="rtmp://127.0.0.1:$RTMP_PORT/live/bench"
    local args=(--url "$url")
    if [[ $proto == flv ]]; then
        args=(--url "http://127.0.0.1:$HTTP_PORT/live/bench.flv" --publish-url "$url")
    fi
    dur=${DURATION:-$(((n + RAMP - 1) / RAMP + 1 + WINDOW))}
    log "$name: $server pid $SERVER_PID (sampled $SAMPLE_PID), $n players, ${dur}s"
    timeout -k 10 $((dur + BENCH_SLACK)) taskset -c "$BENCH_CPUS" "$BIN/shardcast-bench" \
        --json --threads "$BENCH_THREADS" fanout "${args[@]}" --players "$n" --ramp "$RAMP/s" \
        --duration "$dur" --bitrate "$BITRATE" --audio-bitrate "$AUDIO_BITRATE" --gop "$GOP" \
        --server-pid "$SAMPLE_PID" >"$json" 2>"$dir/bench.err" &
    BENCH_PID=$!
    wait "$BENCH_PID" || rc=$?
    BENCH_PID=
    local note=""
    case $rc in
        0) ;;
        1) status=aborted note="bench: run aborted" ;;
        124 | 137) status=timeout note="bench killed at its deadline" ;;
        *) status=failed note="bench exit $rc: $(tail -n 1 "$dir/bench.err")" ;;
    esac
    if ! kill -0 "$SAMPLE_PID" 2>/dev/null; then
        status='server-died'
        note="the server process exited during the run${note:+; $note}"
    fi
    stop_server "$server" || note="${note:+$note; }$server needed SIGKILL to stop"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proto" "$server" "$n" "$rep" "$order" \
        "$status" "$name.json" "$note" >>"$RESULTS_DIR/runs.tsv"
    if [[ $status == ok ]]; then
        python3 "$HERE/aggregate.py" --summary "$json" >&2 || true
    else
        log "$name: $status: $note"
    fi
    sleep "$PAUSE"
}

# ------------------------------------------------------------------- set-up

nproc_online=$(nproc)
((nproc_online >= 2)) || die "needs 2 cores (server on one, bench on the other); this machine has $nproc_online"
# The server gets the first online CPU (where shardcast --pin-cores puts
# shard 0), the bench the others unless BENCH_CPUS says.
read -r SERVER_CPU other_cpus < <(python3 - <<'EOF'
cpus = []
for part in open("/sys/devices/system/cpu/online").read().strip().split(","):
    a, _, b = part.partition("-")
    cpus += range(int(a), int(b or a) + 1)
print(cpus[0], ",".join(map(str, cpus[1:])))
EOF
)
BENCH_CPUS=${BENCH_CPUS:-$other_cpus}
BENCH_THREADS=$(python3 - "$BENCH_CPUS" "$SERVER_CPU" <<'EOF'
import sys
cpus = set()
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    cpus.update(range(int(a), int(b or a) + 1))
if int(sys.argv[2]) in cpus:
    sys.exit(f"BENCH_CPUS={sys.argv[1]} includes the server's CPU {sys.argv[2]}")
print(len(cpus))
EOF
) || die "BENCH_CPUS=$BENCH_CPUS: a CPU list like 1 or 1-3, without CPU $SERVER_CPU"

if [[ $INSTALL == 1 ]]; then
    missing=()
    pkg_ok() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
    for p in nginx libnginx-mod-rtmp python3 util-linux iproute2 procps; do
        pkg_ok "$p" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        SUDO=()
        ((EUID == 0)) || SUDO=(sudo)
        log "installing ${missing[*]}"
        "${SUDO[@]}" apt-get update
        # Only the packages; Debian's nginx unit is not used (and may fail to
        # start if port 80 is taken, which does not matter here).
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
            pkg_ok libnginx-mod-rtmp || die "apt-get install ${missing[*]} failed"
    fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        die "node-media-server needs Node.js >= 20 with npm (Debian 12's nodejs is 18: use NodeSource or nvm)"
    fi
    log "npm ci (node-media-server)"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
# Each peer is needed only when SERVERS runs it.
if [[ " $SERVERS " == *" nms "* ]]; then
    node_major=$(node -p 'process.versions.node.split(".")[0]')
    ((node_major >= 20)) || die "node-media-server needs Node.js >= 20; node is $(node --version)"
    [[ -f $HERE/node_modules/node-media-server/package.json ]] || die "run npm ci in $HERE (or INSTALL=1)"
fi
if [[ " $SERVERS " == *" nginx "* ]]; then
    [[ -f $NGINX_MODULE ]] || die "no $NGINX_MODULE (apt-get install libnginx-mod-rtmp)"
fi

if [[ $BUILD == 1 ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release -p shardcast -p shardcast-bench) >&2
fi
[[ -x $BIN/shardcast && -x $BIN/shardcast-bench ]] || die "no binaries in $BIN (BUILD=1)"

# Every player is a descriptor in the bench and in the server.
max_n=0
for n in $NS; do ((n > max_n)) && max_n=$n; done
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
((NOFILE >= max_n + 256)) || die "the open-files hard limit ($NOFILE) is below $((max_n + 256)) for $max_n players"
ulimit -n "$NOFILE"

# HTTP-FLV players need a bench with --publish-url.
if [[ " $PROTOCOLS " == *" flv "* ]] && ! "$BIN/shardcast-bench" fanout --help 2>/dev/null | grep -q -- --publish-url; then
    log "this shardcast-bench has no HTTP-FLV players (--publish-url): HTTP-FLV runs are left out"
    PROTOCOLS=${PROTOCOLS//flv/}
fi

mkdir -p "$RESULTS_DIR"
: >"$RESULTS_DIR/runs.tsv"

# What ran where, for the report (every number in it comes from the JSON).
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'cpu_model\t%s\n' "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    printf 'nproc\t%s\n' "$nproc_online"
    printf 'kernel\t%s\n' "$(uname -sr)"
    # shellcheck source=/dev/null
    printf 'os\t%s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")"
    printf 'memory\t%s\n' "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$ROOT" diff --quiet HEAD -- src shards Cargo.toml Cargo.lock 2>/dev/null || rev+=" (with uncommitted changes)"
    printf 'shardcast\t%s\n' "$rev"
    printf 'rustc\t%s\n' "$(rustc --version 2>/dev/null || echo unknown)"
    printf 'nginx\t%s\n' "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    printf 'libnginx-mod-rtmp\t%s\n' "$(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo unknown)"
    printf 'node\t%s\n' "$(node --version)"
    printf 'node-media-server\t%s\n' "$(node -p "require('$HERE/node_modules/node-media-server/package.json').version")"
    printf 'server_cpu\t%s\n' "$SERVER_CPU"
    printf 'bench_cpus\t%s\n' "$BENCH_CPUS"
    printf 'bench_threads\t%s\n' "$BENCH_THREADS"
    printf 'ns\t%s\n' "$NS"
    printf 'repeats\t%s\n' "$REPEATS"
    printf 'ramp\t%s\n' "$RAMP"
    printf 'window\t%s\n' "$WINDOW"
    printf 'duration\t%s\n' "${DURATION:-auto}"
    printf 'bitrate\t%s\n' "$BITRATE"
    printf 'audio_bitrate\t%s\n' "$AUDIO_BITRATE"
    printf 'gop\t%s\n' "$GOP"
    printf 'servers\t%s\n' "$SERVERS"
    printf 'protocols\t%s\n' "$PROTOCOLS"
    printf 'label\t%s\n' "$LABEL"
    printf 'command\t%s\n' "${GIVEN}benches/fanout/run.sh"
} >"$RESULTS_DIR/meta.tsv"

# ------------------------------------------------------------------ the runs

read -r -a servers <<<"$SERVERS"
runs=0 secs=0
for n in $NS; do
    for proto in $PROTOCOLS; do
        for s in "${servers[@]}"; do
            [[ $proto == flv && $s == nginx ]] && continue
            runs=$((runs + 1))
            secs=$((secs + ${DURATION:-$(((n + RAMP - 1) / RAMP + 1 + WINDOW))} + 4))
        done
    done
done
runs=$((runs * REPEATS)) secs=$((secs * REPEATS))
log "$runs runs, about $((secs / 60 + 1)) min; results in $RESULTS_DIR"

# Interleaved: each repeat goes over every N and protocol, and the servers
# take turns going first.
turn=0
for ((rep = 1; rep <= REPEATS; rep++)); do
    for n in $NS; do
        for proto in $PROTOCOLS; do
            order=0
            for ((i = 0; i < ${#servers[@]}; i++)); do
                s=${servers[$(((i + turn) % ${#servers[@]}))]}
                # nginx-rtmp serves no HTTP-FLV.
                [[ $proto == flv && $s == nginx ]] && continue
                run_point "$proto" "$s" "$n" "$rep" "$order"
                order=$((order + 1))
            done
            turn=$((turn + 1))
        done
    done
done

python3 "$HERE/aggregate.py" "$RESULTS_DIR" "$OUT"
log "wrote $OUT (raw results in $RESULTS_DIR)"
