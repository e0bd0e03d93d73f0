#!/usr/bin/env bash
# The one test command: on a fresh Debian machine with Rust and Node.js
# (>= 20, with npm) and Python 3, installs what the tests need (ffmpeg/ffprobe,
# rtmpdump, Debian's chromium, promtool from Debian's prometheus, redis, the
# npm packages of package-lock.json, and ffmpeg 9 from PyPI in .venv/),
# builds the release binary and runs every test of the workspace. Extra
# arguments go to `cargo test`
# (e.g. `scripts/test.sh --test rtmp -- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."

need_tools=(ffmpeg ffprobe rtmpdump curl)
missing=()
apt_packages=()
for tool in "${need_tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_packages+=(ffmpeg rtmpdump curl)
fi
# The browser tests (tests/browser.rs) drive Debian's Chromium through
# playwright-core; no browser is downloaded.
if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
    apt_packages+=(chromium)
fi
# tests/metrics.rs checks /metrics with `promtool check metrics`, which
# Debian ships in its prometheus package.
if ! command -v promtool >/dev/null 2>&1; then
    missing+=(promtool)
    apt_packages+=(prometheus)
fi
# tests/cluster.rs runs a real Redis (Debian's redis-server, with
# redis-cli) on a free port.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    missing+=(redis-server)
    apt_packages+=(redis-server redis-tools)
fi
# tests/tuning.rs runs shellcheck on tuning/*.sh and reads the listen
# backlog with `ss` (iproute2).
if ! command -v shellcheck >/dev/null 2>&1; then
    missing+=(shellcheck)
    apt_packages+=(shellcheck)
fi
if ! command -v ss >/dev/null 2>&1; then
    missing+=(ss)
    apt_packages+=(iproute2)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
    echo "test.sh: installing ${apt_packages[*]} (missing: ${missing[*]})" >&2
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    else
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_packages[@]}"
fi

# The web player's libraries (hls.js, mpegts.js and shaka-player, which shardcast serves
# at /assets/ from node_modules) and playwright-core, as pinned by
# package-lock.json. npm ci runs again whenever the lock file is newer than
# the installed tree (npm keeps its copy in node_modules/.package-lock.json).
if ! command -v npm >/dev/null 2>&1; then
    echo "test.sh: npm is missing: install Node.js >= 20 with npm (playwright-core needs it)" >&2
    exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "test.sh: npm ci (installing hls.js, mpegts.js, shaka-player, playwright-core into node_modules)" >&2
    npm ci --no-audit --no-fund
fi

# The enhanced-RTMP publisher of the codec tests (tests/codecs.rs): the
# static ffmpeg 9 (libx265, SVT-AV1, libaom, libopus) inside the PyPI wheel
# imageio-ffmpeg, pinned, in the project's virtual environment .venv/. The
# tests find its binary through SHARDCAST_FFMPEG9 (set here), or ask
# .venv/bin/python for it.
IMAGEIO_FFMPEG_VERSION=0.8.1
if ! .venv/bin/python -c "import imageio_ffmpeg, sys; sys.exit(imageio_ffmpeg.__version__ != '$IMAGEIO_FFMPEG_VERSION')" 2>/dev/null; then
    echo "test.sh: installing imageio-ffmpeg $IMAGEIO_FFMPEG_VERSION into .venv (ffmpeg 9 for enhanced RTMP)" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check "imageio-ffmpeg==$IMAGEIO_FFMPEG_VERSION"
fi
SHARDCAST_FFMPEG9=$(.venv/bin/python -c 'import imageio_ffmpeg as f; print(f.get_ffmpeg_exe())')
export SHARDCAST_FFMPEG9

cargo build --release --workspace
cargo test --release --workspace "$@"
